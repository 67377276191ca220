"""A panel's heavy step run as the command line in its own process gives what the in-process logic gives: the
scene's inputs go out as files, every parameter crosses as an option, and the outputs come back as new nodes
(nothing of the user's changes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from virtualbiopsy.cli.main import build_parser
from virtualbiopsy.cli.scene_steps import fcf_arguments, fit_cluster_fit_step
from virtualbiopsy.command_job import CommandJob
from virtualbiopsy.habitats.pipeline import FitClusterFitParameters
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy.mrml import MRMLContext, arrays


def _parsed(parameters):
    from virtualbiopsy.cli.fcf import parameters_from_args

    args = build_parser().parse_args(["fcf", "--dwi", "d.nrrd", "--mask", "m.nrrd", "--out", "o",
                                      *fcf_arguments(parameters)])
    return parameters_from_args(args)


@pytest.mark.parametrize("parameters", [
    FitClusterFitParameters(),
    FitClusterFitParameters(min_b=50.0, max_b=800.0, nonlinear=True, noise_floor=True, voxel_noise_floor=True,
                            noise_sigma=12.5, noise_method="residual", threshold_kind="absolute", threshold=2.5e-4,
                            method="kmeans", k=3, k_max=6, features=("adc", "s0"), min_habitat_voxels=7,
                            ci_method="t", n_bootstrap=33, confidence=0.9, seed=4, erode_voxels=0,
                            repeats_are_averages=True),
], ids=["defaults", "every-field-changed"])
def test_every_fit_cluster_fit_parameter_crosses_the_command_line_unchanged(parameters):
    assert _parsed(parameters) == parameters


def test_the_round_trip_covers_every_field():
    changed = FitClusterFitParameters(min_b=50.0, max_b=800.0, nonlinear=True, noise_floor=True,
                                      voxel_noise_floor=True, noise_sigma=12.5, noise_method="residual",
                                      threshold_kind="absolute", threshold=2.5e-4, method="kmeans", k=3, k_max=6,
                                      features=("adc", "s0"), min_habitat_voxels=7, ci_method="t", n_bootstrap=33,
                                      confidence=0.9, seed=4, erode_voxels=0, repeats_are_averages=True)
    default = FitClusterFitParameters()
    same = [f.name for f in dataclasses.fields(default) if getattr(default, f.name) == getattr(changed, f.name)]
    assert same == [], "a field the parametrised round trip does not move off its default"


@pytest.mark.slow
def test_fit_cluster_fit_in_a_process_equals_the_in_process_logic(tmp_path, scene_unchanged):
    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import study_to_scene

    context = MRMLContext.create()
    nodes = study_to_scene(context, generate_study(2, t2_spacing=(3.0, 3.0, 4.0)))
    segmentation = nodes["segmentation"]
    ids = [arrays.segment_id_by_name(segmentation, n) for n in ("tumour rim", "tumour core")]
    parameters = FitClusterFitParameters(n_bootstrap=50)
    storage = {key: node.GetStorageNodeID() for key, node in nodes.items()}
    with scene_unchanged(context):  # preparing the step only writes files
        step = fit_cluster_fit_step(context, nodes["dwi"], None, segmentation, ids, parameters, tmp_path,
                                    name="Habitats (process)")
    assert {key: node.GetStorageNodeID() for key, node in nodes.items()} == storage
    state = CommandJob(step.arguments).start().wait(300)
    assert state.succeeded, state.lines[-5:]
    loaded = step.load(context)
    expected = FitClusterFitLogic(context).fit_cluster_fit(nodes["dwi"], mask=segmentation, segments=ids,
                                                           parameters=parameters)

    ours, theirs = arrays.table_columns(loaded["table"]), arrays.table_columns(expected.table)
    assert ours["habitat"] == theirs["habitat"] and ours["voxels"] == theirs["voxels"]
    for column in ("adc", "adc_ci_low", "adc_ci_high", "voxel_mean_adc"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=1e-6, err_msg=column)
    np.testing.assert_allclose(arrays.array_from_volume(loaded["adc"]), arrays.array_from_volume(expected.adc),
                               rtol=1e-6, atol=1e-12)
    assert [r["voxels"] for r in arrays.segment_volumes(loaded["habitats"])] == \
        [r["voxels"] for r in arrays.segment_volumes(expected.habitats)]
    assert loaded["habitats"].GetName() == "Habitats (process)"


def test_a_step_without_a_tumour_segment_is_refused_before_anything_runs(tmp_path):
    context = MRMLContext.create()
    from virtualbiopsy.errors import InputError

    with pytest.raises(InputError, match="tumour segment"):
        fit_cluster_fit_step(context, [], None, None, [], FitClusterFitParameters(), tmp_path)


@pytest.mark.parametrize("changes", [{}, {"folds": (0,), "device": "cpu", "mirroring": False, "uncertainty": False,
                                          "uncertain_threshold": 0.3, "checkpoint": "checkpoint_best.pth",
                                          "configuration": "3d_fullres", "precision": "bfloat16",
                                          "mirror_axes": (1, 2), "tile_step_size": 0.75}],
                         ids=["defaults", "every-field-changed"])
def test_every_segmentation_parameter_crosses_the_command_line_unchanged(changes):
    from virtualbiopsy.cli.scene_steps import segment_arguments
    from virtualbiopsy.cli.segment import parameters_from_args
    from virtualbiopsy.logic.neuroblastoma_seg import SegmentParameters

    parameters = SegmentParameters("/models/Dataset990", **changes)
    if changes:
        default = SegmentParameters("/models/Dataset990")
        assert [f.name for f in dataclasses.fields(default) if f.name != "model_path"
                and getattr(default, f.name) == getattr(parameters, f.name)] == []
    args = build_parser().parse_args(["segment", "--image", "t2.nrrd", *segment_arguments(parameters), "--out", "o"])
    assert parameters_from_args(args, parameters.model_path) == parameters


@pytest.mark.slow
def test_segmentation_in_a_process_equals_the_in_process_logic(tmp_path, scene_unchanged):
    from virtualbiopsy.cli.scene_steps import segment_step
    from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic, SegmentParameters
    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import study_to_scene
    from virtualbiopsy.segmentation.demo_model import demo_model_path

    context = MRMLContext.create()
    t2w = study_to_scene(context, generate_study(3))["t2w"]
    parameters = SegmentParameters(str(demo_model_path()), device="cpu")
    with scene_unchanged(context):
        step = segment_step(context, [t2w], parameters, tmp_path)
    state = CommandJob(step.arguments).start().wait(600)
    assert state.succeeded, state.lines[-5:]
    loaded = step.load(context)["outputs"]
    expected = NeuroblastomaSegLogic(context).segment([t2w], parameters)

    def labels(segmentation):
        return arrays.segment_volumes(segmentation)

    assert [(r["segment"], r["voxels"]) for r in labels(loaded.segmentation)] == \
        [(r["segment"], r["voxels"]) for r in labels(expected.segmentation)]
    np.testing.assert_array_equal(arrays.array_from_volume(loaded.uncertainty),
                                  arrays.array_from_volume(expected.uncertainty))
    assert loaded.summary["tumour_volume_ml"] == pytest.approx(expected.summary["tumour_volume_ml"])
    assert loaded.summary["slices_to_review"] == expected.summary["slices_to_review"]
    assert loaded.segmentation.GetName() == "T2w AI segmentation"  # named as the logic names it (the second gets _1)
    assert expected.segmentation.GetName().startswith("T2w AI segmentation")
