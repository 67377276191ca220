"""Train the bundled DEMO nnU-Net model on synthetic sample studies (not a clinical model).

    .venv/bin/python scripts/train_demo_model.py --work /tmp/nb_demo [--cases 20] [--epochs 60]

Steps: generate ``--cases`` phantom studies (seeds 1000, 1001, ...; the demo and the tests use
other seeds), write them as an nnU-Net v2 raw dataset (T2w -> tumour = rim + core), extract the
fingerprint, plan, shrink the 3d_fullres plan to a tiny network that a CPU trains in minutes
(4 stages, 8/16/32/64 features, patch 32x64x64 at 4x3x3 mm, batch 2), preprocess, train fold 0
with ``nnUNetTrainerVBDemo`` (a shorter schedule only), and copy dataset.json, plans.json and a
checkpoint stripped to what inference needs (weights, configuration, mirroring axes) into
``--out``. Seeds are fixed (numpy, torch, Python); nnU-Net's augmentation workers add run-to-run
variation of a few Dice points.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ROOT / "virtualbiopsy" / "segmentation" / "nnunet_trainers"
DATASET_ID, DATASET_NAME = 990, "Dataset990_NBDemo"
PLANS = "nnUNetPlansVBDemo"
TRAINER = "nnUNetTrainerVBDemo"
TUMOUR = (6, 7)  # phantom labels: tumour rim, necrotic core


def write_raw_dataset(raw: Path, n_cases: int) -> None:
    import SimpleITK as sitk

    from virtualbiopsy.mrml.sitk_bridge import image_from_array
    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import geometry_of

    images, labels = raw / "imagesTr", raw / "labelsTr"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for index in range(n_cases):
        study = generate_study(1000 + index)
        geometry = geometry_of(study.t2_grid)
        for array, folder, suffix in ((study.t2w.astype(np.float32), images, "_0000"),
                                      (np.isin(study.t2_labels, TUMOUR).astype(np.uint8), labels, "")):
            sitk.WriteImage(image_from_array(array, geometry), str(folder / f"nb{index:03d}{suffix}.nii.gz"),
                            useCompression=True)
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

    generate_dataset_json(str(raw), {0: "T2"}, {"background": 0, "tumour": 1}, n_cases, ".nii.gz",
                          dataset_name=DATASET_NAME, description="Virtual Biopsy synthetic phantom: DEMO only",
                          license="Apache-2.0 (synthetic data)")


def tiny_plans(preprocessed: Path) -> None:
    """Derive the tiny demo plan from nnU-Net's default plan (same preprocessing, small network)."""
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    config = plans["configurations"]["3d_fullres"]
    config.update({"batch_size": 2, "patch_size": [32, 64, 64], "spacing": [4.0, 3.0, 3.0],
                   "data_identifier": f"{PLANS}_3d_fullres"})
    arch = config["architecture"]["arch_kwargs"]
    arch.update({
        "n_stages": 4, "features_per_stage": [8, 16, 32, 64],
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2],
    })
    plans["plans_name"] = PLANS
    plans["configurations"] = {"3d_fullres": config}
    (preprocessed / f"{PLANS}.json").write_text(json.dumps(plans, indent=2))


def export_model(results: Path, out: Path) -> None:
    """Copy the model folder, keeping only what inference needs in the checkpoint."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    for name in ("dataset.json", "plans.json"):
        shutil.copy(results / name, out / name)
    checkpoint = torch.load(results / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    slim = {key: checkpoint[key] for key in ("network_weights", "init_args", "inference_allowed_mirroring_axes")
            if key in checkpoint}
    # The demo trainer changes only the training schedule; the network and inference are nnUNetTrainer's,
    # and naming it lets nnU-Net's own tools (nnUNetv2_predict) find it without the external trainer folder.
    slim["trainer_name"] = "nnUNetTrainer"
    (out / "fold_0").mkdir(exist_ok=True)
    torch.save(slim, out / "fold_0" / "checkpoint_final.pth")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True,
                        help="scratch folder for nnU-Net's raw, preprocessed and results folders")
    parser.add_argument("--cases", type=int, default=20, help="number of synthetic training studies (default 20)")
    parser.add_argument("--epochs", type=int, default=60, help="training epochs of 25 iterations (default 60)")
    parser.add_argument("--out", type=Path, default=ROOT / "Resources" / "Models" / "NeuroblastomaDemo")
    args = parser.parse_args()

    work = args.work.resolve()
    for name in ("raw", "preprocessed", "results"):
        (work / name).mkdir(parents=True, exist_ok=True)
    os.environ.update({
        "nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
        "nnUNet_results": str(work / "results"), "nnUNet_extTrainer": str(TRAINERS),
        "nnUNet_n_proc_DA": "2", "VIRTUALBIOPSY_DEMO_EPOCHS": str(args.epochs),
    })
    random.seed(0)
    np.random.seed(0)
    import torch

    torch.manual_seed(0)
    started = time.time()
    write_raw_dataset(work / "raw" / DATASET_NAME, args.cases)
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    extract_fingerprints([DATASET_ID], num_processes=2, check_dataset_integrity=True)
    plan_experiments([DATASET_ID])
    tiny_plans(work / "preprocessed" / DATASET_NAME)
    preprocess([DATASET_ID], plans_identifier=PLANS, configurations=("3d_fullres",), num_processes=(2,))
    prepared = time.time()
    # The trainer is instantiated directly: nnU-Net's trainer search imports every trainer module, and one
    # of them (primus) imports torchvision, which cannot load beside the CPU build of torch used here.
    import sys

    sys.path.insert(0, str(TRAINERS))
    from nnUNetTrainerVBDemo import nnUNetTrainerVBDemo

    preprocessed = work / "preprocessed" / DATASET_NAME
    plans = json.loads((preprocessed / f"{PLANS}.json").read_text())
    plans["continue_training"] = False  # what nnU-Net's own launcher adds
    trainer = nnUNetTrainerVBDemo(plans, "3d_fullres", 0, json.loads((preprocessed / "dataset.json").read_text()),
                                  device=torch.device("cpu"))
    trainer.run_training()
    trainer.perform_actual_validation(False)
    trained = time.time()
    export_model(work / "results" / DATASET_NAME / f"{TRAINER}__{PLANS}__3d_fullres", args.out)
    summary = json.loads((work / "results" / DATASET_NAME / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_0"
                          / "validation" / "summary.json").read_text())
    print(f"data + planning + preprocessing: {prepared - started:.0f} s; training: {trained - prepared:.0f} s")
    print(f"validation Dice (fold 0): {summary['foreground_mean']['Dice']:.3f}; model written to {args.out}")


if __name__ == "__main__":
    main()
