"""Bad DWI and DCE inputs to ``fcf`` and ``dce`` (and the FitClusterFit logic): b-values, gradient directions,
b-values and times stored in the files, masks. Each case is refused with one line naming the problem and
leaves nothing behind (:mod:`refusals`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from refusals import CliCase, assert_cli_refuses, assert_scene_unchanged_after, write_nrrd

from virtualbiopsy.errors import InputError

B = (0.0, 50.0, 400.0, 800.0)
SHAPE = (4, 12, 12)  # k, j, i


def _signals(b_values=B, seed: int = 0) -> np.ndarray:
    """Magnitude DWI [n_b, k, j, i]: tissue of ADC 1e-3 mm²/s in the middle, noisy air around it."""
    rng = np.random.default_rng(seed)
    tissue = np.zeros(SHAPE)
    tissue[:, 2:10, 2:10] = 1000.0
    clean = tissue[None] * np.exp(-np.asarray(b_values)[:, None, None, None] * 1e-3)
    return np.hypot(clean + rng.normal(0, 20, clean.shape), rng.normal(0, 20, clean.shape)).astype(np.float32)


def _mask(folder: Path, labels: np.ndarray | None = None, spacing=(1.0, 1.0, 1.0), name: str = "mask.nrrd") -> Path:
    if labels is None:
        labels = np.zeros(SHAPE, np.uint8)
        labels[:, 3:9, 3:9] = 1
    return write_nrrd(folder / name, labels.astype(np.uint8), spacing)


def _volumes(folder: Path, b_values=B, signals=None) -> list[Path]:
    signals = _signals(b_values) if signals is None else signals
    return [write_nrrd(folder / f"b{i}.nrrd", frame) for i, frame in enumerate(signals)]


def _sequence(folder: Path, frames: np.ndarray, index_values, label: str, unit: str, name: str) -> Path:
    """A Slicer volume sequence (.seq.nrrd: a list axis with its index values), written by hand."""
    n, k, j, i = frames.shape
    header = (f"NRRD0004\ntype: float\ndimension: 4\nspace: left-posterior-superior\nsizes: {i} {j} {k} {n}\n"
              "space directions: (1,0,0) (0,1,0) (0,0,1) none\nkinds: domain domain domain list\n"
              f'labels: "" "" "" "{label}"\nunits: "" "" "" "{unit}"\nendian: little\nencoding: raw\n'
              "space origin: (0,0,0)\nDataNodeClassName:=vtkMRMLScalarVolumeNode\naxis 3 index type:=numeric\n"
              f"axis 3 index values:={' '.join(f'{v:g}' for v in index_values)}\n\n")
    path = folder / name
    path.write_bytes(header.encode() + np.ascontiguousarray(frames, "<f4").tobytes())
    return path


def _dwi_sequence(folder: Path) -> Path:
    return _sequence(folder, _signals(), B, "b-value", "s/mm2", "dwi.seq.nrrd")


def _dce_frames(n: int = 8) -> np.ndarray:
    curve = 100.0 * (1.0 + np.clip((np.arange(n) - 2) / 3.0, 0, 1))
    frames = np.full((n,) + SHAPE, 10.0, np.float32)
    frames[:, :, 2:10, 2:10] = curve[:, None, None, None]
    return frames


def _nifti(folder: Path, b_values=B, bvecs: np.ndarray | None = None) -> Path:
    import nibabel as nib

    path = folder / "dwi.nii.gz"
    frames = np.transpose(_signals(b_values), (3, 2, 1, 0)).copy()  # [b, k, j, i] -> NIfTI's [i, j, k, b]
    nib.save(nib.Nifti1Image(frames, np.diag([-1, -1, 1, 1])), path)
    (folder / "dwi.bval").write_text(" ".join(f"{v:g}" for v in b_values) + "\n")
    if bvecs is not None:
        np.savetxt(folder / "dwi.bvec", bvecs.T)
    return path


def _nifti_mask(folder: Path) -> Path:
    import nibabel as nib

    labels = np.zeros(SHAPE, np.uint8)
    labels[:, 3:9, 3:9] = 1
    path = folder / "mask.nii.gz"
    nib.save(nib.Nifti1Image(labels.T.copy(), np.diag([-1, -1, 1, 1])), path)
    return path


def _dwmri_nrrd(folder: Path) -> Path:
    """A NRRD DWI (Slicer's format): a vector axis, DWMRI_b-value and scaled DWMRI_gradient_NNNN."""
    import SimpleITK as sitk

    b = np.array([0.0, 1000.0, 1000.0, 1000.0])
    image = sitk.GetImageFromArray(np.moveaxis(_signals(b), 0, -1), isVector=True)
    image.SetMetaData("modality", "DWMRI")
    image.SetMetaData("DWMRI_b-value", "1000")
    for index, g in enumerate(([0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1])):
        image.SetMetaData(f"DWMRI_gradient_{index:04d}", " ".join(str(v) for v in g))
    path = folder / "dwi.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def fcf(folder: Path, dwi, *options) -> list:
    dwi = dwi if isinstance(dwi, list) else [dwi]
    options = list(options)
    if "--mask" not in options:
        options += ["--mask", _mask(folder)]
    return ["fcf", "--dwi", *dwi, *options, "--out", folder / "out", "--bootstrap", "10"]


def dce(folder: Path, series, *options) -> list:
    series = series if isinstance(series, list) else [series]
    return ["dce", "--series", *series, "--mask", _mask(folder), *options, "--out", folder / "out"]


def _file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


PHASE_LIKE = np.array([1, 1, 1, -1])[:, None, None, None]  # the last volume negative, like a phase image
UNIT_BVECS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)

CASES = [
    # b-value lists
    CliCase("bvalues_count_mismatch", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400"),
            ("--b-values", "3 b-values", "4 DWI volumes")),
    CliCase("one_distinct_b_value", lambda w: fcf(w, _volumes(w, (0, 0), _signals()[:2]), "--bvalues", "0,0"),
            ("two distinct",)),
    CliCase("negative_b_value", lambda w: fcf(w, _volumes(w), "--bvalues", "0,-50,400,800"), (">= 0",)),
    CliCase("b_in_ms_per_um2", lambda w: fcf(w, _volumes(w), "--bvalues", "0,0.05,0.4,0.8"), ("units", "s/mm²")),
    CliCase("b_in_s_per_m2", lambda w: fcf(w, _volumes(w), "--bvalues", "0,5e7,4e8,8e8"), ("units", "s/m²")),
    CliCase("non_numeric_bvalues", lambda w: fcf(w, _volumes(w), "--bvalues", "0,fifty,400,800"),
            ("--b-values '0,fifty,400,800'", "neither numbers", "nor an existing file")),
    CliCase("long_bvalue_list", lambda w: fcf(w, _volumes(w), "--bvalues", ",".join(["1000"] * 400)),
            ("400 b-values", "4 DWI volumes")),
    CliCase("long_text_not_a_file", lambda w: fcf(w, _volumes(w), "--bvalues", "x" * 400),
            ("neither numbers", "nor an existing file")),
    CliCase("no_bvalues_for_3d_volumes", lambda w: fcf(w, _volumes(w)), ("--b-values", "one per DWI volume")),
    CliCase("bval_file_wrong_count", lambda w: fcf(w, _volumes(w), "--bvalues", _file(w, "dwi.bval", "0 50 400\n")),
            ("'dwi.bval'", "3 b-values", "4 DWI volumes")),
    CliCase("bval_file_with_text", lambda w: fcf(w, _volumes(w), "--bvalues", _file(w, "dwi.bval", "0 50 x4 800\n")),
            ("dwi.bval", "'x4'", "not a number")),
    # gradient directions
    CliCase("bvecs_wrong_shape", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--bvecs",
                                               _file(w, "dwi.bvec", "1 0 0 1\n0 1 0 0\n")),
            ("dwi.bvec", "2 x 4", "3 x 4")),
    CliCase("bvecs_ragged_rows", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--bvecs",
                                               _file(w, "dwi.bvec", "1 0 0 1\n0 1 0\n0 0 1 0\n")),
            ("dwi.bvec", "different lengths")),
    CliCase("bvecs_not_unit_length", lambda w: fcf(w, _volumes(w, (0, 1000, 1000, 1000)), "--bvalues",
                                                   "0,1000,1000,1000", "--bvecs",
                                                   _file(w, "dwi.bvec", "0 0.5 0 0\n0 0 1 0\n0 0 0 1\n")),
            ("volume 2", "length 0.5", "unit vectors")),
    CliCase("bvecs_with_text", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--bvecs",
                                             _file(w, "dwi.bvec", "0 1 0 0\n0 0 one 0\n0 0 0 1\n")),
            ("dwi.bvec", "not numbers")),
    CliCase("bvecs_missing_file", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--bvecs",
                                                w / "nope.bvec"), ("nope.bvec",)),
    CliCase("direction_missing_in_a_shell", lambda w: fcf(w, _volumes(w, (0, 1000, 1000, 1000)), "--bvalues",
                                                          "0,1000,1000,1000", "--bvecs",
                                                          _file(w, "dwi.bvec", "0 1 0 0\n0 0 1 0\n0 0 0 0\n")),
            ("b = 1000", "volumes 4", "no gradient direction")),
    CliCase("repeated_b_without_directions", lambda w: fcf(w, _volumes(w, (0, 1000, 1000, 1000)), "--bvalues",
                                                           "0,1000,1000,1000"),
            ("repeated", "volumes 2,3,4", "--bvecs", "--repeats-are-averages")),
    CliCase("scanner_b_values_without_directions", lambda w: fcf(w, _volumes(w, (0, 995, 1000, 1005)), "--bvalues",
                                                                 "0,995,1000,1005"),
            ("995,1000,1005", "within 5 %", "without gradient directions")),
    CliCase("nifti_without_bvec_beside_it", lambda w: fcf(w, _nifti(w, (0, 1000, 1000, 1000)), "--mask",
                                                          _nifti_mask(w)),
            ("repeated", "--bvecs")),
    # values the file stores
    CliCase("sequence_bvalues_conflict", lambda w: fcf(w, _dwi_sequence(w), "--bvalues", "0,400,50,800"),
            ("dwi.seq.nrrd", "stores b-values 0,50,400,800 s/mm²", "--b-values says 0,400,50,800",
             "--override-b-values")),
    CliCase("sequence_bvalue_count_conflict", lambda w: fcf(w, _dwi_sequence(w), "--bvalues", "0,50,400"),
            ("stores b-values 0,50,400,800", "says 0,50,400")),
    CliCase("nifti_bval_beside_conflict", lambda w: fcf(w, _nifti(w), "--mask", _nifti_mask(w), "--bvalues",
                                                        "0,50,400,900"),
            ("'dwi.bval' beside the dwi file", "stores b-values 0,50,400,800", "says 0,50,400,900")),
    CliCase("nrrd_dwmri_conflict", lambda w: fcf(w, _dwmri_nrrd(w), "--bvalues", "0,800,800,800"),
            ("dwi.nrrd", "dwmri gradients", "stores b-values 0,1000,1000,1000")),
    CliCase("bvecs_conflict_with_bvec_beside", lambda w: fcf(w, _nifti(w, (0, 1000, 1000, 1000), UNIT_BVECS),
                                                             "--mask", _nifti_mask(w), "--bvecs",
                                                             _file(w, "other.bvec", "0 0 1 0\n0 1 0 0\n0 0 0 1\n")),
            ("other gradient directions", "other.bvec", "--override-b-values")),
    # DWI series and masks
    CliCase("dwi_missing_file", lambda w: fcf(w, [w / "none.nrrd"], "--bvalues", "0,800"), ("none.nrrd",)),
    CliCase("single_3d_volume", lambda w: fcf(w, _volumes(w)[:1], "--bvalues", "0"), ("single 3D volume",)),
    CliCase("negative_signal", lambda w: fcf(w, _volumes(w, B, _signals() * PHASE_LIKE), "--bvalues", "0,50,400,800"),
            ("negative signal", "magnitude")),
    CliCase("all_signal_non_positive", lambda w: fcf(w, _volumes(w, B, -_signals()), "--bvalues", "0,50,400,800"),
            ("zero or negative",)),
    CliCase("mask_off_grid", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--mask",
                                           _mask(w, spacing=(1.0, 1.0, 2.0))), ("mask", "voxel grid")),
    CliCase("empty_mask", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--mask",
                                        _mask(w, np.zeros(SHAPE))), ("mask", "no non-zero")),
    CliCase("mask_of_three_voxels", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--mask",
                                                  _mask(w, np.pad(np.ones((1, 1, 3)), ((0, 3), (0, 11), (0, 9))))),
            ("3 voxels", "at least 10")),
    CliCase("times_without_dce", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--times", "8x5"),
            ("--times", "--dce")),
    CliCase("fcf_dce_times_conflict", lambda w: fcf(w, _volumes(w), "--bvalues", "0,50,400,800", "--dce",
                                                    _sequence(w, _dce_frames(), range(0, 40, 5), "time", "s",
                                                              "dce.seq.nrrd"), "--times", "8x4"),
            ("dce.seq.nrrd", "stores times 0,5,10", "--times says 0,4,8", "--override-times")),
    # DCE times
    CliCase("times_not_increasing", lambda w: dce(w, _volumes(w, range(8), _dce_frames()), "--times",
                                                  "0,5,10,10,20,25,30,35"), ("increase strictly", "frame 4")),
    CliCase("times_count_mismatch", lambda w: dce(w, _volumes(w, range(8), _dce_frames()), "--times", "7x5"),
            ("7 acquisition times", "8 DCE frames")),
    CliCase("times_non_numeric", lambda w: dce(w, _volumes(w, range(8), _dce_frames()), "--times", "0,5,ten"),
            ("--times '0,5,ten'", "neither numbers")),
    CliCase("times_long_list", lambda w: dce(w, _volumes(w, range(8), _dce_frames()), "--times",
                                             ",".join(str(5 * i) for i in range(500))),
            ("500 acquisition times", "8 DCE frames")),
    CliCase("times_missing", lambda w: dce(w, _volumes(w, range(8), _dce_frames())), ("--times",)),
    CliCase("too_few_frames", lambda w: dce(w, _volumes(w, range(3), _dce_frames(3)), "--times", "0,5,10"),
            ("at least 4 frames",)),
    CliCase("sequence_times_conflict", lambda w: dce(w, _sequence(w, _dce_frames(), range(0, 40, 5), "time", "s",
                                                                  "dce.seq.nrrd"), "--times", "0,5,10,15,20,25,30,40"),
            ("stores times 0,5,10,15,20,25,30,35 s", "--times says", "--override-times")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fcf_command_refuses_each_bad_dwi_input_in_one_line(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_cli_refuses(case, tmp_path, capsys)


# -- the logic (Slicer panel, Python API) -----------------------------------------------------------------------


@pytest.fixture
def dwi_nodes(context, tmp_path):
    from virtualbiopsy.mrml import io

    sequence = io.load_sequence(context, _dwi_sequence(tmp_path))
    volumes = [io.load_volume(context, p) for p in _volumes(tmp_path, (0, 1000, 1000, 1000))]
    dce_sequence = io.load_sequence(context, _sequence(tmp_path, _dce_frames(), range(0, 40, 5), "time", "s",
                                                       "dce.seq.nrrd"))
    mask = io.load_volume(context, _mask(tmp_path), labelmap=True)
    return sequence, volumes, dce_sequence, mask


LOGIC_CASES = [
    ("sequence_bvalues_conflict", lambda logic, s, v, d, m: logic.fit_cluster_fit(s, [0, 400, 50, 800], m),
     ("stores b-values 0,50,400,800", "0,400,50,800", "override")),
    ("repeated_b_without_directions", lambda logic, s, v, d, m: logic.fit_cluster_fit(v, [0, 1000, 1000, 1000], m),
     ("repeated", "directions")),
    ("bvecs_not_unit_length", lambda logic, s, v, d, m: logic.fit_cluster_fit(
        v, [0, 1000, 1000, 1000], m, b_vectors=[[0, 0, 0], [2, 0, 0], [0, 1, 0], [0, 0, 1]]), ("length 2",)),
    ("voxel_fit_sequence_conflict", lambda logic, s, v, d, m: logic.voxel_fit(s, [0, 50, 400, 900], m),
     ("stores b-values",)),
    ("adc_map_repeats", lambda logic, s, v, d, m: logic.fit_adc_map(v, [0, 1000, 1000, 1000]), ("repeated",)),
    ("dce_times_conflict", lambda logic, s, v, d, m: logic.dce_metrics(d, list(range(0, 80, 10)), m),
     ("stores acquisition times 0,5,10", "0,10,20")),
]


@pytest.mark.parametrize("case", LOGIC_CASES, ids=[c[0] for c in LOGIC_CASES])
def test_fit_cluster_fit_logic_refuses_each_bad_dwi_input_and_leaves_the_scene(case, context, dwi_nodes):
    from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic

    _, call, expect = case
    logic = FitClusterFitLogic(context)
    assert_scene_unchanged_after(context, lambda: call(logic, *dwi_nodes), InputError, expect)


# -- the ways out that the refusals name work ---------------------------------------------------------------------


def _run_fcf(tmp_path, capsys, argv) -> tuple[dict, str, float]:
    import csv
    import json

    from virtualbiopsy.cli.main import main

    assert main([str(a) for a in argv] + ["--erode", "0", "--k", "1"]) == 0
    out = tmp_path / "out"
    with open(out / "habitats.csv") as stream:
        adc = float(next(csv.DictReader(stream))["adc"])
    return json.loads((out / "summary.json").read_text()), capsys.readouterr().out, adc


def test_override_bvalues_uses_the_typed_ones_and_records_both(tmp_path, capsys):
    summary, printed, adc = _run_fcf(tmp_path, capsys, fcf(tmp_path, _dwi_sequence(tmp_path), "--bvalues",
                                                           "0,50,400,900", "--override-bvalues"))
    assert summary["b_values_override"]["stored"] == list(B)
    assert summary["b_values_override"]["given"] == [0, 50, 400, 900] and summary["b_values_from"] == "--b-values"
    assert "b-values overridden" in printed and summary["b_values_fitted"] == [0, 50, 400, 900]


def test_override_of_the_stored_directions_alone_is_recorded_and_said(tmp_path, capsys):
    summary, printed, _ = _run_fcf(tmp_path, capsys, fcf(
        tmp_path, _nifti(tmp_path, (0, 1000, 1000, 1000), UNIT_BVECS), "--mask", _nifti_mask(tmp_path), "--bvecs",
        _file(tmp_path, "other.bvec", "0 0 1 0\n0 1 0 0\n0 0 0 1\n"), "--override-bvalues"))
    assert "b_values_override" not in summary  # the b-values agreed with the file; only the directions differ
    assert summary["b_vectors_override"]["given"].endswith("other.bvec")
    assert "dwi.bvec" in summary["b_vectors_override"]["stored_in"]
    assert "Gradient directions overridden" in printed


def test_typed_bvalues_equal_to_the_stored_ones_are_accepted(tmp_path, capsys):
    summary, _, adc = _run_fcf(tmp_path, capsys, fcf(tmp_path, _dwi_sequence(tmp_path), "--bvalues", "0,50,400,800"))
    assert "b_values_override" not in summary and adc == pytest.approx(1e-3, rel=0.03)


def test_repeats_are_averages_averages_them_and_says_so(tmp_path, capsys):
    summary, printed, adc = _run_fcf(tmp_path, capsys, fcf(tmp_path, _volumes(tmp_path, (0, 1000, 1000, 1000)),
                                                           "--bvalues", "0,1000,1000,1000", "--repeats-are-averages"))
    assert [s["combination"] for s in summary["dwi_shells"]["shells"]] == ["single", "repeats mean"]
    assert "mean of 3 repeats of one direction" in printed and adc == pytest.approx(1e-3, rel=0.03)


def test_a_nrrd_dwi_brings_its_b_values_and_directions(tmp_path, capsys):
    summary, printed, adc = _run_fcf(tmp_path, capsys, fcf(tmp_path, _dwmri_nrrd(tmp_path)))
    shell = summary["dwi_shells"]["shells"][1]
    assert shell["combination"] == "trace" and shell["directions"] == 3 and shell["trace_error_bound"] < 1e-9
    assert summary["b_values_from"] == "The DWI file 'dwi.nrrd' (its DWMRI gradients)"
    assert "trace of 3 directions" in printed and adc == pytest.approx(1e-3, rel=0.03)


def test_a_nifti_brings_the_bval_and_bvec_beside_it(tmp_path, capsys):
    dwi = _nifti(tmp_path, (0, 1000, 1000, 1000), UNIT_BVECS)
    summary, _, adc = _run_fcf(tmp_path, capsys, fcf(tmp_path, dwi, "--mask", _nifti_mask(tmp_path)))
    assert summary["b_values_from"] == "'dwi.bval' beside the DWI file"
    assert summary["b_vectors_from"] == "'dwi.bvec' beside the DWI file" and adc == pytest.approx(1e-3, rel=0.03)


def test_override_times_uses_the_typed_ones_and_records_both(tmp_path, capsys):
    import json

    from virtualbiopsy.cli.main import main

    series = _sequence(tmp_path, _dce_frames(), range(0, 40, 5), "time", "s", "dce.seq.nrrd")
    assert main([str(a) for a in dce(tmp_path, series, "--times", "8x4", "--override-times", "--window", "10")]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["times_override"]["stored"][:3] == [0, 5, 10] and summary["times_s"][:3] == [0, 4, 8]
