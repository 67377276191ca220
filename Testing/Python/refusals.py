"""What every refusal must look like, checked the same way for every case of the bad-input matrix.

A command given bad input exits 2 with one line ``virtualbiopsy: error: ...`` naming the problem,
prints no traceback, writes nothing anywhere (not even an empty ``--out``) and leaves every file
that was there untouched. A library call given bad input raises one of the library's typed errors
and leaves the scene exactly as it was: the same node ids and classes, the same modification times,
the same voxels and table cells.

The ``test_bad_input_matrix_*.py`` files hold the cases (one parametrised id per case); this module
holds the checks, so every case is held to the same standard.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from virtualbiopsy.cli.main import main
from virtualbiopsy.errors import VirtualBiopsyError

PROGRESS_LINE = re.compile(r"^\[ *\d+\.\d%\] ")


def file_state(root: Path) -> dict[str, str]:
    """Every file and folder below ``root``: relative path -> SHA-256 of the bytes ('dir' for folders)."""
    state: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            state[str(Path(dirpath, name).relative_to(root)) + "/"] = "dir"
        for name in filenames:
            path = Path(dirpath, name)
            state[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def _difference(before: dict[str, str], after: dict[str, str]) -> str:
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return f"added {added}, removed {removed}, changed {changed}"


@dataclass
class CliCase:
    """One bad input given to the command line.

    ``make(workspace)`` writes the case's input files into ``workspace`` and returns the argument list
    (a new ``--out`` inside ``workspace``, as a user would give); ``expect`` are words the error line must
    contain (case-insensitive), so the message names the problem and not only that there was one.
    """

    id: str
    make: Callable[[Path], list[str]]
    expect: tuple[str, ...]
    marks: tuple = field(default=())


def assert_cli_refuses(case: CliCase, workspace: Path, capsys) -> str:
    """Run ``case`` and check the refusal contract; returns the error line."""
    argv = [str(a) for a in case.make(workspace)]
    capsys.readouterr()
    before = file_state(workspace)
    cwd_before = set(os.listdir("."))
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, f"{case.id}: traceback printed:\n{err}"
    # the progress lines of a step that started before the problem showed are not part of the message
    lines = [line for line in err.splitlines() if line.strip() and not PROGRESS_LINE.match(line)]
    assert code == 2, f"{case.id}: exit status {code}, expected 2; stderr: {err!r}; stdout: {out[-500:]!r}"
    assert len(lines) == 1, f"{case.id}: expected one error line, got {len(lines)}: {lines}"
    line = lines[0]
    assert line.startswith("virtualbiopsy: error: "), f"{case.id}: {line!r}"
    for word in case.expect:
        assert word.lower() in line.lower(), f"{case.id}: error line does not name {word!r}: {line!r}"
    after = file_state(workspace)
    assert after == before, f"{case.id}: files changed by a refused run: {_difference(before, after)}"
    assert set(os.listdir(".")) == cwd_before, f"{case.id}: files written into the working directory"
    return line


def scene_state(context) -> dict[str, tuple]:
    """Node id -> (class, name, MTime, content digest) for every node: what a refused call must leave alone.

    The digest covers a volume's voxels, a segmentation's binary labelmaps and a table's cells, so a
    node emptied or rewritten in place is seen even where its MTime would not tell.
    """
    from vtk.util import numpy_support

    scene = context.scene
    state = {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        digest = hashlib.sha256()
        if node.IsA("vtkMRMLVolumeNode") and node.GetImageData() is not None:
            scalars = node.GetImageData().GetPointData().GetScalars()
            if scalars is not None:
                digest.update(numpy_support.vtk_to_numpy(scalars).tobytes())
        elif node.IsA("vtkMRMLSegmentationNode") and node.GetSegmentation() is not None:
            segmentation = node.GetSegmentation()
            for i in range(segmentation.GetNumberOfSegments()):
                segment_id = segmentation.GetNthSegmentID(i)
                digest.update(segment_id.encode())
                labelmap = segmentation.GetSegment(segment_id).GetRepresentation("Binary labelmap")
                if labelmap is not None and labelmap.GetPointData().GetScalars() is not None:
                    digest.update(numpy_support.vtk_to_numpy(labelmap.GetPointData().GetScalars()).tobytes())
        elif node.IsA("vtkMRMLTableNode") and node.GetTable() is not None:
            table = node.GetTable()
            for column in range(table.GetNumberOfColumns()):
                array = table.GetColumn(column)
                digest.update(str(array.GetName()).encode())
                for row in range(table.GetNumberOfRows()):
                    digest.update(str(array.GetVariantValue(row).ToString()).encode())
        state[node.GetID()] = (node.GetClassName(), node.GetName(), node.GetMTime(), digest.hexdigest())
    return state


def assert_scene_unchanged_after(context, call: Callable[[], object], error: type = VirtualBiopsyError,
                                 expect: tuple[str, ...] = ()) -> VirtualBiopsyError:
    """``call()`` must raise ``error`` (naming ``expect``) and leave every node as it was."""
    before = scene_state(context)
    try:
        call()
    except error as caught:
        raised, message = caught, str(caught)
    else:
        raise AssertionError(f"expected {error.__name__}, nothing was raised")
    assert "\n" not in message.strip(), f"error message is more than one line: {message!r}"
    for word in expect:
        assert word.lower() in message.lower(), f"error does not name {word!r}: {message!r}"
    after = scene_state(context)
    assert set(after) == set(before), f"nodes added {set(after) - set(before)}, removed {set(before) - set(after)}"
    changed = {k for k in before if before[k] != after[k]}
    assert not changed, f"nodes modified by a refused call: {[before[k][:2] for k in changed]}"
    return raised


def write_nrrd(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Path:
    """A NRRD file from a numpy array in (z, y, x) order, through SimpleITK (outside the library's own IO)."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path
