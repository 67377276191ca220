"""What every Virtual Biopsy module widget and self-test does the same way inside Slicer."""

from __future__ import annotations

import operator
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin

from virtualbiopsy.mrml.context import MRMLContext
from virtualbiopsy_slicer import dependencies
from virtualbiopsy_slicer.errors import show_error
from virtualbiopsy_slicer.i18n import tr as _
from virtualbiopsy_slicer.progress import ProcessJob, run_in_background
from virtualbiopsy_slicer.reloading import reloadPackages

DOCUMENTATION_URL = "https://github.com/virtual-biopsy/SlicerVirtualBiopsy#readme"  # the repository README
LIBRARY_PACKAGES = ("virtualbiopsy", "virtualbiopsy_slicer")  # reloaded by onReload


def documentationLink() -> str:
    """The help text's last paragraph: where the documentation is."""
    return _('<p>Documentation: <a href="{url}">the Virtual Biopsy README</a>.</p>').format(url=DOCUMENTATION_URL)


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


class Action(NamedTuple):
    """What a button does: ``method``, the widget's method to call (a dotted path from the widget, e.g.
    ``"preprocessing.preprocess"`` for a panel's), the requirements group it needs (a ``[Group]`` of
    ``virtualbiopsy/requirements_slicer.txt``) and whether it runs in the background."""

    method: str
    dependencyGroup: str
    background: bool = False


@dataclass(frozen=True)
class BackgroundStep:
    """What a background action returns instead of its status line.

    ``compute(task)`` runs in a worker thread behind a progress dialog with Cancel and must not touch
    MRML or Qt (see :mod:`virtualbiopsy_slicer.progress`); ``finish(result)`` runs on the main thread and
    returns the status line. ``started`` is shown meanwhile, ``stopped`` when it fails or is cancelled.
    """

    compute: Callable[[Any], Any]
    finish: Callable[[Any], str]
    title: str
    started: str = ""
    stopped: str = ""


@dataclass(frozen=True)
class ProcessStep:
    """What a background action returns to run as the library's command line in its own process:
    ``step`` (a :class:`virtualbiopsy.cli.scene_steps.SceneStep`, prepared on the main thread) and
    ``finish(nodes)`` (main thread, after ``step.load`` added the outputs; returns the status line).
    No Python thread shares the GIL with the GUI: the command runs in PythonSlicer."""

    step: Any
    finish: Callable[[dict], str]
    workdir: Any = None  # a tempfile.TemporaryDirectory removed when the step has ended


def libraryPython() -> tuple[str, dict]:
    """PythonSlicer and an environment in which it imports this library (the folder that holds it)."""
    import os
    import shutil
    import sys

    import virtualbiopsy

    python = shutil.which("PythonSlicer") or sys.executable
    root = os.path.dirname(os.path.dirname(os.path.abspath(virtualbiopsy.__file__)))
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (root, environment.get("PYTHONPATH", "")) if p)
    return python, environment


class VirtualBiopsyModuleWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The widget plumbing every Virtual Biopsy module shares; subclasses say what is specific.

    A subclass sets ``logicClass`` (the library Logic, made on Slicer's scene unless a logic is given
    to the constructor), ``title`` (for error dialogs), ``actions`` (``{buttonName: Action}``: every
    button of its ``.ui`` and what it does) and ``inputSignals`` (``(childWidgetName, signal)`` pairs
    that may change which buttons can be used), and implements ``updateButtons()``, which its ``setup``
    calls last (once everything the buttons' state depends on exists). Every button runs
    through :meth:`runAction`; errors are shown by :func:`show_error` (a library error's message alone;
    anything else with its traceback); the scene stays as it was because the logic itself rolls back
    what it added.
    """

    logicClass = None
    title = ""
    actions: dict[str, Action] = {}
    inputSignals: tuple = ()

    def __init__(self, parent=None, logic=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)  # sets self.moduleName from the class name
        VTKObservationMixin.__init__(self)
        self.logic = logic
        self.ui = None
        self.backgroundJob = None  # the running background step, if any

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        self.ui = loadModuleUI(self, self.moduleName)
        if self.logic is None:
            self.logic = self.logicClass(sceneContext())
        for childName, signal in self.inputSignals:
            getattr(self.ui, childName).connect(signal, self.updateButtons)
        for buttonName, action in self.actions.items():
            getattr(self.ui, buttonName).connect("clicked(bool)", lambda *args, action=action: self.runAction(
                operator.attrgetter(action.method)(self), action.dependencyGroup, action.background))
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

    def cleanup(self):
        if self.backgroundJob is not None:
            self.backgroundJob.cancel()
        self.removeObservers()

    def onReload(self):
        """Import the library and the Qt helpers afresh from disk, then reload this module (Slicer's own
        reload re-reads only the module file), so that an edit to any of them takes effect."""
        reloadPackages(LIBRARY_PACKAGES)
        ScriptedLoadableModuleWidget.onReload(self)

    def onSceneEndClose(self, caller, event):
        self.ui.statusLabel.text = ""

    def updateButtons(self, *args):
        raise NotImplementedError

    def runAction(self, action: Callable[[], Any], dependencyGroup: str, background: bool = False) -> None:
        """Run ``action()`` once the packages of ``dependencyGroup`` are installed (asking first) and show
        the status line it returns, or its error.

        With ``background``, ``action()`` prepares the step on the main thread and returns a
        :class:`ProcessStep` (run as the command line in its own process) or a :class:`BackgroundStep`
        (a computation in a worker thread); either way the panel stays usable meanwhile.
        """

        def run():
            dependencies.ensure(dependencyGroup)
            if not background:
                return action()
            step = action()
            return self.startProcess(step) if isinstance(step, ProcessStep) else self.startBackground(step)

        self._showStatus(run)

    def _jobEnded(self) -> None:
        self.backgroundJob = None
        self.updateButtons()

    def startBackground(self, step: BackgroundStep) -> str:
        def finished(result):
            self._jobEnded()
            self._showStatus(lambda: step.finish(result))

        def failed(error):
            self._jobEnded()
            self.ui.statusLabel.text = step.stopped
            show_error(error, self.title)

        self.backgroundJob = run_in_background(step.compute, finished, step.title, on_error=failed)
        self.updateButtons()
        return step.started or _("{title}: running in the background...").format(title=step.title)

    def startProcess(self, process: ProcessStep) -> str:
        from virtualbiopsy.command_job import CommandJob

        python, environment = libraryPython()
        step = process.step

        def ended():
            self._jobEnded()
            if process.workdir is not None:
                process.workdir.cleanup()

        def finished(state):
            ended()
            self._showStatus(lambda: process.finish(step.load(sceneContext())))

        def failed(error):
            ended()
            self.ui.statusLabel.text = ""
            show_error(error, self.title)

        def cancelled():
            ended()
            self.ui.statusLabel.text = _("{title} cancelled; nothing was added.").format(title=step.title)

        job = CommandJob(step.arguments, python=python, env=environment)
        self.backgroundJob = ProcessJob(job, finished, step.title, on_error=failed, on_cancelled=cancelled).start()
        self.updateButtons()
        return _("{title}: running in its own process...").format(title=step.title)

    def _showStatus(self, function: Callable[[], Any]) -> None:
        self.ui.statusLabel.text = ""
        try:
            self.ui.statusLabel.text = function() or ""
        except Exception as error:
            show_error(error, self.title)
