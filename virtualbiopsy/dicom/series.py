"""Find the MR series of a folder (or a list of files), choose one, and read it as volumes.

A series is read slice by slice (a classic instance is one slice, an enhanced multi-frame one gives
one slice per frame), the slices grouped into frames - by b-value and gradient direction for a DWI,
by temporal position for a dynamic series - and each frame stacked along the slice normal after
checks that name what is wrong: mixed orientations or pixel grids, a duplicated slice, a missing
slice, non-uniform spacing. Hand-written because highdicom builds one 3D volume of a series, not the
frames of a 4D one; its ``get_volume_from_series`` gives the same voxels and grid on a 3D series
(tested). The grid is the one Slicer's DICOM reader gives: RAS, slices in a right-handed order.
Each slice's header, the stacking checks and the pixels are in :mod:`virtualbiopsy.dicom.slices`.

Choosing a series: ``FOLDER#7`` (series number), ``FOLDER#1.2.826...`` (series UID) or
``FOLDER#T2`` (a unique part of the series description) wherever a command takes an image.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from virtualbiopsy.dicom.slices import LPS_TO_RAS, SliceHeader, slice_headers, slice_pixels, stack_slices
from virtualbiopsy.errors import FileFormatError, ImageDimensionError, InputError
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.progress import as_task

_MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


@dataclass
class SeriesInfo:
    """One series found in a folder, from its headers (no pixel data read)."""

    series_uid: str
    study_uid: str
    number: int | None
    description: str
    modality: str
    manufacturer: str
    image_type: tuple[str, ...]
    files: list[Path] = field(default_factory=list)
    frames: int = 0  # slices in all (an enhanced instance counts each frame)
    rows: int = 0
    columns: int = 0
    pixel_spacing: tuple[float, float] | None = None
    positions: int = 0  # distinct slice positions
    slice_spacing: float | None = None
    b_values: list[float] = field(default_factory=list)
    b_value_source: str = ""
    temporal_positions: int = 0
    enhanced: bool = False
    transfer_syntax: str = ""

    def label(self) -> str:
        number = f"series {self.number}" if self.number is not None else "series"
        return f"{number} '{self.description}' ({self.modality}, {len(self.files)} file(s))"

    def summary(self) -> str:
        size = f"{self.columns}x{self.rows}x{self.positions}"
        spacing = (f"{self.pixel_spacing[1]:g}x{self.pixel_spacing[0]:g}x{self.slice_spacing:.3g} mm"
                   if self.pixel_spacing and self.slice_spacing else "spacing ?")
        extra = []
        if self.b_values:
            extra.append(f"b = {', '.join(f'{b:g}' for b in self.b_values)} s/mm² ({self.b_value_source})")
        if self.temporal_positions > 1:
            extra.append(f"{self.temporal_positions} time points")
        if self.enhanced:
            extra.append("enhanced multi-frame")
        return (f"{self.number if self.number is not None else '-':>4}  {self.modality:<3} {self.description[:40]:<40} "
                f"{len(self.files):>5} file(s) {self.frames:>6} slice(s)  {size}  {spacing}"
                + (f"  [{'; '.join(extra)}]" if extra else ""))


def _files_of(paths: Sequence[str | Path]) -> list[Path]:
    found = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file():
            found.append(path)
        else:
            raise FileFormatError(f"No DICOM file or folder at '{path}'.")
    return found


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError, KeyError, TypeError):
        return None


def _is_directory_index(ds) -> bool:
    meta = getattr(ds, "file_meta", None)
    sop_class = str(getattr(meta, "MediaStorageSOPClassUID", "")) if meta is not None else ""
    return sop_class == _MEDIA_STORAGE_DIRECTORY or "DirectoryRecordSequence" in ds


def find_series(paths: Sequence[str | Path] | str | Path, progress=None) -> list[SeriesInfo]:
    """Every image series among the files of ``paths`` (folders are searched recursively), in series-number
    order; refuses a folder with no DICOM image (naming a DICOMDIR index when that is all it holds)."""
    task = as_task(progress)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = _files_of(paths)
    series: dict[str, SeriesInfo] = {}
    positions: dict[str, set] = defaultdict(set)
    temporal: dict[str, set] = defaultdict(set)
    b_values: dict[str, set] = defaultdict(set)
    indexes, others = [], 0
    for index, path in enumerate(files):
        if index % 50 == 0:
            task.update(index / max(len(files), 1), f"Reading DICOM headers ({index}/{len(files)})")
        ds = _read_header(path)
        if ds is None:
            others += 1
            continue
        if _is_directory_index(ds):
            indexes.append(path)
            continue
        if "SeriesInstanceUID" not in ds or ("Rows" not in ds and "PixelData" not in ds):
            others += 1  # not an image (a structured report, a presentation state...)
            continue
        uid = str(ds.SeriesInstanceUID)
        info = series.get(uid)
        if info is None:
            number = ds.get("SeriesNumber")
            info = series[uid] = SeriesInfo(
                uid, str(ds.get("StudyInstanceUID", "")), int(number) if number not in (None, "") else None,
                str(ds.get("SeriesDescription", "")).strip(), str(ds.get("Modality", "")),
                str(ds.get("Manufacturer", "")), tuple(str(v) for v in (ds.get("ImageType") or ())),
                rows=int(ds.get("Rows", 0)), columns=int(ds.get("Columns", 0)),
                transfer_syntax=str(getattr(ds.file_meta, "TransferSyntaxUID", "")),
            )
        info.files.append(path)
        for frame in slice_headers(ds):
            info.frames += 1
            if frame.position is not None:
                positions[uid].add(tuple(np.round(frame.position, 2)))
            if frame.pixel_spacing is not None:
                info.pixel_spacing = frame.pixel_spacing
            if frame.b_value is not None:
                b_values[uid].add(round(frame.b_value, 3))
                info.b_value_source = frame.b_source
            if frame.temporal is not None:
                temporal[uid].add(frame.temporal)
        info.enhanced = info.enhanced or int(ds.get("NumberOfFrames", 1) or 1) > 1
    task.update(1.0, "DICOM headers read")
    if not series:
        if indexes:
            raise FileFormatError(f"'{indexes[0].name}' is a DICOMDIR (an index of a CD/DVD) and no image file was "
                                  "found beside it; give the folder that holds the image files.")
        raise FileFormatError(f"No DICOM image in {', '.join(str(p) for p in paths)} ({len(files)} file(s), "
                              f"{others} not DICOM images).")
    for uid, info in series.items():
        info.positions = len(positions[uid])
        info.b_values = sorted(b_values[uid])
        info.temporal_positions = len(temporal[uid])
        points = np.array(sorted(positions[uid]))
        if len(points) > 1:
            distances = np.sort(np.linalg.norm(points - points[0], axis=1))
            info.slice_spacing = float(np.median(np.diff(distances)))
    return sorted(series.values(), key=lambda s: (s.number if s.number is not None else 1 << 30, s.series_uid))


def split_reference(path: str | Path) -> tuple[Path, str | None]:
    """'FOLDER#choice' -> (FOLDER, choice); a path without '#' -> (path, None)."""
    text = str(path)
    if "#" in text and not Path(text).exists():
        folder, choice = text.rsplit("#", 1)
        return Path(folder), choice.strip() or None
    return Path(text), None


def choose_series(series: list[SeriesInfo], choice: str | None, where: str) -> SeriesInfo:
    """The series ``choice`` names (number, UID or a unique part of the description); the only one if None."""
    listing = "; ".join(s.label() for s in series[:8]) + (" ..." if len(series) > 8 else "")
    if choice is None:
        if len(series) == 1:
            return series[0]
        raise InputError(f"'{where}' holds {len(series)} series ({listing}); choose one as '{where}#NUMBER', "
                         "#SERIES_UID or #DESCRIPTION.")
    matches = [s for s in series if s.series_uid == choice]
    if not matches and choice.isdigit():
        matches = [s for s in series if s.number == int(choice)]
    if not matches:
        matches = [s for s in series if choice.lower() in s.description.lower()]
    if len(matches) != 1:
        what = "no series" if not matches else f"{len(matches)} series"
        raise InputError(f"'#{choice}' matches {what} in '{where}' (it holds: {listing}).")
    return matches[0]


# -- reading ------------------------------------------------------------------------------------

@dataclass
class DicomSeries:
    """A series read as volumes on one grid: ``arrays`` [k, j, i] float32 in frame order."""

    info: SeriesInfo
    arrays: list[np.ndarray]
    geometry: Geometry
    kind: str  # "volume", "dwi" or "dynamic"
    values: list[float] | None = None  # b-values (s/mm²) or times (s from the first frame)
    directions: np.ndarray | None = None  # [n, 3] unit gradient directions (LPS -> RAS), None if absent
    source: str = ""  # where the values came from
    derived: str = ""  # a scanner-computed map ('ADC', 'FA', ...): never read as a DWI
    notes: list[str] = field(default_factory=list)
    files: list[list[Path]] = field(default_factory=list)  # each frame's instance files, in slice order


def _group_key(frame: SliceHeader, kind: str):
    if kind == "dwi":
        direction = tuple(np.round(frame.direction, 3)) if frame.direction is not None else None
        return (round(frame.b_value, 3), direction)
    if kind == "dynamic":
        return frame.temporal if frame.temporal is not None else round(frame.time_s, 3)
    if kind == "dwi-untagged":
        return frame.rank
    return 0


UNTAGGED_DWI = ("{label} looks like a DWI, but its slices carry no b-value tag (standard (0018,9087) or the "
                "vendor's)")


#: ImageType values of maps a scanner computes from a DWI (never an input to a fit)
_SCANNER_MAPS = {"ADC": "ADC", "FA": "FA", "EADC": "exponential ADC", "EXP": "exponential ADC", "CALC_BVALUE":
                 "computed-b-value"}


def _scanner_map(info: SeriesInfo) -> str:
    """The kind of scanner-computed diffusion map a series is ('ADC', 'FA', ...), '' for an acquired image."""
    if "DIFFUSION" not in info.image_type and "DERIVED" not in info.image_type:
        return ""
    return next((name for word, name in _SCANNER_MAPS.items() if word in info.image_type), "")


def _kind(frames: list[SliceHeader], info: SeriesInfo) -> str:
    with_b = [f for f in frames if f.b_value is not None]
    positions = {tuple(np.round(f.position, 2)) for f in frames if f.position is not None}
    if with_b:
        if len(with_b) != len(frames):
            raise InputError(f"{info.label()}: {len(frames) - len(with_b)} of its {len(frames)} slices carry no "
                             "b-value while the others do; the series is incomplete or mixed.")
        if len({round(f.b_value, 3) for f in frames}) > 1 or len(frames) > len(positions):
            return "dwi"
    if len(frames) <= len(positions):
        return "volume"
    if any(f.temporal is not None for f in frames) and len({f.temporal for f in frames}) > 1:
        return "dynamic"
    times = {round(f.time_s, 3) for f in frames if f.time_s is not None}
    if len(times) > 1 and all(f.time_s is not None for f in frames):
        return "dynamic"
    if len(frames) % max(len(positions), 1):
        raise InputError(f"{info.label()}: {len(frames)} slices at {len(positions)} positions, not a whole number of "
                         "frames: a slice is duplicated at the same position, or missing from some frames.")
    if info.b_values or "DIFFUSION" in info.image_type:
        return "dwi-untagged"  # the volumes in InstanceNumber order; the b-values must be given (--bvalues)
    raise InputError(f"{info.label()}: {len(frames)} slices share {len(positions)} positions and carry no b-value or "
                     "timing tag to tell the frames apart (or slices are duplicated).")


def read_series(info: SeriesInfo, progress=None) -> DicomSeries:
    """Read ``info`` as one volume, or as the frames of a DWI (by b-value and direction) or of a dynamic
    series (by temporal position), all on one grid."""
    task = as_task(progress)
    frames: list[SliceHeader] = []
    for path in info.files:
        ds = _read_header(path)
        frames += slice_headers(ds, path)
    if "MOSAIC" in info.image_type:
        return _read_mosaic(info, task)
    kind = _kind(frames, info)
    derived = _scanner_map(info)
    if derived and kind != "volume":
        image_type = "\\".join(info.image_type)
        raise InputError(f"{info.label()} is the scanner's {derived} map (ImageType {image_type}) but holds several "
                         "frames; give its DWI series instead.")
    if kind == "dwi-untagged":
        at: dict = defaultdict(list)
        for frame in frames:
            at[tuple(np.round(frame.position, 2)) if frame.position is not None else None].append(frame)
        for slices in at.values():
            for rank, frame in enumerate(sorted(slices, key=lambda f: (f.instance, str(f.path), f.frame))):
                frame.rank = rank
    groups: dict = defaultdict(list)
    for frame in frames:
        groups[_group_key(frame, kind)].append(frame)
    keys = list(groups)
    if kind == "dynamic":
        keys.sort(key=lambda key: min((f.time_s for f in groups[key] if f.time_s is not None), default=0.0)
                  if isinstance(key, int) else key)
        if all(isinstance(key, int) for key in keys):
            keys.sort()
    counts = {len(groups[key]) for key in keys}
    if len(counts) > 1:
        sizes = ", ".join(f"{len(groups[key])}" for key in keys[:10])
        raise InputError(f"{info.label()}: its frames have different numbers of slices ({sizes}); slices are missing "
                         "from some frames.")
    arrays, geometry, files, cache = [], None, [], {}
    for index, key in enumerate(keys):
        task.update(index / len(keys), f"Reading {info.label()} ({index + 1}/{len(keys)})")
        label = info.label() + (f", frame {index + 1}" if len(keys) > 1 else "")
        ordered, grid = stack_slices(groups[key], label)
        if geometry is not None and geometry.differences(grid):
            differences = "; ".join(geometry.differences(grid))
            raise InputError(f"{label} is not on the grid of the first frame ({differences}).")
        geometry = geometry or grid
        arrays.append(slice_pixels(ordered, cache))
        files.append([f.path for f in ordered])
    result = DicomSeries(info, arrays, geometry, "dwi" if kind == "dwi-untagged" else kind)
    result.files = files
    if derived:
        result.derived = derived
        result.notes.append(f"it is the scanner's {derived} map (ImageType), not an acquired image")
    elif kind == "dwi" and any(word in info.image_type for word in ("TRACEW", "TRACE")):
        result.notes.append("its images are the scanner's trace-weighted (TRACEW) ones: used as the trace of each "
                            "b-value")
    if kind == "dwi-untagged":
        result.source = UNTAGGED_DWI.format(label=info.label())  # said by the command that needs b-values
    elif kind == "dwi":
        result.values = [float(key[0]) for key in keys]
        result.source = f"{info.b_value_source} of {info.label()}"
        if any(key[1] is not None for key in keys):
            result.directions = np.array([(LPS_TO_RAS @ np.asarray(key[1])) if key[1] is not None else np.zeros(3)
                                          for key in keys])
    elif kind == "dynamic":
        firsts = [min((f.time_s for f in groups[key] if f.time_s is not None), default=None) for key in keys]
        sources = {f.time_source for key in keys for f in groups[key] if f.time_s is not None}
        if None in firsts:
            raise InputError(f"{info.label()} is dynamic ({len(keys)} temporal positions) but some frames carry no "
                             "time (TriggerTime, AcquisitionTime, FrameAcquisitionDateTime); give --times instead.")
        result.values = [round(t - firsts[0], 4) for t in firsts]
        result.source = f"{', '.join(sorted(sources))} of {info.label()}"
        if any("fallback" in s for s in sources):
            result.notes.append("frame times from ContentTime, a fallback: check them against the protocol")
    task.update(1.0, f"{info.label()} read")
    return result


def _read_mosaic(info: SeriesInfo, task) -> DicomSeries:
    """A Siemens mosaic series (each instance one 3D volume tiled in one image): nibabel's mosaic reader
    un-tiles it and gives its voxel-to-LPS affine (the CSA header's slice normal and count); b-values and
    directions come from the same tags as for any other DWI. One volume per instance, on one grid."""
    import warnings

    import pydicom
    from nibabel.nicom import dicomwrappers

    from virtualbiopsy.dicom.diffusion import diffusion_of

    volumes = []
    for index, path in enumerate(info.files):
        task.update(index / len(info.files), f"Reading {info.label()} (mosaic {index + 1}/{len(info.files)})")
        try:
            ds = pydicom.dcmread(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # nibabel calls its DICOM readers experimental
                wrapper = dicomwrappers.wrapper_from_data(ds)
                data, affine = np.asarray(wrapper.get_data(), dtype=np.float32), np.asarray(wrapper.affine, float)
        except Exception as error:  # noqa: BLE001 - damaged CSA headers / pixels raise many kinds
            raise FileFormatError(f"{info.label()}: could not un-tile the Siemens mosaic '{Path(path).name}' "
                                  f"({type(error).__name__}: {' '.join(str(error).split())[:120]}).") from None
        b, direction, source = diffusion_of(ds)
        volumes.append((int(ds.get("InstanceNumber") or 0), str(path), b, direction, source, data, affine))
    volumes.sort(key=lambda v: (v[0], v[1]))
    arrays, geometry, files = [], None, []
    for number, (_, path, _, _, _, data, affine) in enumerate(volumes, start=1):
        array = data.transpose(2, 1, 0)  # nibabel (i, j, k) -> [k, j, i]
        matrix = np.eye(4)
        matrix[:3, :] = LPS_TO_RAS @ affine[:3, :]
        normal = np.cross(matrix[:3, 0], matrix[:3, 1])
        if float(normal @ matrix[:3, 2]) < 0:  # right-handed, slices ascending along the normal (as stack_slices)
            array = array[::-1]
            matrix[:3, 3] += matrix[:3, 2] * (array.shape[0] - 1)
            matrix[:3, 2] *= -1
        grid = Geometry(tuple(int(n) for n in array.shape), matrix)
        if geometry is not None and geometry.differences(grid):
            raise InputError(f"{info.label()}: mosaic {number} is not on the grid of the first "
                             f"({'; '.join(geometry.differences(grid))}).")
        geometry = geometry or grid
        arrays.append(np.ascontiguousarray(array))
        files.append([Path(path)])
    tagged = [v for v in volumes if v[2] is not None]
    if len(volumes) > 1 and len(tagged) != len(volumes):
        raise InputError(f"{info.label()}: {len(volumes) - len(tagged)} of its {len(volumes)} mosaics carry no "
                         "b-value (CSA header or (0019,100C)).")
    kind = "dwi" if len(volumes) > 1 else "volume"
    result = DicomSeries(info, arrays, geometry, kind)
    result.files = files
    if kind == "dwi":
        result.values = [float(v[2]) for v in volumes]
        result.source = f"{volumes[0][4]} of {info.label()}"
        if any(v[3] is not None for v in volumes):
            result.directions = np.array([LPS_TO_RAS @ np.asarray(v[3]) if v[3] is not None else np.zeros(3)
                                          for v in volumes])
    result.notes.append(f"a Siemens mosaic of {len(volumes)} volume(s), un-tiled with nibabel's reader")
    task.update(1.0, f"{info.label()} read")
    return result


def load(reference: str | Path, progress=None) -> DicomSeries:
    """Find and read the series that ``reference`` ('FOLDER', 'FOLDER#choice' or a file) names."""
    folder, choice = split_reference(reference)
    task = as_task(progress)
    series = find_series(folder, task.sub(0.0, 0.2))
    return read_series(choose_series(series, choice, str(folder)), task.sub(0.2, 1.0))


def require_volume(series: DicomSeries) -> tuple[np.ndarray, Geometry]:
    """The one 3D volume of a series; refuses a DWI or dynamic series (name the frame to take)."""
    if len(series.arrays) != 1:
        what = {"dwi": "b-values", "dynamic": "time points"}.get(series.kind, "frames")
        raise ImageDimensionError(f"{series.info.label()} is a 4D series of {len(series.arrays)} volumes ({what}); "
                                  "use it where a series is expected (fcf --dwi, dce --series).")
    return series.arrays[0], series.geometry
