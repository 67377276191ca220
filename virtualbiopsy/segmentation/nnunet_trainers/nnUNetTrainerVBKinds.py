"""The nnU-Net trainer of the tiny test models of every kind (``scripts/train_model_kinds.py``).

nnUNetTrainer with a schedule of seconds, for test models only (not a recipe for real data):

* a few short epochs (``VIRTUALBIOPSY_KINDS_EPOCHS`` x ``VIRTUALBIOPSY_KINDS_ITERATIONS``) with Adam
  (``VIRTUALBIOPSY_KINDS_LR``, default 0.01, nnU-Net's polynomial decay), so the tiny networks find the
  phantom's tumour in that time; half the patches are centred on foreground;
* augmentation reduced to random mirroring (the spatial and intensity transforms cost more CPU time
  than the tiny network itself); the mirror axes, and so the test-time mirroring nnU-Net stores in the
  checkpoint (``inference_allowed_mirroring_axes``), are nnUNetTrainer's;
* no progress plot (matplotlib) and only the final and best checkpoints.

The network, loss, labels / regions, cascade inputs and inference are nnUNetTrainer's. nnU-Net finds this
class through ``nnUNet_extTrainer`` at training and inference time.
"""

import os

import torch
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerVBKinds(nnUNetTrainer):  # noqa: N801 - nnU-Net finds trainers by this naming
    """nnUNetTrainer shortened to a schedule of seconds for the tiny model-kind test models."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cpu")):  # noqa: B008 - nnU-Net's own signature
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("VIRTUALBIOPSY_KINDS_EPOCHS", "4"))
        self.num_iterations_per_epoch = int(os.environ.get("VIRTUALBIOPSY_KINDS_ITERATIONS", "30"))
        self.num_val_iterations_per_epoch = 2
        self.initial_lr = float(os.environ.get("VIRTUALBIOPSY_KINDS_LR", "0.01"))
        self.oversample_foreground_percent = 0.5
        self.save_every = 10**6  # no checkpoint_latest; checkpoint_final (and best) only

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), self.initial_lr, weight_decay=self.weight_decay)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, _, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return rotation, dummy_2d, self.configuration_manager.patch_size, mirror_axes

    @staticmethod
    def get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None):
        rest = nnUNetTrainer.get_validation_transforms(deep_supervision_scales, is_cascaded, foreground_labels,
                                                       regions, ignore_label)
        mirroring = [MirrorTransform(allowed_axes=mirror_axes)] if mirror_axes else []
        return ComposeTransforms(mirroring + list(rest.transforms))

    def on_epoch_end(self):
        plot = self.logger.plot_progress_png
        self.logger.plot_progress_png = lambda *args, **kwargs: None
        try:
            super().on_epoch_end()
        finally:
            self.logger.plot_progress_png = plot
