"""Fit-Cluster-Fit module: a thin Slicer front end to ``virtualbiopsy.logic.fit_cluster_fit``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
)

from virtualbiopsy.diffusion import parse_b_values
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy_slicer.module import VirtualBiopsyModuleWidget, runLibraryChecks
from virtualbiopsy_slicer.progress import progress_dialog

__all__ = ["FitClusterFit", "FitClusterFitLogic", "FitClusterFitTest", "FitClusterFitWidget"]

TITLE = "Fit-Cluster-Fit"


class FitClusterFit(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = ["Virtual Biopsy"]
        self.parent.dependencies = []
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = """
Tumour habitats from diffusion (and later perfusion) MRI.
<b>Research use only; not for clinical decisions.</b>
<p>Now: fits a mono-exponential apparent diffusion coefficient (ADC) map, in mm&sup2;/s, from DWI volumes
acquired at the b-values given (s/mm&sup2;, in the same order as the checked volumes). The map is
added as a new volume named "ADC".</p>
<p>Coming: Fit-Cluster-Fit: voxel-wise fits, clustering into habitats, then a refit per habitat, for
multi-b-value DWI (ADC, IVIM) and DCE MRI.</p>
"""
        self.parent.acknowledgementText = """
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
"""


class FitClusterFitWidget(VirtualBiopsyModuleWidget):
    logicClass = FitClusterFitLogic
    title = TITLE
    inputSignals = (("dwiVolumesSelector", "checkedNodesChanged()"), ("bValuesLineEdit", "textChanged(QString)"))

    def inputsReady(self):
        return len(self.ui.dwiVolumesSelector.checkedNodes()) >= 2 and bool(self.ui.bValuesLineEdit.text.strip())

    def apply(self):
        dwiNodes = list(self.ui.dwiVolumesSelector.checkedNodes())
        bValues = parse_b_values(self.ui.bValuesLineEdit.text)
        with progress_dialog("Fitting the ADC map") as task:
            adcNode = self.logic.fit_adc_map(dwiNodes, bValues, progress=task)
        slicer.util.setSliceViewerLayers(background=adcNode, fit=slicer.app.layoutManager() is not None)
        return f"Added '{adcNode.GetName()}' (mm\u00b2/s) from {len(dwiNodes)} DWI volumes."


class FitClusterFitTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_FitClusterFit_logic()

    def test_FitClusterFit_logic(self):
        runLibraryChecks(self, "FitClusterFit")
