"""The virtualbiopsy command line: help texts, the phantom sub-command, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from virtualbiopsy.cli.main import COMMANDS, main


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(([command] if command else []) + ["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: virtualbiopsy" in text
    if command:
        assert "--out" in text or command in ("deps", "dicom", "pacs")  # inspection commands write nothing


def test_phantom_writes_a_study(tmp_path, capsys):
    assert main(["phantom", "--seed", "5", "--out", str(tmp_path), "--b-values", "0,100,600"]) == 0
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["seed"] == 5 and truth["b_values_s_per_mm2"] == [0.0, 100.0, 600.0]
    assert (tmp_path / "dwi.seq.nrrd").is_file() and (tmp_path / "ground_truth.seg.nrrd").is_file()
    assert "tumour" in capsys.readouterr().out


def test_bad_input_is_one_clear_line_and_exit_2(tmp_path, capsys):
    assert main(["phantom", "--out", str(tmp_path), "--b-values", "0,0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("virtualbiopsy: error:") and "two distinct b-values" in err
    assert "Traceback" not in err


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "virtualbiopsy.cli.main", "deps"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NeuroblastomaSeg:" in result.stdout and "MISSING" not in result.stdout
