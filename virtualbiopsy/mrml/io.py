"""Reading and writing nodes through MRML storage nodes (NRRD, NIfTI, .seg.nrrd, .mrb, CSV).

These replace ``slicer.util.loadVolume`` / ``saveNode`` / ``loadScene``, which need the Slicer application.
Every loader validates what it read and, if anything is wrong, removes what it added, so a bad
file leaves the scene exactly as it was.
"""

from __future__ import annotations

import atexit
import csv
import shutil
import tempfile
from pathlib import Path

import slicer

from virtualbiopsy.archives import safe_extract
from virtualbiopsy.errors import FileFormatError, ImageDimensionError, InputError
from virtualbiopsy.input_checks import (
    require_bundle_paths_inside,
    require_complete,
    require_integer_labels,
    require_usable_image_file,
    scene_file_references,
)
from virtualbiopsy.mrml.arrays import scratch_nodes, table_columns
from virtualbiopsy.mrml.geometry import require_finite, require_scalar_3d

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def node_name_from_path(path: str | Path) -> str:
    """'case01_T2w.nii.gz' -> 'case01_T2w'; 'tumour.seg.nrrd' -> 'tumour'."""
    name = Path(path).name
    for suffix in (".seg.nrrd", ".seg.nhdr", ".nii.gz", *VOLUME_SUFFIXES, ".csv", ".tsv"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def _existing(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"No file at '{path}'.")
    return path


def _existing_file(path: str | Path) -> Path:
    """An existing file whose voxel data is complete (:func:`virtualbiopsy.input_checks.require_complete`)."""
    path = _existing(path)
    require_complete(path)
    return path


def _frame_count(path: Path) -> int:
    """Number of 3D frames in an image file (1 for a 3D image), from its header (SimpleITK)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return 1  # not an image SimpleITK knows: Slicer's reader gives the message
    return int(reader.GetSize()[3]) if reader.GetDimension() == 4 else 1


def series_length(path: str | Path) -> int:
    """Number of 3D frames of a file read as a series: a 4D image's 4th size, a multi-component image's
    components, a ``.seq.nrrd``'s data nodes' count from its header; 1 for a plain 3D image (or a file
    SimpleITK cannot read: the reader that loads it gives the message)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return 1
    if reader.GetDimension() == 4:
        return int(reader.GetSize()[3])
    return max(1, int(reader.GetNumberOfComponents()))


def _storage_messages(storage_node) -> str:
    messages = storage_node.GetUserMessages() if hasattr(storage_node, "GetUserMessages") else None
    text = messages.GetAllMessagesAsString() if messages is not None else ""
    first = next((line.strip(" -") for line in text.splitlines() if line.strip(" -")), "")
    return f" Reader said: {first}" if first else ""  # one line: the first message


def _require_readable_header(path: Path) -> None:
    """Refuse a file whose header ITK cannot parse, before a Slicer reader that would abort the process sees it.

    Slicer's segmentation and sequence storage nodes do not catch ITK's exceptions (a bad NRRD
    header ends the program); SimpleITK reads the same header and raises instead.
    """
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise FileFormatError(
            f"Could not read '{path.name}': the file is corrupt, truncated or not a supported format "
            f"({str(error).strip().splitlines()[-1]})."
        ) from error


def _read(context, path: Path, node_class: str, storage_class: str, name: str | None):
    if storage_class != "vtkMRMLVolumeArchetypeStorageNode":
        _require_readable_header(path)
    node = context.add_node(node_class, name or node_name_from_path(path))
    storage = context.scene.AddNewNodeByClass(storage_class)
    storage.SetFileName(str(path))
    node.SetAndObserveStorageNodeID(storage.GetID())
    if not storage.ReadData(node):
        raise FileFormatError(
            f"Could not read '{path.name}': the file is corrupt, truncated or not a supported format."
            + _storage_messages(storage)
        )
    return node


def load_volume(context, path: str | Path, name: str | None = None, labelmap: bool = False,
                require_3d: bool = True, require_finite_values: bool = True):
    """Load a NRRD / NIfTI / MetaImage volume as a new scalar (or label map) volume node.

    Refuses (and leaves the scene unchanged on) missing or corrupt files, 2D or multi-component
    images when ``require_3d``, and NaN / infinite voxels when ``require_finite_values``. A DICOM folder
    (or 'FOLDER#series') is read as one series (:mod:`virtualbiopsy.dicom.series`).
    """
    from virtualbiopsy.mrml.dicom_nodes import is_dicom_reference, load_dicom_volume

    if not labelmap and is_dicom_reference(path):
        return load_dicom_volume(context, path, name)
    path = _existing(path)
    require_usable_image_file(path, "mask" if labelmap else "image", allow_non_finite=not require_finite_values)
    frames = _frame_count(path)
    if frames > 1:
        raise ImageDimensionError(
            f"'{path.name}' is a 4D series of {frames} volumes, not one 3D volume; give one frame of it "
            "(e.g. the b0 of a DWI) as a 3D file, or use it where a series is expected (fcf --dwi, dce --series)."
        )
    node_class = "vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode"
    with context.transaction():
        node = _read(context, path, node_class, "vtkMRMLVolumeArchetypeStorageNode", name)
        if node.GetImageData() is None:
            raise FileFormatError(f"'{path.name}' holds no image data.")
        if require_3d:
            require_scalar_3d(node, f"image '{path.name}'")
        from virtualbiopsy.mrml.arrays import array_from_volume

        if labelmap:
            require_integer_labels(array_from_volume(node), path.name)
        if require_finite_values:
            require_finite(array_from_volume(node), path.name)
        node.CreateDefaultDisplayNodes()
    return node


def load_frames(context, path: str | Path, name: str | None = None,
                require_finite_values: bool = True) -> tuple[list, list[str] | None]:
    """Load every 3D frame of one 4D file (DWI b-values, DCE times) as NEW scalar volume nodes.

    Returns (volume nodes in file order, index values of a ``.seq.nrrd`` or a DICOM series, or None). A 4D NIfTI /
    NRRD / MetaImage file, or a multi-component one, is read with SimpleITK and each frame put on
    the grid Slicer's own reader gives a 3D file with the same header: a left-handed grid (e.g. the
    LAS axes dcm2niix writes) gets its slice order reversed with Slicer's
    ``SetIJKCoordinateSystemToRightHanded``, as ``ForceRightHandedIJKCoordinateSystem`` does in
    :func:`load_volume`. The voxels keep their positions in mm, and a mask read with
    :func:`load_volume` lies on the frames' grid whatever the file's axes.
    """
    if Path(path).name.lower().endswith((".seq.nrrd", ".seq.nhdr")):  # checked there (NRRD hides no NaN)
        return sequence_volumes(load_sequence(context, path, name))
    from virtualbiopsy.mrml.dicom_nodes import is_dicom_reference, load_dicom_frames

    if is_dicom_reference(path):  # a DWI / dynamic DICOM series: its b-values or times as index values
        return load_dicom_frames(context, path, name)
    path = _existing(path)
    require_usable_image_file(path, allow_non_finite=not require_finite_values)
    import SimpleITK as sitk

    from virtualbiopsy.mrml.arrays import array_from_volume
    from virtualbiopsy.mrml.sitk_bridge import add_volume_from_image

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise FileFormatError(
            f"Could not read '{path.name}': the file is corrupt, truncated or not a supported format "
            f"({str(error).strip().splitlines()[-1]})."
        ) from error
    stem = name or node_name_from_path(path)
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        frames = [sitk.Extract(image, size[:3] + [0], [0, 0, 0, i]) for i in range(size[3])]
    elif image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() > 1:
        frames = [sitk.VectorIndexSelectionCast(image, i) for i in range(image.GetNumberOfComponentsPerPixel())]
    else:
        raise ImageDimensionError(
            f"'{path.name}' is a single {image.GetDimension()}D volume, not a 4D series; give one file per "
            "b-value or time point, or one 4D file."
        )
    with context.transaction():
        nodes = []
        for index, frame in enumerate(frames):
            node = add_volume_from_image(context, frame, f"{stem} {index + 1}")
            node.SetIJKCoordinateSystemToRightHanded()  # what Slicer's readers do (ForceRightHandedIJKCoordinateSystem)
            require_scalar_3d(node, f"volume {index + 1} of '{path.name}'")
            if require_finite_values:
                require_finite(array_from_volume(node), f"volume {index + 1} of '{path.name}'")
            nodes.append(node)
    return nodes, None


def load_segmentation(context, path: str | Path, name: str | None = None):
    """Load a segmentation: a ``.seg.nrrd`` file, or a label-map image (one segment per label)."""
    path = Path(path)
    if path.name.lower().endswith((".seg.nrrd", ".seg.nhdr")):
        path = _existing_file(path)  # a label-map file is checked once, by load_volume
        with context.transaction():
            node = _read(context, path, "vtkMRMLSegmentationNode", "vtkMRMLSegmentationStorageNode", name)
            node.CreateDefaultDisplayNodes()
        return node
    with context.transaction(), scratch_nodes(context.scene) as keep:
        labelmap = load_volume(context, path, labelmap=True, require_finite_values=False)
        node = context.add_node("vtkMRMLSegmentationNode", name or node_name_from_path(path))
        node.CreateDefaultDisplayNodes()
        keep += [node, node.GetDisplayNode()]
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, node):
            raise FileFormatError(f"'{path.name}' could not be converted to segments.")
    return node


def save_node(node, path: str | Path, compress: bool = True) -> Path:
    """Write a volume, label map, segmentation or table through a new default storage node."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if node.GetScene() is None:
        raise InputError(f"'{node.GetName()}' is not in a scene; add it to the scene before saving it.")
    storage = node.GetStorageNode()
    if storage is None:
        storage = node.CreateDefaultStorageNode()
        node.GetScene().AddNode(storage)
        node.SetAndObserveStorageNodeID(storage.GetID())
    storage.SetFileName(str(path))
    storage.SetUseCompression(int(compress))
    if not storage.WriteData(node):
        raise FileFormatError(f"Could not write '{node.GetName()}' to '{path}'." + _storage_messages(storage))
    return path


def export_node(node, path: str | Path, compress: bool = True) -> Path:
    """Write a copy of a node's data to ``path`` and leave the node as it was: its storage node (where the
    user's scene saves it) is not touched, and nothing stays added to the scene (unlike :func:`save_node`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    storage = node.CreateDefaultStorageNode()
    if storage is None:
        raise InputError(f"'{node.GetName()}' cannot be written to a file.")
    storage.SetFileName(str(path))
    storage.SetUseCompression(int(compress))
    if not storage.WriteData(node):
        raise FileFormatError(f"Could not write '{node.GetName()}' to '{path}'." + _storage_messages(storage))
    return path


def write_csv(table_node_or_columns, path: str | Path) -> Path:
    """Write a table node (or a {column: values} dict) as a plain CSV with a header row."""
    columns = table_node_or_columns if isinstance(table_node_or_columns, dict) else table_columns(
        table_node_or_columns)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(columns)
    rows = zip(*(columns[n] for n in names))
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_format_cell(v) for v in row])
    return path


def _format_cell(value) -> str:
    """Floats with 10 significant digits (beyond any measurement's precision), integers plainly."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.10g}"
    return str(value)


def save_scene(context, path: str | Path) -> Path:
    """Save the whole scene as a bundle (``.mrb``) or as a ``.mrml`` file with its data beside it.

    For ``.mrml``, every node's data is written next to it (in the scene file's folder) through
    its storage node, as Slicer's *Save* dialog does.
    """
    path = Path(path).resolve()
    suffix = path.suffix.lower()
    if suffix not in (".mrb", ".mrml"):
        raise InputError(f"A scene file name must end with .mrb or .mrml, not '{path.name}'.")
    path.parent.mkdir(parents=True, exist_ok=True)
    scene = context.scene
    scene.SetURL(str(path.with_suffix(".mrml")))
    scene.SetRootDirectory(str(path.parent))
    if suffix == ".mrb":
        if not scene.WriteToMRB(str(path)):
            raise FileFormatError(f"Could not write the scene bundle '{path}'.")
        return path
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLStorableNode")):
        node = scene.GetNthNodeByClass(index, "vtkMRMLStorableNode")
        if not node.GetSaveWithScene() or (node.GetHideFromEditors() and node.GetStorageNode() is None):
            continue  # built-in colour tables and other nodes Slicer does not save either
        storage = node.GetStorageNode()
        if storage is None:
            storage = node.CreateDefaultStorageNode()
            if storage is None:
                continue
            scene.AddNode(storage)
            node.SetAndObserveStorageNodeID(storage.GetID())
        extension = storage.GetDefaultWriteFileExtension()
        save_node(node, path.parent / "Data" / f"{_safe_file_name(node.GetName())}.{extension}")
    if not scene.Commit(str(path)):
        raise FileFormatError(f"Could not write the scene file '{path}'.")
    return path


def _safe_file_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "node"


def load_scene(context, path: str | Path) -> list[str]:
    """Add the nodes of a scene file (``.mrml``) or bundle (``.mrb``) to the scene; returns the new IDs.

    Bundles are unpacked with :func:`~virtualbiopsy.archives.safe_extract` (they are untrusted
    zips) into a folder kept until the process ends, since nodes keep their file names. A bundle
    whose scene names a file outside itself (``../``, absolute paths, URIs) is refused before the
    scene is read, and so is any referenced image file whose voxel data is truncated.
    """
    path = _existing_file(path)
    if path.suffix.lower() == ".mrb":
        folder = Path(tempfile.mkdtemp(prefix="virtualbiopsy_mrb_"))
        try:
            scene_file = _checked_bundle(path, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    elif path.suffix.lower() == ".mrml":
        scene_file = path
        for _, name in scene_file_references(path):
            if (path.parent / name).is_file():
                require_complete(path.parent / name)
    else:
        raise InputError(f"A scene file name must end with .mrb or .mrml, not '{path.name}'.")
    with context.transaction():
        before = context.node_ids()
        scene = context.scene
        scene.SetURL(str(scene_file))
        if not scene.Import():
            raise FileFormatError(f"The scene in '{path.name}' could not be read.")
        return sorted(context.node_ids() - before)


def _checked_bundle(path: Path, folder: Path) -> Path:
    """Extract a bundle into ``folder`` and check every file its scene names; returns the scene file."""
    safe_extract(path, folder)
    scenes = sorted(folder.rglob("*.mrml"))
    if not scenes:
        raise FileFormatError(f"'{path.name}' holds no .mrml scene; it is not a Slicer scene bundle.")
    for data_file in require_bundle_paths_inside(scenes[0], folder, path.name):
        require_complete(data_file)
    return scenes[0]


def load_sequence(context, path: str | Path, name: str | None = None):
    """Load a 4D volume sequence (``.seq.nrrd``: DWI b-values, DCE frames) as a sequence node.

    The index values (b-values in s/mm², times in s) come back from the file's axis labels.
    """
    path = _existing_file(path)
    with context.transaction():
        node = _read(context, path, "vtkMRMLSequenceNode", "vtkMRMLVolumeSequenceStorageNode", name)
        if node.GetNumberOfDataNodes() == 0:
            raise FileFormatError(f"'{path.name}' holds no volumes.")
        for index in range(node.GetNumberOfDataNodes()):
            require_scalar_3d(node.GetNthDataNode(index), f"volume {index + 1} of '{path.name}'")
    return node


def sequence_volumes(sequence_node) -> tuple[list, list[str]]:
    """(data volume nodes, index values as strings) of a volume sequence, in index order."""
    count = sequence_node.GetNumberOfDataNodes()
    return ([sequence_node.GetNthDataNode(i) for i in range(count)],
            [sequence_node.GetNthIndexValue(i) for i in range(count)])
