"""Outcome Predictor module: a thin Slicer front end to ``virtualbiopsy.logic.outcome_predictor``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import tempfile

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from virtualbiopsy.logic.outcome_predictor import OutcomePredictorLogic
from virtualbiopsy.mrml.context import MRMLContext
from virtualbiopsy_slicer import dependencies
from virtualbiopsy_slicer.errors import show_error

__all__ = ["OutcomePredictor", "OutcomePredictorLogic", "OutcomePredictorTest", "OutcomePredictorWidget"]

TITLE = "Outcome Predictor"


class OutcomePredictor(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = ["Virtual Biopsy"]
        self.parent.dependencies = []
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = """
Outcome models for neuroblastoma from imaging biomarkers.
<b>Research use only; not for clinical decisions.</b>
<p>Now: joins tables (for example radiomic features and clinical data) on a shared case identifier
column into one table, one row per case.</p>
<p>Coming: survival and risk models (Cox, random survival forests, deep models) with explanations:
SHAP values per feature and Grad-CAM maps on the images.</p>
"""
        self.parent.acknowledgementText = """
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
"""


class OutcomePredictorWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/OutcomePredictor.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = OutcomePredictorLogic(
            MRMLContext.attach(slicer.mrmlScene, slicer.app.applicationLogic())
        )

        self.ui.tablesSelector.connect("checkedNodesChanged()", self.updateApplyButton)
        self.ui.keyLineEdit.connect("textChanged(QString)", self.updateApplyButton)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.updateApplyButton()

    def cleanup(self):
        self.removeObservers()

    def onSceneEndClose(self, caller, event):
        self.ui.statusLabel.text = ""

    def updateApplyButton(self, *_):
        self.ui.applyButton.enabled = len(self.ui.tablesSelector.checkedNodes()) >= 2 and bool(
            self.ui.keyLineEdit.text.strip()
        )

    def onApplyButton(self):
        self.ui.statusLabel.text = ""
        tableNodes = list(self.ui.tablesSelector.checkedNodes())
        try:
            dependencies.ensure("Core")  # this step needs only the core packages
            joinedNode = self.logic.join_tables(tableNodes, key=self.ui.keyLineEdit.text.strip())
        except Exception as error:  # library errors: their message; anything else: with traceback
            show_error(error, TITLE)
            return
        showTable(joinedNode)
        rows = joinedNode.GetNumberOfRows()
        self.ui.statusLabel.text = (
            f"Joined {len(tableNodes)} tables into '{joinedNode.GetName()}' ({rows} cases)."
        )


def showTable(tableNode):
    """Switch to a layout with a table view and show ``tableNode`` in it (no-op without a main window)."""
    layoutManager = slicer.app.layoutManager()
    if layoutManager is None:
        return
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
    slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(tableNode.GetID())
    slicer.app.applicationLogic().PropagateTableSelection()


class OutcomePredictorTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_OutcomePredictor_logic()

    def test_OutcomePredictor_logic(self):
        from virtualbiopsy.selftests import run_module_checks

        self.delayDisplay("Running the OutcomePredictor checks")
        context = MRMLContext.attach(slicer.mrmlScene, slicer.app.applicationLogic())
        with tempfile.TemporaryDirectory(prefix="VirtualBiopsy-OutcomePredictor-") as workdir:
            run_module_checks("OutcomePredictor", context, workdir)
        self.delayDisplay("Test passed")
