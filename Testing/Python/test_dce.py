"""DCE metrics: bolus arrival, iAUC60 (the phantom's definition), time to peak, wash-in; the logic and ``dce``."""

from __future__ import annotations

import argparse
import csv

import numpy as np
import pytest
from scipy import ndimage

from virtualbiopsy.errors import InputError, InvalidValuesError
from virtualbiopsy.habitats import dce
from virtualbiopsy.logic.fit_cluster_fit import DceParameters, FitClusterFitLogic
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.phantom.signals import dce_enhancement, dce_weights
from virtualbiopsy.phantom.tissues import TISSUES, TUMOUR_CORE, TUMOUR_RIM
from virtualbiopsy.sample_study import study_to_scene

TIMES = np.arange(40) * 5.0  # the phantom's frames


@pytest.mark.parametrize("t0", [27.3, 30.0, 31.9])
def test_arrival_and_iauc60_match_the_phantom_truth_on_its_curves(t0):
    """Noise-free tissue curves sampled every 5 s: arrival within 0.75 s where the wash-in time constant spans
    two frames or more (within 2 s for the kidneys, which rise within about one frame), iAUC60 within 2.5 % of
    the closed form (trapezoidal sampling of the curve and the arrival error), time to peak within one frame."""
    curves = dce_weights(TIMES, t0)[:, 1:]  # every tissue but air
    metrics = dce.curve_metrics(curves, TIMES)
    truth = np.array([t.iauc60 for t in TISSUES[1:]])
    slow = np.array([t.tau_in >= 10.0 for t in TISSUES[1:]])
    error = np.abs(metrics.arrival_s - t0)
    assert np.all(error[slow] < 0.75) and np.all(error < 2.0), metrics.arrival_s - t0
    np.testing.assert_allclose(metrics.iauc, truth, rtol=0.025)
    for index, tissue in enumerate(TISSUES[1:]):
        if t0 + tissue.time_to_peak < TIMES[-1]:  # the peak is inside the series
            assert abs(metrics.time_to_peak_s[index] - tissue.time_to_peak) <= 5.0 + 1.5, tissue.name
    rim = TISSUES[TUMOUR_RIM]
    slope = np.diff(dce_enhancement(TIMES, t0, rim.amplitude, rim.tau_in, rim.tau_out)) / 5.0
    assert metrics.wash_in_per_s[TUMOUR_RIM - 1] == pytest.approx(slope.max())


def test_iauc_is_exact_for_piecewise_linear_curves():
    times = np.array([0.0, 10.0, 20.0, 30.0, 40.0, 80.0, 100.0])
    e = np.array([0.0, 0.0, 1.0, 2.0, 2.0, 0.0, 0.0])[:, None]
    # arrival at 12 s: 0 at 12, rising to 1 at 20 (area 4), 1->2 (15), 2->2 (20), 2 -> 1 at 60 (30), then stop at 72
    value = dce.iauc(e, times, 12.0, window_s=60.0)
    expected = 0.5 * 8 * 1 + 15 + 20 + 0.5 * (2 + 1) * 20 + 0.5 * (1 + 0.4) * 12
    assert value[0] == pytest.approx(expected)
    with pytest.raises(InputError, match="ends at 100 s"):
        dce.iauc(e, times, 50.0, window_s=60.0)


def test_time_checks_and_parsing():
    assert dce.parse_times("3x5") == [0.0, 5.0, 10.0]
    assert dce.parse_times("0, 2.5;5") == [0.0, 2.5, 5.0]
    with pytest.raises(InputError, match="frame 3 is at 5 s"):
        dce.check_times([0, 5, 5, 10], 4)
    with pytest.raises(InputError, match="at least 4 frames"):
        dce.check_times([0, 5, 10], 3)
    with pytest.raises(InputError, match="2 acquisition times"):
        dce.check_times([0, 5], 4)


def test_voxel_maps_are_vectorised_and_refuse_negative_signal():
    rng = np.random.default_rng(0)
    rim = TISSUES[TUMOUR_RIM]
    clean = rim.s_pre * (1 + dce_enhancement(TIMES, 30.0, rim.amplitude, rim.tau_in, rim.tau_out))
    signals = np.abs(clean[:, None, None, None] + rng.normal(0, 8.25, (40, 4, 10, 10)))
    mask = np.ones((4, 10, 10), bool)
    maps = dce.dce_maps(signals, TIMES, mask)
    assert abs(maps.region_arrival_s - 30.0) < 1.5
    assert np.mean(maps.iauc[mask]) == pytest.approx(rim.iauc60, rel=0.03)
    voxel = dce.dce_maps(signals, TIMES, mask, arrival="voxel")
    assert voxel.region_arrival_s is None and np.median(voxel.arrival_s) == pytest.approx(30.0, abs=2.0)
    with pytest.raises(InputError, match="'region', 'voxel' or a time"):
        dce.dce_maps(signals, TIMES, mask, arrival="late")
    # a bolus arriving less than 60 s before the series ends is refused, not moved earlier
    late = rim.s_pre * (1 + dce_enhancement(TIMES, 150.0, rim.amplitude, rim.tau_in, rim.tau_out))
    with pytest.raises(InputError, match=r"about 1[45]\d\.\d s.*ends at 195 s"):
        dce.dce_maps(np.broadcast_to(late[:, None, None, None], signals.shape), TIMES, mask)
    signals[5, 0, 0, 0] = -3.0
    with pytest.raises(InvalidValuesError, match="negative"):
        dce.dce_maps(signals, TIMES, mask)


def test_dce_logic_and_command_recover_arrival_and_iauc_of_the_sample_study(context, tmp_path):
    study = generate_study(5, t2_spacing=(3.0, 3.0, 4.0))
    nodes = study_to_scene(context, study)
    logic = FitClusterFitLogic(context)
    before = context.node_ids()
    outputs = logic.dce_metrics(nodes["dce"], mask=nodes["segmentation"], segments=["tumour rim", "tumour core"],
                                parameters=DceParameters())
    assert context.node_ids() > before
    assert abs(outputs.summary["arrival_s"] - study.t0) < 1.5
    iauc = arrays.array_from_volume(outputs.iauc)
    for label in (TUMOUR_RIM, TUMOUR_CORE):
        interior = ndimage.binary_erosion(study.dwi_labels == label)
        truth = TISSUES[label].iauc60
        assert float(iauc[interior].mean()) == pytest.approx(truth, rel=0.05 if label == TUMOUR_RIM else 0.25)
    table = arrays.table_columns(outputs.table)
    assert table["region"] == ["tumour"] and table["voxels"][0] == np.isin(study.dwi_labels, (6, 7)).sum()

    from virtualbiopsy.cli import dce as dce_cli

    series = io.save_node(nodes["dce"], tmp_path / "dce.seq.nrrd")
    mask = io.save_node(nodes["dwi_labels"], tmp_path / "labels.nrrd")
    parser = argparse.ArgumentParser(prog="virtualbiopsy")
    dce_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dce", "--series", str(series), "--mask", str(mask), "--label", str(TUMOUR_RIM),
                              "--out", str(tmp_path / "out")])
    assert args.run(args) == 0
    with open(tmp_path / "out" / "dce.csv") as stream:
        row = next(csv.DictReader(stream))
    assert float(row["iauc60"]) == pytest.approx(TISSUES[TUMOUR_RIM].iauc60, rel=0.10)  # rim incl. its boundary
    assert (tmp_path / "out" / "iauc60.nrrd").is_file() and (tmp_path / "out" / "curves.png").is_file()
