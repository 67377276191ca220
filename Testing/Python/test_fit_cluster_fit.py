"""Fit-Cluster-Fit: voxel fits with uncertainty, noise estimation, clustering, habitat refit, cohort statistics,
the FitClusterFit logic on a real MRML scene, and the ``fcf`` command."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.optimize import curve_fit
from scipy.stats import mannwhitneyu, rice

from virtualbiopsy.diffusion import (
    estimate_noise_sigma,
    fit_adc,
    fit_monoexp,
    rician_mean,
    select_b_values,
)
from virtualbiopsy.errors import Cancelled, EmptyMaskError, GeometryMismatchError, InputError, InvalidValuesError
from virtualbiopsy.habitats import clustering, cohort, dce, figures, refit
from virtualbiopsy.habitats.dro import make_dro, match_habitats
from virtualbiopsy.habitats.pipeline import (
    EXCLUDED_LABEL,
    FitClusterFitParameters,
    noise_estimate,
    run_fit_cluster_fit,
)
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom.signals import dce_enhancement
from virtualbiopsy.phantom.tissues import TISSUES, TUMOUR_RIM
from virtualbiopsy.progress import CancelToken, Task

B = np.array([0.0, 50.0, 400.0, 800.0])


def _rician(clean, sigma, rng):
    return np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape))


# -- voxel fits -------------------------------------------------------------------------------------------


def test_nonlinear_refinement_and_its_standard_error_match_scipy_curve_fit():
    rng = np.random.default_rng(3)
    adc, s0 = rng.uniform(0.5e-3, 2.5e-3, 6), rng.uniform(600, 1400, 6)
    signals = _rician(s0 * np.exp(-B[:, None] * adc), 30.0, rng)
    fit = fit_monoexp(signals, B, nonlinear=True)
    for v in range(6):
        (p_s0, p_adc), cov = curve_fit(lambda b, a, d: a * np.exp(-b * d), B, signals[:, v], p0=[s0[v], adc[v]])
        assert fit.adc[v] == pytest.approx(p_adc, rel=1e-5)
        assert fit.s0[v] == pytest.approx(p_s0, rel=1e-5)
        assert fit.adc_se[v] == pytest.approx(np.sqrt(cov[1, 1]), rel=1e-3)  # same residual-variance covariance


def test_log_linear_standard_error_is_the_weighted_least_squares_one():
    rng = np.random.default_rng(4)
    signals = _rician(900 * np.exp(-B[:, None] * np.array([0.8e-3, 1.6e-3])), 25.0, rng)
    fit = fit_monoexp(signals, B)
    for v in range(2):
        coef, cov = np.polyfit(B, np.log(signals[:, v]), 1, w=signals[:, v], cov=True)  # weights S: var(ln S) = σ²/S²
        assert fit.adc[v] == pytest.approx(-coef[0], rel=1e-6)
        assert fit.adc_se[v] == pytest.approx(np.sqrt(cov[0, 0]), rel=1e-4)
    assert np.all((fit.r2 > 0.95) & (fit.r2 <= 1))


def test_standard_error_with_the_noise_floor_has_its_nominal_coverage():
    """With four b-values the residual variance has 2 degrees of freedom; flooring it at the measured σ²
    gives 95 % intervals that hold the truth about 95 % of the time (the residual alone: ~80 %)."""
    rng = np.random.default_rng(5)
    n = 20000
    adc = rng.uniform(0.5e-3, 2.5e-3, n)
    signals = _rician(1000 * np.exp(-B[:, None] * adc), 40.0, rng)
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
    mean = _rician(np.repeat(clean[:, None], 40000, 1), 100.0, rng).mean(1, keepdims=True)
    plain = fit_monoexp(mean, B)
    corrected = fit_monoexp(mean, B, noise_floor=True, noise_sigma=100.0)
    assert plain.adc[0] < 0.97 * 2.2e-3  # biased low by the floor
    assert corrected.adc[0] == pytest.approx(2.2e-3, rel=0.01)
    with pytest.raises(InputError, match="noise sigma"):
        fit_monoexp(mean, B, noise_floor=True)


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


# -- clustering and refit ------------------------------------------------------------------------------------


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
    signals = _rician(clean, 50.0, rng)
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


# -- cohort statistics --------------------------------------------------------------------------------------


def test_cohort_comparison_side_by_side():
    table = {"group": ["benign"] * 5 + ["malignant"] * 6,
             "habitat_adc_min": [1.4, 1.3, 1.5, 1.2, 1.6, 0.6, 0.7, 0.65, 0.8, 0.75, 0.9],
             "voxel_mean_adc": [1.5, 1.0, 1.6, 1.1, 1.4, 1.2, 0.9, 1.3, 1.05, 1.45, 1.15]}
    out = cohort.compare_groups(table, "group", ("habitat_adc_min", "voxel_mean_adc"))
    reference = mannwhitneyu(table["habitat_adc_min"][:5], table["habitat_adc_min"][5:])
    assert out["p_value"][0] == pytest.approx(reference.pvalue) and out["u_a"][0] == reference.statistic == 30
    assert out["common_language"][0] == 1.0 and out["rank_biserial"][0] == 1.0  # complete separation
    assert out["p_value"][1] > 0.05 and -1 < out["rank_biserial"][1] < 1
    assert "habitat_adc_min" in cohort.format_comparison(out)
    with pytest.raises(InputError, match="3 groups"):
        cohort.compare_groups({"group": ["a", "b", "c"], "voxel_mean_adc": [1, 2, 3]}, measures=("voxel_mean_adc",))


# -- logic on MRML nodes -----------------------------------------------------------------------------------


@pytest.fixture
def dro_scene(context):
    dro = make_dro((600, 600), adcs=(0.7e-3, 2.0e-3), s0s=(900, 1300), snr=25.0, seed=4)
    geometry = Geometry.from_spacing(dro.labels.shape, (2.0, 2.0, 4.0))
    volumes = [arrays.add_volume_from_array(context, frame.astype(np.float32), geometry, f"b{b:g}")
               for frame, b in zip(dro.signals, dro.b_values)]
    tumour = arrays.add_segmentation_from_labels(context, dro.mask.astype(np.uint8), geometry,
                                                 {1: ("tumour", (1, 0, 0))}, "tumour", volumes[0])
    return dro, volumes, tumour, geometry


def test_logic_adds_maps_habitat_segments_and_table(context, dro_scene):
    dro, volumes, tumour, geometry = dro_scene
    before = context.node_ids()
    outputs = FitClusterFitLogic(context).fit_cluster_fit(
        volumes, list(dro.b_values), tumour, parameters=FitClusterFitParameters(erode_voxels=0, n_bootstrap=50))
    assert context.node_ids() > before
    table = arrays.table_columns(outputs.table)
    assert table["habitat"] == ["habitat 1", "habitat 2"]
    np.testing.assert_allclose(table["adc"], dro.adc, rtol=0.05)
    assert sum(table["voxels"]) + outputs.summary["excluded_uncertain"] == 1200
    segmentation = outputs.habitats.GetSegmentation()
    assert segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("habitat 1")).GetColor() != \
        segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("habitat 2")).GetColor()
    se = arrays.array_from_volume(outputs.adc_se)
    assert np.all(se[dro.mask] > 0) and np.all(se[~dro.mask] == 0)
    assert outputs.adc.GetAttribute("VirtualBiopsy.Units") == "mm2/s"
    voxel = FitClusterFitLogic(context).voxel_fit(volumes, list(dro.b_values), tumour)
    assert voxel.noise_sigma == pytest.approx(dro.sigma, rel=0.05)
    assert np.all(arrays.array_from_volume(voxel.r2)[~dro.mask] == 0)


def test_bad_inputs_are_named_and_leave_the_scene_unchanged(context, dro_scene):
    dro, volumes, tumour, geometry = dro_scene
    logic = FitClusterFitLogic(context)
    b = list(dro.b_values)
    cases = [
        (InputError, lambda: logic.fit_cluster_fit(volumes, b[:3], tumour), "3 b-values"),
        (InputError, lambda: logic.fit_cluster_fit(volumes, [0, 0, 0, 0], tumour), "two distinct"),
        (InputError, lambda: logic.fit_cluster_fit(volumes, b, None), "tumour segment"),
    ]
    negative = arrays.add_volume_from_array(context, -np.abs(dro.signals[3]), geometry, "phase")
    cases.append((InvalidValuesError, lambda: logic.fit_cluster_fit(volumes[:3] + [negative], b, tumour), "negative"))
    blank = arrays.add_volume_from_array(context, np.zeros(geometry.shape, np.float32), geometry, "blank b800")
    cases.append((InvalidValuesError, lambda: logic.fit_cluster_fit(volumes[:3] + [blank], b, tumour),
                  r"zero signal in DWI volume 4 \(b = 800"))
    cases.append((InvalidValuesError, lambda: logic.fit_cluster_fit(volumes, b[::-1], tumour), "rises with b"))
    cases.append((InvalidValuesError, lambda: logic.voxel_fit(volumes, b[::-1], tumour), "order of the DWI"))
    empty = arrays.add_volume_from_array(context, np.zeros(geometry.shape, np.uint8), geometry, "empty",
                                         "vtkMRMLLabelMapVolumeNode")
    cases.append((EmptyMaskError, lambda: logic.fit_cluster_fit(volumes, b, empty), "no non-zero"))
    other = Geometry.from_spacing(geometry.shape, (2.0, 2.0, 5.0))
    elsewhere = arrays.add_volume_from_array(context, dro.mask.astype(np.uint8), other, "other grid",
                                             "vtkMRMLLabelMapVolumeNode")
    cases.append((GeometryMismatchError, lambda: logic.fit_cluster_fit(volumes, b, elsewhere), "voxel grid"))
    frames = [arrays.add_volume_from_array(context, np.full(geometry.shape, 100.0 + i, np.float32), geometry,
                                           f"t{i}") for i in range(5)]
    cases.append((InputError, lambda: logic.dce_metrics(frames, [0, 5, 10, 10, 20], tumour), "increase strictly"))
    cases.append((InputError, lambda: logic.dce_metrics(frames, [0, 5, 10], tumour), "3 acquisition times"))
    cases.append((InputError, lambda: logic.fit_cluster_fit(volumes, b, tumour, parameters=FitClusterFitParameters(
        features=("adc", "iauc60"))), "needs a DCE"))
    for error_type, action, words in cases:
        before = context.node_ids()
        with pytest.raises(error_type, match=words):
            action()
        assert context.node_ids() == before, words


def test_cancel_leaves_the_scene_unchanged(context, dro_scene):
    dro, volumes, tumour, _ = dro_scene
    token = CancelToken()
    before = context.node_ids()

    def cancel_while_clustering(fraction, message):
        if "Clustering" in message:
            token.cancel()

    with pytest.raises(Cancelled):
        FitClusterFitLogic(context).fit_cluster_fit(volumes, list(dro.b_values), tumour,
                                                    progress=Task(cancel_while_clustering, token))
    assert context.node_ids() == before


# -- figures and the command line ----------------------------------------------------------------------------


def test_figures_are_written(tmp_path):
    dro = make_dro((300, 300), adcs=(0.7e-3, 2.0e-3), snr=30.0)
    result = run_fit_cluster_fit(dro.signals, dro.b_values, dro.mask,
                                 FitClusterFitParameters(erode_voxels=0, n_bootstrap=20, noise_floor=True))
    a = figures.signal_vs_b(tmp_path / "fit.png", dro.b_values, result.mean_signals, result.habitat_s0,
                            result.habitat_adc, result.table, result.noise.sigma, True)
    b = figures.habitat_map(tmp_path / "map.png", dro.signals[0], result.labels, result.table)
    assert a.stat().st_size > 10_000 and b.stat().st_size > 5_000


def _cli():
    from virtualbiopsy.cli.main import build_parser

    return build_parser()


def test_fcf_command_writes_the_habitat_table_and_maps(context, dro_scene, tmp_path):
    from virtualbiopsy.mrml import io

    dro, volumes, tumour, geometry = dro_scene
    paths = [io.save_node(v, tmp_path / f"{v.GetName()}.nrrd") for v in volumes]
    labels = arrays.add_volume_from_array(context, dro.mask.astype(np.uint8) * 3, geometry, "labels",
                                          "vtkMRMLLabelMapVolumeNode")
    mask = io.save_node(labels, tmp_path / "mask.nrrd")
    out = tmp_path / "out"
    args = _cli().parse_args(["fcf", "--dwi", *map(str, paths), "--bvalues", "0,50,400,800", "--mask", str(mask),
                              "--label", "3", "--out", str(out), "--bootstrap", "50", "--noise-floor"])
    assert args.run(args) == 0
    with open(out / "habitats.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert {"habitat", "voxels", "volume_ml", "adc", "adc_ci_low", "adc_ci_high", "voxel_mean_adc"} <= set(rows[0])
    assert len(rows) == 2 and float(rows[0]["adc"]) == pytest.approx(0.7e-3, rel=0.05)
    for name in ("adc.nrrd", "adc_se.nrrd", "habitats.seg.nrrd", "signal_vs_b.png", "summary.json"):
        assert (out / name).is_file(), name
    args = _cli().parse_args(["fcf", "--dwi", str(paths[0]), "--bvalues", "0", "--mask", str(mask), "--out", str(out)])
    with pytest.raises(InputError, match="single 3D volume"):
        args.run(args)
    _fcf_cohort_from_the_case_folders(out, tmp_path)


def _fcf_cohort_from_the_case_folders(case_out, tmp_path):
    """``fcf-cohort --cases``: real fcf summaries, three cases per group, the second group with its ADCs
    raised 30 % (the summary is the fcf output format; only the values are scaled)."""
    import json
    import shutil

    summary = json.loads((case_out / "summary.json").read_text())
    cases = []
    for index in range(6):
        folder = tmp_path / "cohort" / f"NB{index:02d}"
        shutil.copytree(case_out, folder)
        scaled = dict(summary)
        factor = (1.0 + 0.01 * index) * (1.3 if index >= 3 else 1.0)
        for key in ("habitat_adc_min", "voxel_mean_adc_tumour"):
            scaled[key] = summary[key] * factor
        (folder / "summary.json").write_text(json.dumps(scaled))
        cases.append(str(folder))
    groups = tmp_path / "groups.csv"
    groups.write_text("case_id,diagnosis\n" + "".join(f"NB{i:02d},{'benign' if i >= 3 else 'malignant'}\n"
                                                       for i in range(6)))
    args = _cli().parse_args(["fcf-cohort", "--cases", *cases, "--groups", str(groups), "--group", "diagnosis",
                              "--out", str(tmp_path / "cohort_out")])
    assert args.run(args) == 0
    with open(tmp_path / "cohort_out" / "comparison.csv") as stream:
        rows = {row["measure"]: row for row in csv.DictReader(stream)}
    assert set(rows) == {"habitat_adc_min", "voxel_mean_adc"}
    for row in rows.values():  # every benign value above every malignant one: U = n_a n_b, exact p = 0.1
        assert row["group_a"] == "benign" and float(row["common_language"]) == 1.0
        assert float(row["p_value"]) == pytest.approx(0.1)
    args = _cli().parse_args(["fcf-cohort", "--cases", *cases, "--out", str(tmp_path / "x")])
    with pytest.raises(InputError, match="--groups"):
        args.run(args)


# -- the self-check and the demo step on the sample study ------------------------------------------------------


def test_demo_step_compares_habitats_with_the_truth(context, tmp_path):
    from virtualbiopsy.demo_steps.fit_cluster_fit import demo_step
    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import study_to_scene

    study = generate_study(2, t2_spacing=(3.0, 3.0, 4.0))
    result = demo_step(context, study, study_to_scene(context, study), tmp_path)
    truth = result.extra["truth"]
    pure = [i for i, share in enumerate(truth["tissue_share"]) if share >= 0.8]
    assert truth["tissue"][0] == "tumour rim" and 0 in pure
    assert all(abs(truth["adc_error_percent"][i]) < 10 for i in pure), truth
    assert all(path.is_file() for path in [*result.tables.values(), *result.figures.values()])
    assert "habitat 1" in result.text


def test_a_4d_nifti_or_list_axis_nrrd_is_split_into_volumes(context, tmp_path):
    import SimpleITK as sitk

    from virtualbiopsy.cli.fcf import load_series, read_values
    from virtualbiopsy.diffusion import parse_b_values

    frames = np.arange(4 * 3 * 4 * 5, dtype=np.int16).reshape(4, 3, 4, 5)
    four_d = sitk.JoinSeries([sitk.GetImageFromArray(f) for f in frames])
    sitk.WriteImage(four_d, str(tmp_path / "dwi.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(np.moveaxis(frames, 0, -1), isVector=True), str(tmp_path / "list.nrrd"))
    for name in ("dwi.nii.gz", "list.nrrd"):
        volumes, index = load_series(context, [tmp_path / name], "DWI")
        assert index is None and len(volumes) == 4
        np.testing.assert_array_equal(arrays.array_from_volume(volumes[2]), frames[2])
    (tmp_path / "dwi.bval").write_text("0 50\n400 800\n")
    assert read_values(str(tmp_path / "dwi.bval"), parse_b_values) == [0.0, 50.0, 400.0, 800.0]
