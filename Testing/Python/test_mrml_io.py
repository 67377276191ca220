"""File IO through storage nodes, and refusal of bad files leaving the scene unchanged."""

from __future__ import annotations

import gzip
import zipfile

import numpy as np
import pytest

from virtualbiopsy.errors import (
    FileFormatError,
    ImageDimensionError,
    InputError,
    InvalidValuesError,
    UnsafeArchiveError,
)
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry


def test_context_wires_slicer_logics(context):
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") > 10
    for name in ("Colors", "Volumes", "Segmentations", "Tables"):
        assert context.app_logic.GetModuleLogic(name) is not None
    attached = MRMLContext.attach(context.scene, context.app_logic)
    assert attached.volumes_logic is context.volumes_logic


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_volume_round_trip_keeps_voxels_and_geometry(context, grid, tmp_path, suffix):
    image = np.arange(np.prod(grid.shape), dtype=np.float32).reshape(grid.shape)
    node = arrays.add_volume_from_array(context, image, grid, "ramp")
    path = io.save_node(node, tmp_path / f"ramp{suffix}")
    other = MRMLContext.create()
    loaded = io.load_volume(other, path)
    assert loaded.GetName() == "ramp"
    assert Geometry.from_node(loaded).differences(grid) == []
    np.testing.assert_array_equal(arrays.array_from_volume(loaded), image)


def test_segmentation_round_trip(image_and_mask, tmp_path):
    volume, segmentation, _, labels = image_and_mask
    path = io.save_node(segmentation, tmp_path / "mask.seg.nrrd")
    other = MRMLContext.create()
    reloaded = io.load_segmentation(other, path)
    reference = io.load_volume(other, io.save_node(volume, tmp_path / "image.nrrd"))
    segment = arrays.segment_id_by_name(reloaded, "tumour")
    np.testing.assert_array_equal(arrays.mask_from_segment(reloaded, segment, reference), labels == 1)


def test_labelmap_file_loads_as_segments(context, grid, tmp_path):
    labels = np.zeros(grid.shape, np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    labels[5:7, 5:8, 5:9] = 2
    node = arrays.add_volume_from_array(context, labels, grid, "labels", "vtkMRMLLabelMapVolumeNode")
    path = io.save_node(node, tmp_path / "labels.nrrd")
    other = MRMLContext.create()
    segmentation = io.load_segmentation(other, path)
    counts = sorted(row["voxels"] for row in arrays.segment_volumes(segmentation))
    assert counts == [8, 24]
    assert other.scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 0


def test_corrupt_nrrd_is_refused_and_scene_unchanged(context, grid, tmp_path):
    good = io.save_node(arrays.add_volume_from_array(context, np.ones(grid.shape, np.int16), grid, "x"),
                        tmp_path / "good.nrrd", compress=False)
    corrupt = tmp_path / "corrupt.nrrd"
    corrupt.write_bytes(good.read_bytes()[:-500])  # truncated voxel data
    before = context.node_ids()
    with pytest.raises(FileFormatError, match="corrupt.nrrd"):
        io.load_volume(context, corrupt)
    assert context.node_ids() == before
    garbage = tmp_path / "garbage.nrrd"
    garbage.write_bytes(b"NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4\n\n" + b"\0" * 10)
    with pytest.raises(FileFormatError):
        io.load_volume(context, garbage)
    assert context.node_ids() == before


def test_missing_file_named(context, tmp_path):
    with pytest.raises(FileFormatError, match="nothing.nrrd"):
        io.load_volume(context, tmp_path / "nothing.nrrd")


def test_2d_image_is_refused_and_scene_unchanged(context, tmp_path):
    flat = Geometry.from_spacing((1, 32, 32), (1.0, 1.0, 1.0))
    writer = MRMLContext.create()
    path = io.save_node(arrays.add_volume_from_array(writer, np.ones((1, 32, 32), np.int16), flat, "slice"),
                        tmp_path / "slice.nrrd")
    before = context.node_ids()
    with pytest.raises(ImageDimensionError, match="2D"):
        io.load_volume(context, path)
    assert context.node_ids() == before


def test_nan_image_is_refused_and_scene_unchanged(context, grid, tmp_path):
    data = np.ones(grid.shape, np.float32)
    data[0, 0, :3] = np.nan
    writer = MRMLContext.create()
    path = io.save_node(arrays.add_volume_from_array(writer, data, grid, "nan"), tmp_path / "nan.nrrd")
    before = context.node_ids()
    with pytest.raises(InvalidValuesError, match="3 voxels"):
        io.load_volume(context, path)
    assert context.node_ids() == before


def test_scene_bundle_round_trip(image_and_mask, context, tmp_path):
    volume, segmentation, image, _ = image_and_mask
    arrays.add_table(context, {"case_id": ["a"], "value": [1.5]}, "table")
    bundle = io.save_scene(context, tmp_path / "scene.mrb")
    other = MRMLContext.create()
    io.load_scene(other, bundle)
    loaded = other.scene.GetFirstNodeByName("image")
    np.testing.assert_array_equal(arrays.array_from_volume(loaded), image)
    mask = other.scene.GetFirstNodeByName("mask")
    assert [r["segment"] for r in arrays.segment_volumes(mask)] == ["tumour"]
    assert arrays.table_columns(other.scene.GetFirstNodeByName("table"))["value"] == [1.5]


def test_scene_bundle_with_escaping_entry_is_refused(context, tmp_path):
    bundle = tmp_path / "evil.mrb"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("scene/scene.mrml", "<MRML></MRML>")
        archive.writestr("../../outside.txt", "x")
    before = context.node_ids()
    with pytest.raises(UnsafeArchiveError, match="outside"):
        io.load_scene(context, bundle)
    assert context.node_ids() == before
    assert not (tmp_path.parent / "outside.txt").exists()


def test_gzip_garbage_as_nifti_is_refused(context, tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    before = context.node_ids()
    with pytest.raises(FileFormatError):
        io.load_volume(context, path)
    assert context.node_ids() == before


def test_mrml_scene_with_data_beside_it_round_trip(image_and_mask, context, tmp_path):
    volume, segmentation, image, _ = image_and_mask
    scene_file = io.save_scene(context, tmp_path / "scene" / "study.mrml")
    assert (tmp_path / "scene" / "Data" / "image.nrrd").is_file()
    other = MRMLContext.create()
    io.load_scene(other, scene_file)
    np.testing.assert_array_equal(arrays.array_from_volume(other.scene.GetFirstNodeByName("image")), image)
    assert [r["segment"] for r in arrays.segment_volumes(other.scene.GetFirstNodeByName("mask"))] == ["tumour"]


def test_scene_file_with_other_suffix_is_refused(context, tmp_path):
    with pytest.raises(InputError, match=".mrb or .mrml"):
        io.save_scene(context, tmp_path / "scene.zip")
