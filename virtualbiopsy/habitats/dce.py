"""DCE-MRI enhancement-curve metrics, vectorised over voxels: bolus arrival, iAUC60, time to peak, wash-in.

Definitions (signal S(t) of one voxel or of a habitat's averaged curve; times in s):

* **Bolus arrival** t_a: the linear-quadratic model of Cheong et al. (Phys Med Biol 2003) fitted
  by least squares to the start of the curve, S(t) = B for t < t_a and B + β(t − t_a) + γ(t − t_a)²
  after. The fitted part ends two frames after the first frame whose enhancement reaches half of
  the curve's maximum (long enough to see the upslope, short enough for a quadratic to follow it);
  t_a is searched on a grid of 1/20 of the shortest frame interval, so it is not tied to a frame.
  On the phantom's noise-free curves (5 s frames) it is within 0.75 s of the true arrival where
  the wash-in time constant spans two frames or more (tumour, liver, muscle, spine) and within 2 s
  for the kidneys, which enhance within about one frame.
  By default one arrival is detected on the mean curve of the region (the tumour): the bolus
  reaches the whole lesion at once, and a single voxel's curve, or a barely enhancing habitat's,
  is too noisy to time it (``arrival="voxel"`` fits every voxel anyway). Detected per voxel, the
  search stops at the series end minus the iAUC window; a voxel whose arrival reaches that cap
  (typically one that does not enhance, or enhances too late) has no arrival and no metrics: it is
  marked invalid, with NaN in every map, rather than timed at the cap.
* **Baseline** S_pre: mean of the frames before t_a (the first frame if none).
* **Relative enhancement** E(t) = S(t)/S_pre − 1 (dimensionless).
* **iAUC60** = ∫ E(t) dt over [t_a, t_a + 60 s], in s: trapezoidal rule on the curve that is 0 at
  t_a, passes through the frames after t_a and is linearly interpolated at t_a + 60 s. This is the
  definition of the sample study's truth (virtualbiopsy/phantom/README.md).
* **Time to peak**: time of the frame of maximum E after t_a, minus t_a (s).
* **Wash-in slope**: the steepest frame-to-frame rise of E between the last frame before t_a and the
  peak frame (1/s).

**Against PkModeling** (Slicer's DCE pharmacokinetic module): its "AUC" output integrates the
contrast-agent *concentration* (from a T1 conversion of the signal), by the trapezoidal rule from
its bolus-arrival *frame* (walking back from the frame of steepest central-difference gradient
until the gradient falls below a tenth of it) over an "AUC time interval" of 90 s by default, and divides it
by the same area of the arterial input function (a dimensionless ratio). iAUC60 here integrates the
*relative signal enhancement* (no T1 map, flip angle or AIF needed), over 60 s from a sub-frame
arrival time, un-normalised (unit s). The two agree in shape only where concentration is
proportional to relative enhancement (low doses, short TR); compare values only within one method.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from virtualbiopsy.errors import InputError, InvalidValuesError
from virtualbiopsy.progress import as_task

IAUC_WINDOW_S = 60.0
MIN_FRAMES = 4


def check_times(times, n_frames: int) -> np.ndarray:
    """Validate DCE acquisition times (s): one per frame, finite, strictly increasing."""
    try:
        t = np.asarray([float(v) for v in times], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"DCE times must be numbers in seconds, got {list(times)!r}.") from error
    if t.size != n_frames:
        raise InputError(f"{t.size} acquisition times were given for {n_frames} DCE frames; give one time (s) per "
                         "frame, in order.")
    if not np.all(np.isfinite(t)):
        raise InputError("DCE acquisition times must be finite numbers of seconds.")
    if n_frames < MIN_FRAMES:
        raise InputError(f"A DCE series needs at least {MIN_FRAMES} frames to find the bolus arrival; got {n_frames}.")
    steps = np.diff(t)
    if np.any(steps <= 0):
        i = int(np.argmax(steps <= 0))
        raise InputError(
            f"DCE acquisition times must increase strictly: frame {i + 2} is at {t[i + 1]:g} s, not after frame "
            f"{i + 1} at {t[i]:g} s. Sort the frames by time or fix the times.")
    return t


def parse_times(text: str) -> list[float]:
    """``"0,5,10"`` -> [0.0, 5.0, 10.0]; ``"40x5"`` (frames x interval) -> 0, 5, ..., 195 s.

    >>> parse_times("4x2.5")
    [0.0, 2.5, 5.0, 7.5]
    """
    text = text.strip()
    try:
        if "x" in text.lower() and "," not in text:
            count, step = text.lower().split("x")
            return [i * float(step) for i in range(int(count))]
        values = [float(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise InputError(f"The DCE times '{text}' are not seconds separated by commas (0,5,10,...) or "
                         "FRAMESxINTERVAL (40x5).")
    return values


def _as_curves(signals) -> tuple[np.ndarray, tuple]:
    s = np.asarray(signals, dtype=np.float64)
    spatial = s.shape[1:]
    return s.reshape(s.shape[0], -1), spatial


def arrival_step(times) -> float:
    """Grid step (s) of the arrival search: 1/20 of the shortest frame interval."""
    return float(np.min(np.diff(np.asarray(times, dtype=np.float64)))) / 20.0


def detect_arrival(signals, times, half_fraction: float = 0.5, extra_frames: int = 2,
                   latest: float | None = None) -> np.ndarray:
    """Bolus arrival time (s) of each curve of ``signals[n_t, ...]`` (linear-quadratic model; module doc).

    ``latest`` (s) bounds the search (e.g. the series end minus the iAUC window). Returns an array
    of the curves' spatial shape (a 0-d array for one curve).
    """
    curves, spatial = _as_curves(signals)
    t = check_times(times, curves.shape[0])
    n_t, n = curves.shape
    base = np.median(curves[: min(3, n_t)], axis=0)
    rise = curves - base
    peak = rise.max(0)
    reached = rise >= half_fraction * peak[None, :]
    first = np.where(peak > 0, np.argmax(reached, axis=0), n_t - 1)
    end = np.clip(first + extra_frames, 2, n_t - 1)
    step = arrival_step(t)
    arrival = np.full(n, t[0])
    for last in np.unique(end):
        group = np.flatnonzero(end == last)
        y = curves[: last + 1, group]
        tt = t[: last + 1]
        candidates = np.arange(tt[0], tt[-1] if latest is None else max(min(tt[-1], latest), tt[0] + step), step)
        best_rss = np.full(group.size, np.inf)
        best = np.full(group.size, tt[0])
        for ta in candidates:
            s = np.maximum(tt - ta, 0.0)
            design = np.column_stack([np.ones_like(tt), s, s * s])
            coef, *_ = np.linalg.lstsq(design, y, rcond=None)
            rss = ((design @ coef - y) ** 2).sum(0)
            better = rss < best_rss
            best_rss = np.where(better, rss, best_rss)
            best = np.where(better, ta, best)
        arrival[group] = best
    return arrival.reshape(spatial)


def baseline(curves: np.ndarray, times: np.ndarray, arrival) -> np.ndarray:
    """Mean of each curve's frames before its arrival (the first frame if none); curves [n_t, V]."""
    arrival = np.broadcast_to(np.asarray(arrival, dtype=np.float64), curves.shape[1:])
    before = times[:, None] < arrival[None, :]
    before[0] |= ~before.any(0)
    return (curves * before).sum(0) / before.sum(0)


def iauc(enhancement: np.ndarray, times: np.ndarray, arrival, window_s: float = IAUC_WINDOW_S) -> np.ndarray:
    """∫ E dt over [t_a, t_a + window] (s) of each curve ``enhancement[n_t, V]``: the curve is 0 at t_a,
    linear to the first frame after t_a, then through the frames; trapezoidal rule (exact for it)."""
    e = np.asarray(enhancement, dtype=np.float64)
    n_t, n = e.shape
    ta = np.broadcast_to(np.asarray(arrival, dtype=np.float64), (n,)).copy()
    te = ta + window_s
    if np.any(te > times[-1] + 1e-9):
        raise InputError(
            f"The DCE series ends at {times[-1]:g} s, before arrival + {window_s:g} s (up to {te.max():g} s); "
            f"the iAUC{window_s:g} needs frames up to then. Use a shorter window or a longer series.")
    nxt = np.searchsorted(times, ta, side="right")  # first frame strictly after the arrival
    nxt = np.minimum(nxt, n_t - 1)
    cols = np.arange(n)
    t_next, e_next = times[nxt], e[nxt, cols]
    # cumulative trapezoid through the frames
    cumulative = np.concatenate([np.zeros((1, n)), np.cumsum(0.5 * np.diff(times)[:, None] * (e[1:] + e[:-1]), 0)])
    last = np.clip(np.searchsorted(times, te, side="right") - 1, 0, n_t - 1)  # last frame at or before te
    t_last, e_last = times[last], e[last, cols]
    after = np.minimum(last + 1, n_t - 1)
    span = np.where(times[after] > t_last, times[after] - t_last, 1.0)
    e_end = e_last + (e[after, cols] - e_last) * (te - t_last) / span
    body = (cumulative[last, cols] - cumulative[nxt, cols]) + 0.5 * (te - t_last) * (e_last + e_end)
    first_piece = 0.5 * (t_next - ta) * e_next
    # the whole window before the first frame after the arrival: only the rising line from (t_a, 0)
    short = te <= t_next
    slope = e_next / np.where(t_next > ta, t_next - ta, 1.0)
    return np.where(short, 0.5 * slope * window_s * window_s, first_piece + body)


@dataclass
class CurveMetrics:
    """Per-curve DCE metrics (arrays of the input's spatial shape)."""

    arrival_s: np.ndarray
    baseline: np.ndarray
    iauc: np.ndarray  # s
    time_to_peak_s: np.ndarray
    wash_in_per_s: np.ndarray
    peak_enhancement: np.ndarray
    valid: np.ndarray  # baseline > 0 and the arrival not capped
    window_s: float = IAUC_WINDOW_S
    capped: np.ndarray | None = None  # detected arrival reached the cap (series end − window): NaN metrics


def curve_metrics(signals, times, arrival=None, window_s: float = IAUC_WINDOW_S) -> CurveMetrics:
    """All metrics of the module docstring for each curve of ``signals[n_t, ...]``.

    ``arrival``: None (detect per curve), or a time in s (scalar or per curve) to use as given.
    Curves whose baseline is not positive get 0 everywhere and ``valid`` False. Detected arrivals
    that reach the cap of the search (series end − ``window_s``, within one search step) are not
    arrivals: those curves get NaN in every output (arrival included), ``valid`` and ``capped`` set.
    """
    curves, spatial = _as_curves(signals)
    t = check_times(times, curves.shape[0])
    n = curves.shape[1]
    if arrival is None:
        latest = t[-1] - window_s
        ta = detect_arrival(curves, t, latest=latest).ravel()
        capped = ta >= latest - arrival_step(t) - 1e-9
    else:
        ta = np.broadcast_to(np.asarray(arrival, dtype=np.float64), (n,)).astype(np.float64)
        capped = np.zeros(n, bool)
    s_pre = baseline(curves, t, ta)
    valid = (s_pre > 0) & ~capped
    e = np.where(valid, curves / np.where(valid, s_pre, 1.0) - 1.0, 0.0)
    area = iauc(e, t, ta, window_s)
    after = t[:, None] >= ta[None, :]
    masked = np.where(after, e, -np.inf)
    peak_index = np.argmax(masked, axis=0)
    cols = np.arange(n)
    peak = e[peak_index, cols]
    ttp = t[peak_index] - ta
    slopes = np.diff(e, axis=0) / np.diff(t)[:, None]  # slope of the interval starting at frame i
    start = np.maximum(np.searchsorted(t, ta, side="right") - 1, 0)  # last frame before (or at) the arrival
    idx = np.arange(t.size - 1)[:, None]
    in_rise = (idx >= start[None, :]) & (idx < np.maximum(peak_index, start + 1)[None, :])
    wash_in = np.where(in_rise, slopes, -np.inf).max(0)
    wash_in = np.where(np.isfinite(wash_in), wash_in, 0.0)
    out = [np.where(capped, np.nan, np.where(valid, v, 0.0)).reshape(spatial) for v in (area, ttp, wash_in, peak)]
    return CurveMetrics(np.where(capped, np.nan, ta).reshape(spatial), s_pre.reshape(spatial), *out,
                        valid.reshape(spatial), window_s, capped.reshape(spatial))


@dataclass
class DceMaps:
    """Voxel-wise DCE metrics over a mask, with the arrival used (float32 maps, 0 outside the mask,
    NaN where a voxel's detected arrival reached the search cap)."""

    iauc: np.ndarray
    time_to_peak_s: np.ndarray
    wash_in_per_s: np.ndarray
    peak_enhancement: np.ndarray
    arrival_s: np.ndarray  # per voxel (the region's value everywhere in "region" mode)
    valid: np.ndarray
    region_arrival_s: float | None
    region_metrics: CurveMetrics  # of the region's mean curve
    arrival_mode: str
    window_s: float
    capped: np.ndarray | None = None  # "voxel" mode: arrival reached the search cap (invalid, NaN in the maps)


def dce_maps(signals: np.ndarray, times, mask: np.ndarray, window_s: float = IAUC_WINDOW_S,
             arrival: str | float = "region", progress=None, chunk_voxels: int = 50_000) -> DceMaps:
    """Voxel-wise iAUC, time to peak, wash-in slope and peak enhancement of ``signals[n_t, k, j, i]``.

    ``arrival``: ``"region"`` (one arrival from the mean curve of the voxels in ``mask``), ``"voxel"``
    (detected per voxel) or a time in s. With ``"voxel"``, voxels whose arrival reaches the cap of
    the search (series end − ``window_s``) are invalid and NaN in every map (``capped``).
    """
    task = as_task(progress)
    signals = np.asarray(signals)
    t = check_times(times, signals.shape[0])
    mask = np.asarray(mask, bool)
    if mask.shape != signals.shape[1:]:
        raise InputError(f"The mask ({mask.shape}) is not on the DCE grid ({signals.shape[1:]}).")
    if not mask.any():
        raise InputError("The mask has no voxels on the DCE series.")
    curves = signals[:, mask].astype(np.float64)
    if np.any(curves < 0):
        raise InvalidValuesError(
            f"The DCE series has {int((curves < 0).any(0).sum())} voxels with negative signal inside the mask; "
            "magnitude images are never negative (is it a subtraction or phase series?).")
    mean_curve = curves.mean(1)
    if arrival in ("region", "voxel"):
        # detected without the window bound, so that a bolus arriving too late is refused, not moved earlier
        region_arrival = float(detect_arrival(mean_curve, t))
        if region_arrival + window_s > t[-1] + 1e-9:
            raise InputError(
                f"The bolus reaches the region at about {region_arrival:.1f} s, but the DCE series ends at "
                f"{t[-1]:g} s: "
                f"there are not {window_s:g} s of frames after it for the iAUC{window_s:g}. Use a shorter window, or "
                "give the arrival time (s) if the detection is wrong (e.g. a tumour that barely enhances).")
    else:
        try:
            region_arrival = float(arrival)
        except (TypeError, ValueError) as error:
            raise InputError(f"Arrival must be 'region', 'voxel' or a time in s, got {arrival!r}.") from error
    region = curve_metrics(mean_curve, t, region_arrival, window_s)
    per_voxel_arrival: float | None = None if arrival == "voxel" else region_arrival
    n = curves.shape[1]
    maps = {name: np.zeros(n) for name in ("iauc", "ttp", "wash", "peak", "arrival")}
    valid, capped = np.zeros(n, bool), np.zeros(n, bool)
    starts = range(0, n, chunk_voxels)
    for start in task.steps(starts, "DCE curve metrics", total=len(starts)):
        part = slice(start, start + chunk_voxels)
        m = curve_metrics(curves[:, part], t, per_voxel_arrival, window_s)
        maps["iauc"][part], maps["ttp"][part], maps["wash"][part] = m.iauc, m.time_to_peak_s, m.wash_in_per_s
        maps["peak"][part], maps["arrival"][part], valid[part] = m.peak_enhancement, m.arrival_s, m.valid
        capped[part] = m.capped
    if not valid.any():
        if capped.any():
            raise InvalidValuesError(
                f"No DCE voxel in the mask has a usable bolus arrival: {int(capped.sum())} of {n} voxels reach the "
                f"search cap (series end {t[-1]:g} s minus the {window_s:g} s window) and the others have a zero "
                "pre-contrast signal. Use the region's arrival (the default) or a shorter window.")
        raise InvalidValuesError("Every DCE voxel in the mask has a zero pre-contrast signal; is the mask on the "
                                 "DCE series?")

    def spatial(values, dtype=np.float32):
        out = np.zeros(mask.shape, dtype)
        out[mask] = values
        return out

    return DceMaps(spatial(maps["iauc"]), spatial(maps["ttp"]), spatial(maps["wash"]), spatial(maps["peak"]),
                   spatial(maps["arrival"]), spatial(valid, bool),
                   float(region.arrival_s) if arrival != "voxel" else None, region, str(arrival), window_s,
                   spatial(capped, bool))
