"""The one --out rule of every command: nothing replaced without --overwrite, no stale results, no debris."""

from __future__ import annotations

import json

import numpy as np
import pytest
from refusals import CliCase, assert_cli_refuses, file_state, write_nrrd

from virtualbiopsy.cli.main import build_parser, main
from virtualbiopsy.cli.output import MARKER


def _commands_with_out(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands_with_out(sub, (*prefix, name))
    options = {o for a in parser._actions for o in a.option_strings}
    if "--out" in options:
        yield " ".join(prefix), options


@pytest.mark.parametrize("command,options", list(_commands_with_out(build_parser())), ids=lambda v: str(v)[:30])
def test_every_command_with_out_has_overwrite(command, options):
    assert "--overwrite" in options, command


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study") / "study"
    assert main(["phantom", "--seed", "3", "--out", str(folder)]) == 0
    return folder


def _image(workspace):
    return write_nrrd(workspace / "in" / "image.nrrd", np.full((6, 8, 8), 100, np.int16))


def _filled_folder(workspace, name="earlier"):
    folder = workspace / name
    folder.mkdir()
    (folder / "segmentation.seg.nrrd").write_text("a person's edits")
    return folder


CASES = [
    CliCase("phantom-into-a-folder-with-results", lambda w: ["phantom", "--out", _filled_folder(w)],
            ("already holds", "--overwrite")),
    CliCase("fcf-into-a-folder-with-results",
            lambda w: ["fcf", "--dwi", _image(w), "--bvalues", "0", "--mask", _image(w), "--out", _filled_folder(w)],
            ("already holds",)),
    CliCase("compare-into-a-folder-with-results",
            lambda w: ["compare", "--ai", _image(w), "--corrected", _image(w), "--out", _filled_folder(w)],
            ("already holds",)),
    CliCase("out-under-a-file", lambda w: ["phantom", "--out", (w / "f").write_text("x") and w / "f" / "study"],
            ("is a file",)),
    CliCase("out-is-a-file", lambda w: ["phantom", "--out", (w / "g").write_text("x") and w / "g"],
            ("is a file",)),
    CliCase("out-in-a-place-that-cannot-be-written", lambda w: ["phantom", "--out", "/proc/virtualbiopsy/study"],
            ("/proc/virtualbiopsy",)),
    CliCase("preprocess-onto-an-existing-file",
            lambda w: ["preprocess", "--image", _image(w), "--n4", "--out", _image(w)], ("already exists",)),
    CliCase("preprocess-out-is-a-folder",
            lambda w: ["preprocess", "--image", _image(w), "--n4", "--out", w / "in"], ("is a folder",)),
    CliCase("preprocess-out-of-an-unsupported-type",
            lambda w: ["preprocess", "--image", _image(w), "--n4", "--out", w / "x.txt"], ("x.txt", "unsupported")),
    CliCase("radiomics-onto-an-existing-table",
            lambda w: ["radiomics", "--image", _image(w), "--mask", _image(w),
                       "--out", (w / "t.csv").write_text("case_id\n") and w / "t.csv"], ("already exists",)),
    CliCase("cohort-resume-into-another-commands-folder",
            lambda w: ["radiomics", "--manifest", (w / "m.csv").write_text("case_id,image,mask\n") and w / "m.csv",
                       "--out", _filled_folder(w)], ("already holds",)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_output_rule_refusals(case, tmp_path, capsys):
    assert_cli_refuses(case, tmp_path, capsys)


def test_a_refused_run_leaves_no_folder_behind(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path / "new" / "deep"), "--b-values", "0,0"]) == 2
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_an_earlier_run_without_stale_files(study, tmp_path, capsys):
    out = tmp_path / "fcf"
    common = ["fcf", "--dwi", str(study / "dwi.seq.nrrd"), "--mask", str(study / "dwi_labels.nrrd"),
              "--label", "5", "--out", str(out)]
    assert main([*common, "--dce", str(study / "dce.seq.nrrd")]) == 0
    with_dce = set(file_state(out))
    assert any("iauc" in name for name in with_dce)
    assert main(common) == 2  # the earlier results are kept unless the user asks
    assert main([*common, "--overwrite"]) == 0
    without_dce = set(file_state(out))
    assert not any("iauc" in name for name in without_dce), "a stale iAUC60 map of the earlier run was left"
    record = json.loads((out / MARKER).read_text())
    assert set(record["files"]) == without_dce - {MARKER}


def test_a_failed_overwrite_puts_the_earlier_results_back(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["phantom", "--seed", "4", "--out", str(out)]) == 0
    before = file_state(out)
    assert main(["phantom", "--seed", "5", "--out", str(out), "--overwrite", "--b-values", "0,0"]) == 2
    assert file_state(out) == before


def test_files_beside_an_earlier_run_that_it_did_not_write_are_kept(tmp_path, capsys):
    out = tmp_path / "study"
    assert main(["phantom", "--seed", "4", "--out", str(out)]) == 0
    (out / "my_notes.txt").write_text("reading of case 4")
    assert main(["phantom", "--seed", "5", "--out", str(out), "--overwrite"]) == 0
    assert (out / "my_notes.txt").read_text() == "reading of case 4"


def test_an_unwritable_input_path_is_one_line_not_a_traceback(tmp_path, capsys):
    long_name = "x" * 5000 + ".nrrd"
    assert main(["radiomics", "--image", long_name, "--mask", "m.nrrd", "--out", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
