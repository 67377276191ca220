"""The OutcomePredictor self-check: every logic step on real nodes, against a cohort with known signal.

Run by the module's self-test in Slicer and by pytest headless (a few tens of seconds on one core).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.errors import InputError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.selftests.common import expect_error


def check_outcome_predictor(context, workdir: str) -> None:
    check_join(context)
    check_models_and_survival(context, workdir)
    check_gradcam(context)


def check_join(context) -> None:
    from virtualbiopsy.logic.outcome_predictor import OutcomePredictorLogic

    logic = OutcomePredictorLogic(context)
    radiomics = arrays.add_table(context, {"case_id": ["a", "b", "c"], "glcm_contrast": [1.0, 2.0, 3.0]}, "radiomics")
    clinical = arrays.add_table(context, {"case_id": ["b", "c", "d"], "age_months": [14.0, 30.0, 60.0]}, "clinical")
    joined_node = logic.join_tables([radiomics, clinical])
    joined = arrays.table_columns(joined_node)
    assert joined["case_id"] == ["a", "b", "c", "d"]
    assert joined["age_months"][1:] == [14.0, 30.0, 60.0] and np.isnan(joined["age_months"][0])
    assert np.isnan(joined["glcm_contrast"][3]) and joined_node.GetAttribute(attributes.MISSING_CELLS) == "2"
    no_key = arrays.add_table(context, {"patient": ["a"]}, "no key")
    expect_error(context, InputError, lambda: logic.join_tables([radiomics, no_key]), "case_id", "no key")


def check_models_and_survival(context, workdir: str) -> None:
    """Train (nested CV), save with a card, apply with SHAP, cluster for Kaplan–Meier; bad inputs refused."""
    from virtualbiopsy.logic.outcome_predictor import (
        EndpointParameters,
        OutcomePredictorLogic,
        SurvivalParameters,
        TrainModelParameters,
    )
    from virtualbiopsy.prediction.cohort import clinical_split, generate_cohort
    from virtualbiopsy.prediction.model_card import read_card

    logic = OutcomePredictorLogic(context)
    cohort = generate_cohort(n_patients=160, seed=3)
    image, clinical = clinical_split(cohort)
    joined = logic.join_tables([logic.add_frame(image, "image features"), logic.add_frame(clinical, "clinical")])
    folder = Path(workdir) / "outcome_model"
    parameters = TrainModelParameters(EndpointParameters("mycn_amplified", features=cohort.features),
                                      model="logistic", n_bootstrap=200, grid={"select__k": [5], "model__C": [1.0]},
                                      explain_cases=40, model_folder=str(folder))
    trained = logic.train_model(joined, parameters)
    metrics = trained.model.metrics.set_index("metric")
    assert metrics.loc["auc", "ci_low"] > 0.5, f"AUC CI {metrics.loc['auc', 'ci_low']:.3f} includes 0.5"
    top = arrays.table_columns(trained.importance)["feature"][0]
    assert top == cohort.truth["informative"], f"SHAP ranks '{top}' first, not the informative feature"
    card = read_card(folder)
    assert "research use only" in card["intended_use"].lower() and len(card["file"]["sha256"]) == 64

    # apply the saved model to new cases (same features), with per-case SHAP values
    new = logic.add_frame(generate_cohort(n_patients=12, seed=99).table.drop(columns=["mycn_amplified"]), "new cases")
    applied = logic.apply_model(str(folder), new)
    assert applied.predictions.GetNumberOfRows() == 12 and applied.shap.GetNumberOfRows() == 12
    # a table without a model feature: a clear error naming it, nothing added
    lacking = logic.add_frame(image.drop(columns=["adc_mean"]), "lacking adc_mean")
    expect_error(context, InputError, lambda: logic.apply_model(str(folder), lacking), "adc_mean")
    # a single-class endpoint: refused before any training
    one_class = logic.add_frame(cohort.table.assign(mycn_amplified=1), "one class")
    expect_error(context, InputError, lambda: logic.train_model(one_class, TrainModelParameters(
        EndpointParameters("mycn_amplified", features=cohort.features))), "single class")

    survival = logic.survival_analysis(joined, SurvivalParameters("os_days", "os_event",
                                                                  list(cohort.truth["signature"]), k=2))
    p = arrays.table_columns(survival.logrank)["p"][0]
    assert p < 0.05, f"log-rank p = {p:.3g} between the signature clusters (true hazard ratio 2)"
    assert survival.chart.GetNumberOfPlotSeriesNodes() == 2


def check_gradcam(context) -> None:
    """Grad-CAM of the demo CNN on a volume with one bright blob lands on the blob."""
    from virtualbiopsy.errors import EmptyMaskError
    from virtualbiopsy.logic.outcome_predictor import OutcomePredictorLogic

    rng = np.random.default_rng(5)
    grid = Geometry.from_spacing((24, 40, 40), (1.5, 1.5, 3.0), (-30.0, -30.0, -36.0))
    image = rng.normal(100.0, 10.0, grid.shape).astype(np.float32)
    kk, jj, ii = np.mgrid[: grid.shape[0], : grid.shape[1], : grid.shape[2]]
    blob = (kk - 12) ** 2 + (jj - 22) ** 2 + (ii - 17) ** 2 <= 16
    image[blob] += 40.0
    volume = arrays.add_volume_from_array(context, image, grid, "blob image")
    segmentation = arrays.add_segmentation_from_labels(context, blob.astype(np.uint8), grid,
                                                       {1: ("blob", (1, 0, 0))}, "blob mask", volume)
    logic = OutcomePredictorLogic(context)
    overlay = logic.gradcam_overlay(volume)
    cam = arrays.array_from_volume(overlay)
    assert cam.shape == image.shape and Geometry.from_node(overlay).differences(grid) == []
    fraction = float(cam[blob].sum() / cam.sum())
    assert fraction > 0.5, f"only {100 * fraction:.0f} % of the Grad-CAM mass is on the blob"
    with_mask = logic.gradcam_overlay(volume, segmentation)
    assert float(with_mask.GetAttribute(attributes.GRADCAM_FRACTION_IN_SEGMENT)) > 0.5
    empty = arrays.add_segmentation_from_labels(context, np.zeros(grid.shape, np.uint8), grid,
                                                {1: ("nothing", (0, 1, 0))}, "empty", volume, keep_empty=True)
    expect_error(context, EmptyMaskError, lambda: logic.gradcam_overlay(volume, empty), "no voxels")
