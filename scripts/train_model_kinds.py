"""Train tiny nnU-Net v2 models of every kind the project runs, for the tests (not clinical models).

    .venv/bin/python scripts/train_model_kinds.py --out /tmp/model-kinds [--work /tmp/kinds-work] [--jobs 2]

Kinds (each an nnU-Net results folder ``<Trainer>__<Plans>__<configuration>`` under ``OUT/<DatasetNNN_Name>/``):

=============  ==========================================================================================
2d             2d configuration; T2 -> background / tumour                           (nnUNetTrainer)
two_channel    3d_fullres on two channels: T2 and the DWI b = 800 s/mm^2 image      (nnUNetTrainer)
regions_two    region-based, two regions: tumour = rim + core [1, 2], necrosis = core 2,
               regions_class_order [1, 2]                                            (nnUNetTrainerVBKinds)
regions_one    region-based, one region: tumour = [1, 2], regions_class_order [1]   (nnUNetTrainer)
two_folds      3d_fullres, fold_0 and fold_1 (a two-fold split)                      (nnUNetTrainerVBKinds)
resenc         ResEnc M planner (``nnUNetPlannerResEncM``), shrunk to a tiny ResidualEncoderUNet
                                                                                     (nnUNetTrainer)
lowres         3d_lowres (next_stage 3d_cascade_fullres), fold_0 and fold_1          (nnUNetTrainerVBKinds)
cascade        3d_cascade_fullres (previous_stage 3d_lowres), fold_0, trained on the lowres stage's
               out-of-fold predictions (``predicted_next_stage``), as nnU-Net trains a cascade
                                                                                     (nnUNetTrainerVBKinds)
=============  ==========================================================================================

Everything is nnU-Net's own: raw datasets written as nnU-Net v2 expects, its fingerprint extraction,
planners (``ExperimentPlanner``, ``nnUNetPlannerResEncM``), preprocessing and trainer. The plans are then
shrunk to tiny networks (like ``train_demo_model.py``); nnU-Net's planner makes no 3d_lowres for images this
small, so 3d_lowres and 3d_cascade_fullres are added to plans.json as nnU-Net writes them (``next_stage`` /
``previous_stage``; the cascade inherits from 3d_fullres). All kinds train with ``nnUNetTrainerVBKinds``
(virtualbiopsy/segmentation/nnunet_trainers: seconds-long schedule, mirroring-only augmentation; network,
loss and inference are nnUNetTrainer's). Kinds marked nnUNetTrainer above are exported under that name (folder
and checkpoint ``trainer_name``), the others keep the custom name that nnU-Net finds via ``nnUNet_extTrainer``.
Checkpoints keep what inference needs: network_weights, init_args, trainer_name,
inference_allowed_mirroring_axes.

Data: phantom studies (``virtualbiopsy.phantom.generate_study``) on a 3 x 3 x 4 mm grid (80 x 64 x 32 voxels,
the DWI grid, so T2 and DWI share it); seeds 3000-3015 train (a fixed two-fold split), 3900 and 3901 are the
unseen test cases. OUT also holds:

* ``cases/images/<case>_0000.nii.gz`` (T2) and ``_0001.nii.gz`` (DWI b800), ``cases/truth/<case>.nii.gz``
  (phantom truth: 0 background, 1 tumour rim, 2 necrotic core);
* ``zips/<kind>.zip`` (nnU-Net's export layout ``DatasetNNN_Name/<folder>/...``; ``cascade.zip`` holds the
  lowres and the cascade folders);
* ``reference/<kind>/<case>.nii.gz`` + ``.npz`` (probabilities): nnU-Net's own prediction,
  ``nnUNetPredictor.initialize_from_trained_model_folder`` + ``predict_from_files_sequential`` (nnU-Net's
  pipeline without its worker processes) with mirroring, tile step 0.5, every fold; the cascade after the
  lowres stage (``folder_with_segs_from_prev_stage`` = ``reference/lowres``);
* ``manifest.json``: every kind (folder, zip, configuration, folds, channels, segments), the cases, the Dice of
  nnU-Net's prediction against the truth, and how long each step took.

Steps run as separate processes, ``--jobs`` at a time (one torch thread each; default 2). Seeds are fixed
(numpy, torch, Python; augmentation in the main process), so a rerun gives the same models up to torch's
CPU arithmetic.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ROOT / "virtualbiopsy" / "segmentation" / "nnunet_trainers"
TRAINER = "nnUNetTrainerVBKinds"
PLANS = "nnUNetPlansVBTiny"
RESENC_PLANS = "nnUNetResEncUNetMPlansVBTiny"
TRAIN_SEEDS = tuple(range(3000, 3016))
TEST_SEEDS = (3900, 3901)
PHANTOM = {"t2_spacing": (3.0, 3.0, 4.0), "b_values": (0, 800), "dce_times": (0.0,)}
RIM, CORE = 6, 7  # phantom labels

DATASETS = {  # key -> (id, name, channels, labels, regions_class_order)
    "t2": (971, "Dataset971_VBKindsT2", {"0": "T2"}, {"background": 0, "tumour": 1}, None),
    "two_channel": (972, "Dataset972_VBKindsT2DWI", {"0": "T2", "1": "DWI_b800"},
                    {"background": 0, "tumour": 1}, None),
    "regions_two": (973, "Dataset973_VBKindsRegions", {"0": "T2"},
                    {"background": 0, "tumour": [1, 2], "necrosis": 2}, [1, 2]),
    "regions_one": (974, "Dataset974_VBKindsRegion", {"0": "T2"}, {"background": 0, "tumour": [1, 2]}, [1]),
}

# kind -> dataset, plans, configuration, folds, exported trainer name, (epochs, iterations)
KINDS = {
    "2d": ("t2", PLANS, "2d", (0,), "nnUNetTrainer", (4, 40)),
    "two_channel": ("two_channel", PLANS, "3d_fullres", (0,), "nnUNetTrainer", (4, 30)),
    "regions_two": ("regions_two", PLANS, "3d_fullres", (0,), TRAINER, (4, 30)),
    "regions_one": ("regions_one", PLANS, "3d_fullres", (0,), "nnUNetTrainer", (4, 30)),
    "two_folds": ("t2", PLANS, "3d_fullres", (0, 1), TRAINER, (4, 30)),
    "resenc": ("t2", RESENC_PLANS, "3d_fullres", (0,), "nnUNetTrainer", (4, 30)),
    "lowres": ("t2", PLANS, "3d_lowres", (0, 1), TRAINER, (4, 30)),
    "cascade": ("t2", PLANS, "3d_cascade_fullres", (0,), TRAINER, (4, 30)),
}
INFERENCE_KEYS = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes")


# ---- tiny plans ------------------------------------------------------------------------------------------

def _plain_unet(config: dict, features, dim: int) -> None:
    n = len(features)
    arch = config["architecture"]["arch_kwargs"]
    if dim == 3:
        kernels = [[1, 3, 3]] + [[3, 3, 3]] * (n - 1)
        strides = [[1, 1, 1], [1, 2, 2]] + [[2, 2, 2]] * (n - 2)
    else:
        kernels, strides = [[3, 3]] * n, [[1, 1]] + [[2, 2]] * (n - 1)
    arch.update({"n_stages": n, "features_per_stage": list(features), "kernel_sizes": kernels, "strides": strides})
    if "n_blocks_per_stage" in arch:  # ResidualEncoderUNet
        arch.update({"n_blocks_per_stage": [1] * n, "n_conv_per_stage_decoder": [1] * (n - 1)})
    else:
        arch.update({"n_conv_per_stage": [2] * n, "n_conv_per_stage_decoder": [1] * (n - 1)})


def tiny_plans(preprocessed: Path, with_2d_and_cascade: bool) -> None:
    """Shrink nnU-Net's default plans to tiny networks; add 3d_lowres + 3d_cascade_fullres (and keep 2d)."""
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    full = plans["configurations"]["3d_fullres"]
    assert full["spacing"] == [4.0, 3.0, 3.0] and full["median_image_size_in_voxels"] == [32, 64, 80], full
    full.update({"batch_size": 2, "patch_size": [32, 48, 48], "data_identifier": f"{PLANS}_3d_fullres"})
    _plain_unet(full, (4, 8, 16, 32), 3)
    configurations = {"3d_fullres": full}
    if with_2d_and_cascade:
        flat = plans["configurations"]["2d"]
        flat.update({"batch_size": 8, "patch_size": [64, 80], "data_identifier": f"{PLANS}_2d"})
        _plain_unet(flat, (8, 16, 32, 64), 2)
        lowres = json.loads(json.dumps(full))
        lowres.update({"spacing": [4.0, 6.0, 6.0], "median_image_size_in_voxels": [32, 32, 40],
                       "patch_size": [32, 32, 40], "data_identifier": f"{PLANS}_3d_lowres", "batch_dice": False,
                       "next_stage": "3d_cascade_fullres"})
        # the order and the entries nnU-Net's ExperimentPlanner.plan_experiment writes
        configurations = {"2d": flat, "3d_lowres": lowres, "3d_fullres": full,
                          "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}
    plans.update({"plans_name": PLANS, "configurations": configurations})
    (preprocessed / f"{PLANS}.json").write_text(json.dumps(plans, indent=4))


def tiny_resenc_plans(preprocessed: Path) -> None:
    """nnU-Net's ResEnc M plans with a tiny ResidualEncoderUNet (same preprocessing as the default plans)."""
    plans = json.loads((preprocessed / "nnUNetResEncUNetMPlans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    default = json.loads((preprocessed / f"{PLANS}.json").read_text())["configurations"]["3d_fullres"]
    assert config["architecture"]["network_class_name"].endswith("ResidualEncoderUNet"), config["architecture"]
    same = ("spacing", "normalization_schemes", "use_mask_for_norm", "resampling_fn_data", "resampling_fn_data_kwargs",
            "resampling_fn_seg", "resampling_fn_seg_kwargs")
    assert all(config[k] == default[k] for k in same), "ResEnc plans preprocess differently from the default"
    # identical preprocessing: share the default plans' preprocessed data (nnU-Net's data_identifier)
    config.update({"batch_size": 2, "patch_size": [32, 48, 48], "data_identifier": f"{PLANS}_3d_fullres"})
    _plain_unet(config, (4, 8, 16, 32), 3)
    plans.update({"plans_name": RESENC_PLANS, "configurations": {"3d_fullres": config}})
    (preprocessed / f"{RESENC_PLANS}.json").write_text(json.dumps(plans, indent=4))


# ---- steps (each runs in its own process) ------------------------------------------------------------

def _environment(work: Path, threads: int) -> dict:
    return {"nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
            "nnUNet_results": str(work / "results"), "nnUNet_extTrainer": str(TRAINERS),
            "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "nnUNet_compile": "false",
            "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "PYTHONHASHSEED": "0"}


def _fork_pools() -> None:
    """nnU-Net's fingerprinting, preprocessing and validation start their worker pools with "spawn": each worker
    imports torch and nnU-Net again (seconds per pool, most of the time of these tiny datasets). In these
    CPU-only step processes the workers are forked instead (same code, modules already loaded)."""
    import multiprocessing

    get_context = multiprocessing.get_context

    def forking(method=None):
        return get_context("fork" if method == "spawn" else method)

    multiprocessing.get_context = forking


def _seed(value: int) -> None:
    import torch

    random.seed(value)
    np.random.seed(value)
    torch.manual_seed(value)


def step_phantoms(work: Path, out: Path, part: int, parts: int) -> None:
    """Write the phantom studies of every ``parts``-th seed as NIfTI: T2, DWI b800 and the truth (1 rim, 2 core)."""
    import SimpleITK as sitk

    from virtualbiopsy.mrml.sitk_bridge import image_from_array
    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import geometry_of

    seeds = (TRAIN_SEEDS + TEST_SEEDS)[part::parts]
    for seed in seeds:
        study = generate_study(seed, **PHANTOM)
        assert study.t2_grid == study.dwi_grid, "T2 and DWI grids differ"
        geometry = geometry_of(study.t2_grid)
        truth = np.zeros(study.t2_labels.shape, np.uint8)
        truth[study.t2_labels == RIM] = 1
        truth[study.t2_labels == CORE] = 2
        if seed in TEST_SEEDS:
            images, truths, case = out / "cases" / "images", out / "cases" / "truth", f"vb{seed}"
        else:
            images, truths, case = work / "phantoms", work / "phantoms", f"vb{seed}"
        images.mkdir(parents=True, exist_ok=True)
        truths.mkdir(parents=True, exist_ok=True)
        for array, path in ((study.t2w.astype(np.float32), images / f"{case}_0000.nii.gz"),
                            (study.dwi[1].astype(np.float32), images / f"{case}_0001.nii.gz"),
                            (truth, truths / f"{case}{'' if seed in TEST_SEEDS else '_truth'}.nii.gz")):
            sitk.WriteImage(image_from_array(array, geometry), str(path), useCompression=True)


def _splits(cases: list[str]) -> list[dict]:
    """A fixed two-fold split (nnU-Net's splits_final.json format)."""
    val = [cases[i::2] for i in range(2)]
    return [{"train": [c for c in cases if c not in v], "val": v} for v in val]


def step_prepare(work: Path, out: Path, key: str) -> None:
    """Raw dataset -> nnU-Net fingerprint, plans (tiny), splits and preprocessed data for one dataset."""
    import SimpleITK as sitk
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )

    os.environ["nnUNet_n_proc_DA"] = "1"  # the planner sets torch's threads to it (0 is refused there)  # noqa: SIM112
    dataset_id, name, channels, labels, regions_order = DATASETS[key]
    raw = work / "raw" / name
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    cases = [f"vb{seed}" for seed in TRAIN_SEEDS]
    for case in cases:
        for channel in channels:
            shutil.copy(work / "phantoms" / f"{case}_{int(channel):04d}.nii.gz", raw / "imagesTr")
        truth = sitk.ReadImage(str(work / "phantoms" / f"{case}_truth.nii.gz"))
        if regions_order is None:  # label models: tumour = rim + core
            truth = sitk.Cast(truth > 0, sitk.sitkUInt8)
        sitk.WriteImage(truth, str(raw / "labelsTr" / f"{case}.nii.gz"), useCompression=True)
    extra = {"regions_class_order": regions_order} if regions_order is not None else {}
    generate_dataset_json(str(raw), channels, labels, len(cases), ".nii.gz", dataset_name=name,
                          description="Virtual Biopsy synthetic phantom: tiny test model, not for use",
                          license="Apache-2.0 (synthetic data)", **extra)
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=True)
    plan_experiments([dataset_id])
    preprocessed = work / "preprocessed" / name
    tiny_plans(preprocessed, key == "t2")
    if key == "t2":
        plan_experiments([dataset_id], "nnUNetPlannerResEncM")
        tiny_resenc_plans(preprocessed)
    (preprocessed / "splits_final.json").write_text(json.dumps(_splits(cases), indent=2))
    configurations = ("2d", "3d_fullres", "3d_lowres") if key == "t2" else ("3d_fullres",)
    preprocess([dataset_id], plans_identifier=PLANS, configurations=configurations, num_processes=(1,))


def step_train(work: Path, out: Path, kind: str, fold: int) -> None:
    import torch

    key, plans_name, configuration, _, _, (epochs, iterations) = KINDS[kind]
    os.environ.update({"VIRTUALBIOPSY_KINDS_EPOCHS": str(epochs), "VIRTUALBIOPSY_KINDS_ITERATIONS": str(iterations)})
    _seed(1000 * (list(KINDS).index(kind) + 1) + fold)
    preprocessed = work / "preprocessed" / DATASETS[key][1]
    plans = json.loads((preprocessed / f"{plans_name}.json").read_text())
    plans["continue_training"] = False  # what nnU-Net's launcher adds
    # imported directly: nnU-Net's trainer search imports every trainer module, and one of them (primus)
    # imports torchvision, which cannot load beside the CPU build of torch used here
    sys.path.insert(0, str(TRAINERS))
    from nnUNetTrainerVBKinds import nnUNetTrainerVBKinds

    trainer = nnUNetTrainerVBKinds(plans, configuration, fold, json.loads((preprocessed / "dataset.json").read_text()),
                                   device=torch.device("cpu"))
    trainer.run_training()
    if kind == "lowres":  # exports this fold's validation predictions to predicted_next_stage for the cascade
        trainer.perform_actual_validation(False)


def _results_folder(work: Path, kind: str) -> Path:
    key, plans_name, configuration, *_ = KINDS[kind]
    return work / "results" / DATASETS[key][1] / f"{TRAINER}__{plans_name}__{configuration}"


def model_folder(out: Path, kind: str) -> Path:
    """Where ``kind`` is exported: OUT/<DatasetNNN_Name>/<Trainer>__<Plans>__<configuration>."""
    key, plans_name, configuration, _, trainer_name, _ = KINDS[kind]
    return out / DATASETS[key][1] / f"{trainer_name}__{plans_name}__{configuration}"


def export_model(work: Path, out: Path, kind: str) -> Path:
    """Copy dataset.json, plans.json and the folds' checkpoints (inference keys only) to OUT."""
    import torch

    results, target = _results_folder(work, kind), model_folder(out, kind)
    target.mkdir(parents=True, exist_ok=True)
    for name in ("dataset.json", "plans.json"):
        shutil.copy(results / name, target / name)
    for fold in KINDS[kind][3]:
        checkpoint = torch.load(results / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu",
                                weights_only=False)
        slim = {key: checkpoint[key] for key in INFERENCE_KEYS}
        slim["trainer_name"] = KINDS[kind][4]
        (target / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(slim, target / f"fold_{fold}" / "checkpoint_final.pth")
    return target


def write_zip(out: Path, name: str, folders: list[Path]) -> Path:
    """A zip as nnUNetv2_export_model_to_zip lays it out: DatasetNNN_Name/<model folder>/..."""
    path = out / "zips" / f"{name}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(out).as_posix())
    return path


def _nnunet_finds_our_trainer() -> None:
    """nnU-Net's predictor finds the trainer by name; its search imports every trainer module first, and the
    primus trainers import torchvision, which cannot load beside this CPU torch. Our trainer is resolved as
    that search would (from ``nnUNet_extTrainer``), any other name by nnU-Net's own search."""
    import nnunetv2.inference.predict_from_raw_data as predict_module
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    search = predict_module.recursive_find_trainer_class_by_name

    def find(name: str):
        if name == "nnUNetTrainer":
            return nnUNetTrainer
        if name == TRAINER:
            sys.path.insert(0, str(TRAINERS))
            from nnUNetTrainerVBKinds import nnUNetTrainerVBKinds

            return nnUNetTrainerVBKinds
        return search(name)

    predict_module.recursive_find_trainer_class_by_name = find


def step_reference(work: Path, out: Path, kind: str) -> None:
    """Export the model (and zip), then nnU-Net's own prediction of every test case with probabilities."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    folder = export_model(work, out, kind)
    folders = [model_folder(out, "lowres"), folder] if kind == "cascade" else [folder]
    write_zip(out, kind, folders)
    _nnunet_finds_our_trainer()
    channels = DATASETS[KINDS[kind][0]][2]
    images = out / "cases" / "images"
    inputs = [[str(images / f"vb{seed}_{int(c):04d}.nii.gz") for c in channels] for seed in TEST_SEEDS]
    target = out / "reference" / kind
    target.mkdir(parents=True, exist_ok=True)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder), KINDS[kind][3], "checkpoint_final.pth")
    previous = str(out / "reference" / "lowres") if kind == "cascade" else None
    predictor.predict_from_files_sequential(inputs, str(target), save_probabilities=True, overwrite=True,
                                            folder_with_segs_from_prev_stage=previous)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / total if total else 1.0


def write_manifest(out: Path, seconds: dict, total: float) -> dict:
    import SimpleITK as sitk

    def array(path: Path) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))

    cases = {f"vb{seed}": {"seed": seed, "truth": f"cases/truth/vb{seed}.nii.gz",
                           "images": [f"cases/images/vb{seed}_{c:04d}.nii.gz" for c in (0, 1)]}
             for seed in TEST_SEEDS}
    kinds = {}
    for kind, (key, plans_name, configuration, folds, trainer_name, schedule) in KINDS.items():
        _, name, channels, labels, regions_order = DATASETS[key]
        folder = model_folder(out, kind)
        dice = {}
        for case in cases:
            truth = array(out / cases[case]["truth"]) > 0
            dice[case] = round(_dice(array(out / "reference" / kind / f"{case}.nii.gz") > 0, truth), 4)
        values = {n: (v if isinstance(v, list) else [v]) for n, v in labels.items() if n != "background"}
        if regions_order is None:
            segments = values
        else:  # nnU-Net's label map holds regions_class_order[i] where region i is on (later regions on top), so
            # a region is the label values of the regions it contains
            segments = {n: sorted(regions_order[i] for i, inner in enumerate(values.values()) if set(inner) <= set(v))
                        for n, v in values.items()}
        kinds[kind] = {
            "dataset": name, "folder": folder.relative_to(out).as_posix(), "zip": f"zips/{kind}.zip",
            "configuration": configuration, "plans": plans_name, "trainer_name": trainer_name,
            "folds": list(folds), "channels": [channels[c] for c in sorted(channels, key=int)],
            "labels": labels, "regions_class_order": regions_order, "region_based": regions_order is not None,
            "segments_in_label_map": segments, "schedule": {"epochs": schedule[0], "iterations": schedule[1]},
            "reference": {case: {"labels": f"reference/{kind}/{case}.nii.gz",
                                 "probabilities": f"reference/{kind}/{case}.npz"} for case in cases},
            "dice_to_truth": dice,
        }
    manifest = {"kinds": kinds, "cases": cases, "seconds": seconds, "total_seconds": round(total, 1),
                "train_seeds": list(TRAIN_SEEDS), "nnunetv2": _nnunet_version()}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def _nnunet_version() -> str:
    from importlib.metadata import version

    return version("nnunetv2")


# ---- scheduling ----------------------------------------------------------------------------------------

def _tasks() -> dict:
    """name -> (step arguments, names it waits for, priority: the longest chain first).

    A one-fold kind trains and predicts in one step; a two-fold kind trains its folds side by side, then
    predicts. The cascade trains after both lowres folds (their validation predictions are its input) and
    predicts after the lowres reference (its first stage)."""
    tasks = {"phantoms-0": (["phantoms", "0", "2"], [], 100), "phantoms-1": (["phantoms", "1", "2"], [], 100)}
    for key in DATASETS:
        tasks[f"prepare-{key}"] = (["prepare", key], ["phantoms-0", "phantoms-1"], 90 if key == "t2" else 10)
    for kind, (key, _, _, folds, _, _) in KINDS.items():
        chain = 50 if kind in ("lowres", "cascade") else 0
        if len(folds) == 1:
            after = [f"prepare-{key}"] + (["train-lowres-0", "train-lowres-1", "reference-lowres"]
                                          if kind == "cascade" else [])
            tasks[f"kind-{kind}"] = (["train", kind, str(folds[0]), "reference"], after, chain)
            continue
        for fold in folds:
            tasks[f"train-{kind}-{fold}"] = (["train", kind, str(fold)], [f"prepare-{key}"], chain)
        tasks[f"reference-{kind}"] = (["reference", kind], [f"train-{kind}-{f}" for f in folds], chain + 5)
    return tasks


def run_all(work: Path, out: Path, jobs: int) -> dict:
    tasks, running, done, seconds = _tasks(), {}, set(), {}
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, **_environment(work, threads)}
    (work / "logs").mkdir(parents=True, exist_ok=True)
    while len(done) < len(tasks):
        ready = sorted((n for n, (_, after, _) in tasks.items()
                        if n not in done and n not in running and all(a in done for a in after)),
                       key=lambda n: -tasks[n][2])
        while ready and len(running) < jobs:
            name = ready.pop(0)
            log = open(work / "logs" / f"{name}.log", "w")  # noqa: SIM115 - closed when the step ends
            command = [sys.executable, str(Path(__file__).resolve()), "--work", str(work), "--out", str(out),
                       "--step", *tasks[name][0]]
            running[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT),
                             log, time.time())
        time.sleep(0.2)
        for name, (process, log, started) in list(running.items()):
            if process.poll() is None:
                continue
            log.close()
            del running[name]
            seconds[name] = round(time.time() - started, 1)
            if process.returncode != 0:
                for process_left, _, _ in running.values():
                    process_left.kill()
                tail = (work / "logs" / f"{name}.log").read_text()[-4000:]
                raise SystemExit(f"step {name} failed (exit {process.returncode}); its log ends:\n{tail}")
            done.add(name)
            print(f"{name}: {seconds[name]:.0f} s", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the models, zips, cases and references")
    parser.add_argument("--work", type=Path, default=None,
                        help="scratch folder for nnU-Net's raw, preprocessed and results folders (default: "
                             "OUT/../<OUT name>-work, removed at the end)")
    parser.add_argument("--jobs", type=int, default=2, help="steps run at the same time (default 2)")
    parser.add_argument("--keep-work", action="store_true", help="keep the scratch folder")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)  # one step, in a process of its own
    args = parser.parse_args()
    out = args.out.resolve()
    work = (args.work or out.parent / f"{out.name}-work").resolve()
    if args.step:
        os.environ.update(_environment(work, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        _fork_pools()
        _seed(0)
        step, *rest = args.step
        if step == "phantoms":
            step_phantoms(work, out, int(rest[0]), int(rest[1]))
        elif step == "prepare":
            step_prepare(work, out, rest[0])
        elif step == "train":
            step_train(work, out, rest[0], int(rest[1]))
            if rest[2:] == ["reference"]:
                step_reference(work, out, rest[0])
        elif step == "reference":
            step_reference(work, out, rest[0])
        return
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out} is not empty")
    for name in ("raw", "preprocessed", "results"):
        (work / name).mkdir(parents=True, exist_ok=True)
    started = time.time()
    seconds = run_all(work, out, max(1, args.jobs))
    manifest = write_manifest(out, seconds, time.time() - started)
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    for kind, entry in manifest["kinds"].items():
        print(f"{kind:12s} {entry['folder']}: Dice of nnU-Net's prediction to the truth "
              + ", ".join(f"{case} {dice:.3f}" for case, dice in entry["dice_to_truth"].items()))
    print(f"all kinds built in {manifest['total_seconds']:.0f} s -> {out}")


if __name__ == "__main__":
    main()
