"""What every Virtual Biopsy module widget and self-test does the same way inside Slicer."""

from __future__ import annotations

import tempfile

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from virtualbiopsy.mrml.context import MRMLContext
from virtualbiopsy_slicer import dependencies
from virtualbiopsy_slicer.errors import show_error


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
    from virtualbiopsy.selftests import required_packages, run_module_checks

    dependencies.ensure(required_packages(moduleName))  # unattended in self-tests (no confirmation)
    testCase.delayDisplay(f"Running the {moduleName} checks")
    with tempfile.TemporaryDirectory(prefix=f"VirtualBiopsy-{moduleName}-") as workdir:
        run_module_checks(moduleName, sceneContext(), workdir)
    testCase.delayDisplay("Test passed")


class VirtualBiopsyModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The widget plumbing every Virtual Biopsy module shares; subclasses say what is specific.

    A subclass sets ``logicClass`` (the library Logic), ``title`` (for error dialogs) and
    ``inputSignals`` (``(childWidgetName, signal)`` pairs that may change whether Apply is
    possible), and implements ``inputsReady()`` and ``apply()``, which calls the logic and
    returns the status line to show. Errors from ``apply`` are shown by :func:`show_error`
    (a library error's message alone; anything else with its traceback); the scene stays as it
    was because the logic itself rolls back what it added.
    """

    logicClass = None
    title = ""
    inputSignals: tuple = ()
    dependencyGroup = "Core"  # checked on Apply; a module whose Apply needs more names its group

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)  # sets self.moduleName from the class name
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.ui = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.ui = loadModuleUI(self, self.moduleName)
        self.logic = self.logicClass(sceneContext())
        for childName, signal in self.inputSignals:
            getattr(self.ui, childName).connect(signal, self.updateApplyButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.updateApplyButton()

    def cleanup(self):
        self.removeObservers()

    def onSceneEndClose(self, caller, event):
        self.ui.statusLabel.text = ""

    def updateApplyButton(self, *_):
        self.ui.applyButton.enabled = bool(self.inputsReady())

    def onApplyButton(self):
        self.ui.statusLabel.text = ""
        try:
            dependencies.ensure(self.dependencyGroup)
            status = self.apply()
        except Exception as error:
            show_error(error, self.title)
            return
        self.ui.statusLabel.text = status

    def inputsReady(self) -> bool:
        raise NotImplementedError

    def apply(self) -> str:
        raise NotImplementedError
