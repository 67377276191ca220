"""Heavy steps run as the command line in their own process (virtualbiopsy.command_job), as the Slicer panels
run them: progress comes back line by line, the results are the files it writes, bad input comes back as
its one-line error, Cancel stops it (and what it had written goes), and a process that ignores the
interrupt is killed with its whole group."""

from __future__ import annotations

import os
import stat
import sys
import time

import pytest

from virtualbiopsy.command_job import CANCELLED_STATUS, CommandJob


@pytest.fixture(scope="module")
def study(sample_study_folder):
    return sample_study_folder(0)


def test_a_step_in_its_own_process_reports_progress_and_writes_its_files(study, tmp_path):
    seen = []
    job = CommandJob(["fcf", "--dwi", study / "dwi.seq.nrrd", "--mask", study / "dwi_labels.nrrd", "--label", "6",
                      "--label", "7", "--bootstrap", "20", "--out", tmp_path / "fcf"]).start()
    while not job.poll().done:  # as a GUI timer would, doing other work between the polls
        seen.append(job.state.fraction)
        time.sleep(0.05)
    state = job.state
    assert state.succeeded, state.lines[-5:]
    assert state.fraction == pytest.approx(1.0, abs=0.01) and state.error == ""
    assert len(set(seen)) >= 3 and seen == sorted(seen), "progress arrives in steps and never goes back"
    assert (tmp_path / "fcf" / "habitats.csv").is_file() and (tmp_path / "fcf" / "habitats.seg.nrrd").is_file()


def test_bad_input_comes_back_as_the_commands_one_line_error(tmp_path):
    state = CommandJob(["fcf", "--dwi", tmp_path / "missing.nrrd", "--b-values", "0,800", "--mask",
                        tmp_path / "mask.nrrd", "--out", tmp_path / "out"]).start().wait(120)
    assert state.done and state.returncode == 2 and not state.cancelled
    assert "missing.nrrd" in state.error and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cancel_interrupts_the_step_and_nothing_of_it_is_kept(tmp_path):
    job = CommandJob(["demo", "--out", tmp_path / "demo"]).start()
    while job.poll().fraction < 0.05 and not job.state.done:
        time.sleep(0.05)
    job.cancel()
    state = job.wait(60)
    assert state.cancelled and state.returncode == CANCELLED_STATUS
    assert any("nothing of this run was kept" in line for line in state.lines)
    assert not (tmp_path / "demo").exists()


@pytest.mark.skipif(os.name != "posix", reason="the stand-in interpreter is a POSIX shell script")
def test_a_process_that_ignores_the_interrupt_is_killed_with_its_group(tmp_path):
    stubborn = tmp_path / "stubborn"
    stubborn.write_text("#!/bin/sh\ntrap '' INT\necho '[ 10.0%] demo: working'\nsleep 60 &\nwait\n")
    stubborn.chmod(stubborn.stat().st_mode | stat.S_IEXEC)
    job = CommandJob(["demo"], python=str(stubborn), grace_s=0.5).start()
    while job.poll().fraction == 0 and not job.state.done:
        time.sleep(0.02)
    assert job.state.fraction == pytest.approx(0.1) and job.state.message == "working"
    job.cancel()
    state = job.wait(20)
    assert state.cancelled and state.returncode == -9  # SIGKILL, after the grace period


def test_the_job_runs_this_interpreter_by_default():
    assert CommandJob(["deps"]).command[:3] == [sys.executable, "-m", "virtualbiopsy.cli.main"]
