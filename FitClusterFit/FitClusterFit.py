"""Fit-Cluster-Fit module: a thin Slicer front end to ``virtualbiopsy.logic.fit_cluster_fit``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from virtualbiopsy.diffusion import parse_b_values
from virtualbiopsy.habitats.dce import parse_times
from virtualbiopsy.logic.fit_cluster_fit import DceParameters, FitClusterFitLogic, FitClusterFitParameters
from virtualbiopsy_slicer.i18n import tr as _
from virtualbiopsy_slicer.i18n import translate
from virtualbiopsy_slicer.module import (
    Action,
    ProcessStep,
    VirtualBiopsyModuleWidget,
    documentationLink,
    runLibraryChecks,
    sceneContext,
    showTable,
)
from virtualbiopsy_slicer.progress import progress_dialog
from virtualbiopsy_slicer.protocols import FitClusterFitLogicProtocol

__all__ = ["FitClusterFit", "FitClusterFitLogic", "FitClusterFitTest", "FitClusterFitWidget"]

TITLE = _("Fit-Cluster-Fit")


class FitClusterFit(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Oncology")]
        self.parent.dependencies = ["Segmentations", "Tables"]
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = _("""
Tumour habitats from diffusion (and perfusion) MRI by Fit-Cluster-Fit. <b>Research use only; not for clinical
decisions.</b>
<p>(1) Every tumour voxel's DWI signal is fitted with S = S0&middot;exp(&minus;b&middot;ADC) (ADC in mm&sup2;/s), with
the standard error (SE) of its ADC; (2) the least precise fits (by default the 10 % with the largest SE) and the
outer voxel shell (partial volume) are left out, the rest is clustered into habitats (Gaussian mixture; the number
by the Bayesian information criterion); (3) each habitat's <i>mean signal</i> is refitted, giving its ADC with a
95 % bootstrap confidence interval. Optional: the Rician noise-floor correction, non-linear refinement, b-value
range (e.g. from 200 s/mm&sup2; against perfusion), and a DCE series for each habitat's iAUC60 (area under the
relative-enhancement curve over 60 s after the bolus arrival).</p>
<p>Several volumes of one b-value (b-values within 5 %) are combined before fitting: b = 0 volumes averaged,
repeats of one direction averaged when ticked (otherwise refused). Volumes along several gradient directions are
combined into the trace by the geometric mean from the command line (<tt>virtualbiopsy fcf --bvecs</tt>) or the
Python API (<tt>b_vectors</tt>).</p>
<p>Adds new nodes: ADC, ADC SE, ADC R2 and S0 maps, a segmentation with "habitat 1..k" (habitat 1 = lowest ADC) and
the excluded voxels, and a results table (habitat ADC beside the mean of its voxels' ADCs).
<b>DCE metrics only</b> adds iAUC60, time-to-peak and wash-in maps and a table.</p>
""") + documentationLink()
        self.parent.acknowledgementText = _("""
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
""")


class FitClusterFitWidget(VirtualBiopsyModuleWidget):
    logicClass = FitClusterFitLogic
    logic: FitClusterFitLogicProtocol
    title = TITLE
    actions = {
        "applyButton": Action("fitClusterFit", "FitClusterFit", background=True),
        "dceButton": Action("computeDce", "Core"),
    }
    inputSignals = (("dwiSequenceSelector", "currentNodeChanged(vtkMRMLNode*)"),
                    ("dwiVolumesSelector", "checkedNodesChanged()"),
                    ("tumourSegmentSelector", "currentNodeChanged(vtkMRMLNode*)"),
                    ("tumourSegmentSelector", "currentSegmentChanged(QString)"),
                    ("dceSequenceSelector", "currentNodeChanged(vtkMRMLNode*)"))

    def setup(self):
        VirtualBiopsyModuleWidget.setup(self)
        self.updateButtons()

    def updateButtons(self, *args):
        self.ui.applyButton.enabled = self.inputsReady()
        self.ui.dceButton.enabled = (self.ui.dceSequenceSelector.currentNode() is not None
                                     and self.tumour()[0] is not None)

    # -- reading the widgets ------------------------------------------------------------------

    def dwi(self):
        text = self.ui.bValuesLineEdit.text.strip()
        bValues = parse_b_values(text) if text else None
        sequence = self.ui.dwiSequenceSelector.currentNode()
        return (sequence if sequence is not None else list(self.ui.dwiVolumesSelector.checkedNodes())), bValues

    def dce(self):
        text = self.ui.dceTimesLineEdit.text.strip()
        return self.ui.dceSequenceSelector.currentNode(), (parse_times(text) if text else None)

    def tumour(self):
        selector = self.ui.tumourSegmentSelector
        segmentId = selector.currentSegmentID()
        return selector.currentNode(), [segmentId] if segmentId else []

    def inputsReady(self):
        dwi = self.dwi()[0]
        segmentation, segments = self.tumour()
        return (not isinstance(dwi, list) or len(dwi) >= 2) and segmentation is not None and bool(segments)

    def parameters(self):
        ui = self.ui
        percentile = ui.thresholdKindComboBox.currentIndex == 0
        return FitClusterFitParameters(
            min_b=ui.minBSpinBox.value or None, max_b=ui.maxBSpinBox.value if ui.maxBSpinBox.value < 20000 else None,
            nonlinear=ui.nonlinearCheckBox.checked, noise_floor=ui.noiseFloorCheckBox.checked,
            threshold_kind="percentile" if percentile else "absolute",
            threshold=ui.thresholdSpinBox.value if percentile else ui.thresholdSpinBox.value * 1e-3,
            method="gmm" if ui.methodComboBox.currentIndex == 0 else "kmeans", k=ui.kSpinBox.value or None,
            erode_voxels=ui.erodeSpinBox.value, n_bootstrap=ui.bootstrapSpinBox.value,
            repeats_are_averages=ui.repeatsAreAveragesCheckBox.checked)

    # -- actions ---------------------------------------------------------------------------------

    def fitClusterFit(self):
        """Fit-Cluster-Fit as the command line in its own process: the inputs go out as files, the habitats,
        maps and table come back as new nodes (``virtualbiopsy.cli.scene_steps``)."""
        import json
        import tempfile

        from virtualbiopsy.cli.scene_steps import fit_cluster_fit_step

        dwi, bValues = self.dwi()
        segmentation, segments = self.tumour()
        dce, times = self.dce()
        workdir = tempfile.TemporaryDirectory(prefix="VirtualBiopsy-FitClusterFit-", dir=slicer.app.temporaryPath)
        try:
            step = fit_cluster_fit_step(sceneContext(), dwi, bValues, segmentation, segments, self.parameters(),
                                        workdir.name, dce=dce, dce_times=times,
                                        window_s=self.ui.windowSpinBox.value,
                                        override_b_values=self.ui.overrideBValuesCheckBox.checked)
        except Exception:
            workdir.cleanup()
            raise

        def finish(nodes):
            nodes["habitats"].CreateClosedSurfaceRepresentation()
            slicer.util.setSliceViewerLayers(background=nodes["adc"], fit=slicer.app.layoutManager() is not None)
            showTable(nodes["table"])
            summary = json.loads((step.out / "summary.json").read_text(encoding="utf-8"))
            notes = "".join(" " + _("Note: {warning}.").format(warning=w) for w in summary.get("warnings", []))
            return _("{habitats} habitat(s) in '{segmentation}', results in '{table}'. {exclusion}; {boundary} "
                     "boundary voxels left out. {clustering}. DWI: {dwi}.").format(
                habitats=summary["habitats"], segmentation=nodes["habitats"].GetName(),
                table=nodes["table"].GetName(), exclusion=summary["exclusion"][0].upper() + summary["exclusion"][1:],
                boundary=summary["boundary_voxels"], clustering=summary["clustering"],
                dwi=summary["dwi_shells"]["description"]) + notes

        return ProcessStep(step, finish, workdir)

    def computeDce(self):
        series, times = self.dce()
        segmentation, segments = self.tumour()
        with progress_dialog(_("DCE metrics")) as task:
            outputs = self.logic.dce_metrics(series, times, segmentation, segments, None,
                                             DceParameters(self.ui.windowSpinBox.value), progress=task)
        slicer.util.setSliceViewerLayers(background=outputs.iauc, fit=slicer.app.layoutManager() is not None)
        showTable(outputs.table)
        return _("Bolus arrival {arrival:.1f} s; added '{iauc}' (s), time to peak and wash-in maps and "
                 "'{table}'.").format(arrival=outputs.summary["arrival_s"], iauc=outputs.iauc.GetName(),
                                      table=outputs.table.GetName())


class FitClusterFitTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_FitClusterFit_logic()

    def test_FitClusterFit_logic(self):
        runLibraryChecks(self, "FitClusterFit")
