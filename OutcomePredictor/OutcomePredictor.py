"""Outcome Predictor module: a thin Slicer front end to ``virtualbiopsy.logic.outcome_predictor``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
)

from virtualbiopsy import attributes
from virtualbiopsy.logic.outcome_predictor import (
    EndpointParameters,
    OutcomePredictorLogic,
    SurvivalParameters,
    TrainModelParameters,
)
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
from virtualbiopsy_slicer.protocols import OutcomePredictorLogicProtocol

__all__ = ["OutcomePredictor", "OutcomePredictorLogic", "OutcomePredictorTest", "OutcomePredictorWidget"]

TITLE = _("Outcome Predictor")


class OutcomePredictor(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Oncology")]
        self.parent.dependencies = ["Segmentations", "Plots", "Tables"]
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = _("""
Outcome models for neuroblastoma from imaging biomarkers and clinical data.
<b>Research use only; not for clinical decisions.</b>
<p><b>Join tables</b>: radiomic features, habitat ADC and clinical data on a shared case id (missing cells stay
missing). <b>Train</b>: logistic regression, random forest, gradient boosting, SVM (class endpoints) or Cox
(time + event), each in a pipeline (imputation, scaling, feature selection) fitted inside nested cross-validation;
metrics with bootstrap 95 % CIs, SHAP feature importance (shapiq), and the model saved with its model card.
<b>Apply</b>: predictions and per-case SHAP values for new cases. <b>Clusters and survival</b>: k-means on the
features, Kaplan-Meier curves, median and restricted mean survival, log-rank p. <b>Grad-CAM</b>: where a DEMO CNN
(a bright-blob detector trained on synthetic images, not a clinical model) looks, as an overlay volume.</p>
""") + documentationLink()
        self.parent.acknowledgementText = _("""
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
""")


def showChart(chartNode):
    """Show a plot chart in the layout (no-op without a main window)."""
    if chartNode is not None and slicer.app.layoutManager() is not None:
        slicer.modules.plots.logic().ShowChartInLayout(chartNode)


def metricsText(metrics):
    return "; ".join(_("{metric} {estimate:.3f} [{low:.3f}, {high:.3f}]").format(
        metric=r.metric, estimate=r.estimate, low=r.ci_low, high=r.ci_high)
        for r in metrics.itertuples() if r.metric in ("auc", "balanced_accuracy", "c_index"))


class OutcomePredictorWidget(VirtualBiopsyModuleWidget):
    logicClass = OutcomePredictorLogic
    logic: OutcomePredictorLogicProtocol
    title = TITLE
    actions = {
        "applyButton": Action("joinTables", "Core"),
        "trainButton": Action("train", "OutcomePredictor"),
        "applyModelButton": Action("applyModel", "OutcomePredictor"),
        "survivalButton": Action("survival", "OutcomePredictor"),
        "gradcamButton": Action("gradcam", "OutcomePredictor"),
    }
    inputSignals = (("tablesSelector", "checkedNodesChanged()"), ("keyLineEdit", "textChanged(QString)"),
                    ("cohortTableSelector", "currentNodeChanged(vtkMRMLNode*)"),
                    ("newTableSelector", "currentNodeChanged(vtkMRMLNode*)"),
                    ("volumeSelector", "currentNodeChanged(vtkMRMLNode*)"),
                    ("endpointLineEdit", "textChanged(QString)"), ("timeLineEdit", "textChanged(QString)"),
                    ("eventLineEdit", "textChanged(QString)"), ("modelFolderLineEdit", "currentPathChanged(QString)"))

    def setup(self):
        VirtualBiopsyModuleWidget.setup(self)
        self.updateButtons()

    def updateButtons(self, *args):
        ui = self.ui
        ui.applyButton.enabled = len(ui.tablesSelector.checkedNodes()) >= 2 and bool(ui.keyLineEdit.text.strip())
        table = ui.cohortTableSelector.currentNode() is not None
        survival = bool(ui.timeLineEdit.text.strip()) and bool(ui.eventLineEdit.text.strip())
        ui.trainButton.enabled = table and (bool(ui.endpointLineEdit.text.strip()) or survival)
        ui.applyModelButton.enabled = (ui.newTableSelector.currentNode() is not None
                                       and bool(ui.modelFolderLineEdit.currentPath.strip()))
        ui.survivalButton.enabled = table and survival
        ui.gradcamButton.enabled = ui.volumeSelector.currentNode() is not None

    def columns(self, survival):
        ui = self.ui
        features = [f.strip() for f in ui.featuresLineEdit.text.split(",") if f.strip()] or None
        key = ui.keyLineEdit.text.strip() or "case_id"
        if survival:
            return EndpointParameters(time=ui.timeLineEdit.text.strip(), event=ui.eventLineEdit.text.strip(),
                                      features=features, key=key)
        return EndpointParameters(ui.endpointLineEdit.text.strip() or None, features=features, key=key)

    def joinTables(self):
        tableNodes = list(self.ui.tablesSelector.checkedNodes())
        joinedNode = self.logic.join_tables(tableNodes, key=self.ui.keyLineEdit.text.strip())
        showTable(joinedNode)
        self.ui.cohortTableSelector.setCurrentNode(joinedNode)
        rows = joinedNode.GetNumberOfRows()
        missing = joinedNode.GetAttribute(attributes.MISSING_CELLS)
        return _("Joined {count} tables into '{table}' ({rows} cases, {missing} missing cells).").format(
            count=len(tableNodes), table=joinedNode.GetName(), rows=rows, missing=missing)

    def train(self):
        model = self.ui.modelComboBox.currentText
        folder = self.ui.modelFolderLineEdit.currentPath.strip() or None
        parameters = TrainModelParameters(self.columns(model == "cox"), model=model, model_folder=folder)
        with progress_dialog(_("Training {model} (nested cross-validation)").format(model=model)) as task:
            outputs = self.logic.train_model(self.ui.cohortTableSelector.currentNode(), parameters, progress=task)
        showTable(outputs.metrics)
        showChart(outputs.charts.get("roc") or outputs.charts.get("risk_groups") or outputs.charts.get("importance"))
        saved = " " + (_("Saved with its model card to {folder}.").format(folder=outputs.folder) if outputs.folder
                       else _("Not saved (no folder)."))
        warnings = " ".join(outputs.warnings)
        notes = ("\n" + _("Warnings: {warnings}").format(warnings=warnings)) if outputs.warnings else ""
        top = outputs.shap.values.abs().mean().idxmax()
        return _("{model}: {metrics} (nested CV, 95 % CI). Most important feature (mean |SHAP|): {feature}.").format(
            model=model, metrics=metricsText(outputs.model.metrics), feature=top) + saved + notes

    def applyModel(self):
        with progress_dialog(_("Applying the model")) as task:
            outputs = self.logic.apply_model(self.ui.modelFolderLineEdit.currentPath.strip(),
                                             self.ui.newTableSelector.currentNode(), progress=task)
        showTable(outputs.predictions)
        predicted = _("Predicted {count} case(s) into '{table}'").format(count=outputs.predictions.GetNumberOfRows(),
                                                                        table=outputs.predictions.GetName())
        return predicted + (_("; SHAP values in '{table}'.").format(table=outputs.shap.GetName())
                            if outputs.shap is not None else ".")

    def survival(self):
        columns = self.columns(True)
        parameters = SurvivalParameters(columns.time, columns.event, columns.features, k=self.ui.kSpinBox.value,
                                        key=columns.key)
        with progress_dialog(_("Clusters and survival")) as task:
            outputs = self.logic.survival_analysis(self.ui.cohortTableSelector.currentNode(), parameters, task)
        showTable(outputs.summary)
        showChart(outputs.chart)
        summary = outputs.analysis.summary
        medians = ", ".join(_("{group}: median {median:.0f}").format(group=g, median=m)
                            for g, m in zip(summary["group"], summary["median_survival"]))
        return _("{medians}; log-rank p = {p:.3g}.").format(medians=medians, p=outputs.analysis.logrank["p"].iloc[0])

    def gradcam(self):
        volume, segmentation = self.ui.volumeSelector.currentNode(), self.ui.segmentationSelector.currentNode()
        segments = None
        if segmentation is not None:
            segments = [segmentation.GetSegmentation().GetNthSegmentID(i)
                        for i in range(segmentation.GetSegmentation().GetNumberOfSegments())]
        with progress_dialog(_("Grad-CAM (demo CNN)")) as task:
            overlay = self.logic.gradcam_overlay(volume, segmentation, segments, progress=task)
        slicer.util.setSliceViewerLayers(background=volume, foreground=overlay, foregroundOpacity=0.5)
        fraction = overlay.GetAttribute(attributes.GRADCAM_FRACTION_IN_SEGMENT)
        inside = " " + _("{percent:.0f} % of its mass lies in the segmentation.").format(
            percent=100 * float(fraction)) if fraction else ""
        return _("Added '{overlay}' (demo CNN, not a clinical model) over '{volume}'.").format(
            overlay=overlay.GetName(), volume=volume.GetName()) + inside


class OutcomePredictorTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_OutcomePredictor_logic()

    def test_OutcomePredictor_logic(self):
        runLibraryChecks(self, "OutcomePredictor")
