"""The Rician noise floor in the DWI fit (expected magnitude, coverage of the standard error) and the noise
level estimated from air, from residuals and from the fitted volumes only."""

from __future__ import annotations

import numpy as np
import pytest
from dwi_signals import B, rician
from scipy.stats import rice

from virtualbiopsy.diffusion import (
    estimate_noise_sigma,
    fit_monoexp,
    rician_mean,
)
from virtualbiopsy.errors import InputError, InvalidValuesError
from virtualbiopsy.habitats.dro import make_dro
from virtualbiopsy.habitats.pipeline import (
    FitClusterFitParameters,
    noise_estimate,
)


def test_standard_error_with_the_noise_floor_has_its_nominal_coverage():
    """With four b-values the residual variance has 2 degrees of freedom; flooring it at the measured σ²
    gives 95 % intervals that hold the truth about 95 % of the time (the residual alone: ~80 %)."""
    rng = np.random.default_rng(5)
    n = 20000
    adc = rng.uniform(0.5e-3, 2.5e-3, n)
    signals = rician(1000 * np.exp(-B[:, None] * adc), 40.0, rng)
    floored = fit_monoexp(signals, B, noise_sigma=40.0)
    residual = fit_monoexp(signals, B)
    coverage = np.mean(np.abs(floored.adc - adc) <= 1.96 * floored.adc_se)
    assert 0.93 < coverage < 0.98, coverage
    assert np.mean(np.abs(residual.adc - adc) <= 1.96 * residual.adc_se) < 0.88


def test_rician_expected_magnitude_and_the_noise_floor_fit():
    a = np.array([0.0, 10.0, 50.0, 300.0])
    np.testing.assert_allclose(rician_mean(a, 20.0), [rice.mean(x / 20.0, scale=20.0) for x in a], rtol=1e-9)
    # a mean of many Rician voxels at SNR 10 decays too slowly; the Rician model recovers the ADC
    rng = np.random.default_rng(6)
    clean = 1000 * np.exp(-B * 2.2e-3)
    mean = rician(np.repeat(clean[:, None], 40000, 1), 100.0, rng).mean(1, keepdims=True)
    plain = fit_monoexp(mean, B)
    corrected = fit_monoexp(mean, B, noise_floor=True, noise_sigma=100.0)
    assert plain.adc[0] < 0.97 * 2.2e-3  # biased low by the floor
    assert corrected.adc[0] == pytest.approx(2.2e-3, rel=0.01)
    with pytest.raises(InputError, match="noise sigma"):
        fit_monoexp(mean, B, noise_floor=True)


def test_noise_is_estimated_from_air_and_from_residuals():
    dro = make_dro((3000, 3000), snr=20.0, seed=2)  # sigma = 50
    background = estimate_noise_sigma(dro.signals, dro.b_values, dro.mask, "background")
    assert background.method == "background" and background.sigma == pytest.approx(50.0, rel=0.03)
    residual = estimate_noise_sigma(dro.signals, dro.b_values, dro.mask, "residual")
    assert residual.sigma == pytest.approx(50.0, rel=0.12)
    zeroed = dro.signals * dro.mask  # a scanner that zeroes the background
    assert estimate_noise_sigma(zeroed, dro.b_values, dro.mask).method == "residual"
    with pytest.raises(InvalidValuesError, match="background"):
        estimate_noise_sigma(zeroed, dro.b_values, dro.mask, "background")


def test_noise_is_estimated_from_the_fitted_volumes_only():
    dro = make_dro((3000, 3000), snr=20.0, seed=2)  # sigma = 50
    blank = np.zeros((1, *dro.signals.shape[1:]), dro.signals.dtype)  # a blank b = 1000 volume, left out
    signals, b = np.concatenate([dro.signals, blank]), np.append(dro.b_values, 1000.0)
    for method in ("background", "residual"):
        alone = estimate_noise_sigma(dro.signals, dro.b_values, dro.mask, method)
        assert estimate_noise_sigma(signals, b, dro.mask, method, max_b=800).sigma == pytest.approx(alone.sigma)
    # with the blank volume counted, a quarter of the air is 0 and the background median drops
    assert estimate_noise_sigma(signals, b, dro.mask, "background").sigma < 0.9 * dro.sigma
    # the pipeline passes its b-value range on
    fitted = noise_estimate(signals, b, dro.mask, FitClusterFitParameters(max_b=800))
    assert fitted.method == "background" and fitted.sigma == pytest.approx(50.0, rel=0.03)
