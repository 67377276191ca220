"""The slices of a DICOM series: each slice's header, the slices of one frame stacked, their pixels.

A classic instance is one slice, an enhanced multi-frame one gives one slice per frame;
:func:`slice_headers` reads where each lies, its rescale and what tells the frames of a 4D series
apart (b-value and gradient direction, temporal position, acquisition time).
:func:`stack_slices` orders the slices of one frame along their normal and checks them (one
orientation, one pixel grid, no duplicated, missing or sheared slice, uniform spacing), giving
Slicer's grid: RAS, slices in a right-handed order. :mod:`virtualbiopsy.dicom.series` groups them
into frames and reads the series.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.mrml.geometry import Geometry

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class SliceHeader:
    """One 2D slice: where it lies, what it is (b-value, time) and where its pixels are."""

    path: Path | None
    frame: int  # index in an enhanced instance, 0 for a classic one
    position: np.ndarray | None  # LPS mm of the first pixel's centre
    orientation: np.ndarray | None  # 6 direction cosines (row, column)
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    rows: int
    columns: int
    slope: float = 1.0
    intercept: float = 0.0
    b_value: float | None = None
    direction: np.ndarray | None = None
    b_source: str = ""
    temporal: object = None  # temporal position index / identifier
    time_s: float | None = None
    time_source: str = ""
    instance: int = 0  # InstanceNumber (orders the volumes of a DWI without b-value tags)
    rank: int = 0  # the volume an untagged DWI slice belongs to (its order among slices at its position)


def _floats(value, n: int) -> np.ndarray | None:
    try:
        array = np.asarray([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (n,) else None


def _seconds_of_day(value) -> float | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        hours, minutes, seconds = int(text[0:2]), int(text[2:4] or 0), float(text[4:] or 0)
    except ValueError:
        return None
    return hours * 3600 + minutes * 60 + seconds


def _datetime_seconds(value) -> float | None:
    text = str(value or "").strip().split("+")[0].split("-")[0]
    if len(text) < 14:
        return None
    try:
        moment = datetime.datetime.strptime(text[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return None
    fraction = float("0" + text[14:]) if text[14:].startswith(".") else 0.0
    return moment.timestamp() + fraction


def _item(group, keyword):
    sequence = group.get(keyword) if group is not None else None
    return sequence[0] if sequence else None


def slice_headers(ds, path: Path | None = None) -> list[SliceHeader]:
    """The slices of one instance (its header only)."""
    from virtualbiopsy.dicom.diffusion import diffusion_of

    count = int(ds.get("NumberOfFrames", 1) or 1)
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if count == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        spacing = _floats(ds.get("PixelSpacing"), 2)
        b, direction, source = diffusion_of(ds)
        frame = SliceHeader(path, 0, _floats(ds.get("ImagePositionPatient"), 3),
                       _floats(ds.get("ImageOrientationPatient"), 6),
                       tuple(spacing) if spacing is not None else None, rows, columns,
                       float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0),
                       b, direction, source)
        frame.instance = int(ds.get("InstanceNumber") or 0)
        if ds.get("TemporalPositionIdentifier") not in (None, ""):
            frame.temporal = int(ds.TemporalPositionIdentifier)
        elif ds.get("TemporalPositionIndex") not in (None, ""):
            frame.temporal = int(ds.TemporalPositionIndex)
        if ds.get("TriggerTime") not in (None, ""):
            frame.time_s, frame.time_source = float(ds.TriggerTime) / 1000.0, "TriggerTime (0018,1060)"
        elif ds.get("AcquisitionTime") not in (None, ""):
            frame.time_s, frame.time_source = _seconds_of_day(ds.AcquisitionTime), "AcquisitionTime (0008,0032)"
        elif ds.get("ContentTime") not in (None, ""):
            frame.time_s, frame.time_source = _seconds_of_day(ds.ContentTime), "ContentTime (0008,0033, a fallback)"
        return [frame]
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or [None] * count
    frames = []
    for index in range(count):
        group = per_frame[index] if index < len(per_frame) else None

        def find(keyword, group=group):
            return _item(group, keyword) or _item(shared, keyword)

        position, orientation, measures = find("PlanePositionSequence"), find("PlaneOrientationSequence"), \
            find("PixelMeasuresSequence")
        transform, content = find("PixelValueTransformationSequence"), find("FrameContentSequence")
        spacing = _floats(measures.get("PixelSpacing"), 2) if measures is not None else None
        b, direction, source = diffusion_of(ds, group if group is not None and "MRDiffusionSequence" in group
                                            else shared)
        frame = SliceHeader(path, index,
                       _floats(position.get("ImagePositionPatient"), 3) if position is not None else None,
                       _floats(orientation.get("ImageOrientationPatient"), 6) if orientation is not None else None,
                       tuple(spacing) if spacing is not None else None, rows, columns,
                       float(transform.get("RescaleSlope", 1) or 1) if transform is not None else 1.0,
                       float(transform.get("RescaleIntercept", 0) or 0) if transform is not None else 0.0,
                       b, direction, source)
        if content is not None:
            if content.get("TemporalPositionIndex") not in (None, ""):
                frame.temporal = int(content.TemporalPositionIndex)
            moment = _datetime_seconds(content.get("FrameAcquisitionDateTime"))
            if moment is not None:
                frame.time_s, frame.time_source = moment, "FrameAcquisitionDateTime (0018,9074)"
        frames.append(frame)
    return frames


def stack_slices(frames: list[SliceHeader], label: str) -> tuple[list[SliceHeader], Geometry]:
    """The slices of one frame in order along the normal, and their grid (LPS -> RAS, right-handed)."""
    missing = [f for f in frames if f.position is None or f.orientation is None or f.pixel_spacing is None]
    if missing:
        raise InputError(f"{label}: {len(missing)} slice(s) lack ImagePositionPatient, ImageOrientationPatient or "
                         "PixelSpacing; the volume's geometry is unknown.")
    orientations = np.array([f.orientation for f in frames])
    if np.abs(orientations - orientations[0]).max() > 1e-4:
        distinct = len({tuple(np.round(o, 4)) for o in orientations})
        raise InputError(f"{label}: its slices have {distinct} different orientations (a localiser or a "
                         "multi-planar series); choose a series of one orientation.")
    sizes = {(f.rows, f.columns, tuple(np.round(f.pixel_spacing, 5))) for f in frames}
    if len(sizes) > 1:
        raise InputError(f"{label}: its slices differ in size or pixel spacing ({len(sizes)} kinds).")
    row, column = frames[0].orientation[:3], frames[0].orientation[3:]
    normal = np.cross(row, column)
    ordered = sorted(frames, key=lambda f: float(f.position @ normal))
    heights = np.array([float(f.position @ normal) for f in ordered])
    if len(ordered) > 1:
        steps = np.diff(heights)
        duplicated = np.flatnonzero(steps < 1e-3)
        if duplicated.size:
            at = heights[duplicated[0]]
            raise InputError(f"{label}: two slices lie at the same position ({at:.2f} mm along the normal); the "
                             "series holds a duplicated slice or several frames without a tag to tell them apart.")
        step = float(np.median(steps))
        off = np.flatnonzero(np.abs(steps - step) > max(0.01 * step, 1e-3))
        if off.size:
            gap = steps[off[0]]
            ratio = gap / step
            if abs(ratio - round(ratio)) < 0.05 and round(ratio) >= 2:
                raise InputError(f"{label}: {int(round(ratio)) - 1} slice(s) missing between {heights[off[0]]:.2f} and "
                                 f"{heights[off[0] + 1]:.2f} mm (slices are {step:.3g} mm apart elsewhere).")
            raise InputError(f"{label}: non-uniform slice spacing ({steps.min():.3g} to {steps.max():.3g} mm); "
                             "resample it on the scanner or in Slicer first.")
        in_plane = [(f.position - ordered[0].position) - ((f.position - ordered[0].position) @ normal) * normal
                    for f in ordered]
        if max(float(np.linalg.norm(v)) for v in in_plane) > 0.01 * float(np.min(frames[0].pixel_spacing)) + 1e-3:
            raise InputError(f"{label}: its slices are shifted in-plane from one another (a sheared stack); "
                             "resample it first.")
    else:
        step = 1.0
    row_spacing, column_spacing = ordered[0].pixel_spacing
    lps = np.column_stack([row * column_spacing, column * row_spacing, normal * step])
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ lps
    matrix[:3, 3] = LPS_TO_RAS @ ordered[0].position
    return ordered, Geometry((len(ordered), ordered[0].rows, ordered[0].columns), matrix)


def _decode(path: Path) -> np.ndarray:
    import pydicom

    syntax = ""
    try:
        ds = pydicom.dcmread(path)
        syntax = ds.file_meta.TransferSyntaxUID.name
        return ds.pixel_array
    except Exception as error:  # noqa: BLE001 - pydicom raises many kinds for damaged / undecodable data
        raise FileFormatError(
            f"Could not read the pixels of '{path.name}'" + (f" ({syntax})" if syntax else "")
            + f": {' '.join(str(error).split())[:200]}. A truncated file, or a compression no installed pixel-data "
            "plugin decodes (pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg)."
        ) from None


def slice_pixels(frames: list[SliceHeader], cache: dict) -> np.ndarray:
    array = np.empty((len(frames), frames[0].rows, frames[0].columns), np.float32)
    for k, frame in enumerate(frames):
        data = cache.get(frame.path)
        if data is None:
            data = _decode(frame.path)
            data = np.asarray(data)
            cache.clear()  # keep one instance's pixels: an enhanced object is read once for all its frames
            cache[frame.path] = data
        plane = data[frame.frame] if data.ndim == 3 else data
        if plane.shape != (frame.rows, frame.columns):
            raise FileFormatError(f"'{frame.path.name}' holds {plane.shape} pixels per frame, its header says "
                                  f"{frame.rows} x {frame.columns}; a colour image or a damaged file.")
        array[k] = plane.astype(np.float32) * frame.slope + frame.intercept
    return array
