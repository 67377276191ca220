"""Radiomics Biomarkers module: a thin Slicer front end to ``virtualbiopsy.logic.radiomics_biomarkers``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from virtualbiopsy import attributes
from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy_slicer.i18n import tr as _
from virtualbiopsy_slicer.i18n import translate
from virtualbiopsy_slicer.module import (
    Action,
    VirtualBiopsyModuleWidget,
    documentationLink,
    runLibraryChecks,
    showTable,
)
from virtualbiopsy_slicer.progress import progress_dialog
from virtualbiopsy_slicer.protocols import RadiomicsBiomarkersLogicProtocol

__all__ = [
    "RadiomicsBiomarkers",
    "RadiomicsBiomarkersLogic",
    "RadiomicsBiomarkersTest",
    "RadiomicsBiomarkersWidget",
]

TITLE = _("Radiomics Biomarkers")
PARAMETER_FILE = _("parameter file")  # the preset combo box's last item


class RadiomicsBiomarkers(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Oncology")]
        self.parent.dependencies = ["Segmentations", "Tables"]
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = _("""
Imaging biomarkers of neuroblastoma from MRI. <b>Research use only; not for clinical decisions.</b>
<p><b>Extract features</b>: pyradiomics shape, first-order, GLCM, GLRLM, GLSZM, GLDM and NGTDM features of
each chosen segment in one or several volumes (optionally on LoG and wavelet images), with the study's
fixed-bin-width MR preset, the IBSI preset or your own pyradiomics parameter file, into a NEW table; its
companion settings table records the settings and library versions. <b>Feature map</b>: one feature
computed around every voxel of a segment, as a new volume. <b>IBSI</b>: the IBSI digital phantom run through
the extraction, each feature compared with its reference. <b>Signature</b>: reduction to a signature,
exploration against an outcome and ComBat harmonisation of a features table. Cohorts: the command
<tt>virtualbiopsy radiomics --manifest</tt>.</p>
""") + documentationLink()
        self.parent.acknowledgementText = _("""
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
Features are computed by pyradiomics (van Griethuysen et al., Cancer Research 2017).
""")


def splitNames(text):
    """ "age, stage" -> ("age", "stage")."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


class RadiomicsBiomarkersWidget(VirtualBiopsyModuleWidget):
    logicClass = RadiomicsBiomarkersLogic
    logic: RadiomicsBiomarkersLogicProtocol
    title = TITLE
    actions = {
        "extractButton": Action("extractFeatures", "RadiomicsBiomarkers"),
        "featureMapButton": Action("computeFeatureMap", "RadiomicsBiomarkers"),
        "ibsiButton": Action("ibsiReport", "RadiomicsBiomarkers"),
        "reduceButton": Action("reduceFeatures", "RadiomicsBiomarkers"),
        "exploreButton": Action("exploreFeatures", "RadiomicsBiomarkers"),
        "harmoniseButton": Action("harmoniseFeatures", "RadiomicsBiomarkers"),
        "applyButton": Action("intensityStatistics", "Core"),
    }
    inputSignals = (
        ("volumesSelector", "checkedNodesChanged()"),
        ("segmentSelector", "currentNodeChanged(vtkMRMLNode*)"),
        ("signatureTableSelector", "currentNodeChanged(vtkMRMLNode*)"),
        ("labelColumnLineEdit", "textChanged(QString)"),
        ("batchColumnLineEdit", "textChanged(QString)"),
    )

    def setup(self):
        VirtualBiopsyModuleWidget.setup(self)
        from virtualbiopsy.radiomics.extraction import DEFAULT_PRESET, PRESETS

        ui = self.ui
        for name in PRESETS:
            ui.presetComboBox.addItem(name)
        ui.presetComboBox.addItem(PARAMETER_FILE)
        ui.presetComboBox.currentText = DEFAULT_PRESET
        ui.presetComboBox.connect("currentIndexChanged(int)", self.updateButtons)
        ui.paramsPathLineEdit.connect("currentPathChanged(QString)", self.updateButtons)
        self.fillMapFeatures()
        self.updateButtons()

    def volumes(self):
        return list(self.ui.volumesSelector.checkedNodes())

    def segmentIds(self):
        return list(self.ui.segmentSelector.selectedSegmentIDs()) or None

    def inputsReady(self):
        return bool(self.volumes()) and self.ui.segmentSelector.currentNode() is not None

    def updateButtons(self, *args):
        ui = self.ui
        ready = self.inputsReady()
        ui.applyButton.enabled = ready
        fileChosen = ui.presetComboBox.currentText != PARAMETER_FILE or bool(ui.paramsPathLineEdit.currentPath.strip())
        ui.paramsPathLineEdit.enabled = ui.presetComboBox.currentText == PARAMETER_FILE
        ui.extractButton.enabled = ready and fileChosen
        ui.featureMapButton.enabled = ready and fileChosen
        table = ui.signatureTableSelector.currentNode() is not None
        ui.reduceButton.enabled = table
        ui.exploreButton.enabled = table and bool(ui.labelColumnLineEdit.text.strip())
        ui.harmoniseButton.enabled = table and bool(ui.batchColumnLineEdit.text.strip())

    def parameters(self):
        from virtualbiopsy.radiomics.extraction import ExtractionParameters

        ui = self.ui
        try:
            sigmas = tuple(float(s) for s in splitNames(ui.logSigmasLineEdit.text))
        except ValueError as error:
            raise InputError(_("LoG sigmas must be numbers in mm separated by commas: '{text}'.").format(
                text=ui.logSigmasLineEdit.text)) from error
        preset = ui.presetComboBox.currentText
        return ExtractionParameters(
            preset=preset if preset != PARAMETER_FILE else "study_mr",
            params_file=ui.paramsPathLineEdit.currentPath.strip() if preset == PARAMETER_FILE else None,
            log_sigmas_mm=sigmas, wavelet=ui.waveletCheckBox.checked,
            settings={"binWidth": ui.binWidthSpinBox.value} if ui.binWidthSpinBox.value > 0 else {})

    # -- extraction --------------------------------------------------------------------------

    def extractFeatures(self):
        with progress_dialog(_("Extracting radiomic features")) as task:
            table = self.logic.extract_features(self.volumes(), self.ui.segmentSelector.currentNode(),
                                                self.segmentIds(), self.parameters(), progress=task)
        self.ui.signatureTableSelector.setCurrentNode(table)
        showTable(table)
        return _("{features} features of {segments} segment(s) in '{table}' (settings: '{settings}').").format(
            features=table.GetNumberOfColumns() - 3, segments=table.GetNumberOfRows(), table=table.GetName(),
            settings=self.logic.settings_table(table).GetName())

    def fillMapFeatures(self):
        """The features that have a voxel map (not shape); just a default until pyradiomics is installed."""
        combo = self.ui.mapFeatureComboBox
        current = combo.currentText or "original_glcm_Contrast"
        combo.clear()
        try:
            from radiomics import getFeatureClasses
        except ImportError:
            getFeatureClasses = None
        from virtualbiopsy.radiomics.extraction import FEATURE_CLASSES

        for featureClass in FEATURE_CLASSES[1:] if getFeatureClasses else ():
            for name, deprecated in getFeatureClasses()[featureClass].getFeatureNames().items():
                if not deprecated:
                    combo.addItem(f"original_{featureClass}_{name}")
        if combo.count == 0:
            combo.addItem(current)
        combo.currentText = current

    def computeFeatureMap(self):
        if self.ui.mapFeatureComboBox.count <= 1:
            self.fillMapFeatures()  # pyradiomics may have just been installed
        segmentIds = self.segmentIds() or [None]
        with progress_dialog(_("Computing the feature map")) as task:
            node = self.logic.feature_map(self.volumes()[0], self.ui.segmentSelector.currentNode(), segmentIds[0],
                                          self.ui.mapFeatureComboBox.currentText.strip(), self.parameters(),
                                          self.ui.kernelRadiusSpinBox.value, progress=task)
        slicer.util.setSliceViewerLayers(background=self.volumes()[0], foreground=node, foregroundOpacity=0.6)
        return _("Added the feature map '{volume}'.").format(volume=node.GetName())

    def ibsiReport(self):
        with progress_dialog(_("IBSI digital phantom")) as task:
            table = self.logic.ibsi_report(progress=task)
        showTable(table)
        return _("{summary} See '{table}'.").format(
            summary=table.GetAttribute(attributes.IBSI_SUMMARY_LINE), table=table.GetName())

    # -- signature (feature-table steps) -------------------------------------------------------

    def reduceFeatures(self):
        with progress_dialog(_("Reducing the features to a signature")) as task:
            outputs = self.logic.reduce_feature_table(self.ui.signatureTableSelector.currentNode(), progress=task)
        showTable(outputs["signature"])
        return _("Signature in '{table}'; loadings and the log of what was dropped beside it.").format(
            table=outputs["signature"].GetName())

    def exploreFeatures(self):
        volumeColumn = self.ui.volumeColumnLineEdit.text.strip() or None
        table = self.logic.explore_features(self.ui.signatureTableSelector.currentNode(),
                                            self.ui.labelColumnLineEdit.text.strip(), volumeColumn)
        showTable(table)
        return _("Per-feature statistics in '{table}'.").format(table=table.GetName())

    def harmoniseFeatures(self):
        with progress_dialog(_("ComBat harmonisation")) as task:
            table = self.logic.harmonise_feature_table(
                self.ui.signatureTableSelector.currentNode(), self.ui.batchColumnLineEdit.text.strip(),
                covariates=splitNames(self.ui.covariatesLineEdit.text),
                parametric=self.ui.parametricCheckBox.checked, progress=task)
        showTable(table)
        return _("Harmonised features in '{table}'.").format(table=table.GetName())

    # -- intensity statistics ----------------------------------------------------------------

    def intensityStatistics(self):
        tableNode = self.logic.intensity_statistics_table(
            self.volumes()[0], self.ui.segmentSelector.currentNode(), self.ui.outputTableSelector.currentNode()
        )
        self.ui.outputTableSelector.setCurrentNode(tableNode)
        showTable(tableNode)
        return _("Statistics of {count} segment(s) written to '{table}'.").format(
            count=tableNode.GetNumberOfRows(), table=tableNode.GetName())


class RadiomicsBiomarkersTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_RadiomicsBiomarkers_logic()

    def test_RadiomicsBiomarkers_logic(self):
        runLibraryChecks(self, "RadiomicsBiomarkers")
