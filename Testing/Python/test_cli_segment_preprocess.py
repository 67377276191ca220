"""``virtualbiopsy segment`` and ``virtualbiopsy preprocess`` end to end, on a phantom study written to disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from virtualbiopsy.cli.main import main
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.sample_study import write_study
from virtualbiopsy.segmentation.demo_model import demo_model_path


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    study = generate_study(2001)
    write_study(study, folder)
    return folder, study


def _tumour_dice(segmentation_path, reference_path, study) -> float:
    from virtualbiopsy.mrml import MRMLContext, arrays, io

    context = MRMLContext.create()
    seg = io.load_segmentation(context, segmentation_path)
    reference = io.load_volume(context, reference_path)
    ai = arrays.mask_from_segment(seg, arrays.segment_id_by_name(seg, "Neuroblastoma"), reference)
    truth = np.isin(study.t2_labels, (6, 7))
    return 2 * np.count_nonzero(ai & truth) / (np.count_nonzero(ai) + np.count_nonzero(truth))


@pytest.mark.slow
def test_segment_manifest_with_n4_writes_each_case(study_folder, tmp_path, capsys):
    folder, study = study_folder
    manifest = folder / "cases.csv"
    manifest.write_text("case_id,image\nA,t2w.nrrd\nB,t2w.nrrd\n")
    out = folder / "seg_out"
    code = main(["segment", "--model", str(demo_model_path()), "--manifest", str(manifest), "--out", str(out),
                 "--no-mirroring", "--n4", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    for case in ("A", "B"):
        summary = json.loads((out / case / "summary.json").read_text())
        assert summary["case_id"] == case
        assert summary["preprocessing"]["n4"] is not None and summary["preprocessing"]["denoise"] is None
        assert (out / case / "uncertainty.nrrd").is_file() and (out / case / "agreement.seg.nrrd").is_file()
        assert (out / case / "disagreement.nrrd").is_file()
        assert not (out / case / "fold_disagreement.nrrd").exists()  # one fold: nothing to disagree with
        truth_ml = np.count_nonzero(np.isin(study.t2_labels, (6, 7))) * float(np.prod(study.t2_grid.spacing)) / 1000
        assert summary["tumour_volume_ml"] == pytest.approx(truth_ml, rel=0.15)
    assert _tumour_dice(out / "A" / "segmentation.seg.nrrd", folder / "t2w.nrrd", study) > 0.85
    assert "A: tumour" in capsys.readouterr().out


def test_preprocess_n4_and_zscore_writes_image_and_report(study_folder, tmp_path, capsys):
    folder, study = study_folder
    out = tmp_path / "t2w_pre.nrrd"
    assert main(["preprocess", "--image", str(folder / "t2w.nrrd"), "--out", str(out), "--n4",
                 "--normalise", "zscore"]) == 0
    report = json.loads((tmp_path / "t2w_pre.json").read_text())
    assert [s["step"] for s in report["steps"]] == ["n4", "normalise"]
    assert report["mask"] == "Otsu body mask"
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    body = study.t2_labels > 0
    assert abs(float(image[body].mean())) < 0.2 and 0.7 < float(image[body].std()) < 1.3
    original = sitk.ReadImage(str(folder / "t2w.nrrd"))
    assert sitk.ReadImage(str(out)).GetSpacing() == pytest.approx(original.GetSpacing())
    assert "n4, normalise" in capsys.readouterr().out


def test_preprocess_registers_a_shifted_image(study_folder, tmp_path, capsys):
    folder, _ = study_folder
    original = sitk.ReadImage(str(folder / "t2w.nrrd"), sitk.sitkFloat32)
    shifted = sitk.Resample(original, original, sitk.TranslationTransform(3, (4.0, -3.0, 2.0)), sitk.sitkLinear, 0.0)
    sitk.WriteImage(shifted, str(tmp_path / "moving.nrrd"))
    out = tmp_path / "registered.nrrd"
    assert main(["preprocess", "--image", str(tmp_path / "moving.nrrd"), "--register-to", str(folder / "t2w.nrrd"),
                 "--out", str(out)]) == 0
    report = json.loads((tmp_path / "registered.json").read_text())
    quality = report["quality"]
    assert quality["ncc_after"] > quality["ncc_before"] and quality["mi_after"] > quality["mi_before"] + 0.2
    # moving(y) = fixed(y + t) with t = (4, -3, 2) mm LPS: the anatomy at fixed point x lies at x - t,
    # i.e. shifted by (4, -3, -2) mm in RAS. Found within 0.75 mm (under a fifth of the 4 mm slice).
    translation = np.array(report["moving_from_fixed_ras"])[:3, 3]
    assert np.allclose(translation, (4.0, -3.0, -2.0), atol=0.75), translation
    assert "cross-correlation" in capsys.readouterr().out


def test_preprocess_needs_a_step_and_refuses_bad_spacing(study_folder, tmp_path, capsys):
    folder, _ = study_folder
    image = str(folder / "t2w.nrrd")
    assert main(["preprocess", "--image", image, "--out", str(tmp_path / "x.nrrd")]) == 2
    assert "Choose at least one step" in capsys.readouterr().err
    assert main(["preprocess", "--image", image, "--out", str(tmp_path / "x.nrrd"), "--spacing", "1,1"]) == 2
    assert "three numbers" in capsys.readouterr().err
    assert not (tmp_path / "x.nrrd").exists()


def _four_d_dwi(folder, tmp_path, b_values=(800, 0, 400)):
    """A 4D DWI NIfTI whose b0 (not its first volume) is the study's T2w shifted by (4, -3, 2) mm, with
    its .bval beside it (dcm2niix's layout); the other volumes are noise."""
    original = sitk.ReadImage(str(folder / "t2w.nrrd"), sitk.sitkFloat32)
    shifted = sitk.Resample(original, original, sitk.TranslationTransform(3, (4.0, -3.0, 2.0)), sitk.sitkLinear, 0.0)
    rng = np.random.default_rng(7)
    frames = []
    for b in b_values:
        if b == 0:
            frames.append(shifted)
        else:
            noise = sitk.GetImageFromArray(rng.uniform(0, 50, sitk.GetArrayViewFromImage(original).shape)
                                           .astype(np.float32))
            noise.CopyInformation(original)
            frames.append(noise)
    path = tmp_path / "dwi.nii.gz"
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    (tmp_path / "dwi.bval").write_text(" ".join(str(b) for b in b_values) + "\n")
    return path


def test_preprocess_registers_the_b0_of_a_4d_dwi_by_default(study_folder, tmp_path, capsys):
    folder, _ = study_folder
    dwi = _four_d_dwi(folder, tmp_path)
    out = tmp_path / "b0_registered.nrrd"
    assert main(["preprocess", "--image", str(dwi), "--register-to", str(folder / "t2w.nrrd"),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "b0_registered.json").read_text())
    assert report["input_frame"].startswith("volume 1 of 3 (the b0: b = 0 s/mm² in 'dwi.bval'")
    assert "volume 1 of 3" in printed
    translation = np.array(report["moving_from_fixed_ras"])[:3, 3]
    assert np.allclose(translation, (4.0, -3.0, -2.0), atol=0.75), translation
    assert sitk.ReadImage(str(out)).GetDimension() == 3


def test_preprocess_takes_the_frame_asked_for_and_refuses_one_that_is_not_there(study_folder, tmp_path, capsys):
    folder, _ = study_folder
    dwi = _four_d_dwi(folder, tmp_path)
    out = tmp_path / "frame.nrrd"
    assert main(["preprocess", "--image", str(dwi), "--frame", "1", "--normalise", "zscore", "--out", str(out)]) == 0
    report = json.loads((tmp_path / "frame.json").read_text())
    assert report["input_frame"] == "volume 1 of 3 (b = 0 s/mm²)"
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(dwi)))[1]
    written = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert np.corrcoef(reference.ravel(), written.ravel())[0, 1] > 0.999  # z-scored b0, not a noise volume
    capsys.readouterr()
    for argv, words in (
        (["--frame", "3"], ("--frame 3", "3 volumes", "0 to 2")),
        (["--frame", "-1"], ("--frame -1", "0 to 2")),
        ([], ("4D series of 3 volumes", "--frame N")),
    ):
        target = tmp_path / "refused.nrrd"
        assert main(["preprocess", "--image", str(dwi), "--normalise", "zscore", "--out", str(target), *argv]) == 2
        err = capsys.readouterr().err
        for word in words:
            assert word in err, (argv, err)
        assert not target.exists() and not (tmp_path / "refused.json").exists()
    assert main(["preprocess", "--image", str(folder / "t2w.nrrd"), "--frame", "2", "--normalise", "zscore",
                 "--out", str(tmp_path / "refused.nrrd")]) == 2
    assert "single 3D volume" in capsys.readouterr().err
