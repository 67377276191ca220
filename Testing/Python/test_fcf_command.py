"""The ``fcf`` and ``fcf-cohort`` commands (habitat table, maps, group comparison), the cohort statistics
behind ``fcf-cohort``, the habitat figures they write, and reading 4D DWI series."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from virtualbiopsy.errors import InputError
from virtualbiopsy.habitats import cohort, figures
from virtualbiopsy.habitats.dro import make_dro
from virtualbiopsy.habitats.pipeline import (
    FitClusterFitParameters,
    run_fit_cluster_fit,
)
from virtualbiopsy.mrml import arrays


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


def test_signal_vs_b_and_habitat_map_figures_are_written(tmp_path):
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
