"""Deep features: ROI-pooled activations of a trained nnU-Net encoder, as an optional feature block.

For one case (image channel(s) + ROI mask on the same grid):

1. nnU-Net's own preprocessing of the model's configuration (crop to non-zero, the channel's
   normalisation, resampling to the model's spacing); the mask is resampled with it as a
   segmentation.
2. A crop around the ROI's bounding box plus ``margin`` voxels, at least the model's patch
   size and a multiple of the encoder's total stride (zero padding outside the image, as
   nnU-Net pads).
3. The encoder stages (``network.encoder`` of the dynamic-network-architectures U-Net, which
   returns every stage's feature maps) under ``torch.no_grad``.
4. Per stage s and channel c, the activations pooled over the ROI: the mean weighted by the
   fraction of each feature-map voxel covered by the ROI (the mask average-pooled with the
   stage's cumulative stride) and the maximum over voxels the ROI touches. Columns
   ``deep_stage{s}_ch{c}_mean`` / ``_max``; stage 1 is the full-resolution stage.

The values depend on the model and its weights (and, through instance normalisation, on the
crop); they are descriptive features for exploration and models, not calibrated measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from virtualbiopsy.errors import EmptyMaskError, GeometryMismatchError, InputError
from virtualbiopsy.progress import as_task


@dataclass
class DeepFeatureParameters:
    model_path: str = ""  # nnU-Net model folder; empty: the bundled demo model
    fold: str | int | None = None  # None: the first fold present
    margin: int = 4  # voxels of context around the ROI, at the model's spacing
    pooling: tuple[str, ...] = ("mean", "max")
    device: str = "cpu"


class DeepFeatureExtractor:
    """A loaded encoder that gives ROI-pooled features for one case after another."""

    def __init__(self, parameters: DeepFeatureParameters | None = None) -> None:
        import torch
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        from virtualbiopsy.segmentation.inference import _build_network
        from virtualbiopsy.segmentation.nnunet_model import choose_device, inspect_model, load_checkpoint

        self.parameters = parameters or DeepFeatureParameters()
        unknown = set(self.parameters.pooling) - {"mean", "max"}
        if unknown or not self.parameters.pooling:
            given = ", ".join(self.parameters.pooling) or "none"
            raise InputError(f"Pooling must be 'mean' and/or 'max'; got {given}.")
        path = self.parameters.model_path
        if not path:
            from virtualbiopsy.segmentation.demo_model import demo_model_path

            path = demo_model_path()
        folds = None if self.parameters.fold is None else [self.parameters.fold]
        self.model = inspect_model(Path(path), folds=folds)
        first = next(iter(self.model.checkpoints.values()))
        checkpoint = load_checkpoint(first)
        self.plans_manager = PlansManager(self.model.plans)
        self.configuration = self.plans_manager.get_configuration(self.model.configuration)
        network = self._network(checkpoint, _build_network)
        self.device = choose_device(self.parameters.device)
        self.encoder = network.encoder.to(self.device).eval()
        if not getattr(self.encoder, "return_skips", True):
            raise InputError("The model's encoder does not return its stages' feature maps.")
        strides = np.array([list(s) for s in self.encoder.strides], dtype=int)
        self.cumulative_strides = np.cumprod(strides, axis=0)  # per stage, per axis (model axis order)
        self.channels_per_stage = list(self.encoder.output_channels)
        self._torch = torch

    def _network(self, checkpoint: dict, build_with_trainer):
        """The trained network, built from plans.json (fast: no trainer import); through the
        checkpoint's trainer only when the weights do not fit that (a trainer with its own architecture)."""
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        from virtualbiopsy.errors import FileFormatError
        from virtualbiopsy.segmentation.network_allowlist import build_network

        configuration = self.configuration
        n_in = determine_num_input_channels(self.plans_manager, configuration, self.model.dataset)
        n_out = self.plans_manager.get_label_manager(self.model.dataset).num_segmentation_heads
        network = build_network(configuration.configuration["architecture"], n_in, n_out,  # allow-listed classes
                                f"plans.json in '{self.model.path}'", self.model.configuration)
        try:
            network.load_state_dict(checkpoint["network_weights"])
            return network
        except RuntimeError:
            network, _ = build_with_trainer(self.model, self.plans_manager, configuration, checkpoint)
        try:
            network.load_state_dict(checkpoint["network_weights"])
        except RuntimeError as error:
            raise FileFormatError(f"The weights in '{self.model.path}' do not fit the network its plans.json "
                                  f"describes ({str(error).splitlines()[0][:160]}).") from error
        return network

    @property
    def feature_names(self) -> list[str]:
        return [f"deep_stage{s + 1}_ch{c}_{pool}" for s, n in enumerate(self.channels_per_stage)
                for c in range(n) for pool in self.parameters.pooling]

    def _preprocess(self, channels: list[np.ndarray], mask: np.ndarray, spacing_kji):
        from virtualbiopsy.segmentation.network_allowlist import preprocessor_class

        preprocessor = preprocessor_class(self.configuration.preprocessor_name)(verbose=False)
        image = np.stack([np.asarray(c, dtype=np.float32) for c in channels])
        data, seg, _ = preprocessor.run_case_npy(image, mask[None].astype(np.int8),
                                                 {"spacing": [float(s) for s in spacing_kji]}, self.plans_manager,
                                                 self.configuration, self.model.dataset)
        return data, seg[0] > 0

    def _crop(self, data: np.ndarray, roi: np.ndarray):
        where = np.argwhere(roi)
        low, high = where.min(axis=0), where.max(axis=0) + 1
        total = self.cumulative_strides[-1]
        patch = np.array(self.configuration.patch_size, dtype=int)
        size = np.maximum(patch, np.ceil((high - low + 2 * self.parameters.margin) / total).astype(int) * total)
        start = (low + high) // 2 - size // 2
        crop = np.zeros((data.shape[0], *size), np.float32)
        crop_roi = np.zeros(tuple(size), np.float32)
        src = tuple(slice(max(s, 0), min(s + n, d)) for s, n, d in zip(start, size, roi.shape))
        dst = tuple(slice(a.start - s, a.stop - s) for a, s in zip(src, start))
        crop[(slice(None), *dst)] = data[(slice(None), *src)]
        crop_roi[dst] = roi[src]
        return crop, crop_roi

    def extract(self, channels, mask: np.ndarray, spacing_kji, progress=None) -> dict[str, float]:
        """ROI-pooled encoder features of one case: ``channels`` (one array [k, j, i] per model
        input, or a single array) and ``mask`` on the same grid, ``spacing_kji`` in mm."""
        from virtualbiopsy.segmentation.nnunet_model import check_channels

        task = as_task(progress)
        channels = [channels] if isinstance(channels, np.ndarray) else list(channels)
        check_channels(self.model, len(channels))
        mask = np.asarray(mask).astype(bool)
        for array in channels:
            if np.shape(array) != mask.shape:
                raise GeometryMismatchError(f"The image ({np.shape(array)} voxels) and the ROI mask ({mask.shape} "
                                            "voxels) are not on one grid.")
            if not np.all(np.isfinite(array)):
                from virtualbiopsy.errors import InvalidValuesError

                raise InvalidValuesError("The image contains NaN or infinite voxels.")
        if not mask.any():
            raise EmptyMaskError("The ROI is empty: deep features need at least one voxel.")
        task.update(0.0, "Deep features: nnU-Net preprocessing")
        data, roi = self._preprocess(channels, mask, spacing_kji)
        if not roi.any():
            raise EmptyMaskError(f"The ROI ({int(mask.sum())} voxels) vanishes when resampled to the model's spacing "
                                 f"({', '.join(f'{s:g}' for s in self.configuration.spacing)} mm); it is too small "
                                 "for deep features.")
        crop, crop_roi = self._crop(data, roi)
        task.update(0.3, "Deep features: encoder")
        torch = self._torch
        features = {}
        with torch.no_grad():
            maps = self.encoder(torch.from_numpy(crop[None]).to(self.device))
            weight_full = torch.from_numpy(crop_roi[None, None])
            for s, stage in enumerate(maps):
                task.check()
                stage = stage[0].float().cpu()
                kernel = tuple(int(k) for k in self.cumulative_strides[s])
                weight = torch.nn.functional.avg_pool3d(weight_full, kernel, kernel)[0, 0]
                if weight.shape != stage.shape[1:]:
                    size = tuple(stage.shape[1:])
                    weight = torch.nn.functional.interpolate(weight_full, size=size, mode="area")[0, 0]
                total = weight.sum()
                touched = weight > 0
                means = (stage * weight).sum(dim=(1, 2, 3)) / total
                maxima = stage[:, touched].max(dim=1).values
                for c in range(stage.shape[0]):
                    if "mean" in self.parameters.pooling:
                        features[f"deep_stage{s + 1}_ch{c}_mean"] = float(means[c])
                    if "max" in self.parameters.pooling:
                        features[f"deep_stage{s + 1}_ch{c}_max"] = float(maxima[c])
        task.update(1.0, "Deep features done")
        return features


def deep_features(channels, mask: np.ndarray, spacing_kji, parameters: DeepFeatureParameters | None = None,
                  progress=None) -> dict[str, float]:
    """One-shot :meth:`DeepFeatureExtractor.extract` (loads the model each call)."""
    return DeepFeatureExtractor(parameters).extract(channels, mask, spacing_kji, progress)
