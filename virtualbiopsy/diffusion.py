"""Diffusion-weighted MRI: b-value checks and the voxel-wise monoexponential ADC fit.

S(b) = S0 · exp(-b · ADC), with b in s/mm² and ADC in mm²/s. The fit is weighted log-linear
least squares solved in closed form for all voxels at once (no per-voxel Python loop); the
weights S(b)² make each log-signal count by its inverse variance (var(ln S) ≈ σ²/S²).
Habitat clustering and refitting (Fit-Cluster-Fit) build on this in issue #5.
"""

from __future__ import annotations

import numpy as np

from virtualbiopsy.errors import InputError
from virtualbiopsy.progress import as_task


def parse_b_values(text: str) -> list[float]:
    """``"0, 50, 400, 800"`` -> ``[0.0, 50.0, 400.0, 800.0]`` (s/mm²; commas or semicolons).

    >>> parse_b_values("0; 50,800")
    [0.0, 50.0, 800.0]
    """
    try:
        values = [float(item) for item in text.replace(";", ",").split(",") if item.strip()]
    except ValueError:
        values = []
    if not values:
        raise InputError(f"The b-values '{text}' are not numbers separated by commas, e.g. 0,50,400,800 (s/mm²).")
    return values


def check_b_values(b_values, n_volumes: int) -> np.ndarray:
    """Validate b-values (s/mm²) against the number of DWI volumes; returns them as floats."""
    try:
        b = np.asarray([float(v) for v in b_values], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"b-values must be numbers in s/mm², got {list(b_values)!r}.") from error
    if b.size != n_volumes:
        raise InputError(
            f"{b.size} b-values were given ({', '.join(f'{v:g}' for v in b)}) for {n_volumes} DWI volumes; "
            "give exactly one b-value per volume, in the same order."
        )
    if np.any(~np.isfinite(b)) or np.any(b < 0):
        raise InputError(f"b-values must be finite and >= 0 s/mm²; got {', '.join(f'{v:g}' for v in b)}.")
    if np.unique(b).size < 2:
        raise InputError("At least two distinct b-values are needed to fit an ADC.")
    if b.max() < 50:
        raise InputError(
            f"The largest b-value is {b.max():g} s/mm²; b-values look like they are in other units "
            "(ms/µm² or s/m²?) or the diffusion weighting is missing. Use s/mm²."
        )
    return b


def fit_adc(signals: np.ndarray, b_values, mask: np.ndarray | None = None, progress=None,
            chunk_voxels: int = 1 << 18) -> tuple[np.ndarray, np.ndarray]:
    """Fit ADC (mm²/s) and S0 per voxel from ``signals[n_b, ...]`` by weighted log-linear LSQ.

    Voxels outside ``mask``, or with fewer than two positive signals at distinct b-values, get
    ADC = 0 and S0 = 0. Work is split into chunks so that progress and cancel stay responsive.

    >>> b = np.array([0.0, 500.0, 1000.0])
    >>> s = 1000.0 * np.exp(-b * 1.2e-3)[:, None]
    >>> adc, s0 = fit_adc(s, b)
    >>> round(float(adc[0]) * 1e3, 6), round(float(s0[0]), 3)
    (1.2, 1000.0)
    """
    task = as_task(progress)
    signals = np.asarray(signals)
    b = check_b_values(b_values, signals.shape[0])
    spatial = signals.shape[1:]
    flat = signals.reshape(signals.shape[0], -1)
    selected = np.flatnonzero(mask.ravel()) if mask is not None else np.arange(flat.shape[1])
    adc = np.zeros(flat.shape[1], np.float32)
    s0 = np.zeros(flat.shape[1], np.float32)
    starts = range(0, selected.size, chunk_voxels)
    for start in task.steps(starts, "Fitting ADC", total=len(starts)):
        index = selected[start : start + chunk_voxels]
        s = flat[:, index].astype(np.float64)
        positive = s > 0
        w = np.where(positive, s * s, 0.0)
        y = np.log(np.where(positive, s, 1.0))
        bb = b[:, None]
        sw, sx, sy = w.sum(0), (w * bb).sum(0), (w * y).sum(0)
        sxx, sxy = (w * bb * bb).sum(0), (w * bb * y).sum(0)
        det = sw * sxx - sx * sx
        ok = det > 1e-12 * np.maximum(sw * sxx, 1e-300)
        slope = np.where(ok, (sw * sxy - sx * sy) / np.where(ok, det, 1.0), 0.0)
        intercept = np.where(ok, (sy - slope * sx) / np.where(sw > 0, sw, 1.0), -np.inf)
        adc[index] = np.where(ok, -slope, 0.0)
        s0[index] = np.where(ok, np.exp(intercept), 0.0)
    return adc.reshape(spatial), s0.reshape(spatial)
