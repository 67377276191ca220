"""FitClusterFitLogic on a real MRML scene: the maps, habitat segments and table it adds, the refusals and
the cancel that leave the scene unchanged, and the demo step on the sample study against its truth."""

from __future__ import annotations

import numpy as np
import pytest

from virtualbiopsy.errors import Cancelled, EmptyMaskError, GeometryMismatchError, InputError, InvalidValuesError
from virtualbiopsy.habitats.pipeline import (
    FitClusterFitParameters,
)
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.progress import CancelToken, Task


def test_logic_adds_maps_habitat_segments_and_table(context, dro_scene):
    dro, volumes, tumour, geometry = dro_scene
    before = context.node_ids()
    outputs = FitClusterFitLogic(context).fit_cluster_fit(
        volumes, list(dro.b_values), tumour, parameters=FitClusterFitParameters(erode_voxels=0, n_bootstrap=50))
    assert context.node_ids() > before
    table = arrays.table_columns(outputs.table)
    assert table["habitat"] == ["habitat 1", "habitat 2"]
    np.testing.assert_allclose(table["adc"], dro.adc, rtol=0.05)
    assert sum(table["voxels"]) + outputs.summary["excluded_uncertain"] == 1200
    segmentation = outputs.habitats.GetSegmentation()
    assert segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("habitat 1")).GetColor() != \
        segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("habitat 2")).GetColor()
    se = arrays.array_from_volume(outputs.adc_se)
    assert np.all(se[dro.mask] > 0) and np.all(se[~dro.mask] == 0)
    assert outputs.adc.GetAttribute("VirtualBiopsy.Units") == "mm2/s"
    voxel = FitClusterFitLogic(context).voxel_fit(volumes, list(dro.b_values), tumour)
    assert voxel.noise_sigma == pytest.approx(dro.sigma, rel=0.05)
    assert np.all(arrays.array_from_volume(voxel.r2)[~dro.mask] == 0)


def test_bad_inputs_are_named_and_leave_the_scene_unchanged(context, dro_scene, scene_unchanged):
    dro, volumes, tumour, geometry = dro_scene
    logic = FitClusterFitLogic(context)
    b = list(dro.b_values)
    cases = [
        (InputError, lambda: logic.fit_cluster_fit(volumes, b[:3], tumour), "3 b-values"),
        (InputError, lambda: logic.fit_cluster_fit(volumes, [0, 0, 0, 0], tumour), "two distinct"),
        (InputError, lambda: logic.fit_cluster_fit(volumes, b, None), "tumour segment"),
    ]
    negative = arrays.add_volume_from_array(context, -np.abs(dro.signals[3]), geometry, "phase")
    cases.append((InvalidValuesError, lambda: logic.fit_cluster_fit(volumes[:3] + [negative], b, tumour), "negative"))
    blank = arrays.add_volume_from_array(context, np.zeros(geometry.shape, np.float32), geometry, "blank b800")
    cases.append((InvalidValuesError, lambda: logic.fit_cluster_fit(volumes[:3] + [blank], b, tumour),
                  r"zero signal in DWI volume 4 \(b = 800"))
    cases.append((InvalidValuesError, lambda: logic.fit_cluster_fit(volumes, b[::-1], tumour), "rises with b"))
    cases.append((InvalidValuesError, lambda: logic.voxel_fit(volumes, b[::-1], tumour), "order of the DWI"))
    empty = arrays.add_volume_from_array(context, np.zeros(geometry.shape, np.uint8), geometry, "empty",
                                         "vtkMRMLLabelMapVolumeNode")
    cases.append((EmptyMaskError, lambda: logic.fit_cluster_fit(volumes, b, empty), "no non-zero"))
    other = Geometry.from_spacing(geometry.shape, (2.0, 2.0, 5.0))
    elsewhere = arrays.add_volume_from_array(context, dro.mask.astype(np.uint8), other, "other grid",
                                             "vtkMRMLLabelMapVolumeNode")
    cases.append((GeometryMismatchError, lambda: logic.fit_cluster_fit(volumes, b, elsewhere), "voxel grid"))
    frames = [arrays.add_volume_from_array(context, np.full(geometry.shape, 100.0 + i, np.float32), geometry,
                                           f"t{i}") for i in range(5)]
    cases.append((InputError, lambda: logic.dce_metrics(frames, [0, 5, 10, 10, 20], tumour), "increase strictly"))
    cases.append((InputError, lambda: logic.dce_metrics(frames, [0, 5, 10], tumour), "3 acquisition times"))
    cases.append((InputError, lambda: logic.fit_cluster_fit(volumes, b, tumour, parameters=FitClusterFitParameters(
        features=("adc", "iauc60"))), "needs a DCE"))
    for error_type, action, words in cases:
        with scene_unchanged(context), pytest.raises(error_type, match=words):
            action()


def test_cancel_leaves_the_scene_unchanged(context, dro_scene, scene_unchanged):
    dro, volumes, tumour, _ = dro_scene
    token = CancelToken()

    def cancel_while_clustering(fraction, message):
        if "Clustering" in message:
            token.cancel()

    with scene_unchanged(context), pytest.raises(Cancelled):
        FitClusterFitLogic(context).fit_cluster_fit(volumes, list(dro.b_values), tumour,
                                                    progress=Task(cancel_while_clustering, token))


def test_demo_step_compares_habitats_with_the_truth(context, tmp_path):
    from virtualbiopsy.demo_steps.fit_cluster_fit import demo_step
    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import study_to_scene

    study = generate_study(2, t2_spacing=(3.0, 3.0, 4.0))
    result = demo_step(context, study, study_to_scene(context, study), tmp_path)
    truth = result.extra["truth"]
    pure = [i for i, share in enumerate(truth["tissue_share"]) if share >= 0.8]
    assert truth["tissue"][0] == "tumour rim" and 0 in pure
    assert all(abs(truth["adc_error_percent"][i]) < 10 for i in pure), truth
    assert all(path.is_file() for path in [*result.tables.values(), *result.figures.values()])
    assert "habitat 1" in result.text
