"""Every kind of nnU-Net model, trained (tiny, on phantoms), segments through ``virtualbiopsy segment`` as
nnU-Net's own predictor does.

The kinds (``scripts/train_model_kinds.py``, cached by :mod:`model_kinds`): 2d; two-channel 3d_fullres;
region-based with two regions and with one; two folds; ResEnc; 3d_lowres; 3d_cascade_fullres after its
3d_lowres. Each is run from its results folder and from its zip (the cascade's zip holds both stages and is
chosen with ``--configuration 3d_cascade_fullres``) on two unseen phantom cases, and compared with nnU-Net's
own prediction (``nnUNetPredictor``, mirroring, every fold; the cascade after its first stage):

* every segment equals nnU-Net's label map (a region's segment: the label values the region covers) except
  at ties: voxels where nnU-Net's two most probable labels, or a region's sigmoid and 0.5, are within
  ``TIE`` of each other. nnU-Net adds its tiles up in float16 (the project in float32), which moves a
  probability by up to ~1e-3; such a voxel can fall either way;
* the uncertainty map is finite, in [0, 1] (uint8 0-255), and higher on the tumour's boundary than far from it;
* summary.json's tumour volume is the tumour segment's and its uncertain fraction is in [0, 1].
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from model_kinds import KINDS, ModelKind, cache_key, cache_root, model_kinds
from scipy import ndimage

from virtualbiopsy.cli.main import main

pytestmark = pytest.mark.slow

SOURCES = ("folder", "zip")
TIE = 2e-3  # probability margin below which a voxel is a tie (see the module docstring)
INFERENCE_KEYS = {"network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes"}
TUMOUR_NAMES = ("tumour", "tumor")


@pytest.fixture(scope="module")
def kinds() -> dict[str, ModelKind]:
    # Building the eight tiny models takes about 10 minutes on two cores, which CI's time budget cannot spare
    # on every fresh clone: the kinds run where they are cached, or are built when asked for.
    if not (cache_root() / cache_key() / "manifest.json").is_file() and os.environ.get(
            "VIRTUALBIOPSY_MODEL_KINDS") != "build":
        pytest.skip("the tiny nnU-Net model kinds are not built: run `make model-kinds` (about 10 min, cached in "
                    f"{cache_root()}) or set VIRTUALBIOPSY_MODEL_KINDS=build")
    return model_kinds()


def _segment(model: Path, images: list[Path], out: Path, *options: str) -> None:
    arguments = ["segment", "--model", str(model), *[a for image in images for a in ("--image", str(image))],
                 "--out", str(out), "--device", "cpu", *options]
    code = main(arguments)
    assert code == 0, f"segment exited {code}: {' '.join(arguments)}"


@pytest.fixture(scope="module")
def segmented(kinds, tmp_path_factory):
    """``segmented(kind, source, case)``: the --out folder of ``segment`` on that case (run once)."""
    done = {}

    def run(kind: str, source: str, case: str) -> Path:
        if (kind, source, case) not in done:
            model = kinds[kind]
            out = tmp_path_factory.mktemp(f"{kind}-{source}-{case}")
            options = ("--configuration", model.configuration) if source == "zip" and kind == "cascade" else ()
            _segment(model.folder if source == "folder" else model.zip, model.images(case), out / "out", *options)
            done[kind, source, case] = out / "out"
        return done[kind, source, case]

    return run


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _segment_masks(out: Path, reference_image: Path, names) -> dict[str, np.ndarray]:
    """Each segment of out/segmentation.seg.nrrd as a mask on the input image's grid, by dataset.json name
    (the tumour segment is named Neuroblastoma, coded as a neoplasm)."""
    from virtualbiopsy.mrml import MRMLContext, arrays, io

    context = MRMLContext.create()
    segmentation = io.load_segmentation(context, out / "segmentation.seg.nrrd")
    reference = io.load_volume(context, reference_image)
    present = {segmentation.GetSegmentation().GetSegment(s).GetName(): s for s in arrays.segment_ids(segmentation)}
    masks = {}
    for name in names:
        candidates = [name] + (["Neuroblastoma"] if name.lower() in TUMOUR_NAMES else [])
        found = [present[c] for c in candidates if c in present]
        assert found, f"no segment for label '{name}' in {out / 'segmentation.seg.nrrd'} (it has {sorted(present)})"
        masks[name] = arrays.mask_from_segment(segmentation, found[0], reference, allow_empty=True)
    extra = set(present) - {c for n in names for c in (n, "Neuroblastoma")}
    assert not extra, f"segments that are no dataset.json label: {sorted(extra)}"
    return masks


def _ties(kind: ModelKind, probabilities: np.ndarray) -> np.ndarray:
    """Voxels where nnU-Net's decision is a tie within TIE: the two most probable labels (softmax) or any
    region's sigmoid and 0.5 (regions)."""
    if kind.region_based:
        return np.any(np.abs(probabilities - 0.5) < TIE / 2, axis=0)
    ordered = np.sort(probabilities, axis=0)
    return (ordered[-1] - ordered[-2]) < TIE


def _tumour_segment(kind: ModelKind) -> str:
    names = list(kind.segments)
    return next((n for n in names if n.lower() in TUMOUR_NAMES), names[0])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


CASES = ("vb3900", "vb3901")
RUNS = [pytest.param(kind, source, id=f"{kind}-{source}") for kind in KINDS for source in SOURCES]


@pytest.mark.parametrize(("kind", "source"), RUNS)
def test_every_model_kind_segments_like_nnunets_own_predictor(kinds, segmented, kind, source):
    model = kinds[kind]
    for case in CASES:
        out = segmented(kind, source, case)
        masks = _segment_masks(out, model.images(case)[0], model.segments)
        labels = _array(model.reference_labels[case])
        probabilities = np.load(model.reference_probabilities[case])["probabilities"]
        ties = _ties(model, probabilities)
        for name, values in model.segments.items():
            expected = np.isin(labels, values)
            assert masks[name].shape == expected.shape
            differ = masks[name] != expected
            assert expected.any(), f"{kind} {case}: nnU-Net finds no '{name}'"
            assert not np.any(differ & ~ties), (
                f"{kind} ({source}) {case}, segment '{name}': {np.count_nonzero(differ)} voxel(s) differ from "
                f"nnU-Net's label map, {np.count_nonzero(differ & ~ties)} of them not ties "
                f"(of {np.count_nonzero(expected)} in nnU-Net's segment)")


@pytest.mark.parametrize(("kind", "source"), RUNS)
def test_every_model_kinds_uncertainty_is_finite_in_range_and_highest_on_the_tumour_boundary(
        kinds, segmented, kind, source):
    model = kinds[kind]
    for case in CASES:
        out = segmented(kind, source, case)
        image = sitk.ReadImage(str(out / "uncertainty.nrrd"))
        assert image.GetPixelID() == sitk.sitkUInt8, image.GetPixelIDTypeAsString()
        uncertainty = sitk.GetArrayFromImage(image).astype(np.float64) / 255.0
        assert np.all(np.isfinite(uncertainty)) and uncertainty.min() >= 0.0 and uncertainty.max() <= 1.0
        truth = _array(model.cases[case].truth) > 0
        assert uncertainty.shape == truth.shape
        tumour = _segment_masks(out, model.images(case)[0], model.segments)[_tumour_segment(model)]
        boundary = ndimage.binary_dilation(tumour) & ~ndimage.binary_erosion(tumour)
        far = ndimage.distance_transform_edt(~(truth | tumour)) > 5
        on_boundary, far_away = uncertainty[boundary].mean(), uncertainty[far].mean()
        assert on_boundary > 0.2 and on_boundary > 4 * far_away + 0.05, (
            f"{kind} ({source}) {case}: mean uncertainty {on_boundary:.3f} on the tumour boundary, "
            f"{far_away:.3f} more than 5 voxels from the tumour")


@pytest.mark.parametrize(("kind", "source"), RUNS)
def test_every_model_kinds_summary_gives_the_tumour_volume_and_an_uncertain_fraction_in_0_1(
        kinds, segmented, kind, source):
    model = kinds[kind]
    for case in CASES:
        out = segmented(kind, source, case)
        summary = json.loads((out / "summary.json").read_text())
        assert 0.0 <= summary["uncertain_fraction"] <= 1.0, summary["uncertain_fraction"]
        tumour = _segment_masks(out, model.images(case)[0], model.segments)[_tumour_segment(model)]
        image = sitk.ReadImage(str(model.images(case)[0]))
        voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
        assert summary["tumour_volume_ml"] == pytest.approx(np.count_nonzero(tumour) * voxel_ml, rel=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_kind_finds_the_phantom_tumour(kinds, segmented, kind):
    model = kinds[kind]
    for case in CASES:
        out = segmented(kind, "folder", case)
        tumour = _segment_masks(out, model.images(case)[0], model.segments)[_tumour_segment(model)]
        dice = _dice(tumour, _array(model.cases[case].truth) > 0)
        assert dice >= 0.65, f"{kind} {case}: tumour Dice {dice:.3f} to the phantom truth"


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_kind_is_a_results_folder_as_nnunet_writes_it(kinds, kind):
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    model = kinds[kind]
    dataset = json.loads((model.folder / "dataset.json").read_text())
    plans = json.loads((model.folder / "plans.json").read_text())
    assert model.folder.name == f"{model.trainer_name}__{plans['plans_name']}__{model.configuration}"
    assert model.folder.parent.name == plans["dataset_name"]
    assert sorted(p.name for p in model.folder.glob("fold_*")) == [f"fold_{f}" for f in model.folds]
    for fold in model.folds:
        checkpoint = torch.load(model.folder / f"fold_{fold}" / "checkpoint_final.pth", weights_only=False)
        assert set(checkpoint) == INFERENCE_KEYS
        assert checkpoint["trainer_name"] == model.trainer_name
        assert checkpoint["init_args"]["configuration"] == model.configuration
    label_manager = PlansManager(plans).get_label_manager(dataset)
    assert label_manager.has_regions == model.region_based  # nnU-Net's own rule
    assert len(dataset["channel_names"]) == len(model.channels)
    configurations = plans["configurations"]
    expected = {
        "2d": lambda: configurations["2d"]["patch_size"] == [64, 80],
        "two_channel": lambda: list(dataset["channel_names"].values()) == ["T2", "DWI_b800"],
        "regions_two": lambda: label_manager.all_regions == [(1, 2), 2] and dataset["regions_class_order"] == [1, 2],
        "regions_one": lambda: label_manager.all_regions == [(1, 2)] and dataset["regions_class_order"] == [1],
        "two_folds": lambda: model.folds == (0, 1),
        "resenc": lambda: configurations["3d_fullres"]["architecture"]["network_class_name"].endswith(
            "ResidualEncoderUNet") and plans["experiment_planner_used"] == "nnUNetPlannerResEncM",
        "lowres": lambda: configurations["3d_lowres"]["next_stage"] == "3d_cascade_fullres",
        "cascade": lambda: configurations["3d_cascade_fullres"] == {"inherits_from": "3d_fullres",
                                                                    "previous_stage": "3d_lowres"},
    }
    assert expected[kind](), f"{kind}: not the model kind it should be"
    with zipfile.ZipFile(model.zip) as archive:
        names = set(archive.namelist())
    folders = [model.folder] + ([model.folder.with_name(model.folder.name.replace("3d_cascade_fullres", "3d_lowres"))]
                                if kind == "cascade" else [])
    root = model.folder.parents[1]
    for folder in folders:
        for file in folder.rglob("*"):
            if file.is_file():
                assert file.relative_to(root).as_posix() in names


def test_the_model_kinds_keep_both_nnunets_and_a_custom_trainer_name(kinds):
    names = {kind.trainer_name for kind in kinds.values()}
    assert names == {"nnUNetTrainer", "nnUNetTrainerVBKinds"}


def test_a_checkpoint_naming_a_trainer_that_is_not_installed_still_loads_with_the_network_from_plans(
        kinds, tmp_path):
    import torch

    model = kinds["2d"]
    folder = tmp_path / model.folder.parent.name / model.folder.name.replace(
        "nnUNetTrainer__", "nnUNetTrainerNotInstalledAnywhere__")
    shutil.copytree(model.folder, folder)
    checkpoint_path = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    checkpoint["trainer_name"] = "nnUNetTrainerNotInstalledAnywhere"
    torch.save(checkpoint, checkpoint_path)
    case = CASES[0]
    _segment(folder, model.images(case), tmp_path / "out")
    tumour = _segment_masks(tmp_path / "out", model.images(case)[0], model.segments)["tumour"]
    expected = np.isin(_array(model.reference_labels[case]), model.segments["tumour"])
    ties = _ties(model, np.load(model.reference_probabilities[case])["probabilities"])
    assert not np.any((tumour != expected) & ~ties)
