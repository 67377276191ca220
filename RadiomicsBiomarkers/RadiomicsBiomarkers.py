"""Radiomics Biomarkers module: a thin Slicer front end to ``virtualbiopsy.logic.radiomics_biomarkers``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy_slicer import dependencies
from virtualbiopsy_slicer.errors import show_error
from virtualbiopsy_slicer.module import VirtualBiopsyModuleWidget, runLibraryChecks, showTable
from virtualbiopsy_slicer.progress import progress_dialog

__all__ = [
    "RadiomicsBiomarkers",
    "RadiomicsBiomarkersLogic",
    "RadiomicsBiomarkersTest",
    "RadiomicsBiomarkersWidget",
]

TITLE = "Radiomics Biomarkers"
PARAMETER_FILE = "parameter file"


class RadiomicsBiomarkers(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = ["Virtual Biopsy"]
        self.parent.dependencies = []
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = """
Imaging biomarkers of neuroblastoma from MRI. <b>Research use only; not for clinical decisions.</b>
<p><b>Extract features</b>: pyradiomics shape, first-order, GLCM, GLRLM, GLSZM, GLDM and NGTDM features of
each chosen segment in one or several volumes (optionally on LoG and wavelet images), with the study's
fixed-bin-width MR preset, the IBSI preset or your own pyradiomics parameter file, into a NEW table; its
companion settings table records the settings and library versions. <b>Feature map</b>: one feature
computed around every voxel of a segment, as a new volume. <b>IBSI</b>: the IBSI digital phantom run through
the extraction, each feature compared with its reference. <b>Signature</b>: reduction to a signature,
exploration against an outcome and ComBat harmonisation of a features table. Cohorts: the command
<tt>virtualbiopsy radiomics --manifest</tt>.</p>
"""
        self.parent.acknowledgementText = """
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
Features are computed by pyradiomics (van Griethuysen et al., Cancer Research 2017).
"""


def splitNames(text):
    """ "age, stage" -> ("age", "stage")."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


class RadiomicsBiomarkersWidget(VirtualBiopsyModuleWidget):
    logicClass = RadiomicsBiomarkersLogic
    title = TITLE
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
        ui.presetComboBox.connect("currentIndexChanged(int)", self.updateApplyButton)
        ui.paramsPathLineEdit.connect("currentPathChanged(QString)", self.updateApplyButton)
        for name, action in (("extractButton", self.extractFeatures), ("featureMapButton", self.computeFeatureMap),
                             ("ibsiButton", self.ibsiReport), ("reduceButton", self.reduceFeatures),
                             ("exploreButton", self.exploreFeatures), ("harmoniseButton", self.harmoniseFeatures)):
            getattr(ui, name).connect("clicked(bool)", lambda *_, action=action: self.runAction(action))
        self.fillMapFeatures()
        self.updateApplyButton()

    def runAction(self, action):
        """Run a button's action and show its status line, or its error."""
        self.ui.statusLabel.text = ""
        try:
            self.ui.statusLabel.text = action() or ""
        except Exception as error:
            show_error(error, TITLE)

    def volumes(self):
        return list(self.ui.volumesSelector.checkedNodes())

    def segmentIds(self):
        return list(self.ui.segmentSelector.selectedSegmentIDs()) or None

    def inputsReady(self):
        return bool(self.volumes()) and self.ui.segmentSelector.currentNode() is not None

    def updateApplyButton(self, *_):
        VirtualBiopsyModuleWidget.updateApplyButton(self)
        ui = self.ui
        ready = self.inputsReady()
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
            raise InputError(f"LoG sigmas must be numbers in mm separated by commas: '{ui.logSigmasLineEdit.text}'.") \
                from error
        preset = ui.presetComboBox.currentText
        return ExtractionParameters(
            preset=preset if preset != PARAMETER_FILE else "study_mr",
            params_file=ui.paramsPathLineEdit.currentPath.strip() if preset == PARAMETER_FILE else None,
            log_sigmas_mm=sigmas, wavelet=ui.waveletCheckBox.checked,
            settings={"binWidth": ui.binWidthSpinBox.value} if ui.binWidthSpinBox.value > 0 else {})

    # -- extraction --------------------------------------------------------------------------

    def extractFeatures(self):
        dependencies.ensure("RadiomicsBiomarkers")
        with progress_dialog("Extracting radiomic features") as task:
            table = self.logic.extract_features(self.volumes(), self.ui.segmentSelector.currentNode(),
                                                self.segmentIds(), self.parameters(), progress=task)
        self.ui.signatureTableSelector.setCurrentNode(table)
        showTable(table)
        return (f"{table.GetNumberOfColumns() - 3} features of {table.GetNumberOfRows()} segment(s) in "
                f"'{table.GetName()}' (settings: '{self.logic.settings_table(table).GetName()}').")

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
        dependencies.ensure("RadiomicsBiomarkers")
        if self.ui.mapFeatureComboBox.count <= 1:
            self.fillMapFeatures()  # pyradiomics may have just been installed
        segmentIds = self.segmentIds() or [None]
        with progress_dialog("Computing the feature map") as task:
            node = self.logic.feature_map(self.volumes()[0], self.ui.segmentSelector.currentNode(), segmentIds[0],
                                          self.ui.mapFeatureComboBox.currentText.strip(), self.parameters(),
                                          self.ui.kernelRadiusSpinBox.value, progress=task)
        slicer.util.setSliceViewerLayers(background=self.volumes()[0], foreground=node, foregroundOpacity=0.6)
        return f"Added the feature map '{node.GetName()}'."

    def ibsiReport(self):
        dependencies.ensure("RadiomicsBiomarkers")
        with progress_dialog("IBSI digital phantom") as task:
            table = self.logic.ibsi_report(progress=task)
        showTable(table)
        return f"{table.GetAttribute('VirtualBiopsy.Radiomics.ibsi.summary_line')} See '{table.GetName()}'."

    # -- signature (feature-table steps) -------------------------------------------------------

    def reduceFeatures(self):
        dependencies.ensure("RadiomicsBiomarkers")
        with progress_dialog("Reducing the features to a signature") as task:
            outputs = self.logic.reduce_feature_table(self.ui.signatureTableSelector.currentNode(), progress=task)
        showTable(outputs["signature"])
        return f"Signature in '{outputs['signature'].GetName()}'; loadings and the log of what was dropped beside it."

    def exploreFeatures(self):
        dependencies.ensure("RadiomicsBiomarkers")
        volumeColumn = self.ui.volumeColumnLineEdit.text.strip() or None
        table = self.logic.explore_features(self.ui.signatureTableSelector.currentNode(),
                                            self.ui.labelColumnLineEdit.text.strip(), volumeColumn)
        showTable(table)
        return f"Per-feature statistics in '{table.GetName()}'."

    def harmoniseFeatures(self):
        dependencies.ensure("RadiomicsBiomarkers")
        with progress_dialog("ComBat harmonisation") as task:
            table = self.logic.harmonise_feature_table(
                self.ui.signatureTableSelector.currentNode(), self.ui.batchColumnLineEdit.text.strip(),
                covariates=splitNames(self.ui.covariatesLineEdit.text),
                parametric=self.ui.parametricCheckBox.checked, progress=task)
        showTable(table)
        return f"Harmonised features in '{table.GetName()}'."

    # -- intensity statistics ----------------------------------------------------------------

    def apply(self):
        tableNode = self.logic.intensity_statistics_table(
            self.volumes()[0], self.ui.segmentSelector.currentNode(), self.ui.outputTableSelector.currentNode()
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
