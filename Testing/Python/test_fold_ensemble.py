"""A model with two folds: the ensemble, its members count and the fold-disagreement map.

The bundled demo model has one fold. A second fold is made from it here: once as an exact copy
(folds agree everywhere, so disagreement must be zero) and once with its weights perturbed by
seeded noise (folds then disagree, and only where the tumour boundary is ambiguous).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from scipy import ndimage

from virtualbiopsy.segmentation.demo_model import demo_model_path
from virtualbiopsy.segmentation.nnunet_model import CHECKPOINT, inspect_model, load_checkpoint

pytestmark = pytest.mark.slow


def _two_fold_model(target, noise: float):
    """Copy the demo model and add fold_1: fold 0's weights times (1 + noise * N(0, 1)), seeded."""
    import torch

    shutil.copytree(demo_model_path(), target)
    checkpoint = load_checkpoint(target / "fold_0" / CHECKPOINT)
    generator = torch.Generator().manual_seed(5)
    checkpoint["network_weights"] = {
        name: (w * (1 + noise * torch.randn(w.shape, generator=generator)) if w.is_floating_point() else w)
        for name, w in checkpoint["network_weights"].items()
    }
    (target / "fold_1").mkdir()
    torch.save(checkpoint, target / "fold_1" / CHECKPOINT)
    return inspect_model(target)


def _segment(model, study):
    from virtualbiopsy.segmentation.inference import NNUNetSegmenter

    segmenter = NNUNetSegmenter(model, device="cpu", mirroring=False)
    return segmenter, segmenter.predict([study.t2w], tuple(float(s) for s in study.t2_grid.spacing[::-1]))


def test_identical_folds_never_disagree(tmp_path, small_study):
    study = small_study(2003)
    model = _two_fold_model(tmp_path / "model", noise=0.0)
    assert model.folds == [0, 1]
    _, result = _segment(model, study)
    assert result.members == 2  # 1 pass (no mirroring) x 2 folds
    assert result.fold_disagreement is not None
    assert float(result.fold_disagreement.max()) == 0.0
    # A copy of a fold adds no information: every map equals the one-fold model's.
    _, single = _segment(inspect_model(tmp_path / "model", folds=(0,)), study)
    assert single.fold_disagreement is None and single.members == 1
    assert np.array_equal(result.labels, single.labels)
    for name in ("predictive_entropy", "expected_entropy", "mutual_information"):
        ours, theirs = getattr(result, name).astype(np.float32), getattr(single, name).astype(np.float32)
        assert np.max(np.abs(ours - theirs)) < 2e-3, name


def test_perturbed_fold_disagrees_on_the_boundary_and_matches_nnunets_ensemble(tmp_path, small_study):
    study = small_study(2003)
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    model = _two_fold_model(tmp_path / "model", noise=0.5)
    segmenter, result = _segment(model, study)
    disagreement = result.fold_disagreement.astype(np.float32)
    # 0 or 1/2 per network voxel (each of 2 folds agrees or not), interpolated onto the finer input grid.
    assert disagreement.min() >= 0.0 and disagreement.max() <= 0.5 + 1e-3
    assert np.count_nonzero(disagreement >= 0.25) > 0

    tumour = np.isin(study.t2_labels, (6, 7))
    band = ndimage.binary_dilation(tumour, iterations=2) & ~ndimage.binary_erosion(tumour, iterations=2)
    far = ~ndimage.binary_dilation(tumour, iterations=6) & (study.t2_labels != 0)
    assert disagreement[band].mean() > 5 * disagreement[far].mean(), (disagreement[band].mean(),
                                                                      disagreement[far].mean())
    # Where folds disagree, the ensemble is uncertain and the folds carry information (MI > 0).
    disputed = disagreement > 0
    assert result.mutual_information[disputed].astype(np.float32).mean() > \
        10 * result.mutual_information[~disputed].astype(np.float32).mean()

    # The ensemble's labels are nnU-Net's own two-fold ensemble (logits averaged across folds).
    p = segmenter.predictor
    own = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), allow_tqdm=False)
    own.manual_initialization(p.network, p.plans_manager, p.configuration_manager, p.list_of_parameters,
                              p.dataset_json, "nnUNetTrainer", p.allowed_mirroring_axes)
    reference = own.predict_single_npy_array(study.t2w[None].astype(np.float32),
                                             {"spacing": [float(s) for s in study.t2_grid.spacing[::-1]]})
    assert np.mean(reference == result.labels) > 0.9999
