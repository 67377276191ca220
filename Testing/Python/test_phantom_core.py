"""Numpy-level tests of the synthetic sample study (virtualbiopsy.phantom); no Slicer needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, ndimage

from virtualbiopsy.errors import InputError
from virtualbiopsy.phantom import (
    BACKGROUND,
    LEFT_KIDNEY,
    LIVER,
    N_LABELS,
    RIGHT_KIDNEY,
    TISSUES,
    TUMOUR_CORE,
    TUMOUR_LABELS,
    TUMOUR_RIM,
    Anatomy,
    Grid,
    dce_enhancement,
    generate_study,
)
from virtualbiopsy.phantom.signals import dce_weights

CLEAN = {"snr_t2": 1e6, "snr_dwi": 1e6, "snr_dce": 1e6}
SIX = ndimage.generate_binary_structure(3, 1)


def interior(labels: np.ndarray, label: int, iterations: int = 1) -> np.ndarray:
    """Voxels of ``label`` whose whole 3x3x3 neighbourhood (iterated) has the same label."""
    return ndimage.binary_erosion(labels == label, np.ones((3, 3, 3), bool), iterations=iterations)


# -- reproducibility ------------------------------------------------------------------------------
def test_same_seed_gives_identical_arrays(small_study):
    study = small_study(0)
    again = generate_study(0)
    names = ("t2w", "t2_labels", "bias_field", "dwi", "dce", "dwi_labels", "adc_true", "s0_true",
             "iauc60_true")
    for name in names:
        first, second = getattr(study, name), getattr(again, name)
        assert first.dtype == second.dtype and np.array_equal(first, second), name
    assert study.t0 == again.t0
    assert json.dumps(study.truth()) == json.dumps(again.truth())


def test_different_seeds_give_different_tumours(small_study):
    study = small_study(0)
    other = generate_study(1)
    tumour0 = np.isin(study.t2_labels, TUMOUR_LABELS)
    tumour1 = np.isin(other.t2_labels, TUMOUR_LABELS)
    assert np.count_nonzero(tumour0 ^ tumour1) > 0.2 * np.count_nonzero(tumour0)
    assert study.truth()["tumour_volume_ml"] != pytest.approx(other.truth()["tumour_volume_ml"], rel=0.02)
    assert not np.array_equal(study.t2w, other.t2w)
    radii = {Anatomy.random(np.random.default_rng(seed)).tumour_radius_mm for seed in range(20)}
    assert len(radii) == 20 and min(radii) >= 22.0 and max(radii) <= 38.0


# -- geometry ---------------------------------------------------------------------------------
def test_grids_follow_field_of_view_and_are_centred(small_study):
    study = small_study(0)
    assert study.t2_grid.shape == (32, 128, 160)
    assert study.dwi_grid.shape == (32, 64, 80)
    assert study.t2w.shape == study.t2_labels.shape == study.bias_field.shape == (32, 128, 160)
    assert study.dwi.shape == (4, 32, 64, 80) and study.dce.shape == (40, 32, 64, 80)
    assert study.t2w.dtype == study.dwi.dtype == study.dce.dtype == np.int16
    for grid in (study.t2_grid, study.dwi_grid):
        np.testing.assert_allclose(grid.centre, (0.0, 0.0, 0.0), atol=1e-9)
        counts = np.array(grid.shape[::-1])
        np.testing.assert_allclose(grid.origin, -(counts - 1) / 2 * np.array(grid.spacing))
        x, y, z = grid.physical_points()
        assert x.shape == grid.shape
        np.testing.assert_allclose([x[0, 0, 0], y[0, 0, 0], z[0, 0, 0]], grid.origin, atol=1e-4)
        assert x[0, 0, 1] - x[0, 0, 0] == pytest.approx(grid.spacing[0])  # i runs along +x (Right)
        assert z[1, 0, 0] - z[0, 0, 0] == pytest.approx(grid.spacing[2])  # k runs along +z


def test_rotated_grid_points_follow_ijk_to_ras():
    c, s = math.cos(0.3), math.sin(0.3)
    directions = ((c, -s, 0.0), (s, c, 0.0), (0.0, 0.0, 1.0))
    grid = Grid.centred((5, 6, 7), (1.0, 2.0, 3.0), centre=(10.0, -5.0, 2.0), directions=directions)
    np.testing.assert_allclose(grid.centre, (10.0, -5.0, 2.0), atol=1e-9)
    x, y, z = grid.physical_points(dtype=np.float64)
    expected = grid.ijk_to_ras() @ np.array([6, 5, 4, 1.0])  # voxel (i, j, k) = (6, 5, 4)
    np.testing.assert_allclose([x[4, 5, 6], y[4, 5, 6], z[4, 5, 6]], expected[:3], atol=1e-9)
    with pytest.raises(InputError):
        Grid((4, 4, 4), (1.0, 0.0, 1.0))


def test_fractions_sum_to_one_and_agree_with_labels():
    anatomy = Anatomy.random(np.random.default_rng(3))
    grid = Grid.from_field_of_view((240.0, 192.0, 128.0), (4.0, 4.0, 4.0))
    fractions = anatomy.tissue_fractions(grid, supersample=3)
    assert fractions.shape == (N_LABELS,) + grid.shape and fractions.dtype == np.float32
    np.testing.assert_allclose(fractions.sum(axis=0), 1.0, atol=1e-5)
    labels = anatomy.label_grid(grid)
    pure = fractions.max(axis=0) == 1.0
    assert np.mean(pure) > 0.8
    assert np.array_equal(np.argmax(fractions, axis=0)[pure], labels[pure])
    majority = anatomy.label_grid(grid, supersample=3)
    assert majority.dtype == np.uint8 and np.array_equal(majority, np.argmax(fractions, axis=0))


# -- anatomy ----------------------------------------------------------------------------------
def test_every_label_present_and_tumour_on_patient_left(small_study):
    study = small_study(0)
    assert set(np.unique(study.t2_labels)) == set(range(N_LABELS))
    assert set(np.unique(study.dwi_labels)) == set(range(N_LABELS))
    x, _, _ = study.t2_grid.physical_points()
    assert x[np.isin(study.t2_labels, TUMOUR_LABELS)].mean() < -10.0  # RAS: left = negative x
    assert x[study.t2_labels == LEFT_KIDNEY].mean() < -20.0
    assert x[study.t2_labels == RIGHT_KIDNEY].mean() > 20.0
    assert x[study.t2_labels == LIVER].mean() > 20.0
    assert study.truth()["tumour_centroid_ras_mm"][0] < 0


@pytest.mark.parametrize("seed", range(8))
def test_core_is_surrounded_by_rim(seed):
    grid = Grid.from_field_of_view((240.0, 192.0, 128.0), (1.5, 1.5, 4.0))
    labels = Anatomy.random(np.random.default_rng(seed)).label_grid(grid)
    core = labels == TUMOUR_CORE
    assert core.any()
    touching = ndimage.binary_dilation(core, SIX) & ~np.isin(labels, TUMOUR_LABELS)
    assert not touching.any()


# -- signal values ------------------------------------------------------------------------------
@pytest.mark.parametrize("which, tolerance", [("clean", 0.03), ("study", 0.04)])
def test_t2w_interior_means_match_table(which, tolerance, small_study):
    data = small_study(0, **{"clean": CLEAN, "study": {}}[which])
    corrected = data.t2w / data.bias_field
    for tissue in TISSUES[1:]:
        mask = interior(data.t2_labels, tissue.label)
        assert np.count_nonzero(mask) > 20, tissue.name
        assert corrected[mask].mean() == pytest.approx(tissue.t2w, rel=tolerance), tissue.name


def test_log_linear_adc_matches_truth(small_study):
    clean = small_study(0, **CLEAN)
    b = np.asarray(clean.b_values)
    log_signal = np.log(np.maximum(clean.dwi.astype(np.float64), 1.0))
    for tissue in TISSUES[1:]:
        mask = interior(clean.dwi_labels, tissue.label)
        assert np.count_nonzero(mask) > 5, tissue.name
        y = log_signal[:, mask]
        slope = np.polyfit(b, y, 1)[0]
        assert -slope.mean() == pytest.approx(tissue.adc, rel=0.02), tissue.name
        assert clean.dwi[0][mask].mean() == pytest.approx(tissue.s0, rel=0.01), tissue.name
        assert np.all(clean.adc_true[mask] == np.float32(tissue.adc))


def test_iauc60_truth_equals_numerical_integral():
    for tissue in TISSUES:
        curve = lambda t, x=tissue: dce_enhancement(t, 0.0, x.amplitude, x.tau_in, x.tau_out)  # noqa: E731
        numeric, _ = integrate.quad(curve, 0.0, 60.0, epsabs=1e-12, epsrel=1e-10)
        assert tissue.iauc60 == pytest.approx(numeric, rel=1e-6, abs=1e-12), tissue.name
        if tissue.s_pre:  # the same from the signal model used for the images, at an arbitrary t0
            times = np.linspace(27.0, 27.0 + 60.0, 60001)
            enhancement = dce_weights(times, 27.0)[:, tissue.label] / tissue.s_pre - 1.0
            simpson = integrate.simpson(enhancement, x=times)
            assert tissue.iauc60 == pytest.approx(simpson, rel=1e-6), tissue.name


def test_time_to_peak_is_the_curve_maximum_and_sensible():
    times = np.linspace(0.0, 4000.0, 400001)
    for tissue in TISSUES[1:]:
        curve = dce_enhancement(times, 0.0, tissue.amplitude, tissue.tau_in, tissue.tau_out)
        assert tissue.time_to_peak == pytest.approx(times[np.argmax(curve)], abs=0.02), tissue.name
        assert tissue.peak_enhancement == pytest.approx(curve.max(), rel=1e-6)
    assert TISSUES[BACKGROUND].time_to_peak is None
    ttp = {t.label: t.time_to_peak for t in TISSUES[1:]}
    assert ttp[LEFT_KIDNEY] < ttp[TUMOUR_RIM] < ttp[LIVER]
    assert 20.0 < ttp[TUMOUR_RIM] < 60.0 and ttp[TUMOUR_CORE] > 60.0
    assert TISSUES[TUMOUR_RIM].iauc60 > 10 * TISSUES[TUMOUR_CORE].iauc60


def test_dce_images_follow_the_model(small_study):
    clean = small_study(0, **CLEAN)
    times = np.asarray(clean.dce_times)
    for tissue in (TISSUES[LIVER], TISSUES[TUMOUR_RIM], TISSUES[LEFT_KIDNEY]):
        mask = interior(clean.dwi_labels, tissue.label)
        measured = clean.dce[:, mask].mean(axis=1)
        expected = tissue.s_pre * (1 + dce_enhancement(times, clean.t0, tissue.amplitude, tissue.tau_in,
                                                       tissue.tau_out))
        np.testing.assert_allclose(measured, expected, rtol=0.01, atol=0.6)
    assert 28.0 <= clean.t0 <= 32.0
    rim = clean.iauc60_true[clean.dwi_labels == TUMOUR_RIM]
    assert np.all(rim == np.float32(TISSUES[TUMOUR_RIM].iauc60))


# -- noise --------------------------------------------------------------------------------------
def test_background_noise_is_rician(small_study):
    study = small_study(0)
    for name, image, labels in (
        ("t2w", study.t2w[None], study.t2_labels),
        ("dwi", study.dwi, study.dwi_labels),
        ("dce", study.dce, study.dwi_labels),
    ):
        air = ndimage.binary_erosion(labels == BACKGROUND, SIX, iterations=2)
        assert np.count_nonzero(air) > 1000
        expected = study.noise_sigma[name] * math.sqrt(math.pi / 2)
        assert image[:, air].mean() == pytest.approx(expected, rel=0.10), name


def test_bias_field_is_smooth_and_about_twenty_percent(small_study):
    study = small_study(0)
    body = study.t2_labels > 0
    field = study.bias_field[body]
    assert 0.65 < field.min() < 0.95 and 1.05 < field.max() < 1.4
    step = np.abs(np.diff(study.bias_field, axis=2)).max()
    assert step < 0.01


# -- truth and API ------------------------------------------------------------------------------
def test_truth_is_json_and_consistent(small_study):
    study = small_study(0)
    truth = json.loads(json.dumps(study.truth(), allow_nan=False))
    voxel_ml = np.prod(study.t2_grid.spacing) / 1000
    rim = np.count_nonzero(study.t2_labels == TUMOUR_RIM)
    core = np.count_nonzero(study.t2_labels == TUMOUR_CORE)
    assert truth["rim_volume_ml"] == pytest.approx(rim * voxel_ml)
    assert truth["core_volume_ml"] == pytest.approx(core * voxel_ml)
    assert truth["tumour_volume_ml"] == pytest.approx((rim + core) * voxel_ml)
    assert truth["tumour_volume_partial_volume_ml"] == pytest.approx(truth["tumour_volume_ml"], rel=0.05)
    assert truth["seed"] == 0 and truth["b_values_s_per_mm2"] == [0, 50, 400, 800]
    assert len(truth["dce_times_s"]) == 40 and truth["dce_times_s"][1] == 5.0
    by_name = {t["name"]: t for t in truth["tissues"]}
    assert by_name["tumour rim"]["adc"] == 0.7e-3 and by_name["liver"]["adc"] == 1.1e-3
    assert by_name["tumour rim"]["iauc60"] == pytest.approx(TISSUES[TUMOUR_RIM].iauc60)
    assert np.linalg.norm(np.subtract(truth["tumour_centroid_ras_mm"], truth["tumour_centre_ras_mm"])) < 5


def test_noise_free_study_and_progress_reports():
    seen = []
    small = generate_study(
        2, t2_spacing=(4.0, 4.0, 8.0), dwi_spacing=(8.0, 8.0, 8.0), b_values=(0, 800), dce_times=(0, 40, 80),
        snr_t2=math.inf, snr_dwi=math.inf, snr_dce=math.inf, progress=lambda f, m: seen.append((f, m)),
    )
    assert small.t2_grid.shape == (16, 48, 60) and small.dwi.shape == (2, 16, 24, 30)
    air = ndimage.binary_erosion(small.t2_labels == BACKGROUND, SIX)
    assert air.any() and np.all(small.t2w[air] == 0) and np.all(small.dce[:, small.dwi_labels == 0] >= 0)
    fractions = [f for f, _ in seen]
    assert len(seen) >= 4 and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert json.dumps(small.truth(), allow_nan=False)


@pytest.mark.parametrize("kwargs", [
    {"seed": -1}, {"t2_spacing": (0.0, 1.0, 1.0)}, {"b_values": (-5, 100)}, {"snr_dwi": 0},
    {"dce_times": (0, 10, 5)}, {"supersample": 0},
])
def test_invalid_inputs_raise_input_error(kwargs):
    with pytest.raises(InputError):
        generate_study(**kwargs)
