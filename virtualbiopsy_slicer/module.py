"""What every Virtual Biopsy module widget and self-test does the same way inside Slicer."""

from __future__ import annotations

import tempfile

import slicer

from virtualbiopsy.mrml.context import MRMLContext


def sceneContext() -> MRMLContext:
    """The library's view of the running application's scene and module logics."""
    return MRMLContext.attach(slicer.mrmlScene, slicer.app.applicationLogic())


def loadModuleUI(widget, moduleName: str):
    """Load ``Resources/UI/<moduleName>.ui`` into a module widget; returns its child-widget namespace."""
    uiWidget = slicer.util.loadUI(widget.resourcePath(f"UI/{moduleName}.ui"))
    widget.layout.addWidget(uiWidget)
    ui = slicer.util.childWidgetVariables(uiWidget)
    uiWidget.setMRMLScene(slicer.mrmlScene)
    return ui


def showTable(tableNode) -> None:
    """Switch to a layout with a table view and show ``tableNode`` in it (no-op without a main window)."""
    layoutManager = slicer.app.layoutManager()
    if layoutManager is None:
        return
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
    slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
    slicer.app.applicationLogic().PropagateTableSelection()


def runLibraryChecks(testCase, moduleName: str) -> None:
    """A module self-test: the library's checks for ``moduleName`` on Slicer's own scene.

    These are the checks the pytest suite runs headless (``virtualbiopsy.selftests``).
    """
    from virtualbiopsy.selftests import run_module_checks

    testCase.delayDisplay(f"Running the {moduleName} checks")
    with tempfile.TemporaryDirectory(prefix=f"VirtualBiopsy-{moduleName}-") as workdir:
        run_module_checks(moduleName, sceneContext(), workdir)
    testCase.delayDisplay("Test passed")
