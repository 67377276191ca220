"""Outcome Predictor module: a thin Slicer front end to ``virtualbiopsy.logic.outcome_predictor``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from virtualbiopsy.logic.outcome_predictor import OutcomePredictorLogic
from virtualbiopsy_slicer import dependencies
from virtualbiopsy_slicer.errors import show_error
from virtualbiopsy_slicer.module import loadModuleUI, runLibraryChecks, sceneContext, showTable

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
        self.ui = loadModuleUI(self, "OutcomePredictor")

        self.logic = OutcomePredictorLogic(sceneContext())

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


class OutcomePredictorTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_OutcomePredictor_logic()

    def test_OutcomePredictor_logic(self):
        runLibraryChecks(self, "OutcomePredictor")
