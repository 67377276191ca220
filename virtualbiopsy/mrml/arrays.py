"""numpy <-> MRML: volumes, label maps, segments and tables.

Arrays are indexed ``[k, j, i]`` as in Slicer's ``arrayFromVolume``. Functions that create nodes
add new ones and never change existing nodes unless their name says ``update``.

Table nodes are read and written here only: as ``{column: values}`` (:func:`add_table`,
:func:`table_columns`) or as pandas DataFrames (:func:`add_frame`, :func:`frame_from_table_node`;
pandas is imported on first use, as Slicer installs it only when the user confirms). Booleans are
written as ``yes`` / ``no`` and missing cells as blank text or NaN; read back, number-like columns
are numbers, blanks are missing and text (``yes`` / ``no`` included) stays text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from virtualbiopsy.errors import EmptyMaskError, InputError
from virtualbiopsy.mrml.geometry import Geometry, require_same_geometry, require_scalar_3d


def array_from_volume(volume_node) -> np.ndarray:
    """The voxel array of a volume as a numpy view ``[k, j, i]`` (shares memory with the node)."""
    return array_from_image(volume_node.GetImageData())


def array_from_image(image) -> np.ndarray:
    """The voxels of a ``vtkImageData`` (or oriented image) as a numpy view ``[k, j, i]``."""
    dims = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    components = image.GetNumberOfScalarComponents()
    shape = (dims[2], dims[1], dims[0]) + ((components,) if components > 1 else ())
    return scalars.reshape(shape)


def _image_from_array(array: np.ndarray) -> vtk.vtkImageData:
    array = np.ascontiguousarray(array)
    if array.ndim != 3:
        raise InputError(f"A volume needs a 3D array [k, j, i]; got {array.ndim} dimensions.")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def update_volume_from_array(volume_node, array: np.ndarray) -> None:
    """Replace a volume's voxels with ``array`` (deep copy), keeping its geometry."""
    volume_node.SetAndObserveImageData(_image_from_array(array))


def add_volume_from_array(
    context, array: np.ndarray, geometry: Geometry, name: str,
    class_name: str = "vtkMRMLScalarVolumeNode",
):
    """Add a new volume node holding a copy of ``array`` on ``geometry``; returns the node."""
    if tuple(array.shape) != tuple(geometry.shape):
        raise InputError(f"Array of shape {array.shape} does not fit the grid {geometry.shape}.")
    node = context.add_node(class_name, name)
    geometry.apply_to(node)
    update_volume_from_array(node, array)
    node.CreateDefaultDisplayNodes()
    return node


def segment_ids(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def segment_id_by_name(segmentation_node, name: str) -> str:
    """The ID of the segment called ``name`` (case-insensitive); a clear error if there is none."""
    for segment_id in segment_ids(segmentation_node):
        if segmentation_node.GetSegmentation().GetSegment(segment_id).GetName().lower() == name.lower():
            return segment_id
    names = [segmentation_node.GetSegmentation().GetSegment(s).GetName() for s in segment_ids(segmentation_node)]
    raise InputError(
        f"Segmentation '{segmentation_node.GetName()}' has no segment named '{name}' (it has: "
        + (", ".join(names) or "no segments") + ")."
    )


@contextmanager
def scratch_nodes(scene, keep: list | None = None):
    """Remove every node added to ``scene`` inside the block (helper label maps and the display
    and colour nodes they bring), except the nodes appended to ``keep`` before it ends."""
    keep = [] if keep is None else keep
    before = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
    try:
        yield keep
    finally:
        kept = {node.GetID() for node in keep}
        added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
        for node in added:
            if node.GetID() not in before and node.GetID() not in kept:
                scene.RemoveNode(node)


def mask_from_segment(segmentation_node, segment_id: str, reference_volume, allow_empty: bool = False) -> np.ndarray:
    """A boolean mask ``[k, j, i]`` of one segment on the grid of ``reference_volume``.

    The segment is resampled onto the reference grid the way Slicer exports label maps
    (nearest neighbour on the binary label map). Raises :class:`EmptyMaskError` when the
    segment has no voxel on that grid, unless ``allow_empty``.
    """
    reference_geometry = require_scalar_3d(reference_volume, "reference image")
    scene = segmentation_node.GetScene()
    with scratch_nodes(scene):
        labelmap = slicer.vtkMRMLLabelMapVolumeNode()
        scene.AddNode(labelmap)  # export needs the node in a scene; it is removed with its display nodes
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
            segmentation_node, ids, labelmap, reference_volume
        )
        if not ok or labelmap.GetImageData() is None:
            raise InputError(
                f"Could not convert segment '{segment_id}' of '{segmentation_node.GetName()}' to a label map."
            )
        require_same_geometry(reference_geometry, Geometry.from_node(labelmap), reference_volume.GetName(),
                              "exported segment")
        mask = array_from_volume(labelmap) > 0
    if not allow_empty and not mask.any():
        name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        raise EmptyMaskError(
            f"Segment '{name}' of '{segmentation_node.GetName()}' contains no voxels inside the image "
            f"'{reference_volume.GetName()}'. Draw or load the segment first, or check that it overlaps the image."
        )
    return mask.copy()


def add_segmentation_from_labels(
    context, labels: np.ndarray, geometry: Geometry, segments: Mapping[int, tuple[str, tuple[float, float, float]]],
    name: str, reference_volume=None, keep_empty: bool = False,
):
    """Add a NEW segmentation node with one segment per label value listed in ``segments``.

    ``segments`` maps label value -> (segment name, RGB colour 0..1); a key may also be a tuple of
    values, whose segment is their union (segments may then overlap, e.g. the regions of a
    region-based nnU-Net model). Label values absent from ``labels`` give no segment, or an empty
    one (to draw in) with ``keep_empty``. Existing segmentations are never modified.
    """
    labels = np.asarray(labels)
    masks = {v: np.isin(labels, v) for v in segments}
    present = [v for v in segments if keep_empty or masks[v].any()]
    segmentation_node = context.add_node("vtkMRMLSegmentationNode", name)
    segmentation_node.CreateDefaultDisplayNodes()
    if reference_volume is not None:
        segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    with scratch_nodes(context.scene):
        labelmap = context.add_node("vtkMRMLLabelMapVolumeNode", f"{name}_import")
        geometry.apply_to(labelmap)
        for value in present:
            segment_name, colour = segments[value]
            if not masks[value].any():
                segmentation_node.GetSegmentation().AddEmptySegment("", segment_name, list(colour))
                continue
            update_volume_from_array(labelmap, masks[value].astype(np.uint8))
            before = set(segment_ids(segmentation_node))
            slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, segmentation_node)
            (new_id,) = set(segment_ids(segmentation_node)) - before
            segment = segmentation_node.GetSegmentation().GetSegment(new_id)
            segment.SetName(segment_name)
            segment.SetColor(*colour)
    return segmentation_node


def add_table(context, columns: Mapping[str, Sequence], name: str, table_node=None):
    """Add (or fill the given) table node from named columns; numbers stay numeric.

    The columns are checked and built in a new table first, so a refused call leaves ``table_node``
    exactly as it was.
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise InputError(f"Table columns have different lengths: {sorted(lengths)}.")
    table = vtk.vtkTable()
    for column_name, values in columns.items():
        values = list(values)
        numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)
        array = vtk.vtkDoubleArray() if numeric and values else vtk.vtkStringArray()
        array.SetName(str(column_name))
        for value in values:
            array.InsertNextValue(float(value) if numeric else str(value))
        table.AddColumn(array)
    if table_node is None:
        table_node = context.add_node("vtkMRMLTableNode", name)
    table_node.GetTable().DeepCopy(table)
    table_node.Modified()
    return table_node


def table_columns(table_node) -> dict[str, list]:
    """A table node's columns as {name: list of values} (numbers as float, others as str)."""
    table = table_node.GetTable()
    columns = {}
    for c in range(table.GetNumberOfColumns()):
        array = table.GetColumn(c)
        values = [array.GetValue(r) for r in range(table.GetNumberOfRows())]
        if isinstance(array, vtk.vtkStringArray):
            values = [str(v) for v in values]
        else:
            values = [float(v) for v in values]
        columns[table.GetColumnName(c)] = values
    return columns


def columns_from_frame(frame) -> dict[str, list]:
    """A DataFrame as ``{column: values}`` for :func:`add_table`: numeric columns as float (NaN = missing),
    booleans as ``yes`` / ``no``, anything else as text with missing cells blank.

    >>> import pandas as pd
    >>> columns_from_frame(pd.DataFrame({"case_id": ["a", None], "adc": [0.7, None], "relapse": [True, False]}))
    {'case_id': ['a', ''], 'adc': [0.7, nan], 'relapse': ['yes', 'no']}
    """
    import pandas as pd

    columns = {}
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            columns[str(name)] = [float(v) for v in values]
        else:
            columns[str(name)] = [_cell_text(v) for v in values]
    return columns


def _cell_text(value) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    return str(value)


def add_frame(context, frame, name: str, table_node=None):
    """Add (or fill the given) table node from a DataFrame, by :func:`columns_from_frame`'s rules."""
    return add_table(context, columns_from_frame(frame), name, table_node)


def frame_from_table_node(table_node):
    """A table node as a DataFrame: number-like text columns become float, blank cells missing, case-id
    columns stay text (:func:`virtualbiopsy.frames.frame_from_table`)."""
    from virtualbiopsy.frames import frame_from_table

    return frame_from_table(table_columns(table_node))


def _segment_labelmap(segmentation_node, segment_id):
    """(voxel array [k, j, i] of the segment's own label value, image-to-world 4x4, label value)."""
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    labelmap = segment.GetRepresentation("Binary labelmap")
    if labelmap is None:
        segmentation_node.GetSegmentation().CreateRepresentation("Binary labelmap")
        labelmap = segment.GetRepresentation("Binary labelmap")
    matrix = vtk.vtkMatrix4x4()
    labelmap.GetImageToWorldMatrix(matrix)
    ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    extent = labelmap.GetExtent()
    if extent[1] < extent[0] or labelmap.GetPointData().GetScalars() is None:
        return np.zeros((0, 0, 0), bool), ijk_to_ras, extent
    values = array_from_image(labelmap) == segment.GetLabelValue()
    return values, ijk_to_ras, extent


def segment_volumes(segmentation_node) -> list[dict]:
    """Per segment: id, name, voxel count and volume in mL, from the segment's own label map."""
    rows = []
    for segment_id in segment_ids(segmentation_node):
        mask, ijk_to_ras, _ = _segment_labelmap(segmentation_node, segment_id)
        voxel_ml = abs(float(np.linalg.det(ijk_to_ras[:3, :3]))) / 1000.0
        voxels = int(np.count_nonzero(mask))
        name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
        rows.append({"segment_id": segment_id, "segment": name, "voxels": voxels, "volume_ml": voxels * voxel_ml})
    return rows


def require_segmentation_on_grid(segmentation_node, volume_node, tolerance_mm: float = 1e-3) -> None:
    """Refuse a segmentation whose voxels do not sit on the image's voxel grid.

    Empty segments are skipped. A segment may cover part of the image (Slicer crops segments to their extent), but its
    voxel size, axis directions and voxel centres must coincide with the image's; otherwise
    every statistic would silently mix in resampling.
    """
    from virtualbiopsy.errors import GeometryMismatchError

    image = Geometry.from_node(volume_node)
    for segment_id in segment_ids(segmentation_node):
        mask, seg_matrix, _ = _segment_labelmap(segmentation_node, segment_id)
        if not mask.any():
            continue  # an empty segment has no voxel grid to check (and no voxels to misplace)
        seg = Geometry((1, 1, 1), seg_matrix)
        found = []
        if not np.allclose(seg.spacing, image.spacing, atol=tolerance_mm):
            found.append(f"voxel size {np.round(seg.spacing, 4).tolist()} vs {np.round(image.spacing, 4).tolist()} mm")
        if not np.allclose(seg.directions, image.directions, atol=1e-4):
            found.append("different axis directions")
        offset_ijk = np.linalg.solve(image.ijk_to_ras[:3, :3], seg.origin - image.origin)
        if not found and not np.allclose(offset_ijk, np.round(offset_ijk), atol=tolerance_mm / image.spacing.min()):
            found.append(f"voxel centres shifted by {np.round(offset_ijk - np.round(offset_ijk), 3).tolist()} voxels")
        if found:
            name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
            raise GeometryMismatchError(
                f"Segment '{name}' of '{segmentation_node.GetName()}' is not on the voxel grid of "
                f"'{volume_node.GetName()}': " + "; ".join(found) + ". Resample the segmentation onto the "
                "image first (Segment Editor: 'Specify geometry' with the image as source)."
            )
