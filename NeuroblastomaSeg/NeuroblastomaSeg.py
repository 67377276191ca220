"""Neuroblastoma Segmentation module: a thin Slicer front end to ``virtualbiopsy.logic.neuroblastoma_seg``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
)

from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
from virtualbiopsy_slicer.module import VirtualBiopsyModuleWidget, runLibraryChecks, showTable

__all__ = ["NeuroblastomaSeg", "NeuroblastomaSegLogic", "NeuroblastomaSegTest", "NeuroblastomaSegWidget"]

TITLE = "Neuroblastoma Segmentation"


class NeuroblastomaSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = ["Virtual Biopsy"]
        self.parent.dependencies = []
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = """
Segmentation of paediatric neuroblastoma on MRI. <b>Research use only; not for clinical decisions.</b>
<p>Now: measures each segment of a segmentation (voxel count and volume in mL) into a table.</p>
<p>Coming: automatic segmentation of the primary tumour with nnU-Net from T2-weighted and diffusion
MRI, with a per-voxel uncertainty map to show where the contour should be checked.</p>
"""
        self.parent.acknowledgementText = """
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
"""


class NeuroblastomaSegWidget(VirtualBiopsyModuleWidget):
    logicClass = NeuroblastomaSegLogic
    title = TITLE
    inputSignals = (("segmentationSelector", "currentNodeChanged(vtkMRMLNode*)"),)

    def inputsReady(self):
        return self.ui.segmentationSelector.currentNode() is not None

    def apply(self):
        tableNode = self.logic.segment_volumes_table(
            self.ui.segmentationSelector.currentNode(), self.ui.outputTableSelector.currentNode()
        )
        self.ui.outputTableSelector.setCurrentNode(tableNode)
        showTable(tableNode)
        return f"Measured {tableNode.GetNumberOfRows()} segment(s) into '{tableNode.GetName()}'."


class NeuroblastomaSegTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_NeuroblastomaSeg_logic()

    def test_NeuroblastomaSeg_logic(self):
        runLibraryChecks(self, "NeuroblastomaSeg")
