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


def test_a_saved_segmentation_reloads_with_the_same_tumour_voxels(image_and_mask, tmp_path):
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


def test_a_missing_file_is_refused_by_its_name(context, tmp_path):
    with pytest.raises(FileFormatError, match="nothing.nrrd"):
        io.load_volume(context, tmp_path / "nothing.nrrd")


def test_2d_image_is_refused_and_scene_unchanged(context, tmp_path, scene_unchanged):
    flat = Geometry.from_spacing((1, 32, 32), (1.0, 1.0, 1.0))
    writer = MRMLContext.create()
    path = io.save_node(arrays.add_volume_from_array(writer, np.ones((1, 32, 32), np.int16), flat, "slice"),
                        tmp_path / "slice.nrrd")
    with scene_unchanged(context), pytest.raises(ImageDimensionError, match="2D"):
        io.load_volume(context, path)


def test_nan_image_is_refused_and_scene_unchanged(context, grid, tmp_path, scene_unchanged):
    data = np.ones(grid.shape, np.float32)
    data[0, 0, :3] = np.nan
    writer = MRMLContext.create()
    path = io.save_node(arrays.add_volume_from_array(writer, data, grid, "nan"), tmp_path / "nan.nrrd")
    with scene_unchanged(context), pytest.raises(InvalidValuesError, match="3 voxels"):
        io.load_volume(context, path)


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


def test_scene_bundle_with_escaping_entry_is_refused(context, tmp_path, scene_unchanged):
    bundle = tmp_path / "evil.mrb"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("scene/scene.mrml", "<MRML></MRML>")
        archive.writestr("../../outside.txt", "x")
    with scene_unchanged(context), pytest.raises(UnsafeArchiveError, match="outside"):
        io.load_scene(context, bundle)
    assert not (tmp_path.parent / "outside.txt").exists()


def test_gzip_garbage_as_nifti_is_refused(context, tmp_path, scene_unchanged):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(gzip.compress(b"not a nifti header at all" * 20))
    with scene_unchanged(context), pytest.raises(FileFormatError):
        io.load_volume(context, path)


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


# -- issue 10: complete files, one reading path for 3D and 4D, bundles, transactions -------------

_FORMATS = {"nii": (".nii", False), "nii_gz": (".nii.gz", True), "raw_nrrd": (".nrrd", False),
            "gzip_nrrd": (".nrrd", True), "mha": (".mha", False), "zlib_mha": (".mha", True), "mhd": (".mhd", False)}


@pytest.mark.parametrize("kind", list(_FORMATS))
def test_complete_files_pass_and_a_truncated_one_names_the_missing_voxel_bytes(tmp_path, kind):
    import SimpleITK as sitk

    from virtualbiopsy.input_checks import require_complete

    suffix, compress = _FORMATS[kind]
    data = np.random.default_rng(0).integers(1, 1000, size=(8, 10, 12)).astype(np.int16)  # 1920 bytes of voxels
    path = tmp_path / f"t2{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(data), str(path), useCompression=compress)
    assert require_complete(path) == 0
    stored = tmp_path / "t2.raw" if suffix == ".mhd" else path
    stored.write_bytes(stored.read_bytes()[:-100])
    with pytest.raises(FileFormatError, match=r"expected 1920 bytes of voxel data, found \d+") as refused:
        require_complete(path)
    if not compress:  # raw data: exactly the 100 bytes cut off are missing
        assert "found 1820)" in str(refused.value)


def test_multi_member_gzip_nifti_is_complete_and_reads_in_full(tmp_path):
    import SimpleITK as sitk

    from virtualbiopsy.input_checks import require_complete

    data = np.arange(960, dtype=np.int16).reshape(8, 10, 12)
    plain = tmp_path / "t2.nii"
    sitk.WriteImage(sitk.GetImageFromArray(data), str(plain), useCompression=False)
    raw = plain.read_bytes()
    path = tmp_path / "bgzip_like.nii.gz"
    path.write_bytes(gzip.compress(raw[:1000]) + gzip.compress(raw[1000:]))  # two gzip members, as bgzip writes
    assert require_complete(path) == 0
    np.testing.assert_array_equal(arrays.array_from_volume(io.load_volume(MRMLContext.create(), path)), data)


def test_nan_and_inf_in_a_float_nifti_are_counted_though_the_nifti_reader_turns_them_into_zero(tmp_path):
    import nibabel as nib
    import SimpleITK as sitk

    from virtualbiopsy.input_checks import require_complete

    data = np.ones((12, 10, 8), np.float32)
    data[1, 2, 3], data[4, 5, 6], data[7, 8, 1] = np.nan, np.inf, -np.inf
    path = tmp_path / "adc.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    assert np.count_nonzero(~np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))) == 0  # ITK hides them
    assert require_complete(path) == 3
    with pytest.raises(InvalidValuesError, match="3 voxels that are NaN or infinite"):
        io.load_volume(MRMLContext.create(), path)
    loaded = io.load_volume(MRMLContext.create(), path, require_finite_values=False)  # the caller accepts them
    assert arrays.array_from_volume(loaded).shape == (8, 10, 12)


def _nifti(path, array_ijk, affine):
    import nibabel as nib

    image = nib.Nifti1Image(array_ijk, affine)
    image.set_qform(affine, 1)
    image.set_sform(affine, 1)
    nib.save(image, path)
    return path


def _dwi_ras_and_las(tmp_path):
    """The same DWI (ADC 0.5-2.0e-3 mm²/s across x, b = 0, 50, 400, 800 s/mm²) and mask stored RAS and LAS.

    LAS is what dcm2niix writes for most scanners: the first voxel axis runs right to left, so the
    qform / sform determinant is negative. Both files hold the same signal at the same place in mm.
    """
    b = np.array([0.0, 50.0, 400.0, 800.0])
    shape = (12, 10, 6)
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    adc = 0.5e-3 + 1.5e-3 * i / (shape[0] - 1) + 0.2e-3 * k / shape[2]
    noise = 1 + 0.01 * np.random.default_rng(3).standard_normal(shape + (4,))
    dwi = ((1000.0 + 50 * j)[..., None] * np.exp(-b * adc[..., None]) * noise).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[2:10, 2:8, 1:5] = 1
    ras = np.diag([2.0, 2.0, 3.0, 1.0])
    ras[:3, 3] = [-11.0, -9.0, -7.0]
    las = ras.copy()
    las[:, 0] *= -1
    las[:3, 3] = ras[:3, 3] + ras[:3, 0] * (shape[0] - 1)  # voxel 0 of LAS is the last voxel of RAS along x
    files = {}
    for name, affine, order in (("ras", ras, slice(None)), ("las", las, slice(None, None, -1))):
        files[name] = (_nifti(tmp_path / f"dwi_{name}.nii.gz", np.ascontiguousarray(dwi[order]), affine),
                       _nifti(tmp_path / f"mask_{name}.nii.gz", np.ascontiguousarray(mask[order]), affine))
    return files


def _world_values(volume_node):
    """{voxel centre in RAS mm (rounded to 1 µm): value} of a volume node."""
    geometry = Geometry.from_node(volume_node)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=float) for n in geometry.shape), indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size)])  # in the array's (k, j, i) order
    points = np.round((geometry.ijk_to_ras @ ijk)[:3].T, 3)
    return dict(zip(map(tuple, points), arrays.array_from_volume(volume_node).ravel().tolist()))


def test_las_and_ras_4d_nifti_frames_lie_on_their_3d_masks_grid_with_the_same_values_in_mm(tmp_path):
    from virtualbiopsy.mrml.geometry import require_same_geometry

    files = _dwi_ras_and_las(tmp_path)
    frames = {}
    for name, (dwi_path, mask_path) in files.items():
        context = MRMLContext.create()
        volumes, index_values = io.load_frames(context, dwi_path)
        mask = io.load_volume(context, mask_path, labelmap=True)
        assert len(volumes) == 4 and index_values is None
        for volume in volumes:  # was: "different axis directions (orientation)" for LAS
            require_same_geometry(Geometry.from_node(mask), Geometry.from_node(volume), "mask", volume.GetName())
        assert np.linalg.det(Geometry.from_node(volumes[0]).ijk_to_ras[:3, :3]) > 0  # right-handed, as Slicer reads
        frames[name] = [_world_values(v) for v in volumes] + [_world_values(mask)]
    for ras_values, las_values in zip(frames["ras"], frames["las"]):
        assert ras_values == las_values


@pytest.mark.parametrize("axes", ["RAS", "LAS", "LPS", "RAI", "RPS", "oblique_left_handed"])
def test_each_frame_of_a_4d_file_lies_where_slicer_reads_the_same_3d_file(tmp_path, axes):
    signs = {"RAS": (1, 1, 1), "LAS": (-1, 1, 1), "LPS": (-1, -1, 1), "RAI": (1, 1, -1), "RPS": (1, -1, 1)}
    if axes in signs:
        directions = np.diag(signs[axes]).astype(float)
    else:
        angle = 0.3
        directions = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        directions = directions @ np.diag([-1.0, 1, 1])
    affine = np.eye(4)
    affine[:3, :3] = directions @ np.diag([1.5, 2.0, 3.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    data = np.random.default_rng(1).random((6, 5, 4, 3)).astype(np.float32)
    series = _nifti(tmp_path / "series.nii.gz", data, affine)
    context = MRMLContext.create()
    volumes, _ = io.load_frames(context, series)
    for index, volume in enumerate(volumes):
        single = io.load_volume(context, _nifti(tmp_path / f"frame{index}.nii.gz", data[..., index], affine))
        assert Geometry.from_node(volume).differences(Geometry.from_node(single)) == []
        np.testing.assert_array_equal(arrays.array_from_volume(volume), arrays.array_from_volume(single))


@pytest.mark.slow
def test_fcf_gives_the_same_voxel_adc_for_the_las_and_ras_versions_of_one_4d_dwi(tmp_path, capsys):
    import SimpleITK as sitk

    from virtualbiopsy.cli.main import main

    files = _dwi_ras_and_las(tmp_path)
    for name, (dwi_path, mask_path) in files.items():
        assert main(["fcf", "--dwi", str(dwi_path), "--bvalues", "0,50,400,800", "--mask", str(mask_path),
                     "--out", str(tmp_path / f"out_{name}"), "--k", "2"]) == 0
    ras = sitk.ReadImage(str(tmp_path / "out_ras" / "adc.nrrd"))
    las = sitk.ReadImage(str(tmp_path / "out_las" / "adc.nrrd"))
    las_on_ras = sitk.Resample(las, ras, sitk.Transform(), sitk.sitkNearestNeighbor, float("nan"))  # same centres
    ras_adc, las_adc = sitk.GetArrayFromImage(ras), sitk.GetArrayFromImage(las_on_ras)
    assert np.count_nonzero(ras_adc) == 8 * 6 * 4
    np.testing.assert_array_equal(ras_adc, las_adc)


def test_scene_bundle_with_a_sequence_and_file_lists_reloads_and_resaves(context, grid, tmp_path):
    sequence = context.add_node("vtkMRMLSequenceNode", "DWI")
    for b in (0, 400, 800):
        frame = arrays.add_volume_from_array(context, np.full(grid.shape, 1000.0 * np.exp(-b * 1e-3), np.float32),
                                             grid, f"b{b}")
        sequence.SetDataNodeAtValue(frame, str(b))
    arrays.add_table(context, {"case_id": ["a", "b"], "adc": [1.1e-3, 0.9e-3]}, "table")
    bundle = io.save_scene(context, tmp_path / "first.mrb")
    other = MRMLContext.create()
    io.load_scene(other, bundle)
    io.save_scene(other, tmp_path / "second.mrb")
    with zipfile.ZipFile(tmp_path / "second.mrb") as archive:
        assert all(".." not in name and not name.startswith("/") for name in archive.namelist())
    third = MRMLContext.create()
    io.load_scene(third, tmp_path / "second.mrb")
    assert third.scene.GetFirstNodeByName("DWI").GetNumberOfDataNodes() == 3
    assert arrays.table_columns(third.scene.GetFirstNodeByName("table"))["adc"] == [1.1e-3, 0.9e-3]


def test_transaction_restores_the_content_of_protected_nodes_when_the_block_fails(image_and_mask, context,
                                                                                  scene_unchanged):
    volume, segmentation, image, labels = image_and_mask
    table = arrays.add_table(context, {"case_id": ["NB01"], "volume_ml": [12.5]}, "mine")
    table.SetAttribute("note", "kept")
    with scene_unchanged(context), pytest.raises(RuntimeError, match="half-way"), \
            context.transaction(protect=[table, volume, segmentation]):
        arrays.add_table(context, {"other": [1.0, 2.0]}, "x", table)
        table.SetAttribute("note", "overwritten")
        arrays.update_volume_from_array(volume, np.zeros_like(image))
        segmentation.GetSegmentation().RemoveAllSegments()
        context.add_node("vtkMRMLTableNode", "scratch")
        raise RuntimeError("failed half-way")
    assert arrays.table_columns(table) == {"case_id": ["NB01"], "volume_ml": [12.5]}
    assert table.GetAttribute("note") == "kept"
    np.testing.assert_array_equal(arrays.array_from_volume(volume), image)
    assert [r["voxels"] for r in arrays.segment_volumes(segmentation)] == [int(labels.sum())]


def test_segment_volumes_table_fills_the_given_table_with_voxels_and_millilitres(image_and_mask, context, grid):
    from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic

    _, segmentation, _, labels = image_and_mask
    table = arrays.add_table(context, {"old": [1.0]}, "mine")
    NeuroblastomaSegLogic(context).segment_volumes_table(segmentation, table)
    columns = arrays.table_columns(table)
    assert columns["segment"] == ["tumour"] and columns["voxels"] == [80.0]
    assert columns["volume_ml"] == pytest.approx([80 * grid.voxel_volume_ml])  # 80 voxels of 9 mm³ = 0.72 mL


def test_float_mask_with_whole_number_values_loads_as_its_segments(tmp_path):
    import SimpleITK as sitk

    labels = np.zeros((8, 10, 12), np.float32)
    labels[1:3, 1:3, 1:3], labels[5:7, 5:8, 5:9] = 1.0, 2.0
    path = tmp_path / "labels_float.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(path))
    segmentation = io.load_segmentation(MRMLContext.create(), path)
    assert sorted(row["voxels"] for row in arrays.segment_volumes(segmentation)) == [8, 24]
