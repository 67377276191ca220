"""The nnU-Net trainer of the bundled demo model: a short CPU schedule, nothing else changed.

nnU-Net finds trainers outside its package through the ``nnUNet_extTrainer`` environment
variable, at training AND inference time (the checkpoint names its trainer), so
:mod:`virtualbiopsy.segmentation.nnunet_model` points that variable at this folder.
"""

import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerVBDemo(nnUNetTrainer):  # noqa: N801 - nnU-Net finds trainers by this naming
    """Default nnU-Net training with a schedule a 2-core CPU finishes in about 20 minutes."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cpu")):  # noqa: B008 - nnU-Net's own signature
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = int(os.environ.get("VIRTUALBIOPSY_DEMO_EPOCHS", "60"))
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5
        self.save_every = 10
