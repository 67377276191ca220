"""Registration of another sequence (DWI b0, a DCE frame) to the T2w reference, with quality figures.

Rigid (``Euler3DTransform``) or affine, Mattes mutual information, three resolution levels
(shrink 4, 2, 1; Gaussian smoothing 2, 1, 0 mm), centred initialisation on the image geometry,
regular-step gradient descent. The metric samples a fixed random subset of voxels from a seed,
so the same inputs give the same transform (up to floating-point summation order across
threads, ~1e-12 mm).

SimpleITK's transform maps a FIXED physical point (LPS mm) to the MOVING image's point that
lands there; ``sitk.Resample(moving, fixed, transform)`` puts the moving image on the fixed grid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk

from virtualbiopsy.errors import InvalidValuesError
from virtualbiopsy.progress import as_task
from virtualbiopsy.segmentation.preprocessing import _require, checked_mask, foreground_mask
from virtualbiopsy.segmentation.sitk_progress import execute_with_progress


@dataclass(frozen=True)
class RegistrationParameters:
    """Rigid or affine intensity-based registration (mutual information).

    ``sampling_percentage`` of the fixed voxels, drawn at random from ``seed`` (or on a regular
    grid with ``sampling="regular"``), enter the metric; ``histogram_bins`` for the joint
    histogram; ``shrink_factors`` / ``smoothing_mm`` per resolution level; the optimiser takes
    steps of at most ``max_step_mm`` down to ``min_step_mm`` (physical shift of the image), at
    most ``iterations`` per level.
    """

    transform: str = "rigid"
    histogram_bins: int = 32
    sampling_percentage: float = 0.25
    sampling: str = "random"
    seed: int = 42
    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_mm: tuple[float, ...] = (2.0, 1.0, 0.0)
    iterations: int = 200
    max_step_mm: float = 2.0
    min_step_mm: float = 1e-3

    def __post_init__(self) -> None:
        _require(self.transform in ("rigid", "affine"),
                 f"Transform must be 'rigid' or 'affine', got {self.transform!r}.")
        _require(self.sampling in ("random", "regular"),
                 f"Sampling must be 'random' or 'regular', got {self.sampling!r}.")
        _require(0 < self.sampling_percentage <= 1, "The metric sampling percentage must be in (0, 1].")
        _require(self.histogram_bins >= 4, "Mutual information needs at least 4 histogram bins.")
        _require(len(self.shrink_factors) == len(self.smoothing_mm) >= 1 and min(self.shrink_factors) >= 1,
                 "Give one shrink factor (>= 1) and one smoothing (mm) per resolution level.")
        _require(self.iterations >= 1 and 0 < self.min_step_mm < self.max_step_mm,
                 "Registration needs >= 1 iteration and 0 < min_step_mm < max_step_mm.")


@dataclass(frozen=True)
class RegistrationQuality:
    """Agreement of the fixed and moving images before (as acquired) and after registration.

    ``metric_*``: the Mattes mutual-information metric at full resolution (negative; LOWER is
    better). ``ncc_*``: normalised cross-correlation and ``mi_*``: mutual information (nats,
    32-bin histogram) of the two images inside the fixed mask (HIGHER is better). ``overlap``:
    Dice per label group when label maps were given (see :func:`overlap_quality`).
    """

    metric_before: float
    metric_after: float
    ncc_before: float
    ncc_after: float
    mi_before: float
    mi_after: float
    iterations: int
    stop_condition: str
    overlap: dict = field(default_factory=dict)

    @property
    def improved(self) -> bool:
        return self.ncc_after > self.ncc_before and self.mi_after > self.mi_before

    def to_dict(self) -> dict:
        """JSON-ready (NaN -> None)."""
        return {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
                for key, value in asdict(self).items()}


@dataclass(frozen=True)
class RegistrationResult:
    """What :func:`register_images` found; unpacks as ``transform, resampled, quality``."""

    transform: sitk.Transform  # Euler3DTransform or AffineTransform, fixed (LPS mm) -> moving (LPS mm)
    resampled: sitk.Image  # the moving image on the fixed grid, float32, 0 outside
    quality: RegistrationQuality

    def __iter__(self):
        return iter((self.transform, self.resampled, self.quality))


def _float_image(image: sitk.Image, role: str) -> sitk.Image:
    _require(image.GetDimension() == 3 and image.GetNumberOfComponentsPerPixel() == 1,
             f"The {role} must be a scalar 3D image.")
    image = sitk.Cast(image, sitk.sitkFloat32)
    if not np.isfinite(sitk.GetArrayViewFromImage(image)).all():
        raise InvalidValuesError(f"The {role} contains NaN or infinite voxels; fix them before registration.")
    return image


def _metric_method(params: RegistrationParameters, fixed_mask: sitk.Image | None) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(int(params.histogram_bins))
    if params.sampling == "random":
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(float(params.sampling_percentage), int(params.seed))
    else:
        method.SetMetricSamplingStrategy(method.REGULAR)
        method.SetMetricSamplingPercentage(float(params.sampling_percentage))
    method.SetInterpolator(sitk.sitkLinear)
    if fixed_mask is not None:
        method.SetMetricFixedMask(fixed_mask)
    return method


def _metric(fixed, moving, transform, params, fixed_mask) -> float:
    method = _metric_method(params, fixed_mask)
    method.SetInitialTransform(transform, inPlace=False)
    try:
        return float(method.MetricEvaluate(fixed, moving))
    except RuntimeError:  # too few samples overlap the moving image
        return math.nan


def _mutual_information(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    joint, _, _ = np.histogram2d(a, b, bins=bins)
    joint /= joint.sum()
    pa, pb = joint.sum(axis=1, keepdims=True), joint.sum(axis=0, keepdims=True)
    nonzero = joint > 0
    return float(np.sum(joint[nonzero] * np.log(joint[nonzero] / (pa @ pb)[nonzero])))


def _similarity(fixed_values: np.ndarray, moved: sitk.Image, inside: np.ndarray) -> tuple[float, float]:
    a, b = fixed_values[inside].astype(np.float64), sitk.GetArrayViewFromImage(moved)[inside].astype(np.float64)
    ncc = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else 0.0
    return ncc, _mutual_information(a, b)


def register_images(fixed: sitk.Image, moving: sitk.Image, params: RegistrationParameters = RegistrationParameters(),
                    fixed_mask: sitk.Image | None = None, progress=None, fixed_labels: sitk.Image | None = None,
                    moving_labels: sitk.Image | None = None,
                    label_groups: Mapping[str, Sequence[int]] | None = None) -> RegistrationResult:
    """Register ``moving`` onto ``fixed`` (e.g. DWI b0 onto the T2w); see the module docstring.

    ``fixed_mask`` (0/1 on the fixed grid) restricts the metric and the quality figures; without
    it the figures use the fixed image's Otsu body mask. With ``fixed_labels`` and
    ``moving_labels`` the quality includes the Dice overlap of ``label_groups``.
    """
    task = as_task(progress)
    fixed, moving = _float_image(fixed, "fixed image"), _float_image(moving, "moving image")
    inside = checked_mask(fixed_mask, fixed, "fixed mask")
    mask_image = None
    if inside is not None:
        mask_image = sitk.GetImageFromArray(inside.astype(np.uint8))
        mask_image.CopyInformation(fixed)
    quality_region = inside if inside is not None else sitk.GetArrayViewFromImage(foreground_mask(fixed)) > 0

    kind = sitk.Euler3DTransform() if params.transform == "rigid" else sitk.AffineTransform(3)
    transform = sitk.CenteredTransformInitializer(fixed, moving, kind,
                                                  sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = _metric_method(params, mask_image)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=float(params.max_step_mm), minStep=float(params.min_step_mm),
        numberOfIterations=int(params.iterations), relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([int(f) for f in params.shrink_factors])
    method.SetSmoothingSigmasPerLevel([float(s) for s in params.smoothing_mm])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=True)
    levels, counted = len(params.shrink_factors), [0]

    def fraction() -> float:
        counted[0] += 1
        level = min(method.GetCurrentLevel(), levels - 1)
        return 0.1 + 0.8 * (level + min(method.GetOptimizerIteration() / params.iterations, 1.0)) / levels

    identity = sitk.Transform(3, sitk.sitkIdentity)
    metric_before = _metric(fixed, moving, identity, params, mask_image)
    task.update(0.1, "Registering")
    execute_with_progress(method, task, "Registering", lambda: method.Execute(fixed, moving),
                          event=sitk.sitkIterationEvent, fraction=fraction, stop="registration")
    transform = sitk.Euler3DTransform(transform) if params.transform == "rigid" else sitk.AffineTransform(transform)
    resampled = sitk.Resample(moving, fixed, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    before = sitk.Resample(moving, fixed, identity, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    fixed_values = sitk.GetArrayViewFromImage(fixed)
    ncc_before, mi_before = _similarity(fixed_values, before, quality_region)
    ncc_after, mi_after = _similarity(fixed_values, resampled, quality_region)
    overlap = {}
    if fixed_labels is not None and moving_labels is not None:
        overlap = overlap_quality(fixed_labels, moving_labels, transform, label_groups)
    quality = RegistrationQuality(
        metric_before=metric_before, metric_after=_metric(fixed, moving, transform, params, mask_image),
        ncc_before=ncc_before, ncc_after=ncc_after, mi_before=mi_before, mi_after=mi_after,
        iterations=counted[0], stop_condition=method.GetOptimizerStopConditionDescription(), overlap=overlap)
    task.update(1.0, "Registration done")
    return RegistrationResult(transform, resampled, quality)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.count_nonzero(a & b)) / total if total else math.nan


def overlap_quality(fixed_labels: sitk.Image, moving_labels: sitk.Image, transform: sitk.Transform,
                    groups: Mapping[str, Sequence[int]] | None = None) -> dict[str, dict[str, float]]:
    """Dice of the moving label map (nearest neighbour onto the fixed grid) vs the fixed one.

    ``groups`` maps a name to the label values it unites (e.g. ``{"tumour": (6, 7)}``); default:
    each non-zero value of the fixed label map. Returns ``{name: {"before": d, "after": d}}``,
    before = as acquired (identity), after = with ``transform``.
    """
    fixed_values = sitk.GetArrayFromImage(fixed_labels)
    if groups is None:
        groups = {str(int(v)): (int(v),) for v in np.unique(fixed_values) if v != 0}
    identity = sitk.Transform(3, sitk.sitkIdentity)
    moved = {name: sitk.GetArrayFromImage(sitk.Resample(moving_labels, fixed_labels, t, sitk.sitkNearestNeighbor, 0,
                                                        moving_labels.GetPixelID()))
             for name, t in (("before", identity), ("after", transform))}
    return {name: {when: _dice(np.isin(fixed_values, values), np.isin(moved[when], values)) for when in moved}
            for name, values in groups.items()}


def transform_matrix_ras(transform: sitk.Euler3DTransform | sitk.AffineTransform) -> np.ndarray:
    """4x4 matrix M of a rigid or affine transform in RAS: ``moving_ras = M @ fixed_ras``."""
    matrix = np.array(transform.GetMatrix(), dtype=float).reshape(3, 3)
    centre, translation = np.array(transform.GetCenter()), np.array(transform.GetTranslation())
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = matrix, centre + translation - matrix @ centre
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    return flip @ lps @ flip
