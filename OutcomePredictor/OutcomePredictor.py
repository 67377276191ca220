"""Outcome Predictor module: a thin Slicer front end to ``virtualbiopsy.logic.outcome_predictor``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
)

from virtualbiopsy.logic.outcome_predictor import OutcomePredictorLogic
from virtualbiopsy_slicer.module import VirtualBiopsyModuleWidget, runLibraryChecks, showTable

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


class OutcomePredictorWidget(VirtualBiopsyModuleWidget):
    logicClass = OutcomePredictorLogic
    title = TITLE
    inputSignals = (("tablesSelector", "checkedNodesChanged()"), ("keyLineEdit", "textChanged(QString)"))

    def inputsReady(self):
        return len(self.ui.tablesSelector.checkedNodes()) >= 2 and bool(self.ui.keyLineEdit.text.strip())

    def apply(self):
        tableNodes = list(self.ui.tablesSelector.checkedNodes())
        joinedNode = self.logic.join_tables(tableNodes, key=self.ui.keyLineEdit.text.strip())
        showTable(joinedNode)
        rows = joinedNode.GetNumberOfRows()
        return f"Joined {len(tableNodes)} tables into '{joinedNode.GetName()}' ({rows} cases)."


class OutcomePredictorTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_OutcomePredictor_logic()

    def test_OutcomePredictor_logic(self):
        runLibraryChecks(self, "OutcomePredictor")
