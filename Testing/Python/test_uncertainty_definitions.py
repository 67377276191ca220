"""What the uncertainty numbers mean: the uncertain fraction is a share of the tumour (never above 1),
region-based (sigmoid) models get Bernoulli entropy per region, and their labels and segments follow
nnU-Net's regions_class_order."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from virtualbiopsy.segmentation.inference import _uncertainty_maps, region_labels
from virtualbiopsy.segmentation.nnunet_model import model_segments
from virtualbiopsy.segmentation.uncertainty import summarise

IJK_TO_RAS = np.diag([1.0, 1.0, 1.0, 1.0])


def test_uncertain_fraction_is_the_uncertain_share_of_the_tumour_and_never_above_one():
    # one tumour voxel whose whole neighbourhood is uncertain: the old definition (band / tumour) gave 7
    tumour = np.zeros((5, 5, 5), bool)
    tumour[2, 2, 2] = True
    entropy = np.ones((5, 5, 5), np.float32)
    summary = summarise(tumour, entropy, IJK_TO_RAS)
    assert summary.uncertain_fraction == 1.0
    assert summary.uncertain_volume_ml == pytest.approx(7 / 1000)  # the face-connected band's doubt, in mL
    rng = np.random.default_rng(3)
    for _ in range(20):
        tumour = ndimage.binary_dilation(rng.random((12, 16, 16)) > 0.97, iterations=int(rng.integers(0, 3)))
        entropy = rng.random((12, 16, 16)).astype(np.float32)
        summary = summarise(tumour, entropy, IJK_TO_RAS)
        assert 0.0 <= summary.uncertain_fraction <= 1.0
        assert summary.uncertain_fraction == pytest.approx((entropy[tumour] >= 0.5).mean() if tumour.any() else 0.0)


def _bernoulli(p):
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p)) / np.log(2)


def test_region_uncertainty_is_bernoulli_entropy_of_each_region_and_the_largest_over_regions():
    heads = 2
    mean_p = np.array([[0.5, 0.99, 0.9], [0.01, 0.5, 0.2]], np.float32)[:, None, None, :]  # [R, 1, 1, 3]
    passes = np.stack([np.clip(mean_p + d, 0, 1) for d in (-0.05, 0.05)])  # two passes around the mean
    expected_r = _bernoulli(passes).mean(axis=0)
    extra = np.concatenate([passes.mean(axis=0), expected_r * np.log(2)]).astype(np.float32)  # as tiles store it
    predictive, expected, mutual = _uncertainty_maps([extra], heads, regions_class_order=[1, 2])
    want = _bernoulli(mean_p).max(axis=0)
    np.testing.assert_allclose(predictive, want, atol=1e-5)
    np.testing.assert_allclose(expected, expected_r.max(axis=0), atol=1e-5)
    assert predictive[0, 0, 0] == pytest.approx(1.0) and predictive[0, 0, 1] == pytest.approx(1.0)
    assert mutual.min() >= 0.0 and mutual.max() <= 1.0 and mutual.max() > 0
    # softmax over a single region would be 1 everywhere (entropy 0); one region here is still a real map
    one = _uncertainty_maps([np.concatenate([mean_p[:1], _bernoulli(mean_p[:1]) * np.log(2)])], 1, [1])
    np.testing.assert_allclose(one[0], _bernoulli(mean_p[0]), atol=1e-5)
    assert np.all(np.isfinite(one))


def test_fold_disagreement_of_a_region_model_compares_nnunet_label_maps():
    fold_a = np.array([[0.9, 0.9], [0.2, 0.8]], np.float32)[:, None, None, :]  # labels [1, 2]
    fold_b = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)[:, None, None, :]  # labels [1, 2]: same labels
    extras = [np.concatenate([f, np.zeros_like(f)]) for f in (fold_a, fold_b)]
    *_, disagreement = _uncertainty_maps(extras, 2, [1, 2])
    np.testing.assert_array_equal(disagreement[0, 0], [0.0, 0.0])
    fold_c = np.array([[0.1, 0.9], [0.2, 0.1]], np.float32)[:, None, None, :]  # labels [0, 1]
    *_, disagreement = _uncertainty_maps([extras[0], np.concatenate([fold_c, np.zeros_like(fold_c)])], 2, [1, 2])
    assert disagreement[0, 0, 0] == 0.5 and disagreement[0, 0, 1] == 0.5


def test_region_labels_equal_nnunets_label_manager():
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    manager = LabelManager({"background": 0, "tumour": [1, 2], "necrosis": 2}, regions_class_order=[1, 2])
    probabilities = np.random.default_rng(0).random((2, 6, 7, 8)).astype(np.float32)
    np.testing.assert_array_equal(region_labels(probabilities, [1, 2]),
                                  manager.convert_probabilities_to_segmentation(probabilities))


def test_segments_of_a_region_model_are_the_unions_its_regions_mean_the_tumour_first():
    dataset = {"labels": {"background": 0, "necrosis": 2, "tumour": [1, 2]}, "regions_class_order": [2, 1]}
    segments = model_segments(dataset)
    assert [(s.name, s.values, s.channel) for s in segments] == [("tumour", (1, 2), 1), ("necrosis", (2,), 0)]
    labels = {"background": 0, "kidney": 1, "neuroblastoma": 2, "ignore": 3}
    segments = model_segments({"labels": labels})
    assert [(s.name, s.values, s.channel) for s in segments] == [("neuroblastoma", (2,), 2), ("kidney", (1,), 1)]
