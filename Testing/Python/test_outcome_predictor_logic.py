"""OutcomePredictor logic on real MRML nodes: the module's self-check, and the survival steps' nodes."""

from __future__ import annotations

import numpy as np
import pytest

from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.outcome_predictor import (
    EndpointParameters,
    GradCamParameters,
    OutcomePredictorLogic,
    SurvivalParameters,
    TrainModelParameters,
)
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.prediction.cohort import SIGNATURE, generate_cohort

pytestmark = pytest.mark.slow


def test_cox_training_and_survival_add_tables_and_charts(context, scene_unchanged):
    logic = OutcomePredictorLogic(context)
    cohort = generate_cohort(n_patients=150, seed=2)
    table = logic.add_frame(cohort.table, "cohort")
    columns = EndpointParameters(time="os_days", event="os_event", features=list(SIGNATURE))
    outputs = logic.train_model(table, TrainModelParameters(
        columns, model="cox", n_bootstrap=100, grid={"select__k": [3], "model__penalizer": [0.1]}, explain_cases=20))
    metrics = arrays.table_columns(outputs.metrics)
    assert metrics["metric"] == ["c_index"] and metrics["ci_low"][0] < metrics["estimate"][0] < metrics["ci_high"][0]
    predictions = arrays.table_columns(outputs.predictions)
    assert len(predictions["prognostic_index"]) == 150 and set(predictions["risk_group"]) == {"high risk", "low risk"}
    chart = outputs.charts["risk_groups"]
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    series = chart.GetNthPlotSeriesNode(0)
    curve = arrays.table_columns(series.GetTableNode())
    survival = curve[series.GetYColumnName()]
    assert survival[0] == 1.0 and all(a >= b for a, b in zip(survival, survival[1:]))

    before = context.node_ids()
    result = logic.survival_analysis(table, SurvivalParameters("os_days", "os_event", list(SIGNATURE), k=3))
    assert len(context.node_ids() - before) > 0
    assert arrays.table_columns(result.summary)["group"] == ["cluster 1", "cluster 2", "cluster 3"]
    assert result.chart.GetNumberOfPlotSeriesNodes() == 3
    groups = arrays.table_columns(result.groups)
    assert groups["case_id"] == list(cohort.table["case_id"])

    # a missing event column: a clear error, nothing added
    with scene_unchanged(context), pytest.raises(InputError, match="'death'"):
        logic.survival_analysis(table, SurvivalParameters("os_days", "death"))


def test_gradcam_overlay_is_a_new_volume_on_the_image_grid(context):
    grid = Geometry.from_spacing((16, 24, 24), (2.0, 2.0, 3.0), (-24.0, -24.0, -24.0))
    image = np.random.default_rng(0).normal(50.0, 5.0, grid.shape).astype(np.float32)
    image[6:10, 10:14, 4:8] += 20.0
    volume = arrays.add_volume_from_array(context, image, grid, "image")
    overlay = OutcomePredictorLogic(context).gradcam_overlay(volume, parameters=GradCamParameters(name="cam"))
    assert overlay.GetName() == "cam" and overlay.GetID() != volume.GetID()
    assert Geometry.from_node(overlay).differences(grid) == []
    cam = arrays.array_from_volume(overlay)
    assert cam.max() == pytest.approx(1.0) and cam[6:10, 10:14, 4:8].sum() / cam.sum() > 0.5
    np.testing.assert_array_equal(arrays.array_from_volume(volume), image)  # the image is untouched
