"""Region-based and cascade nnU-Net models give nnU-Net's own labels, voxel for voxel.

The models are the demo network's plan with other outputs: a region-based model (sigmoid outputs for
the regions "tumour" = labels 1 and 2 and "necrosis" = label 2) and a 3d_lowres -> 3d_cascade_fullres
pair, with seeded random weights (no training: what is compared is the computation, not the model's
quality; the trained kinds are in test_model_kinds.py). nnU-Net accumulates its tiles in float16; with
random weights, whose logits cancel between tiles, that alone moves region probabilities by up to
0.12, so nnU-Net is run here with float32 accumulation (its only change) and must then agree exactly.
"""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.mrml.sitk_bridge import image_from_array
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.sample_study import geometry_of
from virtualbiopsy.segmentation.demo_model import demo_model_path
from virtualbiopsy.segmentation.inference import NNUNetSegmenter
from virtualbiopsy.segmentation.network_allowlist import build_network, resolve_configuration
from virtualbiopsy.segmentation.nnunet_model import inspect_model

PREFIX = "nnUNetTrainer__nnUNetPlans__"
REGIONS = {"background": 0, "tumour": [1, 2], "necrosis": 2}
FIELD_OF_VIEW = (144.0, 112.0, 80.0)  # a smaller phantom (20 x 75 x 96 voxels), the whole tumour in it


def _with_random_weights(folder, configuration, n_in, n_out, seed):
    import torch

    plans = json.loads((folder / "plans.json").read_text())
    architecture = resolve_configuration(plans, configuration, "plans")["architecture"]
    torch.manual_seed(seed)
    network = build_network(architecture, n_in, n_out, "plans", configuration)
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", weights_only=True)
    checkpoint.update(network_weights=network.state_dict(), trainer_name="nnUNetTrainer")
    checkpoint["init_args"]["configuration"] = configuration
    torch.save(checkpoint, folder / "fold_0" / "checkpoint_final.pth")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """An nnU-Net results folder: Dataset990/{regions, 3d_lowres, 3d_cascade_fullres} model folders."""
    root = tmp_path_factory.mktemp("results") / "Dataset990_NBDemo"
    demo = demo_model_path()
    regions = root / f"{PREFIX}3d_fullres"
    shutil.copytree(demo, regions)
    dataset = json.loads((regions / "dataset.json").read_text())
    (regions / "dataset.json").write_text(json.dumps({**dataset, "labels": REGIONS, "regions_class_order": [1, 2]}))
    _with_random_weights(regions, "3d_fullres", 1, 2, seed=0)
    plans = json.loads((demo / "plans.json").read_text())
    configurations = plans["configurations"]
    configurations["3d_lowres"] = {**configurations["3d_fullres"], "next_stage": ["3d_cascade_fullres"]}
    configurations["3d_cascade_fullres"] = {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}
    cascade_root = root.parent / "cascade" / "Dataset990_NBDemo"
    for configuration in ("3d_lowres", "3d_cascade_fullres"):
        folder = cascade_root / f"{PREFIX}{configuration}"
        shutil.copytree(demo, folder)
        (folder / "plans.json").write_text(json.dumps(plans))
    lowres = cascade_root / f"{PREFIX}3d_lowres"
    _with_random_weights(lowres, "3d_lowres", 1, 2, seed=1)  # an untrained first stage: a noisy tumour
    _with_random_weights(cascade_root / f"{PREFIX}3d_cascade_fullres", "3d_cascade_fullres", 2, 2, seed=2)
    return {"regions": regions, "cascade": cascade_root}


@pytest.fixture(scope="module")
def image():
    study = generate_study(2000, field_of_view_mm=FIELD_OF_VIEW)
    return study.t2w.astype(np.float32), tuple(float(s) for s in study.t2_grid.spacing[::-1])


def _nnunet(segmenter, monkeypatch):
    """nnU-Net's own predictor on the same network, accumulating tiles in float32."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    zeros = torch.zeros
    monkeypatch.setattr(torch, "zeros", lambda *shape, dtype=None, **kw: zeros(
        *shape, dtype=torch.float32 if dtype == torch.half else dtype, **kw))
    p = segmenter.predictor
    own = nnUNetPredictor(use_mirroring=p.use_mirroring, device=torch.device("cpu"), allow_tqdm=False)
    own.manual_initialization(p.network, p.plans_manager, p.configuration_manager, p.list_of_parameters,
                              p.dataset_json, "nnUNetTrainer", p.allowed_mirroring_axes)
    return own


@pytest.mark.slow
def test_region_model_labels_and_sigmoid_probabilities_equal_nnunets(results, image, monkeypatch):
    array, spacing = image
    segmenter = NNUNetSegmenter(inspect_model(results["regions"]), "cpu")
    ours = segmenter.predict([array], spacing)
    labels, probabilities = _nnunet(segmenter, monkeypatch).predict_single_npy_array(
        array[None], {"spacing": list(spacing)}, None, None, True)
    assert probabilities.shape[0] == 2  # one sigmoid per region, no background channel
    np.testing.assert_array_equal(ours.labels, labels)
    assert np.abs(ours.probabilities.astype(np.float32) - probabilities).max() < 2e-3  # float16 storage
    assert set(np.unique(ours.labels)) <= {0, 1, 2} and {1, 2} <= set(np.unique(ours.labels))
    for name in ("predictive_entropy", "expected_entropy", "mutual_information"):
        values = getattr(ours, name).astype(np.float32)
        assert np.all(np.isfinite(values)) and values.min() >= 0 and values.max() <= 1, name


@pytest.mark.slow
def test_cascade_runs_its_first_stage_and_equals_nnunets_cascade(results, image, monkeypatch):
    array, spacing = image
    model = inspect_model(results["cascade"] / f"{PREFIX}3d_cascade_fullres")
    assert model.previous_stage is not None and model.previous_stage.configuration == "3d_lowres"
    assert "after 3d_lowres" in model.describe()
    segmenter = NNUNetSegmenter(model, "cpu", mirroring=False)  # mirroring: compared in the region test
    ours = segmenter.predict([array], spacing)
    first = _nnunet(segmenter.previous_stage, monkeypatch).predict_single_npy_array(
        array[None], {"spacing": list(spacing)})
    labels = _nnunet(segmenter, monkeypatch).predict_single_npy_array(
        array[None], {"spacing": list(spacing)}, segmentation_previous_stage=first[None].astype(np.float32))
    np.testing.assert_array_equal(ours.labels, labels)
    assert "first_stage" in ours.seconds
    # the first stage matters: the cascade without it (zeros) would label differently
    without = _nnunet(segmenter, monkeypatch).predict_single_npy_array(
        array[None], {"spacing": list(spacing)}, segmentation_previous_stage=np.zeros((1, *first.shape), np.float32))
    assert np.any(without != labels)


def _write_t2(study, folder):
    import SimpleITK as sitk

    path = folder / "t2.nii.gz"
    sitk.WriteImage(image_from_array(study.t2w.astype(np.float32), geometry_of(study.t2_grid)), str(path))
    return path


def _segment(*args):
    from virtualbiopsy.cli.main import main

    return main(["segment", *map(str, args), "--device", "cpu", "--no-mirroring"])


@pytest.mark.slow
def test_segment_picks_the_cascade_from_a_results_folder_or_zip(results, image, tmp_path):
    study = generate_study(2000, field_of_view_mm=FIELD_OF_VIEW)
    path = _write_t2(study, tmp_path)
    archive = tmp_path / "both.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for file in sorted(results["cascade"].rglob("*")):
            if file.is_file():
                z.write(file, file.relative_to(results["cascade"].parent))
    assert _segment("--model", results["cascade"], "--configuration", "3d_cascade_fullres", "--image", path,
                    "--out", tmp_path / "folder") == 0
    assert _segment("--model", archive, "--image", path, "--out", tmp_path / "zip") == 0  # the cascade's last stage
    assert _segment("--model", archive, "--configuration", "3d_lowres", "--image", path,
                    "--out", tmp_path / "lowres") == 0
    summaries = {k: json.loads((tmp_path / k / "summary.json").read_text()) for k in ("folder", "zip", "lowres")}
    assert "3d_cascade_fullres after 3d_lowres" in summaries["zip"]["model"]
    assert summaries["folder"]["tumour_volume_ml"] == summaries["zip"]["tumour_volume_ml"]
    assert summaries["lowres"]["tumour_volume_ml"] != summaries["zip"]["tumour_volume_ml"]
    for summary in summaries.values():
        assert 0.0 <= summary["uncertain_fraction"] <= 1.0
    context = MRMLContext.create()
    reference = io.load_volume(context, path)
    segmentation = io.load_segmentation(context, tmp_path / "zip" / "segmentation.seg.nrrd")
    assert Geometry.from_node(reference).shape == study.t2w.shape
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 1


@pytest.mark.slow
def test_region_model_segments_overlap_as_its_regions_mean(results, tmp_path):
    study = generate_study(2000, field_of_view_mm=FIELD_OF_VIEW)
    path = _write_t2(study, tmp_path)
    assert _segment("--model", results["regions"], "--image", path, "--out", tmp_path / "out") == 0
    context = MRMLContext.create()
    reference = io.load_volume(context, path)
    segmentation = io.load_segmentation(context, tmp_path / "out" / "segmentation.seg.nrrd")
    masks = {segmentation.GetSegmentation().GetSegment(s).GetName(): arrays.mask_from_segment(
        segmentation, s, reference, allow_empty=True) for s in arrays.segment_ids(segmentation)}
    assert set(masks) == {"Neuroblastoma", "necrosis"}  # the tumour region, coded as the neoplasm
    assert masks["necrosis"].any() and not np.any(masks["necrosis"] & ~masks["Neuroblastoma"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["tumour_volume_ml"] == pytest.approx(
        masks["Neuroblastoma"].sum() * study.t2_grid.voxel_volume_mm3 / 1000, rel=1e-6)
    assert 0.0 <= summary["uncertain_fraction"] <= 1.0
