"""Several DWI volumes per b-value: shells, gradient directions, the trace, repeats, two-volume DWI and the
b-values a file stores.

The trace is checked against real multi-direction data: dipy's bundled 64-direction brain DWI
(``small_64D``, fetched from the dipy wheel on PyPI into ~/.cache/virtualbiopsy-testdata, data files
only; dipy itself is not installed). The reference mean diffusivity comes from an ordinary
least-squares tensor fit written here in numpy, independent of the production code path.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from virtualbiopsy.cli.main import main
from virtualbiopsy.diffusion import fit_monoexp
from virtualbiopsy.diffusion_shells import SHELL_TOLERANCE, group_shells, plan_shells, reconcile_values
from virtualbiopsy.errors import InputError
from virtualbiopsy.habitats.pipeline import FitClusterFitParameters, run_fit_cluster_fit

CACHE = Path.home() / ".cache" / "virtualbiopsy-testdata" / "dipy"
SMALL_64D = ("small_64D.nii", "small_64D.bval", "small_64D.bvec")


@pytest.fixture(scope="module")
def small_64d() -> Path:
    """Folder with dipy's small_64D.nii / .bval / .bvec (10 x 10 x 10 voxels of brain, 1 b0 + 64 directions)."""
    data = CACHE / "data"
    if not all((data / name).is_file() for name in SMALL_64D):
        wheels = sorted(CACHE.glob("dipy-*.whl"))
        if not wheels:
            try:
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                                "dipy", "-d", str(CACHE)], check=True, capture_output=True, timeout=300)
            except (subprocess.SubprocessError, OSError) as error:
                pytest.skip(f"dipy's bundled DWI could not be fetched from PyPI (offline?): {error}")
            wheels = sorted(CACHE.glob("dipy-*.whl"))
        data.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[-1]) as wheel:
            for name in SMALL_64D:
                (data / name).write_bytes(wheel.read(f"dipy/data/files/{name}"))
    return data


def _dwi_64d(folder: Path):
    import nibabel as nib

    signals = np.moveaxis(np.asarray(nib.load(folder / "small_64D.nii").dataobj, dtype=np.float64), -1, 0)
    b = np.loadtxt(folder / "small_64D.bval")
    g = np.nan_to_num(np.loadtxt(folder / "small_64D.bvec"))  # stored N x 3, NaN for the b0
    return signals.reshape(signals.shape[0], -1), b, g


def _tensor_md_fa(signals: np.ndarray, b: np.ndarray, g: np.ndarray):
    """Mean diffusivity and FA of an ordinary least-squares tensor fit of ln S (numpy only)."""
    design = np.column_stack([np.ones_like(b), -b * g[:, 0] ** 2, -b * g[:, 1] ** 2, -b * g[:, 2] ** 2,
                              -2 * b * g[:, 0] * g[:, 1], -2 * b * g[:, 0] * g[:, 2], -2 * b * g[:, 1] * g[:, 2]])
    d = np.linalg.lstsq(design, np.log(signals), rcond=None)[0][1:]
    tensors = np.stack([np.stack([d[0], d[3], d[4]], -1), np.stack([d[3], d[1], d[5]], -1),
                        np.stack([d[4], d[5], d[2]], -1)], -2)
    eigen = np.linalg.eigvalsh(tensors)
    md = eigen.mean(-1)
    fa = np.sqrt(1.5 * ((eigen - md[..., None]) ** 2).sum(-1) / (eigen ** 2).sum(-1))
    return md, fa


def test_trace_adc_matches_the_tensor_mean_diffusivity_on_dipys_64_direction_brain(small_64d):
    signals, b, g = _dwi_64d(small_64d)
    brain = np.all(signals > 0, axis=0)  # the 10^3 crop is all brain; 4 voxels have a zero signal
    md, fa = _tensor_md_fa(signals[:, brain], b, g)
    shells = plan_shells(b, g)
    assert [len(s.volumes) for s in shells.shells] == [1, 64] and shells.shells[1].directions == 64
    assert shells.shells[1].b_range == (pytest.approx(986.95, abs=0.01), pytest.approx(1002.99, abs=0.01))
    bound = shells.shells[1].trace_error_bound
    assert 0.03 < bound < 0.05  # 64 directions, not perfectly uniform: 3·max|λ(M) - 1/3| = 4.1 %
    trace = fit_monoexp(shells.combine(signals[:, brain]), shells.b_values, weights=shells.averages).adc
    one_direction = fit_monoexp(signals[:, brain], b).adc  # every volume as if one direction (the old fit)
    after, before = (trace - md) / md, (one_direction - md) / md
    anisotropic = fa > 0.5
    assert anisotropic.sum() > 200
    assert abs(np.median(after)) < 0.005 and abs(np.median(after[anisotropic])) < 0.01
    assert np.percentile(np.abs(after), 95) < bound  # within the stated bound (noise aside)
    assert np.median(before) < -0.15 and np.median(before[anisotropic]) < -0.30  # what the trace fixes


def test_fcf_reads_the_bval_and_bvec_beside_a_nifti_and_reports_the_trace(small_64d, tmp_path, capsys):
    import nibabel as nib

    for name in SMALL_64D:
        shutil.copy(small_64d / name, tmp_path / name)
    image = nib.load(tmp_path / "small_64D.nii")
    inner = np.zeros(image.shape[:3], np.uint8)
    inner[2:8, 2:8, 2:8] = 1
    nib.save(nib.Nifti1Image(inner, image.affine), tmp_path / "mask.nii.gz")
    out = tmp_path / "out"
    assert main(["fcf", "--dwi", str(tmp_path / "small_64D.nii"), "--mask", str(tmp_path / "mask.nii.gz"),
                 "--out", str(out), "--erode", "0", "--k", "1", "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert "trace of 64 directions" in printed and "ADC SE is undefined" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["b_values_from"] == "'small_64D.bval' beside the DWI file"
    assert [s["combination"] for s in summary["dwi_shells"]["shells"]] == ["single", "trace"]
    assert summary["dwi_shells"]["shells"][1]["directions"] == 64 and summary["excluded_uncertain"] == 0
    signals, b, g = _dwi_64d(small_64d)
    voxels = signals[:, inner.reshape(-1).astype(bool)]
    md, _ = _tensor_md_fa(voxels, b, g)
    b_mean = b[1:].mean()
    # the reference: the two-point ADC of the habitat's mean trace signal, each voxel's from its own tensor
    reference = np.log(voxels[0].mean() / (voxels[0] * np.exp(-b_mean * md)).mean()) / b_mean
    with open(out / "habitats.csv") as stream:
        adc = float(stream.read().splitlines()[1].split(",")[4])
    assert adc == pytest.approx(float(reference), rel=0.01)


def _tensor_signals(tensors: np.ndarray, b: np.ndarray, g: np.ndarray) -> np.ndarray:
    return 1000.0 * np.exp(-b[:, None] * np.einsum("ni,vij,nj->nv", g, tensors, g))


def _random_tensors(n: int, rng) -> np.ndarray:
    rotations = np.linalg.qr(rng.normal(size=(n, 3, 3)))[0]
    eigen = rng.uniform(0.1e-3, 2.5e-3, (n, 3))
    return np.einsum("vij,vj,vkj->vik", rotations, eigen, rotations)


def test_orthogonal_directions_give_exactly_the_trace_and_uneven_ones_stay_within_the_bound():
    rng = np.random.default_rng(0)
    tensors = _random_tensors(500, rng)
    md = np.trace(tensors, axis1=1, axis2=2) / 3
    b = np.array([0.0, 1000.0, 1000.0, 1000.0])
    g = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    shells = plan_shells(b, g)
    assert shells.shells[1].trace_error_bound == pytest.approx(0.0, abs=1e-12)
    adc = fit_monoexp(shells.combine(_tensor_signals(tensors, b, g)), shells.b_values, weights=shells.averages).adc
    np.testing.assert_allclose(adc, md, rtol=1e-5)  # float32 maps
    uneven = np.array([[0, 0, 0], [1, 0, 0], [0.8, 0.6, 0], [0, 0.6, 0.8], [0.6, 0, 0.8]], float)
    b = np.array([0.0, 995.0, 1000.0, 1003.0, 1005.0])
    shells = plan_shells(b, uneven)
    bound = shells.shells[1].trace_error_bound
    adc = fit_monoexp(shells.combine(_tensor_signals(tensors, b, uneven)), shells.b_values,
                      weights=shells.averages).adc
    error = np.abs(adc - md) / md
    assert 0.05 < bound < 1 and error.max() <= bound + 1e-5 and error.max() > 0.3 * bound
    assert any("unevenly spread" in w for w in shells.warnings) == (bound > 0.1)


def test_b_values_within_five_percent_are_one_shell_and_low_b_values_stay_apart():
    assert SHELL_TOLERANCE == 0.05
    assert group_shells([0, 995, 1000, 1005, 0]) == [[0, 4], [1, 2, 3]]
    assert group_shells([0, 10, 20, 30, 50, 800]) == [[0], [1], [2], [3], [4], [5]]  # an IVIM protocol
    assert group_shells([800, 839, 841]) == [[0, 1], [2]]  # 839 < 1.05 x 800 = 840 <= 841
    shells = plan_shells([0, 0, 50, 400, 800], None)
    assert [s.combination for s in shells.shells] == ["b0 mean", "single", "single", "single"]
    np.testing.assert_array_equal(shells.averages, [2, 1, 1, 1])


def test_averaged_repeats_count_as_many_volumes_in_the_fit():
    b = np.array([0.0, 800.0, 800.0, 800.0])
    clean = 900.0 * np.exp(-b[:, None] * np.array([0.7e-3, 1.9e-3]))
    with pytest.raises(InputError, match="repeats-are-averages"):
        plan_shells(b, None)
    shells = plan_shells(b, None, repeats_are_averages=True)
    assert shells.shells[1].combination == "repeats mean" and shells.b_values.tolist() == [0.0, 800.0]
    combined = fit_monoexp(shells.combine(clean), shells.b_values, weights=shells.averages, noise_sigma=20.0)
    every_volume = fit_monoexp(clean, b, noise_sigma=20.0)
    np.testing.assert_allclose(combined.adc, every_volume.adc, rtol=1e-6)
    np.testing.assert_allclose(combined.adc_se, every_volume.adc_se, rtol=1e-6)  # 3 volumes' precision, not 1
    single = fit_monoexp(clean[:2], b[:2], noise_sigma=20.0)
    assert np.all(combined.adc_se < single.adc_se)


def test_stored_values_win_unless_overridden_and_the_override_is_recorded():
    used, record = reconcile_values([0, 50, 400, 800], [0, 50.4, 400, 800], stored_from="The DWI file 'a'",
                                    given_from="--bvalues")
    assert used == [0, 50, 400, 800] and record is None  # within 1 s/mm²: the same values
    with pytest.raises(InputError, match=r"stores b-values 0,50,400,800 s/mm²; --bvalues says 0,400,50,800"):
        reconcile_values([0, 50, 400, 800], [0, 400, 50, 800], stored_from="The DWI file 'a'", given_from="--bvalues")
    used, record = reconcile_values([0, 50, 400, 800], [0, 400, 50, 800], stored_from="The DWI file 'a'",
                                    given_from="--bvalues", override=True)
    assert used == [0, 400, 50, 800] and record["stored"] == [0, 50, 400, 800]


# -- two-volume DWI (b = 0 and one b-value, as clinical trace exports are) -------------------------------------


@pytest.fixture(scope="module")
def two_b_study(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("two_b") / "study"
    assert main(["phantom", "--b-values", "0,800", "--out", str(folder)]) == 0
    return folder


def _habitats_vs_truth(out: Path, study: Path) -> list[tuple[float, float]]:
    """(habitat ADC, true ADC) of every habitat whose voxels are >= 80 % one tissue."""
    import csv

    import SimpleITK as sitk

    from virtualbiopsy.phantom.tissues import TISSUES

    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(study / "dwi_labels.nrrd")))
    habitats = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "habitats.seg.nrrd")))
    if habitats.ndim == 4:  # one layer per segment is not written for non-overlapping segments
        habitats = habitats.argmax(-1)
    with open(out / "habitats.csv") as stream:
        rows = list(csv.DictReader(stream))
    pairs = []
    for row in rows:
        inside = labels[habitats == int(row["label"])]
        values, counts = np.unique(inside, return_counts=True)
        if inside.size and counts.max() >= 0.8 * inside.size:
            pairs.append((float(row["adc"]), TISSUES[int(values[counts.argmax()])].adc))
    return pairs


def test_a_two_volume_dwi_fits_with_the_background_noise(two_b_study, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["fcf", "--dwi", str(two_b_study / "dwi.seq.nrrd"), "--mask",
                 str(two_b_study / "ground_truth.seg.nrrd"), "--segment", "tumour rim", "--segment", "tumour core",
                 "--out", str(out), "--bootstrap", "50"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["noise_method"] == "background" and summary["noise_sigma"] == pytest.approx(30.0, rel=0.1)
    assert summary["adc_se_from"].startswith("the noise sigma (background); two b-values")
    assert summary["excluded_uncertain"] > 0  # the SE is known, so the uncertain voxels go
    truth = dict((true, adc) for adc, true in _habitats_vs_truth(out, two_b_study))
    assert set(truth) == {0.7e-3, 2.4e-3}, truth  # a rim habitat and a core habitat, each >= 80 % one tissue
    assert truth[0.7e-3] == pytest.approx(0.7e-3, rel=0.02)
    # The core's b = 800 signal is low, so its SE is ~2.3x the rim's: the 90th-percentile exclusion takes most of
    # the core and leaves its partial-volume voxels (measured: 2.07 vs 2.40, -14 %; -3 % without exclusion, -1.6 %
    # with four b-values).
    assert truth[2.4e-3] == pytest.approx(2.4e-3, rel=0.15)


def test_a_two_volume_dwi_without_air_has_no_se_and_says_so(two_b_study, tmp_path, capsys):
    """A clinical export with the background zeroed: no noise estimate, SE undefined, no exclusion (stated)."""
    import SimpleITK as sitk

    sequence = sitk.GetArrayFromImage(sitk.ReadImage(str(two_b_study / "dwi.seq.nrrd")))  # [k, j, i, b]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(two_b_study / "dwi_labels.nrrd")))
    sequence[labels == 0] = 0
    paths = []
    for index, b in enumerate((0, 800)):
        image = sitk.GetImageFromArray(np.ascontiguousarray(sequence[..., index]))
        paths.append(tmp_path / f"b{b}.nrrd")
        sitk.WriteImage(image, str(paths[-1]))
    mask = sitk.GetImageFromArray(labels)
    sitk.WriteImage(mask, str(tmp_path / "labels.nrrd"))
    out = tmp_path / "out"
    assert main(["fcf", "--dwi", *map(str, paths), "--bvalues", "0,800", "--mask", str(tmp_path / "labels.nrrd"),
                 "--label", "6", "--out", str(out), "--bootstrap", "50", "--erode", "0"]) == 0
    printed = capsys.readouterr().out
    assert "none excluded as uncertain (ADC SE undefined" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["noise_sigma"] is None and summary["adc_se_from"].startswith("undefined")
    assert summary["excluded_uncertain"] == 0 and summary["se_threshold_mm2_s"] is None
    se = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "adc_se.nrrd")))
    assert np.all(np.isnan(se[labels == 6])) and np.all(se[labels != 6] == 0)
    with open(out / "habitats.csv") as stream:
        adcs = [float(line.split(",")[4]) for line in stream.read().splitlines()[1:]]
    assert adcs[0] == pytest.approx(0.7e-3, rel=0.05)  # the rim (true 0.7e-3 mm²/s), most of the label


def test_the_pipeline_combines_directions_before_clustering():
    """Arrays in, habitats out: two tissues of different anisotropy, three orthogonal directions at b = 800."""
    rng = np.random.default_rng(2)
    shape = (4, 20, 20)
    mask = np.ones(shape, bool)
    tensors = np.where(np.arange(400 * 4).reshape(-1, 1, 1) < 800, np.diag([1.7e-3, 0.2e-3, 0.2e-3]),
                       np.diag([1.2e-3, 1.2e-3, 1.2e-3]))  # both MD 0.7e-3 (anisotropic) and 1.2e-3 (isotropic)
    b = np.array([0.0, 0.0, 800.0, 800.0, 800.0])
    g = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    clean = _tensor_signals(tensors, b, g)
    noisy = np.hypot(clean + rng.normal(0, 10, clean.shape), rng.normal(0, 10, clean.shape)).reshape((5,) + shape)
    result = run_fit_cluster_fit(noisy, b, mask, FitClusterFitParameters(erode_voxels=0, n_bootstrap=20, k=2,
                                                                         noise_sigma=10.0), b_vectors=g)
    np.testing.assert_allclose(result.table["adc"], [0.7e-3, 1.2e-3], rtol=0.02)
    assert result.summary["dwi_shells"]["shells"][0]["combination"] == "b0 mean"
    assert result.mean_signals.shape == (2, 2)
