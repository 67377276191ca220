"""Fit-Cluster-Fit voxel fits: the mono-exponential DWI fit and its standard errors against SciPy and
weighted least squares, b-value subsets and unfittable voxels, and the DCE arrival search cap."""

from __future__ import annotations

import numpy as np
import pytest
from dwi_signals import B, rician
from scipy.optimize import curve_fit

from virtualbiopsy.diffusion import (
    fit_adc,
    fit_monoexp,
    select_b_values,
)
from virtualbiopsy.errors import InputError
from virtualbiopsy.habitats import dce, refit
from virtualbiopsy.phantom.signals import dce_enhancement
from virtualbiopsy.phantom.tissues import TISSUES, TUMOUR_RIM


def test_nonlinear_refinement_and_its_standard_error_match_scipy_curve_fit():
    rng = np.random.default_rng(3)
    adc, s0 = rng.uniform(0.5e-3, 2.5e-3, 6), rng.uniform(600, 1400, 6)
    signals = rician(s0 * np.exp(-B[:, None] * adc), 30.0, rng)
    fit = fit_monoexp(signals, B, nonlinear=True)
    for v in range(6):
        (p_s0, p_adc), cov = curve_fit(lambda b, a, d: a * np.exp(-b * d), B, signals[:, v], p0=[s0[v], adc[v]])
        assert fit.adc[v] == pytest.approx(p_adc, rel=1e-5)
        assert fit.s0[v] == pytest.approx(p_s0, rel=1e-5)
        assert fit.adc_se[v] == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-3)  # same residual-variance covariance


def test_log_linear_standard_error_is_the_weighted_least_squares_one():
    rng = np.random.default_rng(4)
    signals = rician(900 * np.exp(-B[:, None] * np.array([0.8e-3, 1.6e-3])), 25.0, rng)
    fit = fit_monoexp(signals, B)
    for v in range(2):
        coef, cov = np.polyfit(B, np.log(signals[:, v]), 1, w=signals[:, v], cov=True)  # weights S: var(ln S) = σ²/S²
        assert fit.adc[v] == pytest.approx(-coef[0], rel=1e-6)
        assert fit.adc_se[v] == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-4)
    assert np.all((fit.r2 > 0.95) & (fit.r2 <= 1))


def test_b_value_subset_and_unfittable_voxels():
    assert select_b_values(B, min_b=200).tolist() == [2, 3]
    with pytest.raises(InputError, match="distinct b-value"):
        select_b_values(B, min_b=500)
    signals = np.array([[1000.0, 0.0], [900.0, 0.0], [500.0, 0.0], [250.0, 5.0]])
    fit = fit_monoexp(signals, B, min_b=50)
    assert fit.b_values.tolist() == [50.0, 400.0, 800.0] and fit.valid.tolist() == [True, False]
    assert fit.adc[1] == 0 and np.isinf(fit.adc_se[1])
    adc, s0 = fit_adc(signals, B)  # the original API is unchanged
    assert adc[1] == 0.0 and s0[0] > 0


def test_voxel_arrival_at_the_search_cap_is_invalid_not_clamped():
    times = np.arange(40) * 5.0  # the series ends at 195 s: a 60 s window caps the arrival search at 135 s
    rim = TISSUES[TUMOUR_RIM]
    on_time = rim.s_pre * (1 + dce_enhancement(times, 30.0, rim.amplitude, rim.tau_in, rim.tau_out))
    too_late = rim.s_pre * (1 + dce_enhancement(times, 160.0, rim.amplitude, rim.tau_in, rim.tau_out))
    signals = np.empty((40, 2, 4, 4))
    signals[:, 0], signals[:, 1] = on_time[:, None, None], too_late[:, None, None]
    mask = np.ones((2, 4, 4), bool)
    maps = dce.dce_maps(signals, times, mask, arrival="voxel")
    late = np.zeros((2, 4, 4), bool)
    late[1] = True
    assert np.array_equal(maps.capped, late) and np.array_equal(maps.valid, ~late)
    for values in (maps.iauc, maps.time_to_peak_s, maps.wash_in_per_s, maps.peak_enhancement, maps.arrival_s):
        assert np.all(np.isnan(values[late])) and np.all(np.isfinite(values[~late]))
    assert np.all(np.abs(maps.arrival_s[~late] - 30.0) < 0.75)
    assert maps.iauc[~late] == pytest.approx(rim.iauc60, rel=0.03)
    # a habitat holding both kinds averages only the voxels that have a value
    table = refit.refit_dce_habitats(signals[:, mask], times, np.ones(mask.sum(), int), 1, 30.0, maps.iauc[mask],
                                     n_bootstrap=0)["table"]
    assert table["voxel_mean_iauc60"][0] == pytest.approx(float(np.mean(maps.iauc[~late])))
    # the region's arrival and a given one are never capped
    region = dce.dce_maps(signals, times, mask)
    assert not region.capped.any() and region.valid.all() and np.all(np.isfinite(region.iauc))
    with pytest.raises(InputError, match="not 60 s of frames"):  # a region that is all too late is refused
        dce.dce_maps(signals[:, 1:], times, mask[1:], arrival="voxel")
