"""Each module's Logic on real MRML, headless: the same checks Slicer's self-test runner runs."""

from __future__ import annotations

import numpy as np
import pytest

from virtualbiopsy.errors import EmptyMaskError, GeometryMismatchError, ImageDimensionError, InputError
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.selftests import MODULE_CHECKS, run_module_checks
from virtualbiopsy.tables import join_columns


@pytest.mark.parametrize("module", sorted(MODULE_CHECKS))
def test_module_self_test_checks(module, context, tmp_path):
    run_module_checks(module, context, str(tmp_path))


def test_statistics_match_numpy(context, image_and_mask):
    volume, segmentation, image, labels = image_and_mask
    before = context.node_ids()
    node = RadiomicsBiomarkersLogic(context).intensity_statistics_table(volume, segmentation)
    assert context.node_ids() - before == {node.GetID()}, "helper nodes were left in the scene"
    table = arrays.table_columns(node)
    inside = image[labels == 1].astype(float)
    assert table["voxels"] == [inside.size]
    assert table["mean"][0] == pytest.approx(inside.mean())
    assert table["sd"][0] == pytest.approx(inside.std(ddof=1))
    assert table["p90"][0] == pytest.approx(np.percentile(inside, 90))
    assert table["volume_ml"][0] == pytest.approx(inside.size * 1.5 * 1.5 * 4.0 / 1000)


def test_mask_on_shifted_grid_is_refused(context, image_and_mask, grid, scene_unchanged):
    volume, _, _, labels = image_and_mask
    moved = grid.ijk_to_ras.copy()
    moved[0, 3] += 0.7  # 0.7 mm: less than a voxel, so only the voxel centres disagree
    shifted = Geometry(grid.shape, moved)
    mask = arrays.add_segmentation_from_labels(context, labels, shifted, {1: ("tumour", (1, 0, 0))}, "shifted")
    with scene_unchanged(context), pytest.raises(GeometryMismatchError, match="shifted"):
        RadiomicsBiomarkersLogic(context).intensity_statistics_table(volume, mask)


def test_mask_covering_part_of_the_image_on_its_grid_is_accepted(context, image_and_mask, grid):
    volume, _, image, _ = image_and_mask
    labels = np.zeros(grid.shape, np.uint8)
    labels[0:2, 0:2, 0:2] = 1  # Slicer crops segments to their extent: still the image's grid
    mask = arrays.add_segmentation_from_labels(context, labels, grid, {1: ("corner", (0, 1, 0))}, "corner")
    table = arrays.table_columns(RadiomicsBiomarkersLogic(context).intensity_statistics_table(volume, mask))
    assert table["mean"] == [pytest.approx(image[0:2, 0:2, 0:2].mean())]


def test_empty_segment_is_refused(context, image_and_mask, scene_unchanged):
    volume, segmentation, _, _ = image_and_mask
    segmentation.GetSegmentation().AddEmptySegment("empty", "empty")
    with scene_unchanged(context), pytest.raises(EmptyMaskError, match="empty"):
        RadiomicsBiomarkersLogic(context).intensity_statistics_table(volume, segmentation)


def test_vector_image_is_refused(context, grid):
    node = context.add_node("vtkMRMLVectorVolumeNode", "rgb")
    import vtk

    image = vtk.vtkImageData()
    image.SetDimensions(grid.shape[2], grid.shape[1], grid.shape[0])
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 3)
    node.SetAndObserveImageData(image)
    segmentation = arrays.add_segmentation_from_labels(context, np.ones(grid.shape, np.uint8), grid,
                                                      {1: ("all", (1, 1, 1))}, "all")
    with pytest.raises(ImageDimensionError, match="3 values per voxel"):
        RadiomicsBiomarkersLogic(context).intensity_statistics_table(node, segmentation)


def test_segment_volumes_table_fills_given_table(context, image_and_mask):
    _, segmentation, _, labels = image_and_mask
    table = context.add_node("vtkMRMLTableNode", "mine")
    out = NeuroblastomaSegLogic(context).segment_volumes_table(segmentation, table)
    assert out is table
    assert arrays.table_columns(table)["voxels"] == [float((labels == 1).sum())]


def test_adc_fit_needs_matching_grids(context, grid):
    logic = FitClusterFitLogic(context)
    other = Geometry.from_spacing(grid.shape, (2.0, 2.0, 4.0))
    first = arrays.add_volume_from_array(context, np.full(grid.shape, 1000, np.int16), grid, "b0")
    second = arrays.add_volume_from_array(context, np.full(grid.shape, 500, np.int16), other, "b800")
    with pytest.raises(GeometryMismatchError, match="b800"):
        logic.fit_adc_map([first, second], [0, 800])


def test_adc_map_of_known_decay(context, grid):
    adc_true = 1.3e-3
    b_values = [0, 200, 800]
    volumes = [arrays.add_volume_from_array(context, np.full(grid.shape, 1000 * np.exp(-b * adc_true), np.float32),
                                            grid, f"b{b}") for b in b_values]
    node = FitClusterFitLogic(context).fit_adc_map(volumes, b_values)
    np.testing.assert_allclose(arrays.array_from_volume(node), adc_true, rtol=1e-5)
    assert node.GetAttribute("VirtualBiopsy.Units") == "mm2/s"


def test_join_keeps_same_named_columns_apart():
    joined = join_columns([{"case_id": ["a"], "volume": [1.0]}, {"case_id": ["a"], "volume": [2.0]}], names=["x", "y"])
    assert joined == {"case_id": ["a"], "x:volume": [1.0], "y:volume": [2.0]}
    with pytest.raises(InputError, match="more than once"):
        join_columns([{"case_id": ["a", "a"], "v": [1.0, 2.0]}])


def test_empty_segment_does_not_fail_the_grid_check(context, image_and_mask):
    volume, segmentation, _, _ = image_and_mask
    segmentation.GetSegmentation().AddEmptySegment("", "nothing found", [1, 1, 0])
    arrays.require_segmentation_on_grid(segmentation, volume)  # no error: only non-empty segments have a grid
