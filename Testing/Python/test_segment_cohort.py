"""``segment --manifest`` as a cohort run: safe and unique case ids, per-case failures, cases.csv, resuming,
and a corrected segmentation never lost when the inputs change (issue 10, items 2, 7 and 25)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from refusals import CliCase, assert_cli_refuses, file_state, write_nrrd

from virtualbiopsy.cli.main import main
from virtualbiopsy.segmentation.demo_model import demo_model_path


def _image(path: Path, seed: int = 4) -> Path:
    values = np.random.default_rng(seed).integers(100, 1000, size=(8, 32, 32)).astype(np.int16)
    return write_nrrd(path, values, spacing=(1.5, 1.5, 4.0))


def _cohort(manifest_text: str, images=("t2w.nrrd",)):
    def make(ws: Path):
        for name in images:
            _image(ws / name)
        (ws / "cases.csv").write_text(manifest_text)
        return ["segment", "--model", demo_model_path(), "--manifest", ws / "cases.csv", "--out", ws / "out",
                "--no-mirroring", "--device", "cpu"]
    return make


REFUSED = [
    CliCase("parent-folder-id", _cohort("case_id,image\n../X,t2w.nrrd\n"), ("../X", "line 2", "folder")),
    CliCase("absolute-path-id", _cohort("case_id,image\n/tmp/abs,t2w.nrrd\n"), ("/tmp/abs", "path")),
    CliCase("nested-path-id", _cohort("case_id,image\nA,t2w.nrrd\na/b,t2w.nrrd\n"), ("a/b", "line 3")),
    CliCase("dot-dot-id", _cohort("case_id,image\n..,t2w.nrrd\n"), ("..", "folder name")),
    CliCase("duplicate-ids", _cohort("case_id,image\nA,t2w.nrrd\nB,t2w.nrrd\nA,t2w.nrrd\n"),
            ("repeated: A", "lines 2, 4")),
    CliCase("ids-differing-in-case", _cohort("case_id,image\ncase1,t2w.nrrd\nCASE1,t2w.nrrd\n"),
            ("case1", "CASE1", "letter case")),
    CliCase("empty-id", _cohort("case_id,image\n,t2w.nrrd\n"), ("empty on line", "2")),
    CliCase("id-is-the-table-name", _cohort("case_id,image\ncases.csv,t2w.nrrd\n"), ("cases.csv", "file this run")),
    CliCase("id-is-a-temporary-folder", _cohort("case_id,image\n.virtualbiopsy-partial-x,t2w.nrrd\n"),
            ("temporary",)),
    CliCase("no-case-id-column", _cohort("name,image\nA,t2w.nrrd\n"), ("case_id",)),
    CliCase("no-image-column", _cohort("case_id,path\nA,t2w.nrrd\n"), ("image",)),
    CliCase("no-cases", _cohort("case_id,image\n"), ("lists no cases",)),
    CliCase("windows-device-id", _cohort("case_id,image\nCON,t2w.nrrd\n"), ("CON", "Windows")),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_bad_manifest_is_refused_before_anything_is_written(case, tmp_path, capsys):
    assert_cli_refuses(case, tmp_path, capsys)
    assert not (tmp_path / "out").exists()


def _table(out: Path) -> dict[str, dict]:
    with open(out / "cases.csv", newline="") as stream:
        return {row["case_id"]: row for row in csv.DictReader(stream)}


def _run(ws: Path, *extra) -> int:
    return main(["segment", "--model", str(demo_model_path()), "--manifest", str(ws / "cases.csv"),
                 "--out", str(ws / "out"), "--no-mirroring", "--device", "cpu", *extra])


@pytest.fixture
def cohort(tmp_path):
    """Three cases: A fine, B's image missing, C given a 4D series; and a manifest of them."""
    _image(tmp_path / "a.nrrd", 1)
    four_d = np.random.default_rng(2).integers(100, 1000, size=(3, 8, 32, 32)).astype(np.int16)
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(four_d, isVector=False), str(tmp_path / "c_dwi.nii.gz"))
    (tmp_path / "cases.csv").write_text("case_id,image\nA,a.nrrd\nB,b.nrrd\nC,c_dwi.nii.gz\n")
    return tmp_path


def test_a_failing_case_is_recorded_and_the_others_are_segmented_with_exit_3(cohort, capsys):
    assert _run(cohort) == 3
    out = capsys.readouterr().out
    table = _table(cohort / "out")
    assert [table[c]["status"] for c in "ABC"] == ["computed", "failed", "failed"]
    assert "No image at" in table["B"]["error"] and "b.nrrd" in table["B"]["error"]
    assert "4D series of 3 volumes" in table["C"]["error"]
    assert float(table["A"]["tumour_volume_ml"]) >= 0 and table["A"]["folder"] == "A"
    assert (cohort / "out" / "A" / "segmentation.seg.nrrd").is_file()
    assert not (cohort / "out" / "B").exists() and not (cohort / "out" / "C").exists()
    assert not [p for p in os.listdir(cohort / "out") if p.startswith(".virtualbiopsy-partial-")]
    assert "3 case(s): 1 segmented, 0 reused from an earlier run, 2 failed" in out
    assert "B: No image at" in out


def test_a_second_run_reuses_finished_cases_and_segments_a_mended_one(cohort, capsys):
    assert _run(cohort) == 3
    a_before = file_state(cohort / "out" / "A")
    _image(cohort / "b.nrrd", 3)  # the missing image is supplied
    assert _run(cohort) == 3  # C still fails
    table = _table(cohort / "out")
    assert [table[c]["status"] for c in "ABC"] == ["reused", "computed", "failed"]
    assert file_state(cohort / "out" / "A") == a_before
    assert "1 segmented, 1 reused" in capsys.readouterr().out
    (cohort / "cases.csv").write_text("case_id,image\nA,a.nrrd\nB,b.nrrd\n")
    assert _run(cohort) == 0
    assert [r["status"] for r in _table(cohort / "out").values()] == ["reused", "reused"]


def test_changed_inputs_resegment_a_case_but_keep_a_corrected_segmentation(cohort, capsys):
    (cohort / "cases.csv").write_text("case_id,image\nA,a.nrrd\nB,b.nrrd\n")
    _image(cohort / "b.nrrd", 3)
    assert _run(cohort) == 0
    segmentation_a = cohort / "out" / "A" / "segmentation.seg.nrrd"
    segmentation_b = cohort / "out" / "B" / "segmentation.seg.nrrd"
    edited = segmentation_a.read_bytes() + b"\n"  # a person saved a corrected segmentation over A's
    segmentation_a.write_bytes(edited)
    b_before = segmentation_b.read_bytes()
    _image(cohort / "a.nrrd", 5)  # then both inputs are replaced by new scans
    _image(cohort / "b.nrrd", 6)
    assert _run(cohort) == 3
    table = _table(cohort / "out")
    assert table["A"]["status"] == "failed" and "edited" in table["A"]["error"] and "kept" in table["A"]["error"]
    assert segmentation_a.read_bytes() == edited  # the correction was not lost
    assert table["B"]["status"] == "computed" and segmentation_b.read_bytes() != b_before
    capsys.readouterr()
    assert _run(cohort, "--overwrite") == 0  # asked for: everything is segmented again
    assert [r["status"] for r in _table(cohort / "out").values()] == ["computed", "computed"]
    assert segmentation_a.read_bytes() != edited


def test_a_foreign_folder_named_like_a_case_is_kept(cohort, capsys):
    (cohort / "cases.csv").write_text("case_id,image\nA,a.nrrd\n")
    assert _run(cohort) == 0
    (cohort / "cases.csv").write_text("case_id,image\nA,a.nrrd\nnotes,a.nrrd\n")
    (cohort / "out" / "notes").mkdir()
    (cohort / "out" / "notes" / "mine.txt").write_text("a person's notes")
    assert _run(cohort) == 3
    table = _table(cohort / "out")
    assert table["notes"]["status"] == "failed" and "holds no result" in table["notes"]["error"]
    assert (cohort / "out" / "notes" / "mine.txt").read_text() == "a person's notes"


def test_a_manifest_run_into_a_folder_of_another_command_is_refused(cohort, capsys):
    (cohort / "out").mkdir()
    (cohort / "out" / "report.html").write_text("<p>other</p>")
    before = file_state(cohort)
    assert _run(cohort) == 2
    assert "already holds files" in capsys.readouterr().err
    assert file_state(cohort) == before
