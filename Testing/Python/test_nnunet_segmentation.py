"""nnU-Net segmentation: model validation, safe loading, in-process inference with uncertainty,
and the module logic on real MRML, with the bundled demo model."""

from __future__ import annotations

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from scipy import ndimage

from virtualbiopsy.errors import (
    Cancelled,
    FileFormatError,
    ImageDimensionError,
    InputError,
    InvalidValuesError,
    UnsafeArchiveError,
)
from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic, SegmentParameters
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.progress import CancelToken, Task
from virtualbiopsy.sample_study import study_to_scene
from virtualbiopsy.segmentation.demo_model import demo_model_path
from virtualbiopsy.segmentation.nnunet_model import check_channels, inspect_model, load_checkpoint, open_model_archive

HELD_OUT_SEEDS = (2000, 2001, 2002, 2003, 2004)  # training used 1000-1019


@pytest.fixture(scope="module")
def model_folder():
    return demo_model_path()


@pytest.fixture
def model_copy(model_folder, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(model_folder, target)
    return target


def test_demo_model_is_valid_and_described(model_folder):
    model = inspect_model(model_folder)
    assert model.channel_names == ["T2"]
    assert model.labels == {"background": 0, "tumour": 1}
    assert model.folds == [0]
    assert "tumour" in model.describe()


def test_missing_fold_is_named(model_folder):
    with pytest.raises(InputError, match=r"Fold\(s\) 3 .* available: 0"):
        inspect_model(model_folder, folds=(0, 3))


def test_missing_plans_is_named(model_copy):
    (model_copy / "plans.json").unlink()
    with pytest.raises(FileFormatError, match="plans.json"):
        inspect_model(model_copy)


def test_corrupt_checkpoint_is_refused(model_copy):
    checkpoint = model_copy / "fold_0" / "checkpoint_final.pth"
    checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    with pytest.raises(FileFormatError, match="corrupt"):
        inspect_model(model_copy)


class _Payload:
    """Unpickling this would create a folder: a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_checkpoint_with_code_is_not_unpickled(model_copy, tmp_path):
    import torch

    marker = tmp_path / "payload_ran"
    checkpoint = model_copy / "fold_0" / "checkpoint_final.pth"
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content["init_args"]["extra"] = _Payload(str(marker))
    torch.save(content, checkpoint)
    with pytest.raises(FileFormatError, match="not loaded"):
        load_checkpoint(checkpoint)
    assert not marker.exists(), "the checkpoint's payload ran"


def test_channel_count_mismatch_names_the_channels(model_folder):
    with pytest.raises(InputError, match="expects 1 input image.*T2; 2 were given"):
        check_channels(inspect_model(model_folder), 2, ["T2w", "DWI b0"])


def test_model_zip_round_trip_and_escaping_entries(model_folder, tmp_path):
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in model_folder.rglob("*"):
            if path.is_file():
                z.write(path, f"NeuroblastomaDemo/{path.relative_to(model_folder)}")
    folder = open_model_archive(archive, tmp_path / "unpacked")
    assert inspect_model(folder).folds == [0]
    evil = tmp_path / "evil.zip"
    shutil.copy(archive, evil)
    with zipfile.ZipFile(evil, "a") as z:
        z.writestr("../../escaped.txt", "x")
    with pytest.raises(UnsafeArchiveError):
        open_model_archive(evil, tmp_path / "unpacked2")
    assert not (tmp_path / "escaped.txt").exists()


# ---- inference (slow: runs the network) -------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter(model_folder):
    from virtualbiopsy.segmentation.inference import NNUNetSegmenter

    return NNUNetSegmenter(inspect_model(model_folder), device="cpu")


def _spacing_kji(study):
    return tuple(float(s) for s in study.t2_grid.spacing[::-1])


def _dice(a, b):
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


@pytest.fixture(scope="module")
def held_out(segmenter):
    cases = []
    for seed in HELD_OUT_SEEDS:
        study = generate_study(seed)
        cases.append((study, segmenter.predict([study.t2w], _spacing_kji(study))))
    return cases


@pytest.mark.slow
def test_demo_model_reaches_dice_090_on_held_out_studies(held_out):
    scores = [_dice(result.labels == 1, np.isin(study.t2_labels, (6, 7))) for study, result in held_out]
    print("held-out Dice:", [round(s, 3) for s in scores])
    assert min(scores) >= 0.90, scores


@pytest.mark.slow
def test_uncertainty_is_higher_on_the_boundary_than_inside(held_out):
    for study, result in held_out:
        tumour = np.isin(study.t2_labels, (6, 7))
        inside = ndimage.binary_erosion(tumour, iterations=2)
        boundary = tumour ^ ndimage.binary_erosion(tumour)
        boundary |= ndimage.binary_dilation(tumour) & ~tumour
        entropy = result.predictive_entropy.astype(np.float32)
        assert entropy[boundary].mean() > 3 * entropy[inside].mean() + 0.01, study.seed
        assert result.members == 8  # 8 mirrorings x 1 fold
        assert 0.0 <= float(result.mutual_information.max()) <= 1.0


@pytest.mark.slow
def test_labels_match_nnunets_own_inference(segmenter, held_out):
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    study, result = held_out[0]
    own = nnUNetPredictor(use_mirroring=True, device=torch.device("cpu"), allow_tqdm=False)
    p = segmenter.predictor
    own.manual_initialization(p.network, p.plans_manager, p.configuration_manager, p.list_of_parameters,
                              p.dataset_json, "nnUNetTrainer", p.allowed_mirroring_axes)
    reference = own.predict_single_npy_array(study.t2w[None].astype(np.float32), {"spacing": list(_spacing_kji(study))})
    assert np.mean(reference == result.labels) > 0.9999


@pytest.mark.slow
def test_segment_adds_new_nodes_and_keeps_user_segmentation(context, model_folder):
    study = generate_study(2005)
    nodes = study_to_scene(context, study)
    user = nodes["segmentation"]
    before_segments = arrays.segment_volumes(user)
    outputs = NeuroblastomaSegLogic(context).segment([nodes["t2w"]], SegmentParameters(str(model_folder)))
    assert arrays.segment_volumes(user) == before_segments, "the existing segmentation was changed"
    segmentation = outputs.segmentation
    assert segmentation is not user and segmentation.GetAttribute("VirtualBiopsy.Source") == "AI"
    segment = segmentation.GetSegmentation().GetNthSegment(0)
    assert segment.GetName() == "Neuroblastoma"
    assert "108369006" in segment.GetTerminology()
    uncertainty = arrays.array_from_volume(outputs.uncertainty)
    assert uncertainty.dtype == np.uint8 and uncertainty.max() > 100
    assert Geometry.from_node(outputs.uncertainty).differences(Geometry.from_node(nodes["t2w"])) == []
    disagreement = arrays.array_from_volume(outputs.disagreement)  # between the 8 mirrored passes
    assert disagreement.dtype == np.uint8 and disagreement.max() > 0 and disagreement.mean() < uncertainty.mean()
    assert outputs.fold_disagreement is None  # the demo model has one fold
    summary = outputs.summary
    truth_ml = study.volumes_ml()["tumour"]
    assert abs(summary["tumour_volume_ml"] - truth_ml) < 0.15 * truth_ml
    assert 0.0 < summary["uncertain_fraction"] < 0.5 and summary["slices_to_review"]
    json.dumps(summary)  # JSON-safe for summary.json


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["two_channels", "flat_image", "nan_image", "cancel"])
def test_bad_inputs_and_cancel_leave_the_scene_unchanged(context, model_folder, problem, scene_unchanged):
    study = generate_study(2006, t2_spacing=(3.0, 3.0, 4.0))
    nodes = study_to_scene(context, study)
    geometry = Geometry.from_node(nodes["t2w"])
    logic = NeuroblastomaSegLogic(context)
    parameters = SegmentParameters(str(model_folder))
    progress = None
    volumes = [nodes["t2w"]]
    expected = {"two_channels": InputError, "flat_image": InvalidValuesError, "nan_image": InvalidValuesError,
                "cancel": Cancelled}[problem]
    if problem == "two_channels":
        volumes = [nodes["t2w"], nodes["t2w"]]
    elif problem == "flat_image":
        volumes = [arrays.add_volume_from_array(context, np.zeros(geometry.shape, np.int16), geometry, "blank")]
    elif problem == "nan_image":
        values = arrays.array_from_volume(nodes["t2w"]).astype(np.float32)
        values[3, 3, 3] = np.nan
        volumes = [arrays.add_volume_from_array(context, values, geometry, "with NaN")]
    else:
        token = CancelToken()
        progress = Task(lambda f, m: token.cancel() if "tile" in m else None, token)
    with scene_unchanged(context), pytest.raises(expected):
        logic.segment(volumes, parameters, progress)


def test_2d_input_is_refused(context, model_folder, scene_unchanged):
    flat = Geometry.from_spacing((1, 40, 40), (1.5, 1.5, 4.0))
    volume = arrays.add_volume_from_array(context, np.random.default_rng(0).random((1, 40, 40)).astype(np.float32),
                                          flat, "one slice")
    with scene_unchanged(context), pytest.raises(ImageDimensionError, match="2D"):
        NeuroblastomaSegLogic(context).segment([volume], SegmentParameters(str(model_folder)))


@pytest.mark.slow
def test_speed_options_keep_the_labels_within_their_stated_tolerance(model_folder, held_out):
    """bfloat16 autocast, channels-last memory, in-plane mirroring only and a larger tile step change the
    labels at most at a few boundary voxels (Dice to float32 >= 0.99); channels-last changes nothing."""
    import torch

    from virtualbiopsy.segmentation.inference import NNUNetSegmenter

    study, reference = held_out[0]
    model = inspect_model(model_folder)
    options = {"channels_last": {"channels_last": True}, "mirror_in_plane": {"mirror_axes": (1, 2)},
               "tile_step_0.75": {"tile_step_size": 0.75}}
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():
        options["bfloat16"] = {"precision": "bfloat16"}
    for name, option in options.items():
        result = NNUNetSegmenter(model, "cpu", **option).predict([study.t2w], _spacing_kji(study))
        dice = _dice(result.labels == 1, reference.labels == 1)
        print(name, "voxels differing:", int(np.count_nonzero(result.labels != reference.labels)), "Dice", dice)
        assert dice >= 0.99, name
        if name == "channels_last":
            assert np.mean(result.labels == reference.labels) > 0.99999
        if name == "mirror_in_plane":
            assert result.members == 4
    with pytest.raises(InputError, match="mirroring along axes 0, 1, 2"):
        NNUNetSegmenter(model, "cpu", mirror_axes=(3,))
    with pytest.raises(InputError, match="precision"):
        NNUNetSegmenter(model, "cpu", precision="float16")
