"""Import packages afresh from disk, so that a developer's edits take effect without restarting Slicer.

Used by the module widgets' ``onReload`` for ``virtualbiopsy`` and ``virtualbiopsy_slicer``: Slicer's
own reload re-reads only the module file, which would keep using the library modules already imported.
Plain Python (no Qt), so it is tested headless.
"""

from __future__ import annotations

import importlib
import sys


def reloadPackages(packages) -> list[str]:
    """Import ``packages`` and every submodule of theirs that is loaded, afresh from disk.

    The modules are dropped from ``sys.modules`` and imported again in the order they were first
    imported, each pulling its own imports afresh too (``importlib.reload`` module by module would hand
    a reloaded module the old objects of a sibling not reloaded yet). A submodule whose file is gone is
    left out. Returns the names imported again.
    """
    names = [name for name in list(sys.modules) if name.split(".")[0] in packages]
    for name in names:
        del sys.modules[name]
    importlib.invalidate_caches()
    reloaded = []
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        reloaded.append(name)
    return reloaded
