"""In-process nnU-Net v2 inference with voxel-wise uncertainty, progress and cancel.

nnU-Net already predicts every sliding-window tile several times (the test-time mirrorings, and
once per fold) and averages the logits. :class:`UncertaintyPredictor` keeps, per tile, what
those passes say beyond their average — their mean softmax probability and their mean entropy —
and accumulates it with the same Gaussian tile weights, so uncertainty costs no extra network
pass. Per voxel, with members m = (fold, mirroring) passes and C classes:

- predictive entropy  H[mean_m p_m] / ln C            (0 = certain, 1 = uniform)
- expected entropy    mean_m H[p_m] / ln C
- mutual information  predictive - expected entropy   (disagreement between the passes, >= 0)
- fold disagreement   fraction of folds whose own label (argmax of their mean probability) differs
                      from the argmax of the ensemble's mean probability

Region-based models (one sigmoid output per region, :attr:`ModelFolder.is_region_based`) get the same
three maps from each region's Bernoulli entropy, H(p) = -p ln p - (1 - p) ln(1 - p), over ln 2, and per
voxel the largest over the regions (a voxel is as uncertain as its least certain region boundary);
their labels are nnU-Net's (each region's mean probability > 0.5, later regions of
``regions_class_order`` over earlier ones), and fold disagreement compares those label maps.

computed in the network's voxel space and then resampled to the input grid like nnU-Net's
probabilities (after upsampling, every boundary would otherwise look uncertain).

The segmentation itself is nnU-Net's (argmax of the mean logits), unchanged. Written as a
subclass because nnU-Net exposes no hook for per-pass outputs; the tile loop is re-implemented
(same tiling, Gaussian weighting and padding as nnU-Net) to report progress per tile and stop
when the user cancels.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import time
from dataclasses import dataclass, field

import numpy as np

from virtualbiopsy.errors import ImageDimensionError, InputError, InvalidValuesError
from virtualbiopsy.progress import Task, as_task
from virtualbiopsy.segmentation.network_allowlist import build_network, check_resampling_arguments, preprocessor_class
from virtualbiopsy.segmentation.nnunet_model import ModelFolder, check_channels, choose_device, load_checkpoint

PRECISIONS = ("float32", "bfloat16")
SMALL_PATCH_VOXELS = 32 * 64 * 64  # mirrored passes are batched up to this patch size (see NNUNetSegmenter)


@dataclass
class SegmentationResult:
    """Outputs on the input grid, arrays [k, j, i]; uncertainty maps are float16 in [0, 1]."""

    labels: np.ndarray
    probabilities: np.ndarray  # [C, k, j, i] float16, nnU-Net's softmax of the mean logits
    predictive_entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_information: np.ndarray
    fold_disagreement: np.ndarray | None
    members: int  # passes per tile: mirrorings x folds
    seconds: dict = field(default_factory=dict)


def _entropy(p, axis: int = 0):
    """Shannon entropy (nats) along ``axis`` of probabilities (torch or numpy)."""
    import torch

    if isinstance(p, torch.Tensor):
        return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=axis)
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=axis)


def _bernoulli_entropy(p):
    """Entropy (nats) of each channel's sigmoid probability as a two-outcome variable (torch or numpy)."""
    import torch

    if isinstance(p, torch.Tensor):
        return -(p * torch.log(p.clamp_min(1e-12)) + (1 - p) * torch.log((1 - p).clamp_min(1e-12)))
    return -(p * np.log(np.clip(p, 1e-12, None)) + (1 - p) * np.log(np.clip(1 - p, 1e-12, None)))


def region_labels(probabilities: np.ndarray, regions_class_order) -> np.ndarray:
    """nnU-Net's label map of region probabilities [R, ...]: each region above 0.5 gets its value of
    ``regions_class_order``, later regions over earlier ones."""
    labels = np.zeros(probabilities.shape[1:], np.uint8)
    for index, value in enumerate(regions_class_order):
        labels[probabilities[index] > 0.5] = value
    return labels


def _extra_channels(heads: int, regions: bool) -> int:
    """Per tile: the passes' mean probability per output, and their mean entropy (per region)."""
    return 2 * heads if regions else heads + 1


def _uncertainty_maps(fold_extras: list[np.ndarray], heads: int, regions_class_order=None) -> np.ndarray:
    """Predictive entropy, expected entropy, mutual information (and fold disagreement when there are
    several folds), each in [0, 1], from each fold's mean probabilities and mean entropy (nats);
    ``regions_class_order`` given for a region-based model (sigmoid outputs, see the module's text).

    Computed in the network's own voxel space, before resampling to the input grid: entropy of
    interpolated probabilities would be high on every upsampled boundary whatever the model says.
    """
    mean_p = np.mean([f[:heads] for f in fold_extras], axis=0)
    if regions_class_order is not None:
        scale = float(np.log(2.0))
        predictive_r = _bernoulli_entropy(mean_p) / scale
        expected_r = np.mean([f[heads:] for f in fold_extras], axis=0) / scale
        maps = [predictive_r.max(axis=0), expected_r.max(axis=0),
                np.clip(predictive_r - expected_r, 0.0, None).max(axis=0)]

        def labels_of(p):
            return region_labels(p, regions_class_order)
    else:
        scale = float(np.log(heads))
        predictive = _entropy(mean_p) / scale
        expected = np.mean([f[heads] for f in fold_extras], axis=0) / scale
        maps = [predictive, expected, np.clip(predictive - expected, 0.0, None)]

        def labels_of(p):
            return np.argmax(p, axis=0)
    if len(fold_extras) > 1:
        consensus = labels_of(mean_p)
        maps.append(np.mean([labels_of(f[:heads]) != consensus for f in fold_extras], axis=0))
    return np.stack(maps).astype(np.float32)


def _half(values):
    """A [0, 1] map stored compactly as float16 (None stays None)."""
    return None if values is None else np.clip(values, 0.0, 1.0).astype(np.float16)


CUDA_ONLY_NOTICE = "perform_everything_on_device=True is only supported for cuda devices!"


def _quiet_predictor(**arguments):
    """The predictor, without the line nnU-Net prints for every device but CUDA ("perform_everything_on_device=True
    is only supported for cuda devices! Setting this to False"), which it prints even when given False, as here on
    every device: on a CPU run it reads like a problem. Anything else it prints is passed on."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return _predictor_class()(**arguments)
    finally:  # what it printed is shown even when it fails (it may say why)
        for line in printed.getvalue().splitlines():
            if not line.startswith(CUDA_ONLY_NOTICE):
                print(line)


def _predictor_class():
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    class UncertaintyPredictor(nnUNetPredictor):
        """nnU-Net's predictor, also accumulating mean probability and mean entropy of its passes."""

        task: Task = Task()
        keep_uncertainty: bool = True
        passes_per_batch: int = 8
        regions: bool = False  # sigmoid outputs, one per region
        precision: str = "float32"
        memory_format = None  # torch.channels_last(_3d) when asked for

        def _network(self, batch):
            import torch

            if self.memory_format is not None:
                batch = batch.contiguous(memory_format=self.memory_format)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
                return self.network(batch).float()

        def _internal_maybe_mirror_and_predict(self, x):
            import torch

            axes = [a + 2 for a in self.allowed_mirroring_axes] if (self.use_mirroring and
                                                                      self.allowed_mirroring_axes) else []
            combos = [()] + [c for n in range(len(axes)) for c in itertools.combinations(axes, n + 1)]
            # The mirrored copies go through the network together, in batches of `passes_per_batch`
            # (one tile, x of batch size 1): a small network on a CPU runs a batch of 8 about 3x
            # faster than 8 single passes. nnU-Net itself runs them one by one.
            flipped = torch.cat([torch.flip(x, flip) if flip else x for flip in combos])
            outs = torch.cat([self._network(flipped[i:i + self.passes_per_batch])
                              for i in range(0, len(combos), self.passes_per_batch)])
            outs = torch.stack([torch.flip(outs[i], [a - 1 for a in flip]) if flip else outs[i]
                                for i, flip in enumerate(combos)])
            n = len(combos)
            self._members_per_fold = n
            if self.keep_uncertainty:
                if self.regions:
                    p = torch.sigmoid(outs)
                    self._tile_extra = torch.cat([p.mean(dim=0), _bernoulli_entropy(p).mean(dim=0)], dim=0)
                else:
                    p = torch.softmax(outs, dim=1)
                    self._tile_extra = torch.cat([p.mean(dim=0), _entropy(p, axis=1).mean(dim=0, keepdim=True)],
                                                 dim=0)
            return outs.mean(dim=0, keepdim=True)

        def predict_sliding_window_return_logits(self, input_image):
            import torch
            from acvl_utils.cropping_and_padding.padding import pad_nd_image
            from nnunetv2.inference.sliding_window_prediction import compute_gaussian

            self.network = self.network.to(self.device)
            self.network.eval()
            patch = tuple(self.configuration_manager.patch_size)
            data, revert = pad_nd_image(input_image, patch, "constant", {"value": 0}, True, None)
            slicers = self._internal_get_sliding_window_slicers(data.shape[1:])
            heads = self.label_manager.num_segmentation_heads
            logits = torch.zeros((heads, *data.shape[1:]), dtype=torch.float32)
            extra = (torch.zeros((_extra_channels(heads, self.regions), *data.shape[1:]), dtype=torch.float32)
                     if self.keep_uncertainty else None)
            weights = torch.zeros(data.shape[1:], dtype=torch.float32)
            cpu = torch.device("cpu")
            gaussian = (compute_gaussian(patch, sigma_scale=1.0 / 8, value_scaling_factor=10, device=cpu)
                        if self.use_gaussian else torch.ones(patch)).float()
            fold_task = self.task
            with torch.inference_mode():
                for index, tile in enumerate(slicers):
                    fold_task.update(index / len(slicers), f"tile {index + 1} of {len(slicers)}")
                    x = data[tile][None].to(self.device)
                    prediction = self._internal_maybe_mirror_and_predict(x)[0].float().cpu()
                    logits[tile] += prediction * gaussian
                    weights[tile[1:]] += gaussian
                    if extra is not None:
                        extra[tile] += self._tile_extra.cpu() * gaussian
            logits /= weights
            region = (slice(None), *revert[1:])
            if extra is not None:
                extra /= weights
                self._fold_extra.append(extra[region])
            return logits[region]

        def predict_logits_from_preprocessed_data(self, data):
            import torch

            self._fold_extra = []
            total = None
            task = self.task
            for index, params in enumerate(self.list_of_parameters):
                self.network.load_state_dict(params)
                n = len(self.list_of_parameters)
                self.task = task.sub(index / n, (index + 1) / n)
                fold_logits = self.predict_sliding_window_return_logits(data)
                total = fold_logits if total is None else total + fold_logits
            self.task = task
            with torch.no_grad():
                return total / len(self.list_of_parameters)

    return UncertaintyPredictor


def _require_bfloat16(device) -> None:
    """Refuse bfloat16 where the hardware would emulate it (slower than float32, no gain)."""
    import torch

    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        supported = bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()) and \
            bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    else:
        supported = False
    if not supported:
        raise InputError(f"bfloat16 is not supported natively on this {device.type.upper()} (it needs AVX-512 BF16 / "
                         "AMX on a CPU, or a GPU with bfloat16); use float32.")


def _trainer_with_own_network(trainer_name: str):
    """The installed nnU-Net trainer class named in the checkpoint if it builds its own network (e.g. the
    BatchNorm or Primus trainers), else None: the network then comes from the validated plans.

    The name (a Python identifier, checked by :func:`check_model_files`) is only looked up among the
    trainers installed with nnU-Net (and in ``nnUNet_extTrainer``, a folder the user configured), never
    imported from a path the model names. Where the trainer search fails (a trainer module that cannot
    be imported, e.g. torchvision missing or mismatched), the network is built from the plans.
    """
    if trainer_name == "nnUNetTrainer":
        return None
    try:
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

        trainer = recursive_find_trainer_class_by_name(trainer_name)
    except Exception:  # noqa: BLE001 - any import failure: fall back to the plans, as documented
        return None
    own = trainer.build_network_architecture is not nnUNetTrainer.build_network_architecture
    return trainer if own else None


def _build_network(model: ModelFolder, plans_manager, configuration_manager, checkpoint: dict):
    """The trained network, built from the allow-listed classes its validated plans.json names
    (:func:`~virtualbiopsy.segmentation.network_allowlist.build_network`), or by the installed trainer
    named in the checkpoint when that trainer builds its own network."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    n_in = determine_num_input_channels(plans_manager, configuration_manager, model.dataset)
    n_out = plans_manager.get_label_manager(model.dataset).num_segmentation_heads
    trainer_name = checkpoint.get("trainer_name", "nnUNetTrainer")
    trainer = _trainer_with_own_network(trainer_name)
    if trainer is not None:
        return trainer.build_network_architecture(plans_manager, configuration_manager, n_in, n_out,
                                                  enable_deep_supervision=False), trainer_name
    network = build_network(configuration_manager.configuration["architecture"], n_in, n_out,
                            f"plans.json in '{model.path}'", model.configuration)
    built = trainer_name if trainer_name == "nnUNetTrainer" else f"{trainer_name} (network built from plans.json)"
    return network, built


class NNUNetSegmenter:
    """A loaded nnU-Net model that segments one case after another without reloading.

    >>> # segmenter = NNUNetSegmenter(inspect_model("Resources/Models/NeuroblastomaDemo"))
    >>> # result = segmenter.predict([t2w_array], spacing_kji=(4.0, 1.5, 1.5))

    A cascade stage (``model.previous_stage`` set) runs its first stage on the same inputs and feeds that
    segmentation, one-hot on the cascade's grid, as extra input channels, as nnU-Net does.
    """

    def __init__(self, model: ModelFolder, device: str = "auto", mirroring: bool = True,
                 tile_step_size: float = 0.5, passes_per_batch: int | None = None, precision: str = "float32",
                 channels_last: bool = False, mirror_axes=None) -> None:
        """``passes_per_batch``: mirrored copies of a tile run through the network together (1 is nnU-Net's
        own one-by-one behaviour). None: 8 for patches up to 32 x 64 x 64 voxels (a small network on a CPU runs
        a batch of 8 about 3x faster), else 1 (at a 30 M-parameter plan's patch a batch of 8 was 1.6x faster
        but peaked at 13.6 GB instead of 2.6 GB: scripts/benchmark_nnunet_size.py).
        ``precision``: "float32" (nnU-Net's results) or "bfloat16" (autocast: faster on CPUs with
        AVX-512 BF16 / AMX and on GPUs; labels may differ at a few boundary voxels, see the README).
        ``channels_last``: the network and tiles in channels-last memory order (a CPU speed option).
        ``mirror_axes``: mirror only along these of the model's mirroring axes (axes of the network's
        input after nnU-Net's transpose, 0 = first; e.g. (1, 2) in-plane only: 4 passes instead of 8).
        ``tile_step_size``: tile overlap as nnU-Net's (0.5 = half a patch; larger = fewer tiles)."""
        import torch
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        if precision not in PRECISIONS:
            raise InputError(f"Unknown precision '{precision}'; use {' or '.join(PRECISIONS)}.")
        if not 0.1 <= float(tile_step_size) <= 1.0:
            raise InputError(f"The tile step must be between 0.1 and 1 of a patch (got {tile_step_size}).")
        self.model = model
        self.device = choose_device(device)
        if precision == "bfloat16":
            _require_bfloat16(self.device)
        self.previous_stage = (NNUNetSegmenter(model.previous_stage, device, mirroring, tile_step_size,
                                               passes_per_batch, precision, channels_last, mirror_axes)
                               if model.previous_stage is not None else None)
        self.predictor = _quiet_predictor(tile_step_size=float(tile_step_size), use_gaussian=True,
                                          use_mirroring=mirroring, perform_everything_on_device=False,
                                          device=self.device, verbose=False, allow_tqdm=False)
        self.predictor.passes_per_batch = max(1, int(passes_per_batch)) if passes_per_batch is not None else None
        self.predictor.precision = precision
        checkpoints = [load_checkpoint(path) for path in model.checkpoints.values()]
        plans_manager = PlansManager(model.plans)
        configuration_manager = plans_manager.get_configuration(model.configuration)
        if self.predictor.passes_per_batch is None:
            small = int(np.prod(configuration_manager.patch_size)) <= SMALL_PATCH_VOXELS
            self.predictor.passes_per_batch = 8 if small else 1
        check_resampling_arguments(configuration_manager.configuration, f"plans.json in '{model.path}'",
                                   model.configuration)
        network, self.trainer = _build_network(model, plans_manager, configuration_manager, checkpoints[0])
        parameters = [c["network_weights"] for c in checkpoints]
        try:
            network.load_state_dict(parameters[0])
        except RuntimeError as error:
            from virtualbiopsy.errors import FileFormatError

            raise FileFormatError(f"The weights in '{model.path}' do not fit the network its plans.json describes "
                                  f"({str(error).splitlines()[0][:160]}).") from error
        if channels_last:
            fmt = torch.channels_last_3d if len(configuration_manager.patch_size) == 3 else torch.channels_last
            network = network.to(memory_format=fmt)
            self.predictor.memory_format = fmt
        self.predictor.manual_initialization(network, plans_manager, configuration_manager, parameters,
                                             model.dataset, self.trainer,
                                             checkpoints[0].get("inference_allowed_mirroring_axes"))
        self.predictor.regions = self.predictor.label_manager.has_regions
        if mirror_axes is not None:
            allowed = tuple(self.predictor.allowed_mirroring_axes or ())
            chosen = tuple(sorted({int(a) for a in mirror_axes}))
            if not set(chosen) <= set(allowed):
                trained = ", ".join(map(str, allowed)) or "none"
                raise InputError(f"The model was trained with mirroring along axes {trained}; mirror axes "
                                 f"{', '.join(map(str, chosen))} are not among them.")
            self.predictor.allowed_mirroring_axes = chosen
        torch.set_num_threads(max(1, torch.get_num_threads()))

    @property
    def regions_class_order(self):
        """nnU-Net's order of the region values (None for a label model)."""
        return self.predictor.label_manager.regions_class_order if self.predictor.regions else None

    def predict(self, channels: list[np.ndarray], spacing_kji, progress=None, uncertainty: bool = True,
                names: list[str] | None = None) -> SegmentationResult:
        """Segment one case: ``channels`` are arrays [k, j, i] on one grid, in the model's channel order;
        ``spacing_kji`` their voxel size in mm along k, j, i."""
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape

        task = as_task(progress)
        check_channels(self.model, len(channels), names)
        image = self._validated_input(channels, names)
        predictor = self.predictor
        timings = {}
        started = time.perf_counter()
        previous = None
        if self.previous_stage is not None:
            first = self.previous_stage.predict(channels, spacing_kji, task.sub(0.0, 0.45), False, names)
            previous = first.labels[None].astype(np.float32)  # as nnU-Net reads it from the stage's file
            timings["first_stage"] = first.seconds.get("total", 0.0)
            task = task.sub(0.45, 1.0)
        predictor.keep_uncertainty = uncertainty
        task.update(0.0, "Preprocessing")
        stage_started = time.perf_counter()
        preprocessor = preprocessor_class(predictor.configuration_manager.preprocessor_name)(verbose=False)
        data, seg, properties = preprocessor.run_case_npy(image, previous, {"spacing": [float(s) for s in spacing_kji]},
                                                          predictor.plans_manager, predictor.configuration_manager,
                                                          predictor.dataset_json)
        if previous is not None:  # as nnU-Net's data iterators feed a cascade stage
            from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot

            one_hot = convert_labelmap_to_one_hot(seg[0], predictor.label_manager.foreground_labels, data.dtype)
            data = np.vstack((data, one_hot))
        timings["preprocessing"] = time.perf_counter() - stage_started
        import torch

        predictor.task = task.sub(0.05, 0.9)
        logits = predictor.predict_logits_from_preprocessed_data(torch.from_numpy(data))
        timings["network"] = time.perf_counter() - stage_started - timings["preprocessing"]
        task.update(0.9, "Resampling to the image grid")
        labels, probabilities = convert_predicted_logits_to_segmentation_with_correct_shape(
            logits, predictor.plans_manager, predictor.configuration_manager, predictor.label_manager, properties,
            return_probabilities=True)
        heads = probabilities.shape[0]
        order = self.regions_class_order
        if uncertainty:
            maps = _uncertainty_maps([extra.numpy() for extra in predictor._fold_extra], heads, order)
            predictive, expected, mutual, *fold = self._to_input_grid(maps, properties)
            disagreement = fold[0] if fold else None
        else:
            predictive = (_bernoulli_entropy(probabilities).max(axis=0) / float(np.log(2.0)) if order is not None
                          else _entropy(probabilities) / float(np.log(heads)))
            expected = predictive
            mutual = np.zeros_like(predictive)
            disagreement = None
        timings["total"] = time.perf_counter() - started
        task.update(1.0, "Segmentation ready")
        members = getattr(predictor, "_members_per_fold", 1) * len(predictor.list_of_parameters)
        return SegmentationResult(labels.astype(np.uint8), probabilities.astype(np.float16), _half(predictive),
                                  _half(expected), _half(mutual), _half(disagreement), members, timings)

    def _validated_input(self, channels, names) -> np.ndarray:
        arrays = [np.asarray(c) for c in channels]
        names = names or [f"input {i + 1}" for i in range(len(arrays))]
        for array, name in zip(arrays, names):
            if array.ndim != 3 or min(array.shape) < 2:
                raise ImageDimensionError(f"'{name}' is not a 3D image ({array.shape} voxels).")
            if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
                raise InvalidValuesError(f"'{name}' contains NaN or infinite voxels.")
            if not np.any(array != array.flat[0]):
                raise InvalidValuesError(f"'{name}' is empty (every voxel is {array.flat[0]}); nothing to segment.")
        if len({a.shape for a in arrays}) > 1:
            raise InputError("The input images are not on one voxel grid (shapes "
                             + ", ".join(f"{n}: {a.shape}" for n, a in zip(names, arrays))
                             + "); register and resample them onto the first one first.")
        return np.stack([a.astype(np.float32) for a in arrays])

    def _to_input_grid(self, maps: np.ndarray, properties: dict) -> np.ndarray:
        """Bring per-voxel uncertainty maps from nnU-Net's preprocessed space back to the input grid
        (resample as nnU-Net resamples probabilities, undo the crop (outside it nnU-Net predicts
        background with certainty: 0), undo the axis transpose)."""
        plans_manager = self.predictor.plans_manager
        configuration = self.predictor.configuration_manager
        original_spacing = [properties["spacing"][i] for i in plans_manager.transpose_forward]
        resampled = configuration.resampling_fn_probabilities(
            maps, properties["shape_after_cropping_and_before_resampling"], configuration.spacing, original_spacing)
        resampled = np.asarray(resampled, dtype=np.float32)
        full = np.zeros((maps.shape[0], *properties["shape_before_cropping"]), dtype=np.float32)
        box = tuple(slice(lo, hi) for lo, hi in properties["bbox_used_for_cropping"])
        full[(slice(None), *box)] = resampled
        return full.transpose([0] + [i + 1 for i in plans_manager.transpose_backward])
