"""DICOM series as new MRML volume nodes (what :func:`virtualbiopsy.mrml.io.load_volume` and
:func:`~virtualbiopsy.mrml.io.load_frames` do with a DICOM folder or 'FOLDER#series' reference).

Each node carries what Slicer's DICOM module puts on a volume it loads - ``DICOM.instanceUIDs``
(the SOP instance UIDs of its slices, in slice order) - and the series and study UIDs, so results
can be exported as DICOM objects that reference their source.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from virtualbiopsy import attributes
from virtualbiopsy.errors import DicomWarning, ImageDimensionError

SERIES_UID_ATTRIBUTE = attributes.DICOM_SERIES_UID
STUDY_UID_ATTRIBUTE = attributes.DICOM_STUDY_UID
FILES_ATTRIBUTE = attributes.DICOM_FILES
INSTANCE_UIDS_ATTRIBUTE = attributes.DICOM_INSTANCE_UIDS  # Slicer's own attribute name


def file_node_name(path: str | Path) -> str | None:
    """The node name for an input: its file name, so that every message about it names the file; None for a
    DICOM series (the reader names it after the series)."""
    return None if is_dicom_reference(path) else Path(path).name


def is_dicom_reference(path: str | Path) -> bool:
    """A folder, a 'FOLDER#choice' reference, a dicomweb:// reference, or a file that starts like a DICOM file
    (preamble + 'DICM')."""
    from virtualbiopsy.dicom.pacs import parse_web_reference
    from virtualbiopsy.dicom.series import split_reference

    if parse_web_reference(path) is not None:
        return True
    folder, choice = split_reference(path)
    if folder.is_dir():
        return True
    if choice is not None or not folder.is_file():
        return False
    try:
        with open(folder, "rb") as stream:
            head = stream.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def _instance_uids(files: list[Path]) -> str:
    import pydicom

    return " ".join(str(pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
                    for f in dict.fromkeys(files))


def _add(context, series, index: int, name: str):
    from virtualbiopsy.mrml import arrays

    node = arrays.add_volume_from_array(context, series.arrays[index], series.geometry, name)
    node.SetAttribute(SERIES_UID_ATTRIBUTE, series.info.series_uid)
    node.SetAttribute(STUDY_UID_ATTRIBUTE, series.info.study_uid)
    node.SetAttribute(FILES_ATTRIBUTE, "\n".join(str(f) for f in dict.fromkeys(series.files[index])))
    node.SetAttribute(INSTANCE_UIDS_ATTRIBUTE, _instance_uids(series.files[index]))
    node.CreateDefaultDisplayNodes()
    return node


def read_dicom_series(path, progress=None):
    """The series a DICOM reference names (dicomweb:// retrieved first), refusing a lone 2D slice."""
    from virtualbiopsy.dicom import pacs
    from virtualbiopsy.dicom import series as dicom_series

    reference = pacs.parse_web_reference(path)
    if reference is not None:  # retrieved into the cache first (once), then read as a folder
        path = pacs.retrieve_cached(reference, progress)
    series = dicom_series.load(path, progress)
    modality = series.info.modality.upper()
    if modality and modality != "MR":
        series.notes.append(f"its modality is {modality}, not MR: the pipeline is made and validated for MRI")
    for note in series.notes:
        warnings.warn(f"{series.info.label()}: {note}.", DicomWarning, stacklevel=3)
    if series.geometry.shape[0] == 1 and len(series.arrays) == 1:
        raise ImageDimensionError(f"{series.info.label()} at '{path}' is a single 2D slice; give the folder holding "
                                  "the whole series (every slice).")
    return series


def load_dicom_volume(context, path: str | Path, name: str | None = None, progress=None):
    """One 3D DICOM series as a NEW scalar volume node; refuses a DWI / dynamic series and a lone slice."""
    from virtualbiopsy.dicom.series import require_volume

    series = read_dicom_series(path, progress)
    require_volume(series)
    with context.transaction():
        return _add(context, series, 0, name or series.info.description or "DICOM volume")


def load_dicom_frames(context, path: str | Path, name: str | None = None, progress=None) -> tuple[list, list[str]]:
    """The frames of a DWI or dynamic DICOM series as NEW volume nodes, and their b-values (s/mm²) or times
    (s from the first frame) as index values, like a ``.seq.nrrd``'s (None for a DWI without b-value tags,
    whose volumes are in InstanceNumber order)."""
    series = read_dicom_series(path, progress)
    if len(series.arrays) == 1:
        if series.derived:
            raise ImageDimensionError(f"{series.info.label()} is the scanner's {series.derived} map (ImageType), not "
                                      "a DWI: give the DWI series it was computed from (its b-value images).")
        raise ImageDimensionError(f"{series.info.label()} is a single 3D volume, not a DWI or dynamic series.")
    stem = name or series.info.description or "DICOM series"
    with context.transaction():
        nodes = [_add(context, series, i, f"{stem} {i + 1}") for i in range(len(series.arrays))]
    for node in nodes:
        node.SetAttribute(attributes.DICOM_FRAME_VALUES_FROM, series.source)
    if series.values is None:  # a DWI without b-value tags: the caller must be given them
        return nodes, None
    return nodes, [f"{v:g}" for v in series.values]


def attach_dicom_files(volume_node, file_for_instance) -> int:
    """Give a volume that Slicer's DICOM module loaded (it carries ``DICOM.instanceUIDs``) the file list the
    DICOM exports read, from ``file_for_instance(uid) -> path`` (in Slicer: ``slicer.dicomDatabase.
    fileForInstance``). Returns the number of files; refuses a volume without instance UIDs or a missing file."""
    from virtualbiopsy.errors import InputError

    if volume_node.GetAttribute(FILES_ATTRIBUTE):
        return len(volume_node.GetAttribute(FILES_ATTRIBUTE).splitlines())
    uids = (volume_node.GetAttribute(INSTANCE_UIDS_ATTRIBUTE) or "").split()
    if not uids:
        raise InputError(f"'{volume_node.GetName()}' was not loaded from DICOM (it has no instance UIDs); load the "
                         "series through the DICOM module to export DICOM results.")
    files = []
    for uid in uids:
        path = file_for_instance(uid)
        if not path or not Path(path).is_file():
            raise InputError(f"The DICOM file of instance {uid} of '{volume_node.GetName()}' is not in the DICOM "
                             "database any more; import the series again.")
        files.append(str(path))
    volume_node.SetAttribute(FILES_ATTRIBUTE, "\n".join(files))
    return len(files)
