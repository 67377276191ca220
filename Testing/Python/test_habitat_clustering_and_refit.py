"""Habitats: the uncertainty threshold and deterministic clustering, the habitat refit and its bootstrap
interval, habitat ADCs against the DRO truth, and the pipeline's exclusion and boundary labels."""

from __future__ import annotations

import numpy as np
import pytest
from dwi_signals import B, rician

from virtualbiopsy.diffusion import (
    fit_monoexp,
)
from virtualbiopsy.errors import InputError
from virtualbiopsy.habitats import clustering, refit
from virtualbiopsy.habitats.dro import make_dro, match_habitats
from virtualbiopsy.habitats.pipeline import (
    EXCLUDED_LABEL,
    FitClusterFitParameters,
    run_fit_cluster_fit,
)


def test_uncertainty_threshold_is_reported_and_clustering_is_deterministic():
    rng = np.random.default_rng(0)
    se = rng.uniform(1e-5, 1e-4, 1000)
    ex = clustering.reliable_voxels(se, kind="percentile", value=80)
    assert ex.uncertain == 200 and ex.se_threshold == pytest.approx(np.percentile(se, 80))
    assert "80th percentile" in ex.describe()
    with pytest.raises(InputError, match="percentile"):
        clustering.reliable_voxels(se, kind="percentile", value=0)
    values = np.concatenate([rng.normal(0.7e-3, 0.05e-3, 400), rng.normal(2.2e-3, 0.1e-3, 200)])
    first = clustering.cluster_voxels({"adc": values}, seed=1)
    again = clustering.cluster_voxels({"adc": values}, seed=1)
    assert first.k == 2 and first.criterion == "BIC" and np.array_equal(first.labels, again.labels)
    assert np.bincount(first.labels).tolist() == [0, 400, 200]  # habitat 1 = lowest ADC
    assert clustering.cluster_voxels({"adc": values[:400]}).k == 1  # one tissue: one habitat
    kmeans = clustering.cluster_voxels({"adc": values}, method="kmeans")
    assert kmeans.k == 2 and kmeans.criterion == "silhouette"
    assert clustering.cluster_voxels({"adc": values}, k=3).criterion == "user"


def test_habitat_refit_bootstrap_interval_holds_the_truth():
    rng = np.random.default_rng(8)
    clean = 1000 * np.exp(-B[:, None] * np.full(800, 1.1e-3))
    signals = rician(clean, 50.0, rng)
    labels = np.ones(800, int)
    voxel = fit_monoexp(signals, B).adc
    out = refit.refit_habitats(signals, B, labels, 1, voxel, voxel_volume_ml=0.036, n_bootstrap=300,
                               noise_floor=True, noise_sigma=50.0)  # unbiased: the floor would bias it by -0.6 %
    row = {k: v[0] for k, v in out["table"].items()}
    assert row["adc_ci_low"] < 1.1e-3 < row["adc_ci_high"] and row["adc_ci_high"] - row["adc_ci_low"] < 0.05e-3
    assert row["volume_ml"] == pytest.approx(800 * 0.036) and row["voxels"] == 800
    assert row["voxel_mean_adc"] == pytest.approx(voxel.mean())
    t_based = refit.refit_habitats(signals, B, labels, 1, voxel, ci_method="t")["table"]
    assert t_based["adc_ci_low"][0] < t_based["adc"][0] < t_based["adc_ci_high"][0]


@pytest.mark.parametrize("snr", [15.0, 20.0])
def test_habitat_adcs_are_within_10_percent_of_truth(snr):
    """Acceptance: at SNR >= 15, habitats of >= 500 voxels get their ADC within 10 % (no partial volume,
    so no boundary erosion); the noise-floor-corrected pipeline too."""
    dro = make_dro((600, 900, 700), snr=snr, seed=11)
    for noise_floor in (False, True):
        parameters = FitClusterFitParameters(erode_voxels=0, noise_floor=noise_floor, n_bootstrap=50)
        result = run_fit_cluster_fit(dro.signals, dro.b_values, dro.mask, parameters)
        matched = match_habitats(result.labels, dro.labels)
        assert result.k == 3 and sorted(matched.values()) == [1, 2, 3]
        for habitat, truth in matched.items():
            assert result.table["voxels"][habitat - 1] >= 500
            error = result.table["adc"][habitat - 1] / dro.adc[truth - 1] - 1
            assert abs(error) < 0.10, (snr, noise_floor, habitat, error)
        assert result.summary["noise_method"] == "background"
        assert result.summary["noise_sigma"] == pytest.approx(dro.sigma, rel=0.05)


def test_pipeline_labels_exclusions_and_boundary():
    dro = make_dro((400, 400), snr=30.0, seed=1)
    result = run_fit_cluster_fit(dro.signals, dro.b_values, dro.mask, FitClusterFitParameters(n_bootstrap=20))
    labels = result.labels[dro.mask]
    assert set(np.unique(labels)) <= {*range(1, result.k + 1), EXCLUDED_LABEL}
    assert result.summary["boundary_voxels"] > 0  # the default erodes one voxel
    assert (labels == EXCLUDED_LABEL).sum() == result.summary["boundary_voxels"] + result.exclusion.uncertain
    assert np.all(result.labels[~dro.mask] == 0)
