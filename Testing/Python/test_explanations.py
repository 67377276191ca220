"""Explanations: SHAP values (shapiq) against a brute-force Shapley computation, additivity and rankings;
Grad-CAM (captum) of a toy CNN trained to detect a bright blob puts its mass on the blob."""

from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest

from virtualbiopsy.errors import ImageDimensionError
from virtualbiopsy.prediction.data import prepare_dataset
from virtualbiopsy.prediction.explain import (
    explain,
    grad_cam,
    mass_fraction,
    ranking,
    synthetic_blobs,
    train_blob_cnn,
)
from virtualbiopsy.prediction.models import TrainParameters, train

FEATURES = ["adc_mean", "t2_entropy", "noise_1", "noise_2"]


def brute_force_shapley(function, x, background):
    """Interventional Shapley values by enumerating every coalition (independent of shapiq)."""
    n = len(x)

    def value(coalition):
        rows = background.copy()
        rows[:, list(coalition)] = x[list(coalition)]
        return function(rows).mean()

    phi = np.zeros(n)
    for j in range(n):
        others = [i for i in range(n) if i != j]
        for size in range(n):
            weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for coalition in itertools.combinations(others, size):
                phi[j] += weight * (value(coalition + (j,)) - value(coalition))
    return phi


@pytest.mark.slow
def test_model_agnostic_shap_equals_brute_force_shapley(outcome_cohort):
    cohort = outcome_cohort(160, seed=6)
    dataset = prepare_dataset(cohort.table, "mycn_amplified", features=FEATURES)
    model = train(dataset, TrainParameters(model="logistic", n_bootstrap=20, grid={"select__k": ["all"]}))
    shap = explain(model, dataset.X.iloc[:4], dataset.case_ids[:4])
    assert "exact" in shap.method and shap.output == "P(mycn_amplified = 1)"

    def function(rows):
        return model.pipeline.predict_proba(rows)[:, 1]

    for row in range(4):
        expected = brute_force_shapley(function, dataset.X.to_numpy(float)[row], np.asarray(model.background))
        np.testing.assert_allclose(shap.values.iloc[row].to_numpy(), expected, atol=1e-6)
    assert shap.base_value == pytest.approx(function(np.asarray(model.background)).mean())


@pytest.mark.slow
@pytest.mark.parametrize("name, grid", [("random_forest", {"select__k": [6], "model__max_depth": [4]}),
                                        ("gradient_boosting", {"select__k": [6], "model__learning_rate": [0.1]})])
def test_tree_shap_is_additive_and_ranks_the_informative_feature_first(outcome_cohort, name, grid):
    cohort = outcome_cohort(160, seed=6)
    dataset = prepare_dataset(cohort.table, "mycn_amplified", features=cohort.features)
    model = train(dataset, TrainParameters(model=name, n_trees=30, n_bootstrap=50, grid=grid))
    shap = explain(model, dataset.X, dataset.case_ids, max_cases=40)
    assert "TreeSHAP" in shap.method and len(shap.values) == 40
    residual = shap.prediction - shap.values.sum(axis=1).to_numpy()
    assert np.ptp(residual) < 1e-9  # output = constant base value + sum of the case's SHAP values
    assert residual[0] == pytest.approx(shap.base_value)
    if name == "random_forest":  # probabilities: the base value is the forest's mean training output
        assert 0 < shap.base_value < 1 and shap.output.startswith("P(")
    else:
        assert shap.output.startswith("log-odds")
    assert ranking(shap)["feature"].iloc[0] == cohort.truth["informative"]
    dropped = [f for f in model.features if f not in model.used_features]
    assert dropped and (shap.values[dropped] == 0).all().all()  # features the pipeline dropped get nothing
    frame = shap.to_frame()
    assert list(frame.columns[:3]) == ["case_id", "model_output", "base_value"]


def test_shap_never_imports_the_shap_package():
    import shapiq  # noqa: F401  (what the explanations use)

    import virtualbiopsy.prediction.explain  # noqa: F401

    assert "shap" not in sys.modules


@pytest.mark.slow
def test_gradcam_of_a_blob_detector_lands_on_the_blob():
    torch = pytest.importorskip("torch")
    network = train_blob_cnn(seed=0)
    images, labels, masks = synthetic_blobs(30, size=24, seed=123)  # held out, larger than the training patches
    with torch.no_grad():
        predicted = network(torch.from_numpy(images)).argmax(dim=1).numpy()
    assert np.mean(predicted == labels) >= 0.9
    fractions, volume_share = [], []
    for index in np.flatnonzero(labels):
        cam = grad_cam(network, images[index, 0])
        assert cam.shape == images.shape[2:] and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
        fractions.append(mass_fraction(cam, masks[index]))
        volume_share.append(masks[index].mean())
    assert np.mean(volume_share) < 0.03  # the blob is a small target...
    assert min(fractions) > 0.5 and np.mean(fractions) > 0.75, fractions  # ...that holds most of the map


def test_gradcam_refuses_non_3d_input():
    pytest.importorskip("torch")
    network = train_blob_cnn(seed=0)
    with pytest.raises(ImageDimensionError, match="3D"):
        grad_cam(network, np.zeros((20, 20), np.float32))
    with pytest.raises(ImageDimensionError, match="too small"):
        grad_cam(network, np.zeros((2, 20, 20), np.float32))
