"""Logic of the OutcomePredictor module: outcome models on Table nodes, explanations, Grad-CAM overlays.

* :meth:`~OutcomePredictorLogic.join_tables`: join feature tables (radiomics, habitat ADC, clinical)
  by case id (:func:`virtualbiopsy.tables.join_columns`), missing cells kept missing.
* :meth:`~OutcomePredictorLogic.train_model`: nested-CV model with bootstrap CIs, SHAP cohort ranking,
  optional save as a model folder with its model card (``virtualbiopsy.prediction``).
* :meth:`~OutcomePredictorLogic.apply_model`: predictions and per-patient SHAP values for a new table.
* :meth:`~OutcomePredictorLogic.survival_analysis`: k-means groups on a signature, Kaplan–Meier, log-rank.
* :meth:`~OutcomePredictorLogic.gradcam_overlay`: a Grad-CAM map of the demo CNN as a new volume.

Every step adds NEW nodes inside a transaction (a failure or a cancel leaves the scene as it was);
results are Table nodes and Plot chart nodes (``vtkMRMLPlotChartNode``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.errors import InputError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.progress import as_task
from virtualbiopsy.tables import is_missing, join_columns

# -- parameters and results --------------------------------------------------------------------------------


@dataclass
class EndpointParameters:
    """Which columns are the case id, the endpoint (or time + event) and the features (None: all numeric
    columns except outcome-like ones such as ``os_days``; see ``prediction.data.outcome_like``)."""

    endpoint: str | None = None
    time: str | None = None
    event: str | None = None
    features: list[str] | None = None
    key: str = "case_id"


@dataclass
class TrainModelParameters:
    columns: EndpointParameters = field(default_factory=EndpointParameters)
    model: str = "logistic"
    outer_folds: int = 5
    inner_folds: int = 3
    n_bootstrap: int = 1000
    threshold: float = 0.5
    seed: int = 0
    n_trees: int = 100
    grid: dict | None = None
    explain_cases: int = 100  # the cohort SHAP ranking uses at most this many (seeded) cases
    model_folder: str | None = None  # where to save the model and its card (None: not saved)

    def train_parameters(self):
        from virtualbiopsy.prediction.models import TrainParameters

        return TrainParameters(model=self.model, outer_folds=self.outer_folds, inner_folds=self.inner_folds,
                               n_bootstrap=self.n_bootstrap, threshold=self.threshold, seed=self.seed,
                               n_trees=self.n_trees, grid=self.grid)


@dataclass
class SurvivalParameters:
    time: str = "os_days"
    event: str = "os_event"
    features: list[str] | None = None  # the signature (None: every numeric column)
    k: int = 2
    seed: int = 0
    key: str = "case_id"


@dataclass
class GradCamParameters:
    target: int = 1  # the demo CNN's class 1: "bright blob present"
    margin_mm: float = 10.0  # around the segment's bounding box
    seed: int = 0
    name: str | None = None


@dataclass
class TrainOutputs:
    model: object  # virtualbiopsy.prediction.models.TrainedModel
    metrics: object  # table nodes...
    predictions: object
    importance: object
    charts: dict = field(default_factory=dict)
    shap: object = None  # ShapValues of the cohort
    folder: Path | None = None
    warnings: list = field(default_factory=list)


@dataclass
class ApplyOutputs:
    predictions: object
    shap: object | None
    values: object = None  # ShapValues


@dataclass
class SurvivalOutputs:
    groups: object
    summary: object
    logrank: object
    chart: object
    analysis: object = None
    clustering: object = None


# -- logic -------------------------------------------------------------------------------------------------


def _frame(table_node):
    """The selected table node as a DataFrame (:func:`virtualbiopsy.mrml.arrays.frame_from_table_node`)."""
    if table_node is None:
        raise InputError("Select a table.")
    return arrays.frame_from_table_node(table_node)


class OutcomePredictorLogic:
    def __init__(self, context) -> None:
        self.context = context

    def join_tables(self, table_nodes, key: str = "case_id", name: str = "Joined cases"):
        """A new table with one row per case id found in any of ``table_nodes`` (outer join).

        Missing cells stay NaN or empty (never silently filled); the node's attribute
        ``VirtualBiopsy.MissingCells`` counts them so the user sees how complete the data are.
        """
        nodes = list(table_nodes)
        if not nodes:
            raise InputError("Select at least one table to join.")
        joined = join_columns([arrays.table_columns(n) for n in nodes], key, [n.GetName() for n in nodes])
        missing = sum(1 for values in joined.values() for v in values if is_missing(v))
        with self.context.transaction():
            node = arrays.add_table(self.context, joined, name)
            node.SetAttribute(attributes.MISSING_CELLS, str(missing))
        return node

    # -- tables and charts ---------------------------------------------------------------------------

    def add_frame(self, frame, name: str):
        """A new table node from a DataFrame (:func:`virtualbiopsy.mrml.arrays.add_frame`: numbers stay numeric,
        NaN = missing, booleans yes / no)."""
        return arrays.add_frame(self.context, frame, name)

    def add_chart(self, table_node, series: list[tuple[str, str, str]], title: str, x_title: str, y_title: str,
                  bar: bool = False, label_column: str | None = None):
        """A plot chart of ``(name, x column, y column)`` series from ``table_node``."""
        import slicer

        chart = self.context.add_node("vtkMRMLPlotChartNode", title)
        chart.SetTitle(title)
        chart.SetXAxisTitle(x_title)
        chart.SetYAxisTitle(y_title)
        for index, (name, x_column, y_column) in enumerate(series):
            plot = self.context.add_node("vtkMRMLPlotSeriesNode", f"{title}: {name}")
            plot.SetAndObserveTableNodeID(table_node.GetID())
            plot.SetXColumnName(x_column)
            plot.SetYColumnName(y_column)
            if bar:
                plot.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
                if label_column:
                    plot.SetLabelColumnName(label_column)
            else:
                plot.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
                plot.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleNone)
            rgb = [(0.12, 0.47, 0.71), (0.84, 0.15, 0.16), (0.17, 0.63, 0.17), (1.0, 0.5, 0.05), (0.58, 0.4, 0.74)]
            plot.SetColor(*rgb[index % len(rgb)])
            chart.AddAndObservePlotSeriesNodeID(plot.GetID())
        return chart

    def _km_chart(self, analysis, title: str):
        """Kaplan–Meier staircases, one series per group, from one table (shorter curves padded flat)."""
        from virtualbiopsy.prediction.survival import curve_table

        curves = curve_table(analysis)
        groups = [g.group for g in analysis.groups]
        length = max(curves["group"].count(g) for g in groups)
        columns = {}
        for g in groups:
            rows = [r for r, name in enumerate(curves["group"]) if name == g]
            time = [curves["time"][r] for r in rows]
            survival = [curves["survival"][r] for r in rows]
            pad = length - len(rows)
            columns[f"{g} time"] = time + [time[-1]] * pad
            columns[f"{g} survival"] = survival + [survival[-1]] * pad
        table = arrays.add_table(self.context, columns, f"{title} curves")
        return self.add_chart(table, [(g, f"{g} time", f"{g} survival") for g in groups], title, "time",
                              "survival probability")

    # -- models --------------------------------------------------------------------------------------

    def train_model(self, table_node, parameters: TrainModelParameters, progress=None) -> TrainOutputs:
        """Train and validate a model on a case table; add metrics, CV predictions, SHAP ranking and charts.

        Nothing is added when a check fails (missing column, single class, too few events, ...).
        With ``parameters.model_folder`` the model is saved there with its model card.
        """
        from virtualbiopsy.prediction.data import prepare_dataset
        from virtualbiopsy.prediction.explain import explain, ranking
        from virtualbiopsy.prediction.model_card import CARD_JSON, save_model
        from virtualbiopsy.prediction.models import train

        task = as_task(progress)
        folder = Path(parameters.model_folder) if parameters.model_folder else None
        if folder is not None and (folder / CARD_JSON).exists():
            raise InputError(f"'{folder}' already holds a model; choose another folder (nothing was overwritten).")
        c = parameters.columns
        task.update(0.0, "Checking the table")
        dataset = prepare_dataset(_frame(table_node), c.endpoint, time=c.time, event=c.event, features=c.features,
                                  key=c.key)
        model = train(dataset, parameters.train_parameters(), task.sub(0.02, 0.8))
        shap = explain(model, dataset.X, dataset.case_ids, max_cases=parameters.explain_cases, seed=parameters.seed,
                       progress=task.sub(0.8, 0.97))
        importance = ranking(shap)
        task.update(0.97, "Adding the results")
        name = f"{model.name} {model.endpoint.name}"
        with self.context.transaction():
            metrics_node = self.add_frame(model.metrics, f"{name} metrics")
            metrics_node.SetAttribute(attributes.WARNINGS, "\n".join(model.warnings))
            predictions_node = self.add_frame(model.cv_predictions, f"{name} CV predictions")
            importance_node = self.add_frame(importance, f"{name} SHAP importance")
            charts = {"importance": self.add_chart(importance_node, [("mean |SHAP|", "rank", "mean_abs_shap")],
                                                   f"{name} SHAP importance", "feature", "mean |SHAP|", bar=True,
                                                   label_column="feature")}
            charts.update(self._model_charts(model, name))
            if folder is not None:
                save_model(model, folder)
        return TrainOutputs(model, metrics_node, predictions_node, importance_node, charts, shap, folder,
                            list(model.warnings))

    def _model_charts(self, model, name: str) -> dict:
        from sklearn.metrics import roc_curve

        from virtualbiopsy.prediction.data import BINARY, TIME_TO_EVENT
        from virtualbiopsy.prediction.survival import analyse_groups

        cv = model.cv_predictions
        if model.kind == TIME_TO_EVENT:
            analysis = analyse_groups(cv[model.endpoint.time], cv[model.endpoint.event], cv["risk_group"])
            return {"risk_groups": self._km_chart(analysis, f"{name} risk groups (CV)")}
        if model.kind != BINARY:
            return {}
        positive = model.endpoint.classes[1]
        observed = (cv[model.endpoint.column].astype(str) == str(positive)).astype(int)
        fpr, tpr, _ = roc_curve(observed, cv[f"p_{positive}"])
        table = arrays.add_table(self.context, {"false positive rate": fpr.tolist(), "sensitivity": tpr.tolist(),
                                                "chance": fpr.tolist()}, f"{name} ROC")
        return {"roc": self.add_chart(table, [("ROC (out-of-fold)", "false positive rate", "sensitivity"),
                                              ("chance", "false positive rate", "chance")],
                                      f"{name} ROC", "1 - specificity", "sensitivity")}

    def apply_model(self, model, table_node, explain: bool = True, progress=None) -> ApplyOutputs:
        """Predictions (and per-case SHAP values) of a trained model or model folder for a new table."""
        from virtualbiopsy.prediction.explain import explain as shap_values
        from virtualbiopsy.prediction.model_card import apply_model, load_model

        task = as_task(progress)
        if isinstance(model, (str, Path)):
            task.update(0.0, "Loading the model")
            model = load_model(model)
        predictions, X = apply_model(model, _frame(table_node))
        values = None
        if explain:
            values = shap_values(model, X, predictions[model.key], progress=task.sub(0.1, 0.95))
        task.update(0.95, "Adding the results")
        with self.context.transaction():
            node = self.add_frame(predictions, f"{table_node.GetName()} predictions ({model.name})")
            shap_node = None
            if values is not None:
                shap_node = self.add_frame(values.to_frame(model.key), f"{table_node.GetName()} SHAP values")
                shap_node.SetAttribute(attributes.SHAP_OUTPUT, values.output)
                shap_node.SetAttribute(attributes.SHAP_METHOD, values.method)
        return ApplyOutputs(node, shap_node, values)

    def survival_analysis(self, table_node, parameters: SurvivalParameters, progress=None) -> SurvivalOutputs:
        """k-means groups on the signature; Kaplan–Meier per group, median / RMST and log-rank p."""
        from virtualbiopsy.prediction.data import prepare_dataset
        from virtualbiopsy.prediction.survival import cluster_survival

        task = as_task(progress)
        p = parameters
        dataset = prepare_dataset(_frame(table_node), time=p.time, event=p.event, features=p.features, key=p.key)
        clustering, analysis = cluster_survival(dataset.X, dataset.time, dataset.event, p.k, p.seed,
                                                progress=task.sub(0.0, 0.9))
        import pandas as pd

        groups = pd.DataFrame({p.key: dataset.case_ids, "cluster": clustering.labels, p.time: dataset.time,
                               p.event: dataset.event})
        with self.context.transaction():
            groups_node = self.add_frame(groups, f"{table_node.GetName()} clusters (k = {p.k})")
            summary_node = self.add_frame(analysis.summary, f"{table_node.GetName()} survival by cluster")
            logrank_node = self.add_frame(analysis.logrank, f"{table_node.GetName()} log-rank")
            chart = self._km_chart(analysis, f"{table_node.GetName()} Kaplan-Meier (k = {p.k})")
        task.update(1.0, "Survival analysis done")
        return SurvivalOutputs(groups_node, summary_node, logrank_node, chart, analysis, clustering)

    # -- Grad-CAM ------------------------------------------------------------------------------------

    def gradcam_overlay(self, volume_node, segmentation_node=None, segment_id=None,
                        parameters: GradCamParameters | None = None, progress=None):
        """A NEW volume on ``volume_node``'s grid: the demo CNN's Grad-CAM map (0..1), for an overlay.

        With a segmentation (``segment_id``: one ID or a list, whose union is used; default: the first
        segment), the CNN sees the segment's bounding box plus ``margin_mm``; the map is 0
        elsewhere, and the share of its mass inside the segment is stored in the node's attribute
        ``VirtualBiopsy.GradCAM.FractionInSegment``. The CNN is the bundled DEMO (a bright-blob
        detector trained on synthetic images), not a clinical model.
        """
        from virtualbiopsy.mrml.geometry import Geometry, require_finite, require_scalar_3d
        from virtualbiopsy.prediction.explain import grad_cam, mass_fraction, robust_standardise, train_blob_cnn

        parameters = parameters or GradCamParameters()
        task = as_task(progress)
        geometry = require_scalar_3d(volume_node, "image")
        image = arrays.array_from_volume(volume_node).astype(np.float32)
        require_finite(image, volume_node.GetName())
        box = tuple(slice(0, n) for n in image.shape)
        mask = None
        if segmentation_node is not None:
            ids = [segment_id] if isinstance(segment_id, str) else list(segment_id or [])
            ids = ids or arrays.segment_ids(segmentation_node)[:1]
            if not ids:
                raise InputError(f"Segmentation '{segmentation_node.GetName()}' has no segment.")
            mask = np.zeros(image.shape, bool)
            for one in ids:
                mask |= arrays.mask_from_segment(segmentation_node, one, volume_node)
            margin = np.ceil(parameters.margin_mm / Geometry.from_node(volume_node).spacing[::-1]).astype(int)
            where = np.argwhere(mask)
            low = np.maximum(where.min(axis=0) - margin, 0)
            high = np.minimum(where.max(axis=0) + margin + 1, image.shape)
            box = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
        crop = image[box]
        if crop.size > 4_000_000:
            raise InputError(f"The region of '{volume_node.GetName()}' has {crop.size:,} voxels; select a segment "
                             "to restrict Grad-CAM to the tumour.")
        task.update(0.05, "Training the demo CNN (seconds, once per session)")
        network = train_blob_cnn(parameters.seed)
        task.update(0.7, "Grad-CAM")
        cam = np.zeros(image.shape, np.float32)
        cam[box] = grad_cam(network, robust_standardise(crop), parameters.target)
        name = parameters.name or f"{volume_node.GetName()} Grad-CAM"
        with self.context.transaction():
            node = arrays.add_volume_from_array(self.context, cam, geometry, name)
            node.SetAttribute(attributes.GRADCAM_MODEL, "demo bright-blob CNN (synthetic training; not clinical)")
            node.SetAttribute(attributes.GRADCAM_TARGET, str(parameters.target))
            if mask is not None:
                node.SetAttribute(attributes.GRADCAM_FRACTION_IN_SEGMENT, f"{mass_fraction(cam, mask):.4f}")
            self._show_as_overlay(node)
        task.update(1.0, "Grad-CAM done")
        return node

    def _show_as_overlay(self, volume) -> None:
        display = volume.GetDisplayNode()
        if display is None:
            return
        colour = self.context.scene.GetFirstNodeByName("Iron")
        if colour is not None:
            display.SetAndObserveColorNodeID(colour.GetID())
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(0.0, 1.0)
        display.SetLowerThreshold(0.05)  # weak evidence transparent when thresholding is on
        display.SetApplyThreshold(1)
