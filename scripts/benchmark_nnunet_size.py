"""Benchmark of in-process nnU-Net inference at a realistic model size (prints figures; asserts nothing).

    nice -n 10 .venv/bin/python scripts/benchmark_nnunet_size.py [--work DIR] [--device cpu|cuda]
        [--quick] [--variants a,b,...] [--planner default|resenc-m] [--list]

The bundled demo network has 346k parameters; a model that nnU-Net plans for a real T2w has tens of
millions, and there the network, not process start-up, dominates. This script:

1. writes a synthetic raw dataset of T2w-like phantoms (``generate_study``, 256 x 256 x 64 voxels at
   0.7 x 0.7 x 4 mm, tumour label), runs nnU-Net's own fingerprint extraction and ExperimentPlanner
   (default ``nnUNetPlans``, or ResEnc M with ``--planner resenc-m``) in ``--work``;
2. writes a model folder for 3d_fullres with random weights (network built by nnU-Net's trainer from
   the plan, He-initialised as nnU-Net does; the last layer's bias is shifted so that about 20 % of the
   case is foreground, so that label agreement is not trivially 100 % background), checkpoint keys as
   nnU-Net's trainer writes them;
3. runs every variant in its own subprocess (peak RSS per variant) on one held-out case: our
   in-process :class:`NNUNetSegmenter` (8 mirrors + uncertainty, without uncertainty, no mirroring,
   and the speed options: bfloat16 autocast, channels-last, fewer mirror axes, passes per batch, tile
   step) and ``nnUNetv2_predict_from_modelfolder`` (``-device``, ``-npp 1 -nps 1``, with TTA and with
   ``--disable_tta``). The expensive mirrored speed options run on the case cropped to one tile
   ("crop" rows); ours vs nnU-Net is compared on the full case per TTA setting (``--quick``: crop only);
4. prints a markdown table: time per case, its share in the network forward passes / preprocessing /
   nnU-Net's export (softmax, resampling, argmax) / uncertainty maps, peak RSS and the memory beyond
   the model (peak RSS - RSS after loading - the network's own forward workspace) in units of the
   float32 input, and each variant's labels vs its reference (equal voxels, foreground Dice, max |logit
   difference| on the network grid).

Timings are from one run each (the mirrored full-case runs take many minutes on a 2-core CPU); the
1-minute load average before each variant is printed so that contention can be judged. "predict" is
``NNUNetSegmenter.predict`` with the model loaded (as in the extension); "cold" adds Python start-up,
imports and model loading, comparable to the nnU-Net subprocess's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASET_ID, DATASET_NAME = 991, "Dataset991_VBSizeBench"
SHAPE_SPACING = {"field_of_view_mm": (179.2, 179.2, 256.0), "t2_spacing": (0.7, 0.7, 4.0)}  # 256 x 256 x 64
TUMOUR = (6, 7)  # phantom labels: tumour rim, necrotic core
TRAIN_SEEDS = (5000, 5001, 5002)
CASE_SEED = 6000
FOREGROUND_FRACTION = 0.2
PLANNERS = {"default": ("ExperimentPlanner", "nnUNetPlans"),
            "resenc-m": ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans")}

# name: (case, kind, options, reference variant for label agreement). The mirrored runs of ours pass the
# 8 mirrored copies one by one (passes_per_batch 1, as nnU-Net does): a batch of 8 needs 8x the network's
# forward workspace (about 14 GB in float32 for this plan); crop-tta-ppb8 measures the default of 8.
# "stream" is an experiment, not an option of ours: a proposed change of the mirroring loop
# (see streaming_mirror_and_predict), applied to the predictor in the worker.
ONE = {"passes_per_batch": 1}
VARIANTS = {
    "crop-tta": ("crop", "ours", {**ONE}, None),
    "crop-tta-plain": ("crop", "ours", {**ONE, "uncertainty": False}, "crop-tta"),
    "crop-tta-stream": ("crop", "ours", {**ONE, "stream": True}, "crop-tta"),
    "crop-tta-ppb8": ("crop", "ours", {}, "crop-tta"),
    "crop-tta-cl": ("crop", "ours", {**ONE, "channels_last": True}, "crop-tta"),
    "crop-tta-bf16": ("crop", "ours", {**ONE, "precision": "bfloat16"}, "crop-tta"),
    "crop-tta-bf16-cl": ("crop", "ours", {**ONE, "precision": "bfloat16", "channels_last": True}, "crop-tta"),
    "crop-tta-bf16-plain": ("crop", "ours", {**ONE, "precision": "bfloat16", "uncertainty": False},
                            "crop-tta-plain"),
    "crop-axes12": ("crop", "ours", {**ONE, "mirror_axes": (1, 2)}, "crop-tta"),
    "crop-axes2": ("crop", "ours", {**ONE, "mirror_axes": (2,)}, "crop-tta"),
    "crop-notta": ("crop", "ours", {"mirroring": False}, "crop-tta"),
    "crop-nnunet-tta": ("crop", "nnunet", {}, "crop-tta"),
    "nnunet-startup": ("none", "nnunet", {}, None),
    "ours-notta": ("full", "ours", {"mirroring": False}, None),
    "nnunet-notta": ("full", "nnunet", {"mirroring": False}, "ours-notta"),
    "ours-notta-bf16": ("full", "ours", {"mirroring": False, "precision": "bfloat16"}, "ours-notta"),
    "ours-notta-bf16-cl": ("full", "ours", {"mirroring": False, "precision": "bfloat16", "channels_last": True},
                           "ours-notta"),
    "ours-notta-step0.6": ("full", "ours", {"mirroring": False, "tile_step_size": 0.6}, "ours-notta"),
    "ours-notta-step0.75": ("full", "ours", {"mirroring": False, "tile_step_size": 0.75}, "ours-notta"),
    # memory runs: the network replaced by a 1x1x1 convolution (StandIn), so that the full case with 8 mirrors
    # runs in seconds; their peak RSS over the RSS after loading is exactly our arrays' (no network workspace),
    # and their time is everything but the network
    "mem-tta": ("full", "ours", {**ONE, "stand_in": True}, None),
    "mem-tta-plain": ("full", "ours", {**ONE, "stand_in": True, "uncertainty": False}, None),
    "mem-tta-stream": ("full", "ours", {**ONE, "stand_in": True, "stream": True}, None),
    "mem-tta-ppb8": ("full", "ours", {"stand_in": True}, None),
    "mem-notta": ("full", "ours", {"stand_in": True, "mirroring": False}, None),
    "ours-tta": ("full", "ours", {**ONE}, None),
    "nnunet-tta": ("full", "nnunet", {}, "ours-tta"),
}
MEMORY = ("mem-tta", "mem-tta-plain", "mem-tta-stream", "mem-tta-ppb8", "mem-notta")
QUICK = MEMORY + ("crop-tta", "crop-tta-plain", "crop-tta-stream", "crop-tta-bf16", "crop-tta-bf16-cl", "crop-axes12",
                  "crop-nnunet-tta", "nnunet-startup", "ours-notta", "nnunet-notta", "ours-notta-bf16")
FULL = tuple(v for v in VARIANTS if v not in ("crop-tta-bf16-plain", "crop-axes2", "crop-nnunet-tta"))
STEPS = (0.5, 0.6, 0.75)


# ---------------------------------------------------------------------------------------------- preparation

def nnunet_environment(work: Path) -> dict:
    env = dict(os.environ)
    env.update({"nnUNet_raw": str(work / "raw"), "nnUNet_preprocessed": str(work / "preprocessed"),
                "nnUNet_results": str(work / "results")})
    return env


def study_arrays(seed: int):
    from virtualbiopsy.phantom import generate_study

    study = generate_study(seed, b_values=(0.0,), dce_times=(0.0,), **SHAPE_SPACING)
    return study, study.t2w.astype(np.float32), np.isin(study.t2_labels, TUMOUR).astype(np.uint8)


def write_image(array: np.ndarray, spacing_xyz, path: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_xyz))
    sitk.WriteImage(image, str(path), useCompression=True)


def prepare_dataset(work: Path, planner: str) -> Path:
    """Raw dataset, nnU-Net's fingerprint and plan; returns the plans file."""
    planner_class, plans_name = PLANNERS[planner]
    plans_file = work / "preprocessed" / DATASET_NAME / f"{plans_name}.json"
    if plans_file.is_file():
        return plans_file
    raw = work / "raw" / DATASET_NAME
    for folder in (raw / "imagesTr", raw / "labelsTr", work / "preprocessed", work / "results"):
        folder.mkdir(parents=True, exist_ok=True)
    os.environ.update({k: v for k, v in nnunet_environment(work).items() if k.startswith("nnUNet_")})
    for index, seed in enumerate(TRAIN_SEEDS):
        image = raw / "imagesTr" / f"vb{index:03d}_0000.nii.gz"
        if not image.is_file():
            _, t2w, tumour = study_arrays(seed)
            write_image(tumour, SHAPE_SPACING["t2_spacing"], raw / "labelsTr" / f"vb{index:03d}.nii.gz")
            write_image(t2w, SHAPE_SPACING["t2_spacing"], image)
    from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments

    generate_dataset_json(str(raw), {0: "T2"}, {"background": 0, "tumour": 1}, len(TRAIN_SEEDS), ".nii.gz",
                          dataset_name=DATASET_NAME, description="Virtual Biopsy synthetic phantoms (benchmark)")
    import contextlib

    with open(work / "planning.log", "w") as log, contextlib.redirect_stdout(log):  # nnU-Net's long printout
        extract_fingerprints([DATASET_ID], num_processes=2, check_dataset_integrity=True)
        plan_experiments([DATASET_ID], experiment_planner_class_name=planner_class)
    return plans_file


def prepare_case(work: Path) -> dict:
    """The held-out case, full and cropped to one network patch, as .npy (ours) and NIfTI (nnU-Net)."""
    cases = work / "cases"
    meta_file = cases / "cases.json"
    if meta_file.is_file():
        return json.loads(meta_file.read_text())
    for name in ("full", "crop", "none"):
        (cases / name).mkdir(parents=True, exist_ok=True)
    _, t2w, tumour = study_arrays(CASE_SEED)
    np.save(cases / "full.npy", t2w)
    write_image(t2w, SHAPE_SPACING["t2_spacing"], cases / "full" / "case_0000.nii.gz")
    meta = {"shape": list(t2w.shape), "spacing_kji": list(SHAPE_SPACING["t2_spacing"][::-1]),
            "tumour_voxels": int(tumour.sum())}
    meta_file.write_text(json.dumps(meta))
    return meta


def write_crop(work: Path, patch_kji) -> list:
    """The case cropped to one network patch around its centre (one tile; the plan's grid is the input grid)."""
    cases = work / "cases"
    t2w = np.load(cases / "full.npy")
    box = tuple(slice((n - p) // 2, (n - p) // 2 + p) for n, p in zip(t2w.shape, patch_kji))
    crop = np.ascontiguousarray(t2w[box])
    np.save(cases / "crop.npy", crop)
    write_image(crop, SHAPE_SPACING["t2_spacing"], cases / "crop" / "case_0000.nii.gz")
    return [[s.start, s.stop] for s in box]


def build_model(work: Path, plans_file: Path, planner: str) -> Path:
    """A model folder as nnU-Net's trainer writes it, random (He-initialised) weights for 3d_fullres."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    _, plans_name = PLANNERS[planner]
    model = work / "results" / DATASET_NAME / f"nnUNetTrainer__{plans_name}__3d_fullres"
    checkpoint_file = model / "fold_0" / "checkpoint_final.pth"
    if checkpoint_file.is_file():
        return model
    (model / "fold_0").mkdir(parents=True, exist_ok=True)
    plans = json.loads(plans_file.read_text())
    dataset = json.loads((work / "raw" / DATASET_NAME / "dataset.json").read_text())
    (model / "plans.json").write_text(json.dumps(plans, indent=2))
    (model / "dataset.json").write_text(json.dumps(dataset, indent=2))
    plans_manager = PlansManager(plans)
    configuration = plans_manager.get_configuration("3d_fullres")
    torch.manual_seed(0)
    # as the trainer builds it for training (deep supervision on; the saved weights are the same keys)
    network = nnUNetTrainer.build_network_architecture(plans_manager, configuration, 1, 2, enable_deep_supervision=True)
    calibrate_last_layer(network, work, configuration.patch_size)
    (work / "network.json").write_text(json.dumps({"parameters": sum(p.numel() for p in network.parameters())}))
    checkpoint = {
        "network_weights": network.state_dict(), "optimizer_state": None, "grad_scaler_state": None,
        "logging": {}, "_best_ema": None, "current_epoch": 0,
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset,
                      "device": "cpu"},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    torch.save(checkpoint, checkpoint_file)
    return model


def calibrate_last_layer(network, work: Path, patch) -> None:
    """Shift the tumour logit so that about FOREGROUND_FRACTION of the central tile is foreground (a random
    network's label map is otherwise often all one class, and agreement figures would mean nothing)."""
    import torch

    t2w = np.load(work / "cases" / "full.npy")
    box = tuple(slice((n - p) // 2, (n - p) // 2 + p) for n, p in zip(t2w.shape, patch))
    tile = (t2w[box] - t2w.mean()) / t2w.std()  # nnU-Net's z-score normalisation of this plan
    network.decoder.deep_supervision = False
    network.eval()
    with torch.inference_mode():
        logits = network(torch.from_numpy(np.ascontiguousarray(tile, dtype=np.float32))[None, None])[0]
    difference = (logits[1] - logits[0]).numpy()
    shift = float(np.quantile(difference, 1.0 - FOREGROUND_FRACTION))
    with torch.no_grad():
        network.decoder.seg_layers[-1].bias[1] -= shift
    network.decoder.deep_supervision = True
    (work / "calibration.json").write_text(json.dumps({"logit_difference_sd": float(difference.std()),
                                                       "shift": shift}))


# ---------------------------------------------------------------------------------------------- workers

class PeakMemory:
    """Exact peak resident memory per phase, from the kernel's high-water mark (VmHWM in /proc/self/status),
    reset at each phase boundary (``echo 5 > /proc/self/clear_refs``, Linux >= 4.0)."""

    def __init__(self) -> None:
        self.peaks: dict[str, int] = {}
        self.phase = None
        self.mark("start")

    @staticmethod
    def status(key: str) -> int:
        with open("/proc/self/status") as stream:
            for line in stream:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def rss(self) -> int:
        return self.status("VmRSS")

    def mark(self, phase: str) -> int:
        """End the current phase (its peak is recorded), start ``phase``; returns the RSS now."""
        if self.phase is not None:
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), self.status("VmHWM"))
        with open("/proc/self/clear_refs", "w") as stream:
            stream.write("5")
        self.phase = phase
        return self.rss()

    def overall(self, *phases) -> int:
        return max([self.peaks.get(p, 0) for p in phases] or [0])


def streaming_mirror_and_predict(self, x):
    """Proposed replacement of UncertaintyPredictor._internal_maybe_mirror_and_predict: the same passes and
    the same means, but each pass (or batch of ``passes_per_batch``) is flipped back and added to running
    sums of logits, probabilities and entropy at once, instead of keeping all 8 outputs and their softmax
    (8 x [C, patch] float32 each, several copies) until the end of the tile."""
    import itertools

    import torch

    from virtualbiopsy.segmentation.inference import _bernoulli_entropy, _entropy

    axes = [a + 2 for a in self.allowed_mirroring_axes] if (self.use_mirroring and self.allowed_mirroring_axes) else []
    combos = [()] + [c for n in range(len(axes)) for c in itertools.combinations(axes, n + 1)]
    total = probability = entropy = None
    for start in range(0, len(combos), self.passes_per_batch):
        chunk = combos[start:start + self.passes_per_batch]
        outs = self._network(torch.cat([torch.flip(x, flip) if flip else x for flip in chunk]))
        for index, flip in enumerate(chunk):
            out = torch.flip(outs[index], [a - 1 for a in flip]) if flip else outs[index]
            total = out.clone() if total is None else total.add_(out)
            if self.keep_uncertainty:
                p = torch.sigmoid(out) if self.regions else torch.softmax(out, dim=0)
                h = _bernoulli_entropy(p) if self.regions else _entropy(p, axis=0)[None]
                probability = p if probability is None else probability.add_(p)
                entropy = h if entropy is None else entropy.add_(h)
        del outs
    n = len(combos)
    self._members_per_fold = n
    if self.keep_uncertainty:
        self._tile_extra = torch.cat([probability.div_(n), entropy.div_(n)], dim=0)
    return total.div_(n)[None]


def timed_wrapper(function, record: list, memory: PeakMemory | None = None, workspace: list | None = None,
                  phase: str = "network"):
    """``function`` timed into ``record``; with ``memory``, each call is its own phase ("network"; the time
    between calls is "tiles"), and the RSS growth of each call goes into ``workspace``."""
    def wrapped(*args, **kwargs):
        before = memory.mark(phase) if memory is not None else 0
        started = time.perf_counter()
        result = function(*args, **kwargs)
        if type(result).__module__ == "torch" and result.device.type == "cuda":
            import torch

            torch.cuda.synchronize()
        record.append(time.perf_counter() - started)
        if memory is not None:
            memory.mark("tiles")
            workspace.append(memory.peaks[phase] - before)
        return result
    return wrapped


class StandIn:
    """A stand-in for the network in the memory runs: a 1x1x1 convolution to the same output channels, so
    that every array of our inference path has its real size while the network costs nothing."""

    @staticmethod
    def make(n_in: int, n_out: int):
        import torch

        return torch.nn.Conv3d(n_in, n_out, 1)


def run_ours(spec: dict) -> dict:
    started = time.perf_counter()
    memory = PeakMemory()
    import inspect as inspect_module

    import torch
    from nnunetv2.inference import export_prediction

    from virtualbiopsy.segmentation import inference
    from virtualbiopsy.segmentation.inference import NNUNetSegmenter
    from virtualbiopsy.segmentation.nnunet_model import inspect_model

    options = dict(spec["options"])
    uncertainty = options.pop("uncertainty", True)
    stream = options.pop("stream", False)
    stand_in = options.pop("stand_in", False)
    if "mirror_axes" in options:
        options["mirror_axes"] = tuple(options["mirror_axes"])
    accepted = inspect_module.signature(NNUNetSegmenter.__init__).parameters
    missing = [k for k in options if k not in accepted]
    if missing:
        return {"error": f"NNUNetSegmenter has no option(s) {', '.join(missing)} yet"}
    array = np.load(spec["array"])
    segmenter = NNUNetSegmenter(inspect_model(spec["model"]), spec["device"], **options)
    predictor = segmenter.predictor
    if stand_in:
        network = StandIn.make(1, predictor.label_manager.num_segmentation_heads)
        predictor.network, predictor.list_of_parameters = network, [network.state_dict()]
    if stream:
        import types

        predictor._internal_maybe_mirror_and_predict = types.MethodType(streaming_mirror_and_predict, predictor)
    loaded = time.perf_counter()
    forward_times, workspaces, export_times, maps_times, grid_times = [], [], [], [], []
    predictor._network = timed_wrapper(predictor._network, forward_times, memory, workspaces)
    convert = timed_wrapper(export_prediction.convert_predicted_logits_to_segmentation_with_correct_shape,
                            export_times)

    def convert_and_mark(*args, **kwargs):  # the post-processing phase starts here
        memory.mark("post")
        return convert(*args, **kwargs)

    export_prediction.convert_predicted_logits_to_segmentation_with_correct_shape = convert_and_mark
    inference._uncertainty_maps = timed_wrapper(inference._uncertainty_maps, maps_times)
    segmenter._to_input_grid = timed_wrapper(segmenter._to_input_grid, grid_times)
    kept = {}
    original = predictor.predict_logits_from_preprocessed_data

    def keep_logits(data):
        kept["logits"] = original(data)
        return kept["logits"]

    predictor.predict_logits_from_preprocessed_data = keep_logits
    if spec["device"] == "cuda":
        torch.cuda.reset_peak_memory_stats()
    import gc

    gc.collect()
    rss_loaded = memory.mark("setup")
    result = segmenter.predict([array], tuple(spec["spacing_kji"]), uncertainty=uncertainty)
    done = time.perf_counter()
    memory.mark("end")
    out = Path(spec["out"])
    np.save(out / f"{spec['name']}_labels.npy", result.labels)
    if not stand_in:
        np.save(out / f"{spec['name']}_logits.npy", kept["logits"].float().numpy())
    seconds = dict(result.seconds)
    first_excess = forward_times[0] - float(np.median(forward_times[1:])) if len(forward_times) > 2 else 0.0
    workspace = float(workspaces[0]) if workspaces else 0.0
    peaks = memory.peaks
    report = {
        "predict": seconds["total"], "cold": done - started, "load": loaded - started,
        "preprocessing": seconds.get("preprocessing", 0.0), "network_stage": seconds.get("network", 0.0),
        "forward": float(sum(forward_times)), "forward_calls": len(forward_times),
        "first_call_excess": max(0.0, first_excess),
        "export": float(sum(export_times)), "uncertainty_maps": float(sum(maps_times) + sum(grid_times)),
        "members": result.members, "stand_in": stand_in, "rss_loaded": rss_loaded, "peaks": peaks,
        "forward_workspace": workspace,
        # beyond the model: outside the network's calls, the peak over RSS after loading; during them,
        # the peak less the first call's own growth (its activations)
        "beyond": max(memory.overall("setup", "tiles", "post") - rss_loaded,
                      memory.overall("network") - rss_loaded - workspace),
        "post_beyond": peaks.get("post", 0) - rss_loaded,
        "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "threads": torch.get_num_threads(),
    }
    if spec["device"] == "cuda":
        report["cuda_peak"] = torch.cuda.max_memory_allocated()
    return report


def run_nnunet(spec: dict) -> dict:
    out = Path(spec["out"]) / f"{spec['name']}_nnunet"
    out.mkdir(parents=True, exist_ok=True)
    executable = Path(sys.executable).parent / "nnUNetv2_predict_from_modelfolder"
    command = ["/usr/bin/time", "-v", str(executable), "-i", spec["input_folder"], "-o", str(out), "-m",
               spec["model"], "-f", "0", "-device", spec["device"], "-npp", "1", "-nps", "1",
               "--disable_progress_bar"]
    if not spec["options"].get("mirroring", True):
        command.append("--disable_tta")
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, env=spec["env"])
    wall = time.perf_counter() - started
    maxrss = [line for line in completed.stderr.splitlines() if "Maximum resident set size" in line]
    report = {"cold": wall, "predict": wall, "returncode": completed.returncode,
              "ru_maxrss": int(maxrss[0].split(":")[-1]) * 1024 if maxrss else 0}
    if completed.returncode != 0:
        tail = [line for line in (completed.stderr + completed.stdout).strip().splitlines()
                if "Command exited" not in line and not line.startswith("\t")]
        report["error"] = tail[-1][:200] if tail else f"exit {completed.returncode}"
        return report
    result = out / "case.nii.gz"
    if result.is_file():
        import SimpleITK as sitk

        np.save(Path(spec["out"]) / f"{spec['name']}_labels.npy",
                sitk.GetArrayFromImage(sitk.ReadImage(str(result))).astype(np.uint8))
    return report


def worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        report = run_ours(spec) if spec["kind"] == "ours" else run_nnunet(spec)
    except Exception as error:  # noqa: BLE001 - the parent prints what failed, the table goes on
        import traceback

        report = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}",
                  "traceback": traceback.format_exc()[-2000:]}
    Path(spec["report"]).write_text(json.dumps(report))


# ---------------------------------------------------------------------------------------------- parent

def tiles_per_case(shape, patch, step: float) -> int:
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    padded = [max(s, p) for s, p in zip(shape, patch)]
    return int(np.prod([len(s) for s in compute_steps_for_sliding_window(padded, patch, step)]))


def run_variant(name: str, args, work: Path, model: Path, meta: dict) -> dict:
    case, kind, options, _ = VARIANTS[name]
    out = work / "out"
    out.mkdir(exist_ok=True)
    report_file = out / f"{name}.json"
    spec = {"name": name, "kind": kind, "options": options, "device": args.device, "model": str(model),
            "array": str(work / "cases" / f"{case}.npy"), "input_folder": str(work / "cases" / case),
            "spacing_kji": meta["spacing_kji"], "out": str(out), "report": str(report_file),
            "env": nnunet_environment(work)}
    load_before = os.getloadavg()[0]
    print(f"[{time.strftime('%H:%M:%S')}] {name} (load {load_before:.2f}) ...", flush=True)
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                               capture_output=True, text=True)
    report = json.loads(report_file.read_text()) if report_file.is_file() else {
        "error": f"worker exit {completed.returncode}: {(completed.stderr.strip().splitlines() or [''])[-1][:200]}"}
    report["load_before"] = load_before
    report["name"] = name
    message = report.get("error") or f"{report.get('predict', 0):.1f} s"
    print(f"    -> {message}", flush=True)
    return report


def compare(name: str, work: Path) -> dict:
    reference = VARIANTS[name][3]
    out = work / "out"
    if reference is None or not all((out / f"{n}_labels.npy").is_file() for n in (name, reference)):
        return {}
    labels, ref = np.load(out / f"{name}_labels.npy"), np.load(out / f"{reference}_labels.npy")
    if labels.shape != ref.shape:
        return {"reference": reference, "error": f"shape {labels.shape} vs {ref.shape}"}
    a, b = labels > 0, ref > 0
    dice = 2.0 * np.sum(a & b) / max(1, np.sum(a) + np.sum(b))
    result = {"reference": reference, "equal": float(np.mean(labels == ref)), "dice": float(dice),
              "foreground": float(a.mean())}
    logits, ref_logits = out / f"{name}_logits.npy", out / f"{reference}_logits.npy"
    if logits.is_file() and ref_logits.is_file():
        x, y = np.load(logits), np.load(ref_logits)
        if x.shape == y.shape:
            result["max_logit"] = float(np.max(np.abs(x - y)))
            result["mean_logit"] = float(np.mean(np.abs(x - y)))
    return result


def megabytes(value) -> str:
    return f"{value / 2**20:.0f}" if value else "-"


def table(reports: dict, comparisons: dict, input_bytes: dict, tiles: dict) -> str:
    rows = ["| variant | case (tiles) | passes/tile | predict s | cold s | forward s (share) | preproc s | "
            "export s | uncert. s | other s | peak RSS MB | beyond model (x input) | post-proc. (x input) | "
            "vs | equal voxels | Dice | max/mean abs logit diff | load |",
            "|" + "---|" * 18]
    for name, report in reports.items():
        case, kind, _, _ = VARIANTS[name]
        where = f"{case} ({tiles.get(name, '-')})" + (", stand-in" if report.get("stand_in") else "")
        if "error" in report:
            rows.append(f"| {name} | {where} | | failed: {report['error']} |" + " |" * 14)
            continue
        c = comparisons.get(name, {})
        agreement = (f"| {c['reference']} | {100 * c['equal']:.3f} % | {c['dice']:.4f} | "
                     + (f"{c['max_logit']:.3g} / {c['mean_logit']:.2g}" if "max_logit" in c else "-") + " |"
                     ) if "equal" in c else "| | | | |"
        if kind == "ours":
            predict = report["predict"]
            other = predict - sum(report[k] for k in ("preprocessing", "forward", "export", "uncertainty_maps"))
            beyond = report["beyond"] / input_bytes[case]
            post = report["post_beyond"] / input_bytes[case]
            rows.append(
                f"| {name} | {where} | {report['members']} | {predict:.1f} | {report['cold']:.1f} | "
                f"{report['forward']:.1f} ({100 * report['forward'] / predict:.0f} %) | "
                f"{report['preprocessing']:.2f} | "
                f"{report['export']:.2f} | {report['uncertainty_maps']:.2f} | {other:.2f} | "
                f"{megabytes(report['ru_maxrss'])} | {beyond:.1f} | {post:.1f} {agreement} "
                f"{report['load_before']:.1f} |")
        else:
            passes = "-" if case == "none" else 8 if VARIANTS[name][2].get("mirroring", True) else 1
            rows.append(f"| {name} | {where} | {passes} | - | {report['cold']:.1f} | | | | | | "
                        f"{megabytes(report['ru_maxrss'])} | - | - {agreement} {report['load_before']:.1f} |")
    return "\n".join(rows)


def summary(reports: dict) -> list[str]:
    lines = []

    def get(name, key="predict"):
        report = reports.get(name, {})
        return report.get(key) if "error" not in report else None

    for ours, theirs, what in (("ours-tta", "nnunet-tta", "8 mirrors, full case"),
                               ("crop-tta", "crop-nnunet-tta", "8 mirrors, cropped case"),
                               ("ours-notta", "nnunet-notta", "no mirroring, full case")):
        if get(ours) and get(theirs, "cold"):
            lines.append(f"- nnUNetv2_predict_from_modelfolder / ours ({what}): {get(theirs, 'cold') / get(ours):.2f}x "
                         f"(model loaded) and {get(theirs, 'cold') / get(ours, 'cold'):.2f}x (ours cold: start-up, "
                         "imports and loading included) (target > 1)")
    if get("nnunet-startup", "cold"):
        lines.append("- nnUNetv2_predict_from_modelfolder start-up without a case: "
                     f"{get('nnunet-startup', 'cold'):.1f} s")
    for unc, plain in (("crop-tta", "crop-tta-plain"), ("crop-tta-bf16", "crop-tta-bf16-plain")):
        if get(unc) and get(plain):
            a, b = reports[unc], reports[plain]
            same_network = (b["forward"] + a["predict"] - a["forward"]) / b["predict"]
            lines.append(f"- uncertainty overhead ({unc} / {plain}): {a['predict'] / b['predict']:.3f} as measured; "
                         f"{same_network:.3f} with the network time of the plain run for both (the passes are the "
                         "same work; removes contention noise) (target <= 1.1)")
    for name, base in (("crop-tta-bf16", "crop-tta"), ("crop-tta-cl", "crop-tta"), ("crop-tta-bf16-cl", "crop-tta"),
                       ("crop-tta-ppb1", "crop-tta"), ("crop-axes12", "crop-tta"), ("crop-axes2", "crop-tta"),
                       ("crop-notta", "crop-tta"), ("ours-notta-bf16", "ours-notta"),
                       ("ours-notta-bf16-cl", "ours-notta"), ("ours-notta-step0.75", "ours-notta")):
        if get(name) and get(base):
            lines.append(f"- {name} vs {base}: {get(base) / get(name):.2f}x faster (forward "
                         f"{reports[base]['forward'] / reports[name]['forward']:.2f}x)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("/tmp/vb_nnunet_size"),
                        help="scratch folder (dataset, plans, model, outputs); reused when it exists")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--quick", action="store_true", help="fewer variants; the mirrored ones on the crop only")
    parser.add_argument("--variants", default=None, help="comma-separated variant names (see --list)")
    parser.add_argument("--planner", default="default", choices=tuple(PLANNERS))
    parser.add_argument("--list", action="store_true", help="list the variants and exit")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker)
        return
    if args.list:
        for name, (case, kind, options, reference) in VARIANTS.items():
            print(f"{name:22s} {case:5s} {kind:7s} {json.dumps(options):60s} vs {reference}")
        return
    names = (args.variants.split(",") if args.variants else QUICK if args.quick else FULL)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; see --list")
    work = args.work.resolve()
    if args.device == "cuda":  # on a lent machine the scratch folder is per device
        work = work.with_name(work.name + "_cuda")
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = os.getloadavg()

    meta = prepare_case(work)
    plans_file = prepare_dataset(work, args.planner)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = json.loads(plans_file.read_text())
    configuration = PlansManager(plans).get_configuration("3d_fullres")
    patch = [int(p) for p in configuration.patch_size]
    transpose = plans["transpose_forward"]
    shape_net = [meta["shape"][a] for a in transpose]
    if not (work / "cases" / "crop.npy").is_file():
        patch_kji = [patch[transpose.index(a)] for a in range(3)]
        write_crop(work, patch_kji)
    model = build_model(work, plans_file, args.planner)
    prepared = time.perf_counter()
    import torch

    parameters = json.loads((work / "network.json").read_text())["parameters"]  # unique (the decoder
    # holds the encoder too, so the state dict names each encoder weight twice)
    calibration = json.loads((work / "calibration.json").read_text())
    tiles_full = {step: tiles_per_case(shape_net, patch, step) for step in STEPS}
    tiles = {}
    for name in names:
        case, _, options, _ = VARIANTS[name]
        tiles[name] = 1 if case == "crop" else "-" if case == "none" else tiles_full.get(
            options.get("tile_step_size", 0.5), tiles_per_case(shape_net, patch, options.get("tile_step_size", 0.5)))
    skipped = [n for n in names if n.startswith("ours-notta-step")
               and tiles[n] == tiles_full[0.5] and not args.variants]
    names = [n for n in names if n not in skipped]

    network_class = configuration.network_arch_class_name.rsplit(".", 1)[-1]
    spacing = [round(s, 3) for s in configuration.spacing]
    steps = ", ".join(f"{s}: {n}" for s, n in tiles_full.items())
    print(f"plan ({args.planner}: {plans.get('plans_name')}): 3d_fullres patch {patch} at spacing "
          f"{spacing} mm, {network_class} with {parameters / 1e6:.1f} M parameters; case {meta['shape']} voxels "
          f"(network grid {shape_net}); "
          f"tiles per case at step {steps}; preparation {prepared - started:.0f} s", flush=True)
    reports = {}
    for name in names:
        reports[name] = run_variant(name, args, work, model, meta)
    comparisons = {name: compare(name, work) for name in names}
    crop_voxels = int(np.prod(patch))
    input_bytes = {"full": int(np.prod(meta["shape"])) * 4, "crop": crop_voxels * 4, "none": 1}
    errors = {n: r["traceback"] for n, r in reports.items() if "traceback" in r}
    for name, trace in errors.items():
        print(f"--- {name} failed:\n{trace}")

    cpu = "-"
    if args.device == "cpu":
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        cpu = f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, bf16: {bf16}"
    else:
        cpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cuda unavailable"
    print()
    print(f"## nnU-Net at a realistic size ({args.device}: {cpu})")
    print()
    features = configuration.network_arch_init_kwargs.get("features_per_stage")
    print(f"- plan: {plans.get('plans_name')} 3d_fullres, {network_class}, {parameters / 1e6:.2f} M parameters, "
          f"patch {patch} (network axes), spacing {spacing} mm, features {features}")
    print(f"- case: {meta['shape'][::-1]} voxels (x, y, z) at {meta['spacing_kji'][::-1]} mm; float32 input "
          f"{input_bytes['full'] / 2**20:.1f} MB; tiles per case at step {steps}"
          f"{' (same tiles: tile-step runs skipped, identical results)' if skipped else ''}; crop = 1 tile "
          f"({crop_voxels} voxels, {crop_voxels * 4 / 2**20:.1f} MB float32)")
    print(f"- random weights, tumour bias shifted by {calibration['shift']:.3g} for ~{FOREGROUND_FRACTION:.0%} "
          f"foreground; sd of the logit difference {calibration['logit_difference_sd']:.3g} (scale for the logit "
          "differences below)")
    print(f"- load average (1, 5, 15 min) at start {', '.join(f'{x:.2f}' for x in load_start)}, at end "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}; total run time {time.perf_counter() - started:.0f} s")
    print("- peak RSS per phase is the kernel's high-water mark (VmHWM), reset at each phase boundary. Memory "
          "beyond the model, in units of that case's float32 input: peak RSS over the RSS after loading (model "
          "and input array in place), outside the network's calls; during them, less the first call's own growth "
          "(its activations; approximate, the allocator's reuse varies). Stand-in rows (network replaced by a "
          "1x1x1 convolution) measure our arrays exactly; post-proc. = the same from nnU-Net's export to the end")
    print()
    print(table(reports, comparisons, input_bytes, tiles))
    print()
    print("\n".join(summary(reports)))


if __name__ == "__main__":
    main()
