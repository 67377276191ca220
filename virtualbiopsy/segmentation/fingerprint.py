"""Is an input image like the model's training data? Warnings (never refusals) from nnU-Net's fingerprint.

nnU-Net stores what it saw in training in ``plans.json``: the median voxel size
(``original_median_spacing_after_transp``, mm, in the network's axis order) and per channel the
intensity statistics of the labelled foreground (``foreground_intensity_properties_per_channel``:
mean, std, percentiles 0.5 and 99.5, ...), with the channel names (``dataset.json``, e.g. ``T2`` or
``CT``) and how each channel is normalised. A model still runs on an image unlike these, and
returns a confident-looking answer (the demo model gave "tumour 0.8 mL, 0 % uncertain" on a CT).
:func:`input_warnings` says, in one line per finding, when an input is outside them:

- voxel size: more than :data:`SPACING_FACTOR` times finer or coarser than the training median
  along any axis (nnU-Net resamples, but the anatomy it learned was seen at that resolution);
- intensities, by normalisation. ``CTNormalization`` and ``NoNormalization`` feed absolute values
  (Hounsfield units) to the network, so the image's median inside the body (CT: voxels above
  -500 HU; else the whole image) must lie within the training foreground's 0.5-99.5 percentile
  range. ``ZScoreNormalization`` and the rescaling schemes normalise each image by its own
  statistics, so a scanner's different intensity scale is expected and harmless and is not
  compared; what is compared is the sign: more than :data:`NEGATIVE_FRACTION` of the voxels below
  zero where the training foreground was never negative (a CT in HU, or a processed map, given to
  an MR model).

Not compared: the modality stored in an input's header (the library receives voxel arrays), and
anything about anatomy or contrast beyond these statistics.
"""

from __future__ import annotations

import math

import numpy as np

from virtualbiopsy.segmentation.network_allowlist import resolve_configuration

SPACING_FACTOR = 3.0
NEGATIVE_FRACTION = 0.05
_SAMPLE = 2_000_000  # voxels: percentiles of a larger image are taken on an evenly strided sample


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def _axes(values) -> str:
    return " x ".join(f"{v:g}" for v in values)


def spacing_warning(model, spacing_kji, name: str) -> str | None:
    """One line when the voxel size differs from the model's median training voxel size by more than
    :data:`SPACING_FACTOR` along an axis; None otherwise (or when the plans do not say)."""
    plans = model.plans
    order = plans.get("transpose_forward", [0, 1, 2])
    median = plans.get("original_median_spacing_after_transp")
    if not isinstance(median, list) or len(median) != len(spacing_kji) or sorted(order) != list(range(len(median))):
        return None
    median_kji = [0.0] * len(median)
    for position, axis in enumerate(order):
        median_kji[axis] = _number(median[position]) or 0.0
    if min(median_kji) <= 0 or min(spacing_kji) <= 0:
        return None
    ratios = [s / m for s, m in zip(spacing_kji, median_kji)]
    worst = max(range(len(ratios)), key=lambda i: max(ratios[i], 1 / ratios[i]))
    factor = max(ratios[worst], 1 / ratios[worst])
    if factor <= SPACING_FACTOR:
        return None
    finer = "finer" if ratios[worst] < 1 else "coarser"
    return (f"'{name}': voxel size {_axes(spacing_kji)} mm (k x j x i) is {factor:.1f}x {finer} along "
            f"{'kji'[worst]} than the model's median training voxel size {_axes(median_kji)} mm; the model has "
            "not seen images like this, check the result")


def _sample(array: np.ndarray) -> np.ndarray:
    flat = np.asarray(array).ravel()
    return flat[:: max(1, flat.size // _SAMPLE)].astype(np.float64)


def intensity_warning(model, channel: int, values: np.ndarray, name: str) -> str | None:
    """One line when channel ``channel``'s intensities are outside what the model was trained on (see the
    module docstring for the rule per normalisation); None otherwise or when the plans do not say."""
    properties = (model.plans.get("foreground_intensity_properties_per_channel")
                  or model.plans.get("foreground_intensity_properties_by_modality") or {})
    props = properties.get(str(channel)) if isinstance(properties, dict) else None
    if not isinstance(props, dict):
        return None
    low, high = _number(props.get("percentile_00_5")), _number(props.get("percentile_99_5"))
    if low is None or high is None:
        return None
    configuration = resolve_configuration(model.plans, model.configuration, "plans.json")  # inherits_from too
    schemes = configuration.get("normalization_schemes") or []
    scheme = schemes[channel] if channel < len(schemes) else "ZScoreNormalization"
    channel_name = model.channel_names[channel] if channel < len(model.channel_names) else f"channel {channel}"
    sample = _sample(values)
    if scheme in ("CTNormalization", "NoNormalization"):
        body = sample[sample > -500] if scheme == "CTNormalization" else sample
        if body.size == 0:
            return (f"'{name}': intensities unlike the training data: every voxel is below -500, while the model's "
                    f"{channel_name} training foreground ranges {low:g} to {high:g}; check that this is the right "
                    "series")
        median = float(np.median(body))
        if low <= median <= high:
            return None
        where = "inside the body (voxels above -500)" if scheme == "CTNormalization" else "of the image"
        return (f"'{name}': intensities unlike the training data: the median {where} is {median:.4g}, outside the "
                f"model's {channel_name} training foreground range {low:g} to {high:g} (0.5-99.5th percentile); check "
                "the modality and units of this series")
    if low < 0:
        return None  # the training foreground itself had negative values: the sign says nothing
    scale = float(np.percentile(np.abs(sample), 99.5))
    negative = float(np.mean(sample < -0.05 * scale)) if scale > 0 else 0.0
    if negative <= NEGATIVE_FRACTION:
        return None
    return (f"'{name}': intensities unlike the training data: {100 * negative:.0f} % of the voxels are below zero "
            f"(0.5th percentile {np.percentile(sample, 0.5):.4g}), as in a CT in Hounsfield units, while the model's "
            f"{channel_name} training foreground was never negative ({low:g} to {high:g}); check that this is the "
            "right series")


def input_warnings(model, channels, spacing_kji, names=None) -> list[str]:
    """Every way the inputs (arrays [k, j, i] in the model's channel order, voxel size in mm along k, j, i)
    differ from the model's training fingerprint, one line each; [] when none is found."""
    names = list(names or [f"input {i + 1}" for i in range(len(channels))])
    warnings = []
    spacing = spacing_warning(model, [float(s) for s in spacing_kji], names[0])
    if spacing is not None:
        warnings.append(spacing)
    for index, (values, name) in enumerate(zip(channels, names)):
        found = intensity_warning(model, index, values, name)
        if found is not None:
            warnings.append(found)
    return warnings
