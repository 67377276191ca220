"""Deep features: ROI-pooled activations of the bundled demo nnU-Net encoder."""

from __future__ import annotations

import re

import numpy as np
import pytest

from virtualbiopsy.errors import EmptyMaskError, GeometryMismatchError, InputError
from virtualbiopsy.logic.radiomics_signature import RadiomicsSignatureMixin
from virtualbiopsy.mrml import arrays
from virtualbiopsy.phantom.tissues import TUMOUR_CORE, TUMOUR_RIM
from virtualbiopsy.signature.deep_features import DeepFeatureExtractor, DeepFeatureParameters

pytestmark = pytest.mark.slow  # loads PyTorch and the demo model (about 5-10 s)


class SignatureLogic(RadiomicsSignatureMixin):
    def __init__(self, context) -> None:
        self.context = context


@pytest.fixture(scope="module")
def extractor():
    return DeepFeatureExtractor(DeepFeatureParameters(device="cpu"))


@pytest.fixture(scope="module")
def study_tumour_spacing(small_study):
    """The coarse-grid study of seed 11, its tumour mask and its voxel spacing (mm, z y x)."""
    study = small_study(11, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0))
    tumour = np.isin(study.t2_labels, (TUMOUR_RIM, TUMOUR_CORE))
    return study, tumour, tuple(float(s) for s in study.t2_grid.spacing[::-1])


def test_names_shapes_and_determinism(extractor, study_tumour_spacing):
    study, tumour, spacing = study_tumour_spacing
    features = extractor.extract(study.t2w, tumour, spacing)
    assert extractor.channels_per_stage == [8, 16, 32, 64]  # the demo model's plans
    assert list(features) == extractor.feature_names and len(features) == 2 * (8 + 16 + 32 + 64)
    assert all(re.fullmatch(r"deep_stage[1-4]_ch\d+_(mean|max)", name) for name in features)
    assert all(np.isfinite(v) for v in features.values())
    for name in features:
        if name.endswith("_mean"):
            assert features[name] <= features[name.replace("_mean", "_max")] + 1e-6
    assert extractor.extract(study.t2w, tumour, spacing) == features  # deterministic


def test_full_resolution_mean_is_the_roi_mean_of_the_stage_maps(extractor, study_tumour_spacing):
    study, tumour, spacing = study_tumour_spacing
    captured = {}
    hook = extractor.encoder.stages[0].register_forward_hook(lambda m, i, out: captured.update(stage=out[0]))
    try:
        features = extractor.extract(study.t2w, tumour, spacing)
    finally:
        hook.remove()
    data, roi = extractor._preprocess([study.t2w], tumour, spacing)
    _, crop_roi = extractor._crop(data, roi)
    maps = captured["stage"].numpy()
    assert maps.shape[1:] == crop_roi.shape
    inside = crop_roi > 0
    assert np.allclose([features[f"deep_stage1_ch{c}_mean"] for c in range(8)], maps[:, inside].mean(axis=1),
                       atol=1e-5)
    assert np.allclose([features[f"deep_stage1_ch{c}_max"] for c in range(8)], maps[:, inside].max(axis=1),
                       atol=1e-6)


def test_features_follow_the_roi(extractor, study_tumour_spacing):
    study, tumour, spacing = study_tumour_spacing
    tumour_features = np.array(list(extractor.extract(study.t2w, tumour, spacing).values()))
    background = np.zeros_like(tumour)
    k, j, i = (s // 2 for s in tumour.shape)
    background[k - 3:k + 3, 2:12, 2:12] = True  # a block at the image edge, away from the tumour
    assert not (background & tumour).any()
    other = np.array(list(extractor.extract(study.t2w, background, spacing).values()))
    assert np.abs(tumour_features - other).max() > 0.1
    eroded = tumour.copy()
    eroded[:, :, : int(np.argwhere(tumour)[:, 2].mean())] = False  # half the tumour
    half = np.array(list(extractor.extract(study.t2w, eroded, spacing).values()))
    assert not np.allclose(half, tumour_features)


def test_extractor_refuses_an_empty_or_off_grid_mask_extra_images_and_unknown_pooling(extractor, study_tumour_spacing):
    study, tumour, spacing = study_tumour_spacing
    with pytest.raises(EmptyMaskError, match="empty"):
        extractor.extract(study.t2w, np.zeros_like(tumour), spacing)
    with pytest.raises(GeometryMismatchError, match="not on one grid"):
        extractor.extract(study.t2w, tumour[:-1], spacing)
    with pytest.raises(InputError, match="expects 1 input image"):
        extractor.extract([study.t2w, study.t2w], tumour, spacing)
    with pytest.raises(InputError, match="Pooling"):
        DeepFeatureExtractor(DeepFeatureParameters(pooling=("median",)))


def test_logic_table_per_segment(context, study_tumour_spacing):
    from virtualbiopsy.mrml.geometry import Geometry

    study, tumour, spacing = study_tumour_spacing
    grid = Geometry.from_spacing(study.t2w.shape, spacing[::-1])
    volume = arrays.add_volume_from_array(context, study.t2w.astype(np.float32), grid, "t2w")
    labels = np.where(np.isin(study.t2_labels, (TUMOUR_RIM,)), 1, np.where(study.t2_labels == TUMOUR_CORE, 2, 0))
    segmentation = arrays.add_segmentation_from_labels(
        context, labels.astype(np.uint8), grid, {1: ("rim", (1, 0, 0)), 2: ("core", (0, 1, 0))}, "seg", volume)
    node = SignatureLogic(context).deep_feature_table(volume, segmentation, DeepFeatureParameters(pooling=("mean",)))
    columns = arrays.table_columns(node)
    assert columns["segment"] == ["rim", "core"] and len(columns) == 1 + 120
    assert columns["deep_stage4_ch0_mean"][0] != columns["deep_stage4_ch0_mean"][1]
