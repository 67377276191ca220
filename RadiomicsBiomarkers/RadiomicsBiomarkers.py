"""Radiomics Biomarkers module: a thin Slicer front end to ``virtualbiopsy.logic.radiomics_biomarkers``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
)

from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy_slicer.module import VirtualBiopsyModuleWidget, runLibraryChecks, showTable

__all__ = [
    "RadiomicsBiomarkers",
    "RadiomicsBiomarkersLogic",
    "RadiomicsBiomarkersTest",
    "RadiomicsBiomarkersWidget",
]

TITLE = "Radiomics Biomarkers"


class RadiomicsBiomarkers(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = ["Virtual Biopsy"]
        self.parent.dependencies = []
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = """
Imaging biomarkers of neuroblastoma from MRI. <b>Research use only; not for clinical decisions.</b>
<p>Now: intensity statistics of a volume inside each segment (voxels, volume in mL, mean, SD, minimum,
10th percentile, median, 90th percentile, maximum) into a table.</p>
<p>Coming: IBSI-style radiomic features (pyradiomics), feature reduction (stability and redundancy
filtering) and ComBat harmonisation across scanners and sites.</p>
"""
        self.parent.acknowledgementText = """
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
"""


class RadiomicsBiomarkersWidget(VirtualBiopsyModuleWidget):
    logicClass = RadiomicsBiomarkersLogic
    title = TITLE
    inputSignals = (
        ("volumeSelector", "currentNodeChanged(vtkMRMLNode*)"),
        ("segmentationSelector", "currentNodeChanged(vtkMRMLNode*)"),
    )

    def inputsReady(self):
        ui = self.ui
        return ui.volumeSelector.currentNode() is not None and ui.segmentationSelector.currentNode() is not None

    def apply(self):
        tableNode = self.logic.intensity_statistics_table(
            self.ui.volumeSelector.currentNode(),
            self.ui.segmentationSelector.currentNode(),
            self.ui.outputTableSelector.currentNode(),
        )
        self.ui.outputTableSelector.setCurrentNode(tableNode)
        showTable(tableNode)
        return f"Statistics of {tableNode.GetNumberOfRows()} segment(s) written to '{tableNode.GetName()}'."


class RadiomicsBiomarkersTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RadiomicsBiomarkers_logic()

    def test_RadiomicsBiomarkers_logic(self):
        runLibraryChecks(self, "RadiomicsBiomarkers")
