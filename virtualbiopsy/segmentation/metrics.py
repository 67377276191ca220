"""Agreement between an AI tumour mask and the radiologist-corrected mask.

The metrics follow the correction-loop evaluation of Veiga-Canuto et al. (nnU-Net segmentation
of neuroblastoma on T2w MRI): overlap (DSC, Jaccard), error rates normalised by the corrected
volume, surface distances (HD95, mean surface distance, surface Dice), the editing effort
(added path length, Vaassen et al. 2020) and volumes. Both masks are boolean arrays ``[k, j, i]``
on the same voxel grid; ``spacing`` is the voxel size (sx, sy, sz) in mm along (i, j, k).

Definitions (TP, FP, FN counted in voxels; the corrected mask is the reference):

* ``dsc`` = 2 TP / (2 TP + FP + FN); ``jaccard`` = TP / (TP + FP + FN).
* ``fpr`` = FP / (TP + FN) and ``fnr`` = FN / (TP + FN), both divided by the *corrected volume*
  as in the study. This is not the usual false-positive rate FP / (FP + TN): it is the volume the
  AI wrongly added (resp. missed) as a fraction of the true tumour volume, so ``fpr`` can exceed 1.
* Surfaces are the boundary voxels of each mask (the mask minus its 6-connected erosion; voxels
  outside the image count as background, so a mask touching the image edge has a surface there).
  Distances are between voxel centres, in mm, from Euclidean distance transforms with the
  anisotropic spacing. Every surface voxel counts equally (no surface-element areas).
* ``hd95_mm`` = max(P95 of the AI-to-corrected distances, P95 of the corrected-to-AI distances),
  with numpy's linear-interpolation percentile: the robust Hausdorff distance of the
  ``surface-distance`` package and of MONAI's ``compute_hausdorff_distance(percentile=95)``.
* ``msd_mm`` = mean of all distances of both directions pooled (mean symmetric surface distance).
* ``surface_dsc`` (Nikolov et al. 2021) = fraction of both surfaces (voxels pooled) lying within
  ``tolerance_mm`` of the other surface.
* ``added_path_length_mm``: per axial slice k, the pixels of the corrected mask's 2D contour (slice
  mask minus its 4-connected 2D erosion) that are not on the AI mask's 2D contour, summed over
  slices and multiplied by the in-plane pixel size (mean of sx and sy). Counting contour pixels
  approximates the contour length: exact for axis-parallel edges up to one pixel per corner, and
  about 10 % short on diagonal edges (an 8-connected pixel chain steps sqrt(2) pixels per pixel).
  Contours the radiologist only deleted add nothing, as in Vaassen et al.
* Volumes in mL (1 mL = 1000 mm³); ``volume_difference_ml`` = AI − corrected and
  ``volume_difference_percent`` = 100 (AI − corrected) / corrected.

Edge cases: both masks empty raises :class:`EmptyMaskError`. One mask empty gives ``dsc`` =
``jaccard`` = ``surface_dsc`` = 0 and infinite ``hd95_mm`` / ``msd_mm`` (``float('inf')``; Python's
``json`` writes it as ``Infinity``, strict-JSON writers must map it to null). An empty *corrected*
mask leaves ``fpr``, ``fnr`` and ``volume_difference_percent`` undefined (divided by zero): they are
``nan``. Masks of different shapes raise :class:`GeometryMismatchError`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from virtualbiopsy.errors import EmptyMaskError, GeometryMismatchError, ImageDimensionError, InputError

METRIC_NAMES = (
    "dsc",
    "jaccard",
    "fpr",
    "fnr",
    "hd95_mm",
    "msd_mm",
    "surface_dsc",
    "added_path_length_mm",
    "volume_ai_ml",
    "volume_corrected_ml",
    "volume_difference_ml",
    "volume_difference_percent",
)

METRIC_UNITS = {
    "dsc": "fraction",
    "jaccard": "fraction",
    "fpr": "fraction",
    "fnr": "fraction",
    "hd95_mm": "mm",
    "msd_mm": "mm",
    "surface_dsc": "fraction",
    "added_path_length_mm": "mm",
    "volume_ai_ml": "mL",
    "volume_corrected_ml": "mL",
    "volume_difference_ml": "mL",
    "volume_difference_percent": "%",
}

METRIC_WORDS = {  # in words, for reports
    "dsc": "Dice similarity coefficient (DSC)",
    "jaccard": "Jaccard index (intersection over union)",
    "fpr": "false-positive rate (FPR)",
    "fnr": "false-negative rate (FNR)",
    "hd95_mm": "95th-percentile Hausdorff distance (HD95)",
    "msd_mm": "mean symmetric surface distance (MSD)",
    "surface_dsc": "surface Dice (surface DSC)",
    "added_path_length_mm": "added path length (APL)",
    "volume_ai_ml": "AI volume",
    "volume_corrected_ml": "corrected volume",
    "volume_difference_ml": "volume difference",
    "volume_difference_percent": "relative volume difference",
}

METRIC_DESCRIPTIONS = {
    "dsc": "Dice similarity coefficient 2TP/(2TP+FP+FN), 0-1 (1 = identical masks)",
    "jaccard": "Jaccard index TP/(TP+FP+FN), 0-1 (1 = identical masks)",
    "fpr": "false-positive rate FP/(TP+FN): AI volume outside the corrected mask per corrected volume",
    "fnr": "false-negative rate FN/(TP+FN): corrected volume the AI missed per corrected volume, 0-1",
    "hd95_mm": "95th-percentile Hausdorff distance between the surfaces (max of both directions), mm",
    "msd_mm": "mean symmetric surface distance (both directions pooled), mm",
    "surface_dsc": "surface Dice: fraction of both surfaces within the tolerance (mm) of the other, 0-1",
    "added_path_length_mm": "added path length: corrected contour not on the AI contour, summed over axial slices, mm",
    "volume_ai_ml": "volume of the AI mask, mL",
    "volume_corrected_ml": "volume of the corrected mask, mL",
    "volume_difference_ml": "volume difference AI - corrected, mL",
    "volume_difference_percent": "volume difference (AI - corrected) relative to the corrected volume, %",
}

_FACE_3D = ndimage.generate_binary_structure(3, 1)
_FACE_IN_PLANE = ndimage.generate_binary_structure(2, 1)[np.newaxis]  # erodes within each slice k only


def check_spacing(spacing) -> tuple[float, float, float]:
    """Voxel size (sx, sy, sz) in mm as three positive finite floats, or a clear error."""
    values = tuple(float(v) for v in np.ravel(np.asarray(spacing, dtype=float)))
    if len(values) != 3 or not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"The voxel size must be three positive numbers (sx, sy, sz) in mm; got {spacing!r}.")
    return values


def _check_masks(ai, corrected, ai_name: str, corrected_name: str) -> tuple[np.ndarray, np.ndarray]:
    ai, corrected = np.asarray(ai), np.asarray(corrected)
    for array, name in ((ai, ai_name), (corrected, corrected_name)):
        if array.ndim != 3:
            raise ImageDimensionError(f"The {name} must be a 3D mask [k, j, i]; it has {array.ndim} dimensions.")
    if ai.shape != corrected.shape:
        raise GeometryMismatchError(
            f"The {ai_name} ({' x '.join(map(str, ai.shape[::-1]))} voxels) and the {corrected_name} "
            f"({' x '.join(map(str, corrected.shape[::-1]))} voxels) are not on the same grid; resample one "
            "onto the other's image first."
        )
    return ai.astype(bool, copy=False), corrected.astype(bool, copy=False)


def _crop(ai: np.ndarray, corrected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the bounding box of their union, padded with one background voxel."""
    union = ai | corrected
    box = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(union.any(axis=others))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    box = tuple(box)
    return np.pad(ai[box], 1), np.pad(corrected[box], 1)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=_FACE_3D, border_value=0)


def _distances_to(surface: np.ndarray, sampling) -> np.ndarray:
    """Distance (mm) from every voxel to the nearest voxel of ``surface`` (inf where it is empty)."""
    if not surface.any():
        return np.full(surface.shape, np.inf)
    return ndimage.distance_transform_edt(~surface, sampling=sampling)


def surface_distances(ai, corrected, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each AI surface voxel to the corrected surface, and the reverse.

    An empty mask has no surface: its own array is empty and the other one is all ``inf``.
    """
    sx, sy, sz = check_spacing(spacing)
    ai, corrected = _check_masks(ai, corrected, "AI mask", "corrected mask")
    if not (ai.any() or corrected.any()):
        return np.zeros(0), np.zeros(0)
    ai, corrected = _crop(ai, corrected)
    surface_ai, surface_corrected = _surface(ai), _surface(corrected)
    sampling = (sz, sy, sx)
    ai_to_corrected = _distances_to(surface_corrected, sampling)[surface_ai]
    corrected_to_ai = _distances_to(surface_ai, sampling)[surface_corrected]
    return ai_to_corrected, corrected_to_ai


def _contour_2d(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, structure=_FACE_IN_PLANE, border_value=0)


def added_path_length(ai, corrected, spacing) -> float:
    """Added path length in mm (see the module docstring for the pixel-count approximation)."""
    sx, sy, _ = check_spacing(spacing)
    ai, corrected = _check_masks(ai, corrected, "AI mask", "corrected mask")
    if not corrected.any():
        return 0.0
    ai, corrected = _crop(ai, corrected)
    added = _contour_2d(corrected) & ~_contour_2d(ai)
    return float(np.count_nonzero(added)) * (sx + sy) / 2.0


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def compare_masks(
    ai, corrected, spacing, tolerance_mm: float = 1.0, *,
    ai_name: str = "AI mask", corrected_name: str = "corrected mask",
) -> dict[str, float]:
    """Every agreement metric of METRIC_NAMES (in that order) between two masks on one grid.

    ``spacing`` = voxel size (sx, sy, sz) in mm along (i, j, k); ``tolerance_mm`` is the surface
    Dice tolerance. ``ai_name`` / ``corrected_name`` name the inputs in error messages.
    """
    spacing = check_spacing(spacing)
    tolerance_mm = float(tolerance_mm)
    if not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise InputError(f"The surface Dice tolerance must be a distance >= 0 mm; got {tolerance_mm!r}.")
    ai, corrected = _check_masks(ai, corrected, ai_name, corrected_name)
    n_ai, n_corrected = int(np.count_nonzero(ai)), int(np.count_nonzero(corrected))
    if n_ai == 0 and n_corrected == 0:
        raise EmptyMaskError(
            f"Both the {ai_name} and the {corrected_name} are empty (no voxels): there is nothing to compare."
        )
    tp = int(np.count_nonzero(ai & corrected))
    fp, fn = n_ai - tp, n_corrected - tp

    d_ai, d_corrected = surface_distances(ai, corrected, spacing)
    if d_ai.size and d_corrected.size:
        hd95 = float(max(np.percentile(d_ai, 95), np.percentile(d_corrected, 95)))
    else:
        hd95 = math.inf
    pooled = np.concatenate([d_ai, d_corrected])
    msd = float(pooled.mean())
    within = pooled <= tolerance_mm + 1e-9 * max(tolerance_mm, 1.0)  # distances equal to it count as within
    surface_dsc = float(np.count_nonzero(within)) / pooled.size

    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    volume_ai, volume_corrected = n_ai * voxel_ml, n_corrected * voxel_ml
    values = {
        "dsc": 2.0 * tp / (2 * tp + fp + fn),
        "jaccard": tp / (tp + fp + fn),
        "fpr": _ratio(fp, tp + fn),
        "fnr": _ratio(fn, tp + fn),
        "hd95_mm": hd95,
        "msd_mm": msd,
        "surface_dsc": surface_dsc,
        "added_path_length_mm": added_path_length(ai, corrected, spacing),
        "volume_ai_ml": volume_ai,
        "volume_corrected_ml": volume_corrected,
        "volume_difference_ml": volume_ai - volume_corrected,
        "volume_difference_percent": _ratio(100.0 * (volume_ai - volume_corrected), volume_corrected),
    }
    return {name: float(values[name]) for name in METRIC_NAMES}
