"""Progress ranges, cancellation mid-step leaving the scene unchanged, and safe archives."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

from virtualbiopsy.archives import safe_extract, sha256_of
from virtualbiopsy.errors import Cancelled, FileFormatError, UnsafeArchiveError
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy.mrml import arrays
from virtualbiopsy.progress import CancelToken, Task


def test_nested_ranges_report_on_one_scale():
    seen = []
    task = Task(lambda fraction, message: seen.append((round(fraction, 3), message)))
    inner = task.sub(0.5, 1.0).sub(0.0, 0.5)
    inner.update(0.5, "quarter of the second half")
    assert seen == [(0.625, "quarter of the second half")]
    list(task.sub(0.0, 0.5).steps(range(4), "loop"))
    assert [f for f, _ in seen[1:]] == [0.0, 0.125, 0.25, 0.375, 0.5]


def test_cancel_raises_at_next_update():
    token = CancelToken()
    task = Task(None, token)
    task.update(0.1)
    token.cancel()
    with pytest.raises(Cancelled):
        task.update(0.2)


def test_cancelled_adc_fit_leaves_scene_unchanged(context, grid, scene_unchanged):
    volumes = [arrays.add_volume_from_array(context, np.full(grid.shape, v, np.float32), grid, f"b{b}")
               for b, v in ((0, 1000.0), (800, 400.0))]
    token = CancelToken()

    def cancel_on_first_report(fraction, message):
        token.cancel()

    with scene_unchanged(context), pytest.raises(Cancelled):
        FitClusterFitLogic(context).fit_adc_map(volumes, [0, 800], progress=Task(cancel_on_first_report, token))


def _zip(path, entries, links=()):
    with zipfile.ZipFile(path, "w") as archive:
        for name in entries:
            archive.writestr(name, "data")
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            archive.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize("bad", ["../escape.txt", "/abs/path.txt", "a/../../escape.txt", "C:/windows.txt"])
def test_archive_entries_escaping_target_are_refused(tmp_path, bad):
    archive = _zip(tmp_path / "model.zip", ["ok/file.txt", bad])
    target = tmp_path / "target"
    with pytest.raises(UnsafeArchiveError, match="outside the target"):
        safe_extract(archive, target)
    assert not target.exists(), "nothing may be extracted from a refused archive"


def test_archive_symlink_is_refused(tmp_path):
    archive = _zip(tmp_path / "model.zip", ["ok.txt"], links=["link"])
    with pytest.raises(UnsafeArchiveError):
        safe_extract(archive, tmp_path / "target")


def test_an_archive_with_the_wrong_sha256_is_refused_and_the_right_one_extracts(tmp_path):
    archive = _zip(tmp_path / "model.zip", ["fold_0/checkpoint.pth"])
    with pytest.raises(UnsafeArchiveError, match="SHA256"):
        safe_extract(archive, tmp_path / "t1", expected_sha256="0" * 64)
    out = safe_extract(archive, tmp_path / "t2", expected_sha256=sha256_of(archive))
    assert (out / "fold_0" / "checkpoint.pth").read_text() == "data"


def test_a_file_that_is_not_a_zip_is_refused_as_not_a_valid_zip(tmp_path):
    path = tmp_path / "scene.mrb"
    path.write_bytes(os.urandom(64))
    with pytest.raises(FileFormatError, match="not a valid zip"):
        safe_extract(path, tmp_path / "x")
