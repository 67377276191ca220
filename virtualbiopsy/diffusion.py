"""Diffusion-weighted MRI: b-value checks, noise estimation and the voxel-wise monoexponential fit.

S(b) = S0 · exp(-b · ADC), with b in s/mm² and ADC in mm²/s. Every fit here works on all voxels at
once (numpy arrays ``[n_b, voxels]``, no per-voxel Python loop):

* :func:`fit_adc` / :func:`fit_monoexp` (log-linear): weighted least squares on ln S, solved in
  closed form. The weights S² make each log-signal count by its inverse variance
  (var(ln S) ≈ σ²/S²), so the fit is close to the maximum-likelihood one at moderate SNR.
* Optional non-linear refinement (``nonlinear=True``): Levenberg-Marquardt on the signal itself,
  vectorised over voxels (each voxel's 2x2 normal equations are solved in closed form; written by
  hand because ``scipy.optimize.least_squares`` fits one voxel per call, ~10⁴ times slower here).
* Rician noise floor (``noise_floor=True``): magnitude images are Rician, E[M] > S where the signal
  is low (high b), which flattens the decay and biases ADC low. The fit then models the
  *expected magnitude* E[M](S0·e^(-b·ADC); σ) (closed form with Bessel functions, below) instead of
  the signal, with σ estimated from the data by :func:`estimate_noise_sigma`.

Per voxel the fit reports ADC, S0, the standard error of ADC (from the weighted least-squares
covariance, see :func:`fit_monoexp`), R² (signal domain) and whether the voxel could be fitted.
Habitat clustering and refitting (Fit-Cluster-Fit) live in :mod:`virtualbiopsy.habitats`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from virtualbiopsy.errors import InputError, InvalidValuesError
from virtualbiopsy.progress import as_task

SQRT_HALF_PI = math.sqrt(math.pi / 2.0)
MAX_B_VALUE = 50_000.0
"""Largest plausible b-value (s/mm²): research q-space imaging reaches ~20 000; s/m² gives ~1e9."""
ADC_BOUNDS = (0.0, 5e-3)
"""ADC range (mm²/s) of the non-linear fits: free water at 37 °C is about 3e-3; without a bound a
voxel whose high-b signals sit on the noise floor can drift to any ADC (the Rician model is flat there)."""


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
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise InputError(f"The b-values '{shown}' are not numbers separated by commas, e.g. 0,50,400,800 (s/mm²).")
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
    if b.max() > MAX_B_VALUE:
        raise InputError(
            f"The largest b-value is {b.max():g} s/mm², above any diffusion MRI ({MAX_B_VALUE:g}); b-values look "
            "like they are in other units (s/m²?). Use s/mm²."
        )
    return b


def select_b_values(b_values, min_b: float | None = None, max_b: float | None = None) -> np.ndarray:
    """Indices of the b-values inside ``[min_b, max_b]`` (s/mm²), e.g. ``min_b=200`` to leave out
    the perfusion-weighted low b-values; refuses a subset with fewer than two distinct b-values.

    >>> select_b_values([0, 50, 400, 800], min_b=200).tolist()
    [2, 3]
    """
    b = np.asarray(b_values, dtype=float)
    keep = np.ones(b.size, bool)
    if min_b is not None:
        keep &= b >= float(min_b)
    if max_b is not None:
        keep &= b <= float(max_b)
    if np.unique(b[keep]).size < 2:
        window = f"[{'-' if min_b is None else f'{min_b:g}'}, {'-' if max_b is None else f'{max_b:g}'}] s/mm²"
        raise InputError(
            f"Only {np.unique(b[keep]).size} distinct b-value(s) of {', '.join(f'{v:g}' for v in b)} lie in "
            f"{window}; at least two distinct b-values are needed to fit an ADC. Widen the b-value range."
        )
    return np.flatnonzero(keep)


# -- the Rician expected magnitude --------------------------------------------------------------------------


def rician_mean(signal, sigma: float) -> np.ndarray:
    """E[M] of a Rician magnitude M = |S + n|, complex Gaussian noise of standard deviation ``sigma``
    per channel: σ·√(π/2)·L½(−S²/2σ²), written with exponentially scaled Bessel functions
    (``scipy.special.i0e``/``i1e``) so it is stable at any SNR: with z = S²/4σ²,
    E[M] = σ√(π/2)·[(1 + 2z)·i0e(z) + 2z·i1e(z)]. E[M] → σ√(π/2) for S → 0 and S + σ²/2S at high SNR.

    >>> round(float(rician_mean(0.0, 1.0)), 4), round(float(rician_mean(100.0, 1.0)), 4)
    (1.2533, 100.005)
    """
    from scipy.special import i0e, i1e

    s = np.asarray(signal, dtype=np.float64)
    if sigma <= 0:
        return np.abs(s)
    z = (s * s) / (4.0 * sigma * sigma)
    return sigma * SQRT_HALF_PI * ((1.0 + 2.0 * z) * i0e(z) + 2.0 * z * i1e(z))


def _rician_mean_and_slope(signal: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """E[M](S) and its derivative dE[M]/dS = √(π/2)·(i0e(z) + i1e(z))·S/(2σ), z = S²/4σ².

    (Differentiating the bracket of :func:`rician_mean` in z with I0' = I1 and I1' = I0 − I1/z gives
    dE/dz = σ√(π/2)·(i0e(z) + i1e(z)), and dz/dS = S/2σ².)"""
    from scipy.special import i0e, i1e

    z = (signal * signal) / (4.0 * sigma * sigma)
    a, b = i0e(z), i1e(z)
    mean = sigma * SQRT_HALF_PI * ((1.0 + 2.0 * z) * a + 2.0 * z * b)
    slope = SQRT_HALF_PI * (a + b) * signal / (2.0 * sigma)
    return mean, slope


# -- noise estimation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoiseEstimate:
    """The Rician noise σ (scanner units, per real/imaginary channel) and how it was found."""

    sigma: float
    method: str  # "background", "residual" or "given"
    voxels: int  # voxels (x b-values for "background") it was estimated from
    note: str = ""


MIN_BACKGROUND_VOXELS = 500


def background_mask(image: np.ndarray, margin_voxels: int = 2) -> np.ndarray:
    """Air around the body: voxels below the Otsu threshold of ``image`` (the lowest-b volume), more
    than ``margin_voxels`` from any voxel above it (so partial-volume edges and Gibbs ringing stay out)."""
    import SimpleITK as sitk
    from scipy import ndimage

    values = np.asarray(image, dtype=np.float32)
    if values.max() <= values.min():
        return np.zeros(values.shape, bool)
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.Execute(sitk.GetImageFromArray(values))
    body = values > otsu.GetThreshold()
    if margin_voxels > 0:
        body = ndimage.binary_dilation(body, iterations=int(margin_voxels))
    return ~body


def estimate_noise_sigma(signals: np.ndarray, b_values, mask: np.ndarray | None = None,
                         method: str = "auto", *, min_b: float | None = None,
                         max_b: float | None = None, shells=None) -> NoiseEstimate:
    """Estimate the Rician σ of DWI magnitude images ``signals[n_b, ...]`` from the data itself.

    Only the volumes whose b-value lies in ``[min_b, max_b]`` (the ones fitted, see
    :func:`select_b_values`) count: a volume left out of the fit (e.g. a corrupt or blank one) must not
    change σ. The air itself is still found on the lowest-b volume of all (the best body/air contrast).

    ``"background"``: in air the magnitude is Rayleigh distributed, median = σ·√(2 ln 2). The
    median over the background voxels (:func:`background_mask` of the lowest-b volume) of every
    b-volume, divided by √(2 ln 2), estimates σ; the median (rather than the Rayleigh maximum-likelihood
    √(mean M²/2)) keeps ghosts and stray signal in the air from inflating it. Needs at least
    500 air voxels whose magnitude is not exactly 0 (scanners that zero the background make this
    unusable) and assumes one receive channel or an equivalent single-coil magnitude (multi-coil
    sum-of-squares and parallel imaging make the background non-Rayleigh: use ``"residual"``).

    ``"residual"``: inside ``mask``, the residual sum of squares of each voxel's log-linear fit
    (in signal units) over its n − 2 degrees of freedom is σ²·χ²(n−2)/(n−2) for a correct model at
    high SNR; the median over voxels divided by the χ² median ratio estimates σ² robustly against
    voxels the monoexponential does not describe (partial volume, perfusion). It underestimates σ
    where high-b signals sit on the noise floor and needs three or more distinct b-values.

    ``"auto"``: background if usable, else residual.

    ``shells`` (:class:`virtualbiopsy.diffusion_shells.DwiShells` of these volumes): the background
    is read on the volumes as acquired (air is Rayleigh in each, not in a combined image), the
    residuals on the combined signals (one per b-value, weighted by the volumes in each), where
    the monoexponential holds; σ is then that of one volume.
    """
    signals = np.asarray(signals)
    b_all = np.asarray(b_values, dtype=float)
    if method not in ("auto", "background", "residual"):
        raise InputError(f"Unknown noise-estimation method '{method}'; use auto, background or residual.")
    b_fit = b_all if shells is None else shells.b_values
    fitted = select_b_values(b_fit, min_b, max_b)
    used = fitted if shells is None else np.asarray(shells.volumes_of(fitted), dtype=int)
    b = b_all[used]
    reasons = []
    if method in ("auto", "background"):
        if signals.ndim >= 3:
            air = background_mask(signals[int(np.argmin(b_all))])
            if mask is not None:
                air &= ~np.asarray(mask, bool)
            values = signals[used][:, air].astype(np.float64).ravel()
            zeros = float(np.mean(values == 0)) if values.size else 1.0
            if values.size >= MIN_BACKGROUND_VOXELS * len(b) and zeros < 0.5:
                sigma = float(np.median(values) / math.sqrt(2.0 * math.log(2.0)))
                if sigma > 0:
                    return NoiseEstimate(sigma, "background", int(values.size),
                                         f"median of {int(air.sum())} air voxels x {len(b)} volumes / sqrt(2 ln 2)")
            reasons.append(f"{int(air.sum())} air voxels, {100 * zeros:.0f} % exactly 0")
        else:
            reasons.append("no image (only voxel signals) to find air in")
        if method == "background":
            raise InvalidValuesError(
                "The noise could not be estimated from the background air (" + "; ".join(reasons) + "). Use the "
                "residual estimator or give the noise sigma.")
    distinct = np.unique(b_fit[fitted]).size
    if distinct < 3:
        raise InvalidValuesError(
            f"The noise could not be estimated: the background is unusable ({'; '.join(reasons) or 'not tried'}) "
            f"and the fit residuals need at least three distinct b-values (got {distinct}). Give the noise sigma.")
    flat = signals.reshape(signals.shape[0], -1)
    voxels = np.flatnonzero(np.asarray(mask, bool).ravel()) if mask is not None else np.arange(flat.shape[1])
    if shells is None:
        fit = fit_monoexp(flat[used][:, voxels], b)
    else:
        fit = fit_monoexp(shells.combine(flat[:, voxels])[fitted], b_fit[fitted], weights=shells.averages[fitted])
    dof = fit.n_used - 2
    usable = fit.valid & (dof >= 1)
    if usable.sum() < 10:
        raise InvalidValuesError("The noise could not be estimated: fewer than 10 voxels with a usable fit.")
    from scipy.stats import chi2

    ratios = fit.rss[usable] / dof[usable]
    scale = np.array([chi2.median(d) / d for d in dof[usable]])
    sigma = float(math.sqrt(np.median(ratios / scale)))
    return NoiseEstimate(sigma, "residual", int(usable.sum()), "median residual variance of the voxel fits / "
                         "chi-square median; " + ("; ".join(reasons) if reasons else "requested"))


# -- voxel fits -------------------------------------------------------------------------------------------


@dataclass
class MonoexpFit:
    """Voxel-wise monoexponential fit; arrays have the spatial shape of the input signals.

    ``adc`` in mm²/s, ``s0`` in signal units, ``adc_se`` the standard error of ADC (mm²/s; inf where
    it cannot be estimated), ``r2`` the signal-domain coefficient of determination, ``valid`` where
    the fit exists (≥ 2 positive signals at distinct b-values), ``rss`` the residual sum of squares
    (signal units²), ``n_used`` the number of signals used per voxel.
    """

    adc: np.ndarray
    s0: np.ndarray
    adc_se: np.ndarray
    r2: np.ndarray
    valid: np.ndarray
    rss: np.ndarray
    n_used: np.ndarray
    b_values: np.ndarray
    noise_sigma: float | None = None
    method: str = "log-linear WLS"
    details: dict = field(default_factory=dict)


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
    fit = fit_monoexp(signals, b_values, mask=mask, progress=progress, chunk_voxels=chunk_voxels)
    return fit.adc, fit.s0


def fit_monoexp(signals: np.ndarray, b_values, mask: np.ndarray | None = None, *, min_b: float | None = None,
                max_b: float | None = None, nonlinear: bool = False, noise_floor: bool = False,
                noise_sigma: float | None = None, se_floor: bool = True, weights=None, progress=None,
                chunk_voxels: int = 1 << 17, max_iterations: int = 50) -> MonoexpFit:
    """Monoexponential fit of every voxel of ``signals[n_b, ...]`` (float32 maps, 0 outside ``mask``).

    b-values outside ``[min_b, max_b]`` are left out (e.g. ``min_b=200`` s/mm² against perfusion).
    The log-linear weighted fit always runs; ``nonlinear`` refines it by Levenberg-Marquardt on the
    signals (least squares in signal units, the Gaussian-noise maximum likelihood); ``noise_floor``
    fits the Rician expected magnitude with ``noise_sigma`` (required; implies ``nonlinear``).

    Standard error of ADC: σ̂·√[(JᵀWJ)⁻¹]_ADC,ADC, the usual weighted least-squares covariance.
    σ̂² is the residual variance RSS/(n − 2) (n = signals used); when ``noise_sigma`` is known it is
    max(RSS/(n − 2), σ²): with four b-values the residual variance has only two degrees of freedom
    and is near zero for about one voxel in ten by chance, which would make that voxel look
    falsely precise; the measured noise is the floor of what a fit can claim. Voxels fitted on
    exactly two signals without a known σ have no residual to estimate it from: their SE is NaN
    (undefined; voxels without a fit get inf).
    ``se_floor=False`` uses the residual variance alone (e.g. for averaged signals, whose noise is
    σ/√n rather than σ).

    ``weights`` (one per b-value, default 1): how many volumes were averaged into each signal
    (:attr:`virtualbiopsy.diffusion_shells.DwiShells.averages`); its noise is then σ/√n, so it counts
    n times in both fits, and σ (and the residual variance) stay those of one volume.
    """
    task = as_task(progress)
    signals = np.asarray(signals)
    b_all = check_b_values(b_values, signals.shape[0])
    used = select_b_values(b_all, min_b, max_b)
    b = b_all[used]
    if weights is None:
        weights = np.ones(b_all.size)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != b_all.shape or not np.all(weights > 0):
        raise InputError(f"The fit weights must be one positive number per b-value, got {weights.tolist()}.")
    weights = weights[used]
    if noise_floor:
        if noise_sigma is None or not noise_sigma > 0:
            raise InputError("The noise-floor correction needs the noise sigma (> 0); estimate it from the data first.")
        nonlinear = True
    spatial = signals.shape[1:]
    flat = signals.reshape(signals.shape[0], -1)
    selected = np.flatnonzero(np.asarray(mask, bool).ravel()) if mask is not None else np.arange(flat.shape[1])
    n_total = flat.shape[1]
    out = {name: np.zeros(n_total, np.float32) for name in ("adc", "s0", "adc_se", "r2", "rss")}
    valid = np.zeros(n_total, bool)
    n_used = np.zeros(n_total, np.int16)
    starts = range(0, selected.size, chunk_voxels)
    for start in task.steps(starts, "Fitting ADC", total=len(starts)):
        index = selected[start: start + chunk_voxels]
        s = flat[:, index][used].astype(np.float64)
        chunk = _fit_chunk(s, b, nonlinear, noise_floor, noise_sigma, noise_sigma if se_floor else None,
                           max_iterations, weights)
        for name in out:
            out[name][index] = chunk[name]
        valid[index] = chunk["valid"]
        n_used[index] = chunk["n_used"]
    method = "log-linear WLS" + (" + Levenberg-Marquardt" if nonlinear else "") + (
        " (Rician expected-magnitude model)" if noise_floor else "")
    return MonoexpFit(**{k: v.reshape(spatial) for k, v in out.items() if k != "rss"},
                      valid=valid.reshape(spatial), rss=out["rss"].reshape(spatial),
                      n_used=n_used.reshape(spatial), b_values=b, noise_sigma=noise_sigma, method=method)


def _fit_chunk(s: np.ndarray, b: np.ndarray, nonlinear: bool, noise_floor: bool, sigma: float | None,
               se_sigma: float | None, max_iterations: int, weights: np.ndarray) -> dict:
    """Fit ``s[n_b, voxels]`` (float64); every output is a 1D array over the voxels."""
    positive = s > 0
    w = np.where(positive, s * s * weights[:, None], 0.0)
    y = np.log(np.where(positive, s, 1.0))
    bb = b[:, None]
    sw, sx, sy = w.sum(0), (w * bb).sum(0), (w * y).sum(0)
    sxx, sxy = (w * bb * bb).sum(0), (w * bb * y).sum(0)
    det = sw * sxx - sx * sx
    # two or more positive signals at distinct b-values <=> the weighted b-values have a spread
    ok = det > 1e-12 * np.maximum(sw * sxx, 1e-300)
    slope = np.where(ok, (sw * sxy - sx * sy) / np.where(ok, det, 1.0), 0.0)
    intercept = np.where(ok, (sy - slope * sx) / np.where(sw > 0, sw, 1.0), 0.0)
    adc, s0 = np.where(ok, -slope, 0.0), np.where(ok, np.exp(intercept), 0.0)
    n = positive.sum(0)
    if not nonlinear:
        model = s0 * np.exp(-bb * adc)
        rss = np.where(positive, w * (y - (intercept - bb * adc)) ** 2, 0.0).sum(0)  # ≈ Σ n(S - Ŝ)²
        info = np.where(ok, sw / np.where(ok, det, 1.0), np.inf)  # [(XᵀWX)⁻¹]_slope = sw / det
        se = _standard_error(rss, n, info, se_sigma)
        tss = ((s - s.mean(0)) ** 2).sum(0)
        r2 = np.where(tss > 0, 1.0 - ((s - model) ** 2).sum(0) / np.where(tss > 0, tss, 1.0), 0.0)
        return {"adc": adc, "s0": s0, "adc_se": np.where(ok, se, np.inf), "r2": np.where(ok, r2, 0.0),
                "rss": np.where(ok, rss, 0.0), "valid": ok, "n_used": n}
    return _levenberg_marquardt(s, b, s0, adc, ok, sigma if noise_floor else None, se_sigma, max_iterations,
                                weights[:, None])


def _standard_error(rss, n, info, sigma):
    dof = n - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.where(dof > 0, rss / np.maximum(dof, 1), np.nan if sigma is None else 0.0)
    if sigma is not None:
        variance = np.maximum(variance, sigma * sigma)
    with np.errstate(invalid="ignore"):
        return np.sqrt(variance * info)


def _levenberg_marquardt(s, b, s0, adc, ok, rician_sigma, sigma, max_iterations, wt):
    """Least squares Σ w(S − f)² per voxel (w: the ``weights``), f = S0·e^(−b·ADC) or its Rician expected magnitude.

    Vectorised Levenberg-Marquardt with Marquardt's diagonal scaling: every voxel has its own
    damping λ, accepts a step only if it lowers its RSS, keeps ADC within :data:`ADC_BOUNDS`
    (projected steps) and S0 > 0, and stops when its parameters change by less than 1e-9
    (relative); each iteration works only on the voxels still iterating. Hand-written because it
    solves all voxels' 2x2 systems at once.
    """
    bb = b[:, None]
    p0, p1 = np.where(ok, s0, 1.0), np.clip(np.where(ok, adc, 0.0), *ADC_BOUNDS)

    def model(q0, q1):
        decay = np.exp(-bb * q1)
        a = q0 * decay
        if rician_sigma is None:
            return a, decay, np.ones_like(a)
        mean, slope = _rician_mean_and_slope(a, rician_sigma)
        return mean, decay, slope

    f, decay, slope = model(p0, p1)
    rss = (wt * (s - f) ** 2).sum(0)
    lam = np.full(p0.shape, 1e-3)
    active = np.flatnonzero(ok)
    for _ in range(max_iterations):
        if active.size == 0:
            break
        sa, fa, da, sl = s[:, active], f[:, active], decay[:, active], slope[:, active]
        a0, a1, la = p0[active], p1[active], lam[active]
        j0 = sl * da  # ∂f/∂S0
        j1 = -sl * bb * a0 * da  # ∂f/∂ADC
        r = sa - fa
        a00, a11, a01 = (wt * j0 * j0).sum(0), (wt * j1 * j1).sum(0), (wt * j0 * j1).sum(0)
        g0, g1 = (wt * j0 * r).sum(0), (wt * j1 * r).sum(0)
        d00, d11 = a00 * (1 + la), a11 * (1 + la)
        det = d00 * d11 - a01 * a01
        good = det > 0
        safe = np.where(good, det, 1.0)
        step0 = np.where(good, (d11 * g0 - a01 * g1) / safe, 0.0)
        step1 = np.where(good, (d00 * g1 - a01 * g0) / safe, 0.0)
        q0, q1 = a0 + step0, np.clip(a1 + step1, *ADC_BOUNDS)  # projected step: ADC stays in its bounds
        f_new, decay_new, slope_new = model(np.where(q0 > 0, q0, a0), q1)
        rss_new = (wt * (sa - f_new) ** 2).sum(0)
        accept = good & (q0 > 0) & (rss_new <= rss[active])
        moved = np.abs(q1 - a1)
        converged = accept & (np.abs(step0) <= 1e-9 * np.abs(a0)) & (moved <= 1e-9 * np.abs(a1) + 1e-15)
        take = active[accept]
        p0[take], p1[take], rss[take] = q0[accept], q1[accept], rss_new[accept]
        f[:, take], decay[:, take], slope[:, take] = f_new[:, accept], decay_new[:, accept], slope_new[:, accept]
        lam[active] = np.where(accept, np.maximum(la / 10.0, 1e-12), np.minimum(la * 10.0, 1e12))
        active = active[~converged & (lam[active] < 1e12)]
    j0 = slope * decay
    j1 = -slope * bb * p0 * decay
    a00, a11, a01 = (wt * j0 * j0).sum(0), (wt * j1 * j1).sum(0), (wt * j0 * j1).sum(0)
    det = a00 * a11 - a01 * a01
    info = np.where(ok & (det > 0), a00 / np.where(det > 0, det, 1.0), np.inf)  # [(JᵀJ)⁻¹]_ADC,ADC
    n = np.full(s.shape[1], s.shape[0])  # every signal counts in the signal-domain fit, zeros included
    se = _standard_error(rss, n, info, sigma)
    tss = ((s - s.mean(0)) ** 2).sum(0)
    r2 = np.where(tss > 0, 1.0 - ((s - f) ** 2).sum(0) / np.where(tss > 0, tss, 1.0), 0.0)
    return {"adc": np.where(ok, p1, 0.0), "s0": np.where(ok, p0, 0.0), "adc_se": np.where(ok, se, np.inf),
            "r2": np.where(ok, r2, 0.0), "rss": np.where(ok, rss, 0.0), "valid": ok, "n_used": n}
