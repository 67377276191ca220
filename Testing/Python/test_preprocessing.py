"""Pre-processing (N4, denoising, resampling, normalisation), registration and their MRML wrappers,
on the synthetic phantom study whose true bias field, labels and geometry are known."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from virtualbiopsy.errors import (
    Cancelled,
    EmptyMaskError,
    ImageDimensionError,
    InputError,
    InvalidValuesError,
)
from virtualbiopsy.mrml import arrays, io, sitk_bridge
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import LIVER, TUMOUR_LABELS
from virtualbiopsy.progress import CancelToken, Task
from virtualbiopsy.sample_study import TISSUE_SEGMENTS, geometry_of
from virtualbiopsy.segmentation import preprocessing as pp
from virtualbiopsy.segmentation import registration as rg
from virtualbiopsy.segmentation.preprocess_nodes import ATTRIBUTE, preprocess_volume, register_volume

TUMOUR = {"tumour": TUMOUR_LABELS}


def t2_image(study) -> sitk.Image:
    return sitk_bridge.image_from_array(study.t2w, geometry_of(study.t2_grid))


def rotation_z(degrees: float, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    a = math.radians(degrees)
    matrix = np.eye(4)
    matrix[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
    matrix[:3, 3] = shift
    return matrix


def interior(labels: np.ndarray, value: int, voxels: int = 1) -> np.ndarray:
    return ndimage.binary_erosion(labels == value, iterations=voxels)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (a.sum() + b.sum())


# -- MRML <-> SimpleITK -----------------------------------------------------------------------

@pytest.mark.parametrize("degrees", [0.0, 20.0])
def test_sitk_bridge_round_trip_matches_file_round_trip(context, tmp_path, degrees):
    directions = rotation_z(degrees)[:3, :3] @ np.diag([1.0, -1.0, 1.0])  # oblique and a flipped axis
    grid = Geometry.from_spacing((9, 11, 13), (1.25, 0.8, 3.5), (-20.5, 14.0, 33.0), directions)
    values = np.random.default_rng(3).normal(100.0, 30.0, grid.shape).astype(np.float32)
    node = arrays.add_volume_from_array(context, values, grid, "oblique")

    image = sitk_bridge.image_from_volume(node)
    from_file = sitk.ReadImage(str(io.save_node(node, tmp_path / "oblique.nrrd")))
    for getter in ("GetOrigin", "GetSpacing", "GetDirection"):
        np.testing.assert_allclose(getattr(image, getter)(), getattr(from_file, getter)(), atol=1e-6)
    assert image.GetSize() == from_file.GetSize() == (13, 11, 9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(from_file))

    np.testing.assert_allclose(sitk_bridge.geometry_from_image(from_file).ijk_to_ras, grid.ijk_to_ras, atol=1e-6)
    copy = sitk_bridge.add_volume_from_image(context, image, "copy")
    assert Geometry.from_node(copy).differences(grid, 1e-6) == []
    np.testing.assert_array_equal(arrays.array_from_volume(copy), values)
    arrays.array_from_volume(copy)[0, 0, 0] = -1.0  # voxels are copies, not views
    assert sitk.GetArrayViewFromImage(image)[0, 0, 0] == values[0, 0, 0]


# -- N4 ----------------------------------------------------------------------------------------

def test_n4_flattens_the_liver_and_finds_the_true_bias_field(small_study):
    coarse = small_study(2, t2_spacing=(3.0, 3.0, 4.0))
    image = t2_image(coarse)
    seen = []
    corrected, bias = pp.correct_bias_field(image, pp.N4Parameters(), progress=lambda f, m: seen.append(f))
    liver = interior(coarse.t2_labels, LIVER)
    before, after = coarse.t2w[liver].astype(float), sitk.GetArrayFromImage(corrected)[liver]
    assert after.std() / after.mean() < 0.95 * before.std() / before.mean()
    body = coarse.t2_labels > 0
    r = np.corrcoef(sitk.GetArrayFromImage(bias)[body], coarse.bias_field[body])[0, 1]
    assert r > 0.8
    assert corrected.GetSize() == bias.GetSize() == image.GetSize()
    assert seen[-1] == 1.0 and np.all(np.diff(seen) >= 0)


def test_cancelling_n4_and_curvature_flow_raises_cancelled_quietly(small_study, capsys):
    coarse = small_study(2, t2_spacing=(3.0, 3.0, 4.0))
    image = t2_image(coarse)
    for run in (lambda task: pp.correct_bias_field(image, pp.N4Parameters(convergence_threshold=1e-9), progress=task),
                lambda task: pp.denoise(image, pp.DenoiseParameters(iterations=50), progress=task)):
        token, seen = CancelToken(), []

        def cancel_after_first(fraction, message, token=token, seen=seen):
            seen.append(fraction)
            token.cancel()

        with pytest.raises(Cancelled):
            run(Task(cancel_after_first, token))
        assert len(seen) == 1
    assert "Traceback" not in capsys.readouterr().err


# -- denoising ---------------------------------------------------------------------------------

def test_denoising_lowers_noise_and_keeps_the_mean(small_study):
    coarse = small_study(2, t2_spacing=(3.0, 3.0, 4.0))
    image = t2_image(coarse)
    liver = interior(coarse.t2_labels, LIVER, 2)
    before = coarse.t2w[liver].astype(float)
    after = sitk.GetArrayFromImage(pp.denoise(image, pp.DenoiseParameters()))[liver]
    assert after.std() < 0.8 * before.std()
    assert abs(after.mean() - before.mean()) < 0.02 * before.mean()
    assert pp.denoise(image, pp.DenoiseParameters("none")).GetPixelID() == sitk.sitkFloat32

    # non-local means is slow: a 16 x 16 x 8 block inside the liver
    k, j, i = (int(round(c)) for c in ndimage.center_of_mass(liver))
    block = image[i - 8:i + 8, j - 8:j + 8, k - 4:k + 4]
    inside = (coarse.t2_labels == LIVER)[k - 4:k + 4, j - 8:j + 8, i - 8:i + 8]
    assert inside.mean() > 0.9
    params = pp.DenoiseParameters("patch_based", sample_patches=50, noise_model="gaussian")
    original = sitk.GetArrayFromImage(block)[inside].astype(float)
    smoothed = sitk.GetArrayFromImage(pp.denoise(block, params))[inside]
    assert smoothed.std() < 0.9 * original.std()
    assert abs(smoothed.mean() - original.mean()) < 0.02 * original.mean()


# -- resampling --------------------------------------------------------------------------------

def test_resampling_keeps_extent_labels_and_tumour_volume(small_study):
    coarse = small_study(2, t2_spacing=(3.0, 3.0, 4.0))
    image = t2_image(coarse)
    labels = sitk_bridge.image_from_array(coarse.t2_labels, geometry_of(coarse.t2_grid))
    target = (2.0, 2.5, 2.0)
    resampled = pp.resample_to_spacing(image, pp.ResampleParameters(target, "bspline"))
    relabelled = pp.resample_to_spacing(labels, pp.ResampleParameters(target, "nearest"))
    for out in (resampled, relabelled):
        np.testing.assert_allclose(out.GetSpacing(), target)
        extent_before = np.multiply(image.GetSize(), image.GetSpacing())
        assert np.all(np.abs(np.multiply(out.GetSize(), target) - extent_before) <= np.array(target))
        directions = np.array(image.GetDirection()).reshape(3, 3)
        corner_before = np.array(image.GetOrigin()) - directions @ np.array(image.GetSpacing()) / 2
        corner_after = np.array(out.GetOrigin()) - directions @ np.array(target) / 2
        np.testing.assert_allclose(corner_after, corner_before, atol=1e-6)
    assert resampled.GetPixelID() == sitk.sitkFloat32 and relabelled.GetPixelID() == labels.GetPixelID()
    values = sitk.GetArrayFromImage(relabelled)
    assert set(np.unique(values)) <= set(np.unique(coarse.t2_labels))
    volume = np.isin(values, TUMOUR_LABELS).sum() * np.prod(target) / 1000.0
    assert volume == pytest.approx(coarse.volumes_ml()["tumour"], rel=0.05)

    like = pp.resample_labels_like(labels, resampled)
    assert like.GetSize() == resampled.GetSize()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(like), values)


# -- normalisation -----------------------------------------------------------------------------

def test_normalisation_zscore_percentile_and_refusals(small_study):
    coarse = small_study(2, t2_spacing=(3.0, 3.0, 4.0))
    image = t2_image(coarse)
    liver = pp._mask_like(coarse.t2_labels == LIVER, image)
    zscored, stats = pp.normalise_intensity(image, pp.NormaliseParameters("zscore"), liver)
    inside = sitk.GetArrayFromImage(zscored)[coarse.t2_labels == LIVER]
    assert inside.mean() == pytest.approx(0.0, abs=1e-5) and inside.std() == pytest.approx(1.0, abs=1e-5)
    assert stats["mean"] == pytest.approx(coarse.t2w[coarse.t2_labels == LIVER].mean())

    scaled, _ = pp.normalise_intensity(image, pp.NormaliseParameters("percentile", 1.0, 99.0))
    values = sitk.GetArrayFromImage(scaled)
    assert values.min() == 0.0 and values.max() == 1.0

    background = pp._mask_like(np.zeros(coarse.t2w.shape, bool), image)
    with pytest.raises(EmptyMaskError):
        pp.normalise_intensity(image, pp.NormaliseParameters(), background)
    flat = sitk.Image(image.GetSize(), sitk.sitkFloat32) + 7.0
    flat.CopyInformation(image)
    for method in ("zscore", "percentile"):
        with pytest.raises(InvalidValuesError, match="constant|percentiles"):
            pp.normalise_intensity(flat, pp.NormaliseParameters(method), liver)


def test_parameters_are_validated():
    for make in (lambda: pp.DenoiseParameters("median"), lambda: pp.ResampleParameters((0.0, 1.0, 1.0)),
                 lambda: pp.NormaliseParameters("percentile", 60.0, 10.0), lambda: pp.N4Parameters(shrink_factor=0),
                 lambda: rg.RegistrationParameters(transform="bspline"),
                 lambda: rg.RegistrationParameters(shrink_factors=(4, 2), smoothing_mm=(1.0,))):
        with pytest.raises(InputError):
            make()


def test_pipeline_runs_the_chosen_steps_and_reports_them(small_study):
    coarse = small_study(2, t2_spacing=(3.0, 3.0, 4.0))
    image = t2_image(coarse)
    unchanged, report = pp.run_pipeline(image)
    assert unchanged is image and report["steps"] == []
    pipeline = pp.PreprocessingPipeline(
        n4=pp.N4Parameters(iterations=(20, 20)), denoise=pp.DenoiseParameters(),
        resample=pp.ResampleParameters((2.0, 2.0, 2.0)), normalise=pp.NormaliseParameters())
    seen = []
    mask = pp._mask_like(coarse.t2_labels > 0, image)
    out, report = pp.run_pipeline(image, mask, pipeline, lambda f, m: seen.append(f))
    assert [s["step"] for s in report["steps"]] == ["n4", "denoise", "resample", "normalise"]
    assert all(s["seconds"] >= 0 for s in report["steps"]) and report["mask"] == "given"
    assert json.loads(json.dumps(report))["steps"][0]["parameters"]["iterations"] == [20, 20]
    assert report["output"]["spacing_mm"] == [2.0, 2.0, 2.0] and out.GetSpacing() == (2.0, 2.0, 2.0)
    assert seen[-1] == 1.0 and np.all(np.diff(seen) >= -1e-12)
    _, report = pp.run_pipeline(image, None, pp.PreprocessingPipeline(normalise=pp.NormaliseParameters()))
    assert report["mask"] == "Otsu body mask" and report["steps"][0]["sd"] > 0
    with pytest.raises(InvalidValuesError):
        nan = sitk.Cast(image, sitk.sitkFloat32)
        nan[3, 3, 3] = float("nan")
        pp.run_pipeline(nan, None, pipeline)


# -- registration ------------------------------------------------------------------------------

def moved_b0(study):
    """DWI b0 and a copy acquired 5 degrees rotated about z and shifted by (6, -4, 3) mm (RAS)."""
    grid = geometry_of(study.dwi_grid)
    motion = rotation_z(5.0, (6.0, -4.0, 3.0))
    moved = Geometry(grid.shape, motion @ grid.ijk_to_ras)
    return grid, moved, motion


def test_rigid_registration_recovers_a_known_motion(small_study):
    study = small_study(2)
    grid, moved, motion = moved_b0(study)
    fixed, moving = (sitk_bridge.image_from_array(study.dwi[0], g) for g in (grid, moved))
    labels = [sitk_bridge.image_from_array(study.dwi_labels, g) for g in (grid, moved)]
    result = rg.register_images(fixed, moving, fixed_labels=labels[0], moving_labels=labels[1], label_groups=TUMOUR)
    transform, _, _ = result
    assert transform is result.transform and isinstance(transform, sitk.Euler3DTransform)

    body = np.argwhere(study.dwi_labels > 0)[:, ::-1]
    points = grid.ijk_to_ras @ np.c_[body, np.ones(len(body))].T
    error = np.linalg.norm((rg.transform_matrix_ras(result.transform) @ points - motion @ points)[:3], axis=0)
    assert error.mean() < 1.5
    q = result.quality
    assert q.overlap["tumour"]["before"] < 0.85 < q.overlap["tumour"]["after"]
    assert q.metric_after < q.metric_before and q.ncc_before < q.ncc_after and q.mi_before < q.mi_after
    assert q.improved and json.loads(json.dumps(q.to_dict()))["iterations"] > 0
    resampled = sitk.GetArrayFromImage(result.resampled)
    inside = study.dwi_labels > 0
    assert np.corrcoef(resampled[inside], study.dwi[0][inside])[0, 1] > 0.95

    quick = rg.RegistrationParameters(shrink_factors=(4, 2), smoothing_mm=(2.0, 1.0))
    first, second = (rg.register_images(fixed, moving, quick).transform.GetParameters() for _ in range(2))
    np.testing.assert_allclose(first, second, atol=1e-9)  # seeded sampling: deterministic
    affine = rg.register_images(fixed, moving, rg.RegistrationParameters(
        transform="affine", shrink_factors=(4, 2), smoothing_mm=(2.0, 1.0)))
    assert isinstance(affine.transform, sitk.AffineTransform) and affine.quality.improved


def test_dwi_to_t2_registration_does_not_lose_tumour_overlap(small_study):
    study = small_study(2)
    t2_grid, dwi_grid = geometry_of(study.t2_grid), geometry_of(study.dwi_grid)
    t2, b0 = t2_image(study), sitk_bridge.image_from_array(study.dwi[0], dwi_grid)
    params = rg.RegistrationParameters(sampling_percentage=0.1, shrink_factors=(4, 2), smoothing_mm=(2.0, 1.0))
    result = rg.register_images(
        t2, b0, params, fixed_labels=sitk_bridge.image_from_array(study.t2_labels, t2_grid),
        moving_labels=sitk_bridge.image_from_array(study.dwi_labels, dwi_grid), label_groups=TUMOUR)
    overlap = result.quality.overlap["tumour"]
    assert overlap["after"] >= overlap["before"] > 0.9
    assert result.resampled.GetSize() == t2.GetSize()


# -- MRML wrappers -----------------------------------------------------------------------------

def test_preprocess_volume_adds_a_new_node_and_records_the_steps(context, small_study):
    coarse = small_study(2, t2_spacing=(3.0, 3.0, 4.0))
    grid = geometry_of(coarse.t2_grid)
    t2 = arrays.add_volume_from_array(context, coarse.t2w, grid, "T2w")
    segments = {LIVER: TISSUE_SEGMENTS[LIVER]}
    liver = arrays.add_segmentation_from_labels(context, coarse.t2_labels, grid, segments, "Liver", t2)
    before_ids = context.node_ids()
    pipeline = pp.PreprocessingPipeline(n4=pp.N4Parameters(iterations=(20, 20)), normalise=pp.NormaliseParameters(),
                                        resample=pp.ResampleParameters((3.0, 3.0, 2.0)))
    node = preprocess_volume(context, t2, pipeline, mask_node=liver)
    assert node.GetName() == "T2w preprocessed" and node.GetID() not in before_ids
    np.testing.assert_array_equal(arrays.array_from_volume(t2), coarse.t2w)
    assert Geometry.from_node(t2).differences(grid) == [] and t2.GetAttribute(ATTRIBUTE) is None
    np.testing.assert_allclose(Geometry.from_node(node).spacing, (3.0, 3.0, 2.0))
    report = json.loads(node.GetAttribute(ATTRIBUTE))
    assert [s["step"] for s in report["steps"]] == ["n4", "resample", "normalise"]
    assert report["source"]["id"] == t2.GetID() and report["mask_node"]["name"] == "Liver"
    on_grid = arrays.mask_from_segment(liver, arrays.segment_ids(liver)[0], node)
    assert arrays.array_from_volume(node)[on_grid].mean() == pytest.approx(0.0, abs=0.05)


def test_bad_inputs_leave_the_scene_unchanged(context, small_study):
    coarse = small_study(2, t2_spacing=(3.0, 3.0, 4.0))
    grid = geometry_of(coarse.t2_grid)
    t2 = arrays.add_volume_from_array(context, coarse.t2w, grid, "T2w")
    flat = arrays.add_volume_from_array(context, np.ones((1, 10, 12), np.int16),
                                        Geometry.from_spacing((1, 10, 12)), "single slice")
    with_nan = coarse.t2w.astype(np.float32)
    with_nan[5, 5, 5] = np.nan
    nan = arrays.add_volume_from_array(context, with_nan, grid, "with NaN")
    empty_labels = arrays.add_volume_from_array(context, np.zeros(grid.shape, np.uint8), grid, "empty",
                                                "vtkMRMLLabelMapVolumeNode")
    no_segments = arrays.add_segmentation_from_labels(context, np.zeros(grid.shape, np.uint8), grid,
                                                      TISSUE_SEGMENTS, "no segments", t2)
    pipeline = pp.PreprocessingPipeline.recommended()
    before = context.node_ids()
    cases = [(ImageDimensionError, lambda: preprocess_volume(context, flat, pipeline)),
             (InvalidValuesError, lambda: preprocess_volume(context, nan, pipeline)),
             (EmptyMaskError, lambda: preprocess_volume(context, t2, pipeline, mask_node=empty_labels)),
             (EmptyMaskError, lambda: preprocess_volume(context, t2, pipeline, mask_node=no_segments)),
             (InvalidValuesError, lambda: register_volume(context, t2, nan)),
             (ImageDimensionError, lambda: register_volume(context, flat, t2))]
    for error, call in cases:
        with pytest.raises(error):
            call()
        assert context.node_ids() == before


def test_register_volume_adds_the_resampled_node_and_can_be_cancelled(context, small_study):
    study = small_study(2)
    grid, moved, _ = moved_b0(study)
    fixed = arrays.add_volume_from_array(context, study.dwi[0], grid, "b0")
    moving = arrays.add_volume_from_array(context, study.dwi[0], moved, "b0 moved")
    before = context.node_ids()
    token, seen = CancelToken(), []

    def cancel_mid_way(fraction, message):
        seen.append(fraction)
        if fraction > 0.4:
            token.cancel()

    with pytest.raises(Cancelled):
        register_volume(context, fixed, moving, progress=Task(cancel_mid_way, token))
    assert context.node_ids() == before and 0.4 < max(seen) < 0.9

    quick = rg.RegistrationParameters(shrink_factors=(4, 2), smoothing_mm=(2.0, 1.0))
    node, quality = register_volume(context, fixed, moving, quick)
    assert context.node_ids() - before == {node.GetID()} | {node.GetNthDisplayNodeID(0)}
    assert Geometry.from_node(node).differences(grid) == [] and quality.improved
    np.testing.assert_array_equal(arrays.array_from_volume(moving), study.dwi[0])
    assert Geometry.from_node(moving).differences(moved) == []
    report = json.loads(node.GetAttribute(ATTRIBUTE))
    assert report["moving"]["id"] == moving.GetID() and report["quality"]["ncc_after"] > 0.9
    assert np.array(report["moving_from_fixed_ras"]).shape == (4, 4)
