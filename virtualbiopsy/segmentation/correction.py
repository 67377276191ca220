"""The correction loop on MRML nodes: compare the AI and the corrected segment, time the edit,
and export corrected cases as an nnU-Net v2 dataset for retraining.

Nothing here changes the input segmentations or volumes; every step that adds nodes leaves the
scene as it was if it fails, and a failed export leaves the dataset folder as it was.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.errors import GeometryMismatchError, InputError
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.mrml.geometry import Geometry, require_same_geometry, require_scalar_3d
from virtualbiopsy.progress import as_task
from virtualbiopsy.segmentation.metrics import METRIC_DESCRIPTIONS, METRIC_NAMES, METRIC_UNITS, compare_masks

EDITING_SECONDS_ATTRIBUTE = attributes.EDITING_SECONDS
DEFAULT_LABEL_NAMES = MappingProxyType({"background": 0, "tumour": 1})
FILE_ENDING = ".nii.gz"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# -- comparison --------------------------------------------------------------------------------

def _segment_name(segmentation_node, segment_id: str) -> str:
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        names = [segmentation_node.GetSegmentation().GetSegment(s).GetName()
                 for s in arrays.segment_ids(segmentation_node)]
        raise InputError(
            f"Segmentation '{segmentation_node.GetName()}' has no segment with ID '{segment_id}' (it has: "
            + (", ".join(names) or "no segments") + ")."
        )
    return segment.GetName()


def _segment_ids(segment_ids: str | Sequence[str]) -> list[str]:
    """One segment ID or several (their union), without repeats, in the order given."""
    ids = [segment_ids] if isinstance(segment_ids, str) else list(dict.fromkeys(segment_ids))
    if not ids:
        raise InputError("Choose at least one segment to compare.")
    return ids


def _mask_on_grid(segmentation_node, segment_ids: str | Sequence[str], reference_volume, role: str) -> np.ndarray:
    """The union of the segments as a mask on the reference grid, refusing resampling and cropping."""
    union = np.zeros(Geometry.from_node(reference_volume).shape, bool)
    own_voxels = {row["segment_id"]: row["voxels"] for row in arrays.segment_volumes(segmentation_node)}
    for segment_id in _segment_ids(segment_ids):
        name = _segment_name(segmentation_node, segment_id)
        own = own_voxels[segment_id]
        if own == 0:  # an empty segment (e.g. the AI found nothing) may have no voxel grid at all
            continue
        arrays.require_segmentation_on_grid(segmentation_node, reference_volume)
        mask = arrays.mask_from_segment(segmentation_node, segment_id, reference_volume, allow_empty=True)
        inside = int(np.count_nonzero(mask))
        if inside != own:
            raise GeometryMismatchError(
                f"{own - inside} of the {own} voxels of the {role} segment '{name}' "
                f"('{segmentation_node.GetName()}') lie outside the reference image '{reference_volume.GetName()}'; "
                "choose a reference image that covers both segmentations."
            )
        union |= mask
    return union


def compare_segments(
    context, ai_segmentation, ai_segment_id: str | Sequence[str], corrected_segmentation,
    corrected_segment_id: str | Sequence[str], reference_volume, tolerance_mm: float = 1.0, table_node=None,
):
    """A table (metric, value, unit, description) of the AI vs corrected segment agreement.

    Each side is one segment ID or a list of them, whose union is compared (a tumour drawn as rim
    and core, say); the table's attributes ``VirtualBiopsy.AiSegments`` / ``CorrectedSegments`` name
    the segments compared.

    Both segments are read on the voxel grid of ``reference_volume``. Segmentations whose voxels
    are not on that grid (other spacing, directions or shifted voxel centres) are refused with
    :class:`GeometryMismatchError` rather than resampled, so that metrics never mix in
    interpolation; so are segments reaching outside the reference image. Two empty segments raise
    :class:`EmptyMaskError`. Rows follow :data:`METRIC_NAMES`; ``tolerance_mm`` is the surface
    Dice tolerance in mm. Fills ``table_node`` if given, else adds a new table. The segmentations
    are never modified.
    """
    geometry = require_scalar_3d(reference_volume, "reference image")
    ai_names = [_segment_name(ai_segmentation, i) for i in _segment_ids(ai_segment_id)]
    corrected_names = [_segment_name(corrected_segmentation, i) for i in _segment_ids(corrected_segment_id)]
    ai_name = f"AI {_describe(ai_names)} ('{ai_segmentation.GetName()}')"
    corrected_name = f"corrected {_describe(corrected_names)} ('{corrected_segmentation.GetName()}')"
    ai = _mask_on_grid(ai_segmentation, ai_segment_id, reference_volume, "AI")
    corrected = _mask_on_grid(corrected_segmentation, corrected_segment_id, reference_volume, "corrected")
    values = compare_masks(ai, corrected, geometry.spacing, tolerance_mm, ai_name=ai_name,
                           corrected_name=corrected_name)
    descriptions = dict(METRIC_DESCRIPTIONS)
    descriptions["surface_dsc"] += f" (tolerance {float(tolerance_mm):g} mm)"
    columns = {
        "metric": list(METRIC_NAMES),
        "value": [values[name] for name in METRIC_NAMES],
        "unit": [METRIC_UNITS[name] for name in METRIC_NAMES],
        "description": [descriptions[name] for name in METRIC_NAMES],
    }
    with context.transaction():
        table = arrays.add_table(
            context, columns, f"{corrected_segmentation.GetName()} vs {ai_segmentation.GetName()} agreement",
            table_node)
        table.SetAttribute(attributes.SURFACE_DICE_TOLERANCE_MM, f"{float(tolerance_mm):g}")
        table.SetAttribute(attributes.AI_SEGMENTS, json.dumps(ai_names))
        table.SetAttribute(attributes.CORRECTED_SEGMENTS, json.dumps(corrected_names))
    return table


def _describe(names: list[str]) -> str:
    if len(names) == 1:
        return f"segment '{names[0]}'"
    return "segments " + " + ".join(f"'{n}'" for n in names) + " (their union)"


# -- editing time ------------------------------------------------------------------------------

@dataclass
class EditingTimer:
    """Editing time of one correction, in seconds.

    ``start()`` when the AI result is accepted for editing, ``stop()`` when the correction is
    saved; several start/stop sessions add up. ``clock`` returns seconds (default
    ``time.monotonic``); tests pass a fake clock.
    """

    clock: Callable[[], float] = time.monotonic
    _elapsed: float = field(default=0.0, init=False, repr=False)
    _started_at: float | None = field(default=None, init=False, repr=False)

    @property
    def running(self) -> bool:
        return self._started_at is not None

    def start(self) -> None:
        if self.running:
            raise InputError("The editing timer is already running; stop it before starting it again.")
        self._started_at = float(self.clock())

    def stop(self) -> float:
        """Stop timing; returns the total editing time in seconds."""
        if not self.running:
            raise InputError("The editing timer was not started; start it when editing begins.")
        self._elapsed += max(float(self.clock()) - self._started_at, 0.0)
        self._started_at = None
        return self._elapsed

    @property
    def seconds(self) -> float:
        """Total editing time so far in seconds (including a session still running)."""
        running = max(float(self.clock()) - self._started_at, 0.0) if self.running else 0.0
        return self._elapsed + running

    def add(self, seconds: float) -> None:
        """Count ``seconds`` already spent (an editing session restored from an autosave)."""
        seconds = float(seconds)
        if not (math.isfinite(seconds) and seconds >= 0):
            raise InputError(f"Editing time must be a number of seconds >= 0; got {seconds!r}.")
        self._elapsed += seconds

    def reset(self) -> None:
        self._elapsed, self._started_at = 0.0, None


def stamp_segmentation(segmentation_node, seconds: float) -> None:
    """Store the editing time (s) on the corrected segmentation as the node attribute
    ``VirtualBiopsy.EditingSeconds``.

    Node attributes are saved with the scene (``.mrml`` / ``.mrb``) but NOT in a ``.seg.nrrd``
    file: saving only the segmentation file drops the editing time (record it in a table or the
    scene as well).
    """
    seconds = float(seconds)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise InputError(f"The editing time must be a number of seconds >= 0; got {seconds!r}.")
    segmentation_node.SetAttribute(EDITING_SECONDS_ATTRIBUTE, f"{seconds:.3f}")


def read_editing_seconds(segmentation_node) -> float | None:
    """The editing time (s) stored by :func:`stamp_segmentation`, or None if there is none."""
    text = segmentation_node.GetAttribute(EDITING_SECONDS_ATTRIBUTE)
    if text is None or text == "":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(
            f"Segmentation '{segmentation_node.GetName()}' has an unreadable editing time '{text}' "
            f"(attribute {EDITING_SECONDS_ATTRIBUTE})."
        ) from None


# -- export for retraining ---------------------------------------------------------------------

@dataclass
class RetrainingCase:
    """One corrected case: its image channels (in ``channel_names`` order) and its tumour segment."""

    case_id: str
    channel_volumes: list = field(default_factory=list)
    segmentation: Any = None
    segment_id: str = ""


def _check_safe_name(name: str, role: str) -> str:
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise InputError(
            f"The {role} {name!r} cannot be used as a file name: use letters, digits, '_', '-' and '.' only "
            "(no spaces, no '/', no '..'), starting with a letter or digit."
        )
    return name


def _check_labels(label_names: Mapping[str, int]) -> tuple[dict[str, int], int]:
    labels = {str(k): int(v) for k, v in label_names.items()}
    foreground = [v for k, v in labels.items() if v != 0]
    if labels.get("background") != 0 or len(foreground) != 1 or foreground[0] != 1:
        raise InputError(
            f"The labels must be {{'background': 0, '<tumour name>': 1}} (one segment per case is exported); "
            f"got {labels}."
        )
    return labels, foreground[0]


def _existing_dataset(folder: Path, dataset_id: int, name: str) -> None:
    """Refuse another nnU-Net dataset folder with the same ID (nnU-Net finds datasets by ID)."""
    if not folder.is_dir():
        return
    others = [p.name for p in folder.glob(f"Dataset{dataset_id:03d}_*") if p.name != name]
    if others:
        raise InputError(
            f"'{folder}' already holds {', '.join(others)} with dataset ID {dataset_id}; nnU-Net needs one "
            "folder per ID. Choose another dataset ID or name."
        )


def _check_case(case: RetrainingCase, n_channels: int) -> None:
    if len(case.channel_volumes) != n_channels:
        raise InputError(
            f"Case '{case.case_id}' has {len(case.channel_volumes)} image channels but the dataset has "
            f"{n_channels} (channel_names)."
        )
    reference = case.channel_volumes[0]
    geometry = require_scalar_3d(reference, f"channel 0 of case '{case.case_id}'")
    for index, volume in enumerate(case.channel_volumes[1:], start=1):
        other = require_scalar_3d(volume, f"channel {index} of case '{case.case_id}'")
        require_same_geometry(geometry, other, reference.GetName(), volume.GetName())
    if case.segmentation is None:
        raise InputError(f"Case '{case.case_id}' has no segmentation.")
    _segment_name(case.segmentation, case.segment_id)


def _write_volume(context, volume, array: np.ndarray | None, geometry: Geometry, path: Path, labelmap=False):
    """Write through a temporary node so the user's node keeps its own storage node and file name."""
    class_name = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    with arrays.scratch_nodes(context.scene):
        node = context.add_node(class_name, "export")
        geometry.apply_to(node)
        if array is None:
            node.SetAndObserveImageData(volume.GetImageData())  # shared, not copied
        else:
            arrays.update_volume_from_array(node, array)
        io.save_node(node, path)


def export_for_retraining(
    context, cases: Sequence[RetrainingCase], dataset_folder, dataset_id: int = 501,
    dataset_name: str = "Neuroblastoma", channel_names: Sequence[str] = ("T2",),
    label_names: Mapping[str, int] = DEFAULT_LABEL_NAMES, progress=None, overwrite: bool = False,
) -> Path:
    """Write (or extend) an nnU-Net v2 raw dataset ``dataset_folder/DatasetXXX_Name``; returns its path.

    Layout: ``imagesTr/<case>_0000.nii.gz`` (one file per channel: _0000, _0001, ...),
    ``labelsTr/<case>.nii.gz`` (uint8, the segment as label 1 on the first channel's grid,
    resampled by nearest neighbour as Slicer's label-map export does) and ``dataset.json``
    (channel_names, labels, numTraining, file_ending). All channels of a case must share the first
    channel's grid (within 0.001 mm) and are written with exactly its geometry. An existing dataset
    is extended and numTraining recounted; its channel names and labels must match. A case ID already in the
    dataset is refused unless ``overwrite``. All cases are checked (safe IDs, channel count, one
    grid per case, non-empty segment) and written to a staging folder first, so a failure or a
    cancel leaves the dataset as it was.
    """
    task = as_task(progress)
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, np.integer)) or not 1 <= dataset_id <= 999:
        raise InputError(f"The nnU-Net dataset ID must be an integer from 1 to 999; got {dataset_id!r}.")
    _check_safe_name(dataset_name, "dataset name")
    channels = {str(i): str(n) for i, n in enumerate(channel_names)}
    if not channels:
        raise InputError("At least one image channel name is needed (e.g. channel_names=('T2',)).")
    labels, label_value = _check_labels(label_names)
    root = Path(dataset_folder)
    name = f"Dataset{int(dataset_id):03d}_{dataset_name}"
    _existing_dataset(root, int(dataset_id), name)
    dataset = root / name
    images_dir, labels_dir, json_path = dataset / "imagesTr", dataset / "labelsTr", dataset / "dataset.json"

    if json_path.is_file():
        existing = json.loads(json_path.read_text())
        if existing.get("channel_names") != channels or existing.get("labels") != labels or \
                existing.get("file_ending") != FILE_ENDING:
            raise InputError(
                f"'{dataset}' already holds a dataset with channels {existing.get('channel_names')} and labels "
                f"{existing.get('labels')}; cannot add cases with channels {channels} and labels {labels}."
            )
    present = {p.name[: -len(FILE_ENDING)] for p in labels_dir.glob(f"*{FILE_ENDING}")} if labels_dir.is_dir() \
        else set()
    seen = set()
    for case in cases:
        _check_safe_name(case.case_id, "case ID")
        if case.case_id in seen:
            raise InputError(f"Case ID '{case.case_id}' is given twice.")
        seen.add(case.case_id)
        if case.case_id in present and not overwrite:
            raise InputError(
                f"Case '{case.case_id}' is already in '{dataset}'; use another case ID or overwrite=True to replace it."
            )
        _check_case(case, len(channels))
    if not cases:
        raise InputError("No cases to export.")

    created = not dataset.exists()
    dataset.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging_", dir=dataset))
    try:
        for case in task.steps(list(cases), "Writing cases for retraining"):
            reference = case.channel_volumes[0]
            geometry = Geometry.from_node(reference)
            mask = arrays.mask_from_segment(case.segmentation, case.segment_id, reference)
            _write_volume(context, None, mask.astype(np.uint8) * np.uint8(label_value), geometry,
                          staging / "labelsTr" / f"{case.case_id}{FILE_ENDING}", labelmap=True)
            for index, volume in enumerate(case.channel_volumes):
                _write_volume(context, volume, None, geometry,
                              staging / "imagesTr" / f"{case.case_id}_{index:04d}{FILE_ENDING}")
        images_dir.mkdir(exist_ok=True)
        labels_dir.mkdir(exist_ok=True)
        for sub, target in (("imagesTr", images_dir), ("labelsTr", labels_dir)):
            for path in sorted((staging / sub).iterdir()):
                path.replace(target / path.name)
    except BaseException:
        if created:  # a dataset folder this call made holds nothing of the user's
            shutil.rmtree(dataset, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    count = len(list(labels_dir.glob(f"*{FILE_ENDING}")))
    content = {"channel_names": channels, "labels": labels, "numTraining": count, "file_ending": FILE_ENDING,
               "name": name, "description": "Radiologist-corrected tumour segmentations exported by Virtual Biopsy"}
    json_path.write_text(json.dumps(content, indent=2))
    return dataset
