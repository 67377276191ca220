"""One Logic class per Slicer module. Each works on MRML nodes only (no Qt) and takes an
:class:`~virtualbiopsy.mrml.MRMLContext`, so the Slicer widget, the command line and the tests
run the same code. The module files (``<Module>/<Module>.py``) import their Logic from here."""
