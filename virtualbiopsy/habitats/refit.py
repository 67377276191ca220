"""Step 3 of Fit-Cluster-Fit: average the raw signal of each habitat and fit it again.

Averaging n voxels' signals before fitting divides the noise by √n while keeping the decay
(every voxel of a homogeneous habitat decays with the same ADC), so the habitat ADC is far less
noisy than any voxel's, and, unlike the mean of voxel ADCs, it is not pulled by the non-linear
log transform of noisy low signals. What averaging does not remove is the Rician noise floor: the
mean magnitude tends to E[M] > S at high b, flattening the decay. With ``noise_floor`` the averaged
signal is fitted with the Rician expected-magnitude model at the per-voxel σ (the mean of n Rician
magnitudes has the same expectation as one), see :mod:`virtualbiopsy.diffusion`.

**Confidence intervals** (``ci_method``):

* ``"bootstrap"`` (default): the habitat's voxels are resampled with replacement
  ``n_bootstrap`` times (seeded), each resample's mean signal is refitted, and the interval is the
  (α/2, 1 − α/2) percentile of the refitted ADCs. It reflects how much the habitat ADC would vary
  with other voxels of the same tissue (noise and heterogeneity), needs no model of the noise,
  and is the default because with four b-values the fit's own residuals have only two degrees of
  freedom.
* ``"t"``: ADC ± t(n_b − 2, 1 − α/2) · SE from the weighted least-squares covariance of the
  averaged signal's fit with its residual variance (needs ≥ 3 distinct b-values). It covers only
  the misfit visible in the averaged curve.

Results are plain ``{column: list}`` tables (ADC in mm²/s) ready for a Slicer table node or a CSV.
"""

from __future__ import annotations

import numpy as np

from virtualbiopsy.diffusion import fit_monoexp, select_b_values
from virtualbiopsy.errors import InputError
from virtualbiopsy.habitats import dce as dce_metrics
from virtualbiopsy.progress import as_task

CI_METHODS = ("bootstrap", "t")
BOOTSTRAP_CHUNK_ELEMENTS = 4_000_000  # resampled signals held at once (memory bound of the bootstrap)


def habitat_means(signals: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean raw signal of each habitat: ``signals[n, voxels]``, ``labels`` 1..k (others ignored) ->
    (means[n, k], voxel counts[k])."""
    labels = np.asarray(labels).ravel()
    counts = np.bincount(np.clip(labels, 0, k + 1), minlength=k + 2)[1: k + 1]
    sums = np.zeros((signals.shape[0], k))
    for h in range(1, k + 1):
        if counts[h - 1]:
            sums[:, h - 1] = signals[:, labels == h].astype(np.float64).sum(1)
    return sums / np.maximum(counts, 1), counts


def _bootstrap_means(values: np.ndarray, n_bootstrap: int, rng: np.random.Generator):
    """Yield (n, chunk) means of resamples (with replacement) of the columns of ``values[n, voxels]``."""
    n = values.shape[1]
    chunk = max(1, min(n_bootstrap, BOOTSTRAP_CHUNK_ELEMENTS // max(n * values.shape[0], 1)))
    done = 0
    while done < n_bootstrap:
        size = min(chunk, n_bootstrap - done)
        index = rng.integers(0, n, size=(size, n))
        yield values[:, index].mean(axis=2)
        done += size


def _percentile_ci(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    finite = samples[np.isfinite(samples)]
    if finite.size < 2:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def refit_habitats(signals: np.ndarray, b_values, labels: np.ndarray, k: int, voxel_adc: np.ndarray | None = None,
                   *, voxel_volume_ml: float = 1.0, min_b: float | None = None, max_b: float | None = None,
                   nonlinear: bool = False, noise_floor: bool = False, noise_sigma: float | None = None,
                   ci_method: str = "bootstrap", n_bootstrap: int = 500, confidence: float = 0.95, seed: int = 0,
                   names: list[str] | None = None, weights=None, progress=None) -> dict:
    """Refit the mean DWI signal of each habitat 1..k; ``signals[n_b, voxels]``, ``labels[voxels]``.

    Returns ``{"table": {column: list}, "mean_signals": [n_b, k], "s0": [k], "adc": [k]}``; table columns:
    habitat, label, voxels, volume_ml, adc, adc_ci_low, adc_ci_high, adc_se (SD of the bootstrap
    ADCs, or the fit's SE with ``"t"``), s0, r2, voxel_mean_adc, voxel_sd_adc, voxel_median_adc.
    ``weights``: volumes combined into each b-value's signal (see :func:`fit_monoexp`).
    """
    task = as_task(progress)
    if ci_method not in CI_METHODS:
        raise InputError(f"Unknown confidence-interval method '{ci_method}'; use 'bootstrap' or 't'.")
    if not 0 < confidence < 1:
        raise InputError(f"The confidence level must be between 0 and 1, got {confidence:g}.")
    signals = np.asarray(signals)
    b = np.asarray(b_values, dtype=float)
    labels = np.asarray(labels).ravel()
    if ci_method == "t" and np.unique(b[select_b_values(b, min_b, max_b)]).size < 3:
        raise InputError("A t-based confidence interval needs at least three distinct b-values (the fit of two has no "
                         "residual); use the bootstrap.")
    fit_options = {"min_b": min_b, "max_b": max_b, "nonlinear": nonlinear, "noise_floor": noise_floor,
                   "noise_sigma": noise_sigma if noise_floor else None, "weights": weights}
    means, counts = habitat_means(signals, labels, k)
    fit = fit_monoexp(means, b, se_floor=False, **fit_options)
    rng = np.random.default_rng(seed)
    names = names or [f"habitat {h}" for h in range(1, k + 1)]
    table: dict[str, list] = {c: [] for c in ("habitat", "label", "voxels", "volume_ml", "adc", "adc_ci_low",
                                              "adc_ci_high", "adc_se", "s0", "r2", "voxel_mean_adc", "voxel_sd_adc",
                                              "voxel_median_adc")}
    for h in task.steps(range(1, k + 1), "Refitting the habitats' mean signals"):
        i = h - 1
        members = labels == h
        adc = float(fit.adc[i]) if fit.valid[i] else float("nan")
        if ci_method == "bootstrap" and counts[i] > 1:
            boot = np.concatenate([fit_monoexp(m, b, se_floor=False, **fit_options).adc
                                   for m in _bootstrap_means(signals[:, members], n_bootstrap, rng)])
            low, high = _percentile_ci(boot, confidence)
            se = float(np.std(boot[np.isfinite(boot)], ddof=1)) if np.isfinite(boot).sum() > 1 else float("nan")
        elif ci_method == "t" and np.isfinite(fit.adc_se[i]) and fit.n_used[i] > 2:
            from scipy.stats import t as student_t

            quantile = float(student_t.ppf(0.5 + confidence / 2, int(fit.n_used[i]) - 2))
            se = float(fit.adc_se[i])
            low, high = adc - quantile * se, adc + quantile * se
        else:
            low = high = se = float("nan")
        voxel = np.asarray(voxel_adc).ravel()[members] if voxel_adc is not None else np.array([])
        table["habitat"].append(names[i])
        table["label"].append(h)
        table["voxels"].append(int(counts[i]))
        table["volume_ml"].append(float(counts[i] * voxel_volume_ml))
        table["adc"].append(adc)
        table["adc_ci_low"].append(low)
        table["adc_ci_high"].append(high)
        table["adc_se"].append(se)
        table["s0"].append(float(fit.s0[i]))
        table["r2"].append(float(fit.r2[i]))
        table["voxel_mean_adc"].append(float(voxel.mean()) if voxel.size else float("nan"))
        table["voxel_sd_adc"].append(float(voxel.std(ddof=1)) if voxel.size > 1 else float("nan"))
        table["voxel_median_adc"].append(float(np.median(voxel)) if voxel.size else float("nan"))
    return {"table": table, "mean_signals": means, "s0": np.asarray(fit.s0, float), "adc": np.asarray(fit.adc, float),
            "b_values_fitted": fit.b_values, "method": fit.method}


def refit_dce_habitats(signals: np.ndarray, times, labels: np.ndarray, k: int, arrival_s: float,
                       voxel_iauc: np.ndarray | None = None, *, window_s: float = dce_metrics.IAUC_WINDOW_S,
                       n_bootstrap: int = 500, confidence: float = 0.95, seed: int = 0, progress=None) -> dict:
    """iAUC (over ``window_s`` from ``arrival_s``), time to peak and wash-in slope of each habitat's
    mean DCE curve; bootstrap percentile CI of the iAUC over voxels as for ADC.

    Returns ``{"table": {column: list}, "mean_curves": [n_t, k]}``; columns: iauc60 (named after the
    window), iauc60_ci_low, iauc60_ci_high, voxel_mean_iauc60, ttp_s, wash_in_per_s, peak_enhancement.
    """
    task = as_task(progress)
    t = dce_metrics.check_times(times, signals.shape[0])
    labels = np.asarray(labels).ravel()
    means, counts = habitat_means(signals, labels, k)
    metrics = dce_metrics.curve_metrics(means, t, np.full(k, arrival_s), window_s)
    name = f"iauc{window_s:g}"
    table: dict[str, list] = {c: [] for c in (name, f"{name}_ci_low", f"{name}_ci_high", f"voxel_mean_{name}",
                                              "ttp_s", "wash_in_per_s", "peak_enhancement")}
    rng = np.random.default_rng(seed + 1)
    for h in task.steps(range(1, k + 1), "Habitat enhancement curves"):
        i = h - 1
        members = labels == h
        if counts[i] > 1 and n_bootstrap > 1:
            boot = np.concatenate([dce_metrics.curve_metrics(m, t, arrival_s, window_s).iauc
                                   for m in _bootstrap_means(signals[:, members], n_bootstrap, rng)])
            low, high = _percentile_ci(boot, confidence)
        else:
            low = high = float("nan")
        voxel = np.asarray(voxel_iauc).ravel()[members] if voxel_iauc is not None else np.array([])
        voxel = voxel[np.isfinite(voxel)]  # NaN: no voxel-wise value (arrival capped)
        table[name].append(float(metrics.iauc[i]))
        table[f"{name}_ci_low"].append(low)
        table[f"{name}_ci_high"].append(high)
        table[f"voxel_mean_{name}"].append(float(voxel.mean()) if voxel.size else float("nan"))
        table["ttp_s"].append(float(metrics.time_to_peak_s[i]))
        table["wash_in_per_s"].append(float(metrics.wash_in_per_s[i]))
        table["peak_enhancement"].append(float(metrics.peak_enhancement[i]))
    return {"table": table, "mean_curves": means}
