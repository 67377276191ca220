"""Qt-side helpers for the Virtual Biopsy Slicer modules (progress dialogs, dependency install, errors).

This package runs only inside 3D Slicer: it imports ``qt`` and ``slicer.util``. It is kept apart
from the ``virtualbiopsy`` library on purpose. The library is Qt-free (it works on MRML nodes and
raises typed errors), so the same code runs in the Slicer modules, on the command line and in the
headless tests. Everything that shows a dialog, changes the cursor or pumps the Qt event loop
lives here instead, and only the module files (``<Module>/<Module>.py``) and this package may
import ``qt``, ``ctk`` or ``slicer.util``.

Modules:
    module        ``VirtualBiopsyModuleWidget``: the one action runner (``runAction``), each module's
                  table of button actions, ``onReload``; ``showTable``, the self-test entry
    protocols     what each widget asks of its logic (a fake logic can stand in for it)
    progress      a progress dialog with Cancel bound to a ``virtualbiopsy.progress.Task``, and
                  ``run_in_background`` for pure computations in a worker thread
    dependencies  ``ensure(group)``: install a module's missing Python packages after asking
    errors        ``show_error(exc, title)``: the one way a module shows a failure
    i18n          ``tr`` / ``translate`` from ``slicer.i18n``, with a headless fallback
    reloading     ``reloadPackages``: import the library afresh from disk (for ``onReload``)
    *_panel       sections of a panel shared by modules (pre-processing, correction loop)
"""
