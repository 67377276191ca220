"""Virtual Biopsy: the shared logic library of the Virtual Biopsy extension for 3D Slicer.

Everything here runs on MRML nodes without Qt, so the same code serves the Slicer modules,
the ``virtualbiopsy`` command line and the tests (on the ``slicer-core`` package).

Sub-packages:
    mrml      scene context, file IO through storage nodes, numpy <-> volume / segment, geometry
    phantom   the seeded synthetic paediatric abdominal MRI study (T2w, DWI, DCE + ground truth)
    logic     one Logic class per Slicer module, working on MRML nodes only
    report    figures (matplotlib) and the HTML report
    cli       the ``virtualbiopsy`` console script
"""

__version__ = "0.1.0"
