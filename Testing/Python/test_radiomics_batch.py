"""Cohort batch: manifest -> one features table in worker processes; bad cases land in the error column while the
run goes on; finished cases are not recomputed; the batch and the MRML path give the same values; the CLI."""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from virtualbiopsy.errors import Cancelled, InputError
from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.progress import CancelToken, Task
from virtualbiopsy.radiomics import batch, extraction

SHAPE = (8, 18, 20)  # k, j, i
SPACING = (1.0, 1.0, 2.0)


def _write(array: np.ndarray, path: Path, spacing=SPACING) -> str:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, -9.0, -8.0))
    sitk.WriteImage(image, str(path), useCompression=True)
    return path.name


def _case_images(folder: Path, seed: int) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    inside = ((k - 4) / 3.2) ** 2 + ((j - 9) / 6.5) ** 2 + ((i - 10) / 7.0) ** 2 <= 1
    image = (400 + 300 * inside + rng.normal(0, 60 + 10 * seed, SHAPE)).astype(np.int16)
    return _write(image, folder / f"c{seed}_t2w.nrrd"), _write(inside.astype(np.uint8), folder / f"c{seed}_mask.nrrd")


@pytest.fixture
def cohort(tmp_path) -> Path:
    """3 good cases and 6 bad ones (each a different problem) in a manifest with a site column."""
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for seed in (1, 2, 3):
        image, mask = _case_images(data, seed)
        rows.append((f"good{seed}", image, mask, "1", f"site{seed % 2}"))
    image, mask = _case_images(data, 4)
    coarse = _write(np.ones((8, 9, 10), np.uint8), data / "coarse_mask.nrrd", (2.0, 2.0, 2.0))
    empty = _write(np.zeros(SHAPE, np.uint8), data / "empty_mask.nrrd")
    dot = np.zeros(SHAPE, np.uint8)
    dot[4, 9, 10] = 1
    single = _write(dot, data / "dot_mask.nrrd")
    (data / "corrupt.nrrd").write_bytes(b"NRRD0004\nthis is not an image\n")
    rows += [("geometry", image, coarse, "1", "site0"), ("empty", image, empty, "1", "site0"),
             ("one_voxel", image, single, "1", "site1"), ("missing_label", image, mask, "2", "site1"),
             ("missing_file", "nowhere.nrrd", mask, "1", "site1"), ("corrupt", "corrupt.nrrd", mask, "1", "site0")]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case_id", "image", "mask", "label", "site"])
        writer.writerows([(cid, f"data/{img}", f"data/{msk}", label, site) for cid, img, msk, label, site in rows])
    return manifest


EXPECTED_ERRORS = {"geometry": "not on the voxel grid", "empty": "is empty", "one_voxel": "single voxel",
                   "missing_label": "Label 2 does not occur", "missing_file": "No image file at",
                   "corrupt": "Could not read the image 'corrupt.nrrd'"}


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "cases").glob("*.json")}


def test_cohort_in_two_workers_records_errors_and_resumes(cohort, tmp_path):
    out = tmp_path / "out"
    seen = []
    result = batch.run_batch(cohort, out, workers=2, progress=lambda f, m: seen.append(m))
    rows = {row["case_id"]: row for row in result.rows}
    assert [r["case_id"] for r in result.rows][:3] == ["good1", "good2", "good3"]  # manifest order
    assert (result.computed, result.reused, result.failed) == (9, 0, 6)
    for case_id, words in EXPECTED_ERRORS.items():
        assert words in rows[case_id]["error"], (case_id, rows[case_id]["error"])
        assert "original_glcm_Contrast" not in rows[case_id]
    for seed in (1, 2, 3):
        good = rows[f"good{seed}"]
        assert good["error"] == "" and good["site"] == f"site{seed % 2}" and len(good) > 100
    assert rows["good1"]["original_firstorder_Variance"] < rows["good3"]["original_firstorder_Variance"]
    with open(result.table_path, newline="") as stream:
        table = list(csv.DictReader(stream))
    assert [row["case_id"] for row in table] == list(rows) and table[0]["error"] == ""
    assert float(table[0]["original_glcm_Contrast"]) == pytest.approx(rows["good1"]["original_glcm_Contrast"])
    assert table[3]["original_glcm_Contrast"] == "" and "voxel grid" in table[3]["error"]
    assert "version_pyradiomics" in result.settings_path.read_text()
    assert any("good2 done" in m for m in seen) and any("empty failed" in m for m in seen)

    # Second run: the finished cases are read back, not recomputed (their result files are untouched).
    before = _mtimes(out)
    again = batch.run_batch(cohort, out, workers=1)
    assert (again.computed, again.reused, again.failed) == (6, 3, 6)  # only the failed cases are retried
    after = _mtimes(out)
    good_files = [batch.result_path(out, f"good{s}").name for s in (1, 2, 3)]
    assert all(after[name] == before[name] for name in good_files)
    assert again.rows == result.rows
    # A changed input is recomputed.
    image = tmp_path / "data" / "c2_t2w.nrrd"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    third = batch.run_batch(cohort, out, workers=1)
    assert (third.computed, third.reused) == (7, 2)


def test_batch_values_equal_the_mrml_path(cohort, tmp_path, context):
    case = batch.read_manifest(cohort)[1]
    result = batch.run_batch([case], tmp_path / "out")
    volume = io.load_volume(context, case.images["image"])
    segmentation = io.load_segmentation(context, case.mask)
    table = RadiomicsBiomarkersLogic(context).extract_features(volume, segmentation)
    from_nodes = {k: v[0] for k, v in arrays.table_columns(table).items() if k.startswith("original_")}
    from_batch = {k: v for k, v in result.rows[0].items() if k.startswith("original_")}
    assert from_nodes == from_batch  # identical, not just close: one extraction function, same voxels


def test_several_sequences_and_cancel(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    rows = []
    for seed in (1, 2):
        image, mask = _case_images(data, seed)
        adc = sitk.ReadImage(str(data / image)) * 2
        sitk.WriteImage(adc, str(data / f"c{seed}_adc.nrrd"))
        rows.append((f"case{seed}", f"data/{image}", f"data/c{seed}_adc.nrrd", f"data/{mask}"))
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,image_t2w,image_adc,mask\n" + "\n".join(",".join(r) for r in rows) + "\n")
    token = CancelToken()

    def cancel_after_first(fraction, message):
        if message.startswith("case1 done"):
            token.cancel()

    with pytest.raises(Cancelled):
        batch.run_batch(manifest, tmp_path / "out", progress=Task(cancel_after_first, token))
    assert len(_mtimes(tmp_path / "out")) == 1  # the finished case was kept
    result = batch.run_batch(manifest, tmp_path / "out")
    assert (result.computed, result.reused) == (1, 1)
    row = result.rows[0]
    assert row["adc:original_firstorder_Mean"] == pytest.approx(2 * row["t2w:original_firstorder_Mean"])
    assert row["adc:original_shape_VoxelVolume"] == row["t2w:original_shape_VoxelVolume"]


def test_manifest_problems_are_refused(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,image\na,x.nrrd\n")
    with pytest.raises(InputError, match=r"lacks the column\(s\) mask"):
        batch.read_manifest(manifest)
    manifest.write_text("case_id,image,mask\na,x.nrrd,m.nrrd\na,y.nrrd,m.nrrd\n")
    with pytest.raises(InputError, match="repeated: a"):
        batch.read_manifest(manifest)
    manifest.write_text("case_id,image,mask\n")
    with pytest.raises(InputError, match="lists no cases"):
        batch.read_manifest(manifest)


def _cli(argv):
    from virtualbiopsy.cli import radiomics

    parser = argparse.ArgumentParser(prog="virtualbiopsy")
    radiomics.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.run(args)


def test_cli_one_case_and_manifest(cohort, tmp_path, capsys):
    data = cohort.parent / "data"
    out = tmp_path / "one" / "features.csv"
    assert _cli(["radiomics", "--image", f"t2w={data / 'c1_t2w.nrrd'}", "--image", f"copy={data / 'c1_t2w.nrrd'}",
                 "--mask", str(data / "c1_mask.nrrd"), "--bin-width", "10", "--out", str(out)]) == 0
    with open(out, newline="") as stream:
        (row,) = list(csv.DictReader(stream))
    assert row["t2w:original_glcm_Contrast"] == row["copy:original_glcm_Contrast"]
    with open(out.parent / "features_settings.csv", newline="") as stream:
        settings = dict(csv.reader(stream))
    assert '"binWidth": 10.0' in settings["settings"] and settings["version_pyradiomics"].endswith("3.0.1")
    assert _cli(["radiomics", "--manifest", str(cohort), "--out", str(tmp_path / "cohort")]) == 3  # some failed
    text = capsys.readouterr().out
    assert "9 case(s): 3 computed, 0 reused" in text and "6 failed" in text and "missing_label: Label 2" in text
    with pytest.raises(InputError, match="--mask"):
        _cli(["radiomics", "--image", str(data / "c1_t2w.nrrd"), "--out", str(out)])
    direct = extraction.extract_files([data / "c1_t2w.nrrd"], data / "c1_mask.nrrd")
    assert len(direct) == 107  # shape 14 + first order 18 + GLCM 24 + GLRLM 16 + GLSZM 16 + GLDM 14 + NGTDM 5


def test_cli_errors_name_the_files_not_the_column_prefix(cohort, tmp_path):
    from virtualbiopsy.errors import GeometryMismatchError

    data = cohort.parent / "data"
    out = tmp_path / "bad" / "features.csv"
    with pytest.raises(GeometryMismatchError,
                       match=r"mask 'coarse_mask.nrrd' is not on the voxel grid of the image 'c4_t2w.nrrd'"):
        _cli(["radiomics", "--image", str(data / "c4_t2w.nrrd"), "--mask", str(data / "coarse_mask.nrrd"),
              "--out", str(out)])
    with pytest.raises(GeometryMismatchError, match=r"the image 'c4_t2w.nrrd'"):  # NAME=PATH: still the file
        _cli(["radiomics", "--image", f"t2w={data / 'c4_t2w.nrrd'}", "--image", f"adc={data / 'c1_t2w.nrrd'}",
              "--mask", str(data / "coarse_mask.nrrd"), "--out", str(out)])
    assert not out.exists()
    record = batch.compute_case(batch.read_manifest(cohort)[3], extraction.ExtractionParameters(),
                                extraction.ExtractionParameters().pyradiomics_params(), "key", str(tmp_path))
    assert "of the image 'c4_t2w.nrrd'" in record["error"]  # the cohort table names the file too


def test_non_integer_label_is_an_error_not_a_rounded_label(cohort, tmp_path):
    case = batch.read_manifest(cohort)[0]
    case.label = "1.5"  # must not be read as label 1
    parameters = extraction.ExtractionParameters()
    record = batch.compute_case(case, parameters, parameters.pyradiomics_params(), "key", str(tmp_path))
    assert record["features"] == {} and "'1.5' is not an integer label" in record["error"]
