"""Fit-Cluster-Fit on arrays: voxel fit -> exclude uncertain voxels -> cluster -> refit per habitat.

:func:`run_fit_cluster_fit` is what the FitClusterFit logic, the command line and the validation
script all run; it works on numpy arrays (no scene), so it is tested directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from virtualbiopsy.diffusion import (
    MonoexpFit,
    NoiseEstimate,
    check_b_values,
    estimate_noise_sigma,
    fit_monoexp,
    select_b_values,
)
from virtualbiopsy.diffusion_shells import DwiShells, plan_shells
from virtualbiopsy.errors import EmptyMaskError, InputError, InvalidValuesError
from virtualbiopsy.habitats import clustering, refit
from virtualbiopsy.habitats import dce as dce_module
from virtualbiopsy.progress import as_task

EXCLUDED_LABEL = 255  # label of tumour voxels left out of the clustering (uncertain or unfitted)
FEATURES = ("adc", "s0", "iauc60", "wash_in", "ttp")
MIN_VOXELS = 10


@dataclass
class FitClusterFitParameters:
    """Everything Fit-Cluster-Fit can be told (units: b in s/mm², ADC and its SE in mm²/s).

    ``erode_voxels``: the tumour's outer shell this many voxels thick is fitted (maps) but not
    clustered: its voxels mix tumour with neighbouring tissue (partial volume), form a continuum of
    ADCs between the two that the mixture model splits into extra habitats, and such a split cuts
    through the noise distribution of the pure tissue and biases its habitat ADC (on the sample
    study, −5 % for the tumour rim without erosion, −0.4 % with one voxel). 0 keeps every voxel.
    Voxel fit: ``min_b``/``max_b`` select b-values; ``nonlinear`` adds Levenberg-Marquardt
    refinement. Rician noise floor: ``noise_floor`` refits each habitat's mean signal with the
    Rician expected magnitude, ``voxel_noise_floor`` does so for every voxel (maps and clustering
    features), both with σ = ``noise_sigma`` or, if None, estimated from the data by
    ``noise_method`` (auto, background, residual). The correction is well posed on averaged signals;
    per voxel at low SNR (≲ 10) the two-parameter Rician fit of four noisy signals is unstable (ADCs
    pile up at the bounds of :data:`virtualbiopsy.diffusion.ADC_BOUNDS`), and clustering on such fits
    makes spurious habitats, hence two switches.
    Exclusion: ADC SE above the ``threshold``-th percentile (``threshold_kind`` "percentile") or
    above ``threshold`` mm²/s ("absolute"). Clustering: ``method`` gmm|kmeans on ``features``,
    ``k`` habitats or None to choose in 1..``k_max`` (BIC / silhouette), habitats of at least
    ``min_habitat_voxels``. Refit: ``ci_method`` bootstrap|t, ``n_bootstrap``, ``confidence``.
    ``seed`` fixes the clustering and the bootstrap.
    DWI volumes: ``repeats_are_averages`` says that repeated non-zero b-values without gradient
    directions are repeats of one direction, to be averaged (otherwise they are refused; with
    directions they are combined into the trace): :mod:`virtualbiopsy.diffusion_shells`.
    """

    min_b: float | None = None
    max_b: float | None = None
    nonlinear: bool = False
    noise_floor: bool = False
    voxel_noise_floor: bool = False
    noise_sigma: float | None = None
    noise_method: str = "auto"
    threshold_kind: str = "percentile"
    threshold: float = 90.0
    method: str = "gmm"
    k: int | None = None
    k_max: int = 4
    features: tuple[str, ...] = ("adc",)
    min_habitat_voxels: int = 20
    ci_method: str = "bootstrap"
    n_bootstrap: int = 500
    confidence: float = 0.95
    seed: int = 0
    erode_voxels: int = 1
    repeats_are_averages: bool = False

    def validate(self, with_dce: bool = False) -> None:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown or not self.features:
            raise InputError(f"Unknown clustering feature(s) {', '.join(unknown) or '(none)'}; choose from "
                             f"{', '.join(FEATURES)}.")
        needs_dce = [f for f in self.features if f in ("iauc60", "wash_in", "ttp")]
        if needs_dce and not with_dce:
            raise InputError(f"Clustering on {', '.join(needs_dce)} needs a DCE series with its times.")
        if self.k is not None and self.k < 1:
            raise InputError(f"The number of habitats must be >= 1, got {self.k}.")
        if self.n_bootstrap < 1 and self.ci_method == "bootstrap":
            raise InputError("The bootstrap needs at least one resample (n_bootstrap >= 1).")
        if self.erode_voxels < 0:
            raise InputError(f"The erosion must be >= 0 voxels, got {self.erode_voxels}.")
        if self.noise_sigma is not None and not self.noise_sigma > 0:
            raise InputError(f"The noise sigma must be > 0 (signal units), got {self.noise_sigma:g}.")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["features"] = list(self.features)
        return out


@dataclass
class DceParameters:
    """DCE metrics: iAUC over ``window_s`` s after the arrival, found per ``arrival`` ("region": once on
    the tumour's mean curve; "voxel": per voxel; or a time in s)."""

    window_s: float = dce_module.IAUC_WINDOW_S
    arrival: str | float = "region"


@dataclass
class FitClusterFitResult:
    """What :func:`run_fit_cluster_fit` found; ``labels`` is on the input grid (0 outside the mask,
    1..k habitats, :data:`EXCLUDED_LABEL` excluded voxels)."""

    voxel_fit: MonoexpFit
    noise: NoiseEstimate | None
    exclusion: clustering.Exclusion
    clustering: clustering.Clustering
    labels: np.ndarray
    table: dict
    mean_signals: np.ndarray  # [n_b, k]
    habitat_s0: np.ndarray
    habitat_adc: np.ndarray
    b_values: np.ndarray
    summary: dict = field(default_factory=dict)
    dce: dce_module.DceMaps | None = None
    dce_mean_curves: np.ndarray | None = None
    dce_times: np.ndarray | None = None
    shells: DwiShells | None = None  # how the volumes became one signal per b-value (mean_signals' rows)

    @property
    def k(self) -> int:
        return self.clustering.k


def check_signals(signals: np.ndarray, mask: np.ndarray, what: str = "DWI", b_values=None,
                  used=None) -> None:
    """Refuse negative magnitudes, masks on zero signal, and volumes that are zero in much of the tumour.

    ``used``: indices of the volumes that will be fitted (default all); ``b_values`` only name them in
    messages. A fitted volume with more than 5 % of the tumour at zero (a missing or blanked volume)
    is refused: the fit would silently leave it out of those voxels."""
    inside = signals[:, mask]
    negative = int((inside < 0).any(0).sum())
    if negative:
        raise InvalidValuesError(
            f"The {what} series has {negative} voxels with negative signal inside the tumour mask; magnitude images "
            "are never negative (is it a phase, subtraction or already log-transformed image?).")
    zero = np.mean(inside <= 0, axis=1)
    if zero[0] > 0.05:
        raise InvalidValuesError(
            f"{100 * zero[0]:.0f} % of the tumour-mask voxels have zero signal in the first {what} volume; is the "
            "mask on this series, and is the background-masked image the right one?")
    for i in range(signals.shape[0]) if used is None else used:
        if zero[i] > 0.05:
            name = f"volume {i + 1}" + (f" (b = {float(b_values[i]):g} s/mm²)" if b_values is not None else "")
            raise InvalidValuesError(
                f"{100 * zero[i]:.0f} % of the tumour-mask voxels have zero signal in {what} {name}; a magnitude "
                "image is not zero inside tissue (a missing or blanked volume?). Fix the series or leave that "
                "b-value out with the b-value range.")


def check_decay(fit: MonoexpFit) -> None:
    """Refuse a fit in which the signal rises with b in most voxels (b-values not in the volumes' order)."""
    adc = fit.adc[fit.valid]
    if adc.size and float(np.median(adc)) < 0:
        raise InvalidValuesError(
            f"The signal rises with b in most tumour voxels (median ADC {float(np.median(adc)) * 1e3:.3f} ×10⁻³ "
            f"mm²/s with b = {', '.join(f'{v:g}' for v in fit.b_values)} s/mm²): are the b-values given in the "
            "order of the DWI volumes?")


def dwi_shells(signals: np.ndarray, b_values, mask: np.ndarray, p: FitClusterFitParameters,
               b_vectors=None) -> tuple[np.ndarray, DwiShells]:
    """Check the DWI volumes' b-values (s/mm², one per volume), directions and signals in ``mask``, and
    group the volumes into shells (:func:`virtualbiopsy.diffusion_shells.plan_shells`): (b, shells)."""
    b = check_b_values(b_values, signals.shape[0])
    shells = plan_shells(b, b_vectors, p.repeats_are_averages)
    if mask.shape != signals.shape[1:]:
        raise InputError(f"The mask {mask.shape} is not on the DWI grid {signals.shape[1:]}.")
    fitted = select_b_values(shells.b_values, p.min_b, p.max_b)
    check_signals(signals, mask, "DWI", b, shells.volumes_of(fitted))
    return b, shells


def fit_voxels(signals: np.ndarray, b: np.ndarray, shells: DwiShells, mask: np.ndarray, p: FitClusterFitParameters,
               progress=None) -> tuple[NoiseEstimate | None, np.ndarray, MonoexpFit]:
    """Noise, the combined signals ``[n_shells, voxels of mask]`` and their voxel fit (:func:`fit_monoexp`)."""
    task = as_task(progress)
    task.update(0.0, "Estimating the noise")
    noise = noise_estimate(signals, b, mask, p, shells)
    voxels = shells.combine(signals[:, mask])
    fit = fit_monoexp(voxels, shells.b_values, min_b=p.min_b, max_b=p.max_b, nonlinear=p.nonlinear,
                      noise_floor=p.voxel_noise_floor, noise_sigma=None if noise is None else noise.sigma,
                      weights=shells.averages, progress=task.sub(0.1, 1.0))
    check_decay(fit)
    return noise, voxels, fit


def se_undefined(noise: NoiseEstimate | None, fit: MonoexpFit) -> str:
    """Why the voxels' ADC SE cannot be known ('' if it can): two b-values leave no residual, and no σ."""
    distinct = np.unique(fit.b_values).size
    if noise is not None or distinct > 2:
        return ""
    return f"{distinct} b-values leave no residual and the noise sigma is unknown"


def run_fit_cluster_fit(signals: np.ndarray, b_values, mask: np.ndarray,
                        parameters: FitClusterFitParameters | None = None, *, b_vectors=None,
                        voxel_volume_ml: float = 1.0, dce_signals: np.ndarray | None = None, dce_times=None,
                        dce_parameters: DceParameters | None = None, progress=None) -> FitClusterFitResult:
    """Fit-Cluster-Fit of DWI ``signals[n_volumes, k, j, i]`` (b-values in s/mm², optional gradient
    directions ``b_vectors[n_volumes, 3]``) inside ``mask[k, j, i]``, optionally with a DCE series on the
    same grid for per-habitat iAUC60. Volumes of one b-value are first combined (b = 0 and repeats
    averaged, directions into the trace; :mod:`virtualbiopsy.diffusion_shells`)."""
    task = as_task(progress)
    p = parameters or FitClusterFitParameters()
    d = dce_parameters or DceParameters()
    with_dce = dce_signals is not None
    p.validate(with_dce)
    signals = np.asarray(signals)
    mask = np.asarray(mask, bool)
    if mask.shape == signals.shape[1:] and mask.sum() < MIN_VOXELS:
        raise EmptyMaskError(f"The tumour mask has {int(mask.sum())} voxels on the DWI grid; Fit-Cluster-Fit needs at "
                             f"least {MIN_VOXELS}.")
    b, shells = dwi_shells(signals, b_values, mask, p, b_vectors)
    if with_dce and np.asarray(dce_signals).shape[1:] != signals.shape[1:]:
        raise InputError(f"The DCE series {np.asarray(dce_signals).shape[1:]} is not on the DWI grid "
                         f"{signals.shape[1:]}.")

    noise, voxels, fit = fit_voxels(signals, b, shells, mask, p, task.sub(0.0, 0.3))
    sigma = noise.sigma if noise is not None else None
    dce_maps = None
    if with_dce:
        dce_maps = dce_module.dce_maps(dce_signals, dce_times, mask, d.window_s, d.arrival, task.sub(0.3, 0.4))
    analysed = _erode(mask, p.erode_voxels)
    inner = analysed[mask]  # over the mask's voxels
    undefined = se_undefined(noise, fit)
    if undefined:
        exclusion = clustering.no_exclusion(fit.valid[inner], undefined)
    else:
        exclusion = clustering.reliable_voxels(fit.adc_se[inner], fit.valid[inner], p.threshold_kind, p.threshold)
    kept = np.zeros(inner.size, bool)
    kept[inner] = exclusion.keep
    dce_features = [name for name in p.features if name in ("iauc60", "wash_in", "ttp")]
    dce_invalid = 0
    if dce_maps is not None and dce_features:  # no DCE value (zero baseline, arrival capped): not clustered
        dce_invalid = int((kept & ~dce_maps.valid[mask]).sum())
        kept &= dce_maps.valid[mask]
    if kept.sum() < MIN_VOXELS:
        raise InputError(f"Only {int(kept.sum())} tumour voxels remain after excluding uncertain fits "
                         f"({exclusion.describe()}"
                         + (f"; {dce_invalid} without a DCE value" if dce_invalid else "")
                         + "); loosen the uncertainty threshold.")
    available = {"adc": fit.adc, "s0": fit.s0}
    if dce_maps is not None:
        available.update({"iauc60": dce_maps.iauc[mask], "wash_in": dce_maps.wash_in_per_s[mask],
                          "ttp": dce_maps.time_to_peak_s[mask]})
    features = {name: available[name][kept] for name in p.features}
    clusters = clustering.cluster_voxels(features, p.method, p.k, p.k_max, p.min_habitat_voxels, p.seed,
                                         progress=task.sub(0.4, 0.6))
    voxel_labels = np.full(int(mask.sum()), EXCLUDED_LABEL, np.int32)
    voxel_labels[kept] = clusters.labels
    refitted = refit.refit_habitats(
        voxels, shells.b_values, voxel_labels, clusters.k, fit.adc, voxel_volume_ml=voxel_volume_ml, min_b=p.min_b,
        max_b=p.max_b, nonlinear=p.nonlinear, noise_floor=p.noise_floor, noise_sigma=sigma, ci_method=p.ci_method,
        n_bootstrap=p.n_bootstrap, confidence=p.confidence, seed=p.seed, weights=shells.averages,
        progress=task.sub(0.6, 0.85))
    table = refitted["table"]
    mean_curves = None
    if dce_maps is not None:
        arrival = dce_maps.region_arrival_s if dce_maps.region_arrival_s is not None else float(
            np.nanmedian(dce_maps.arrival_s[mask & dce_maps.valid]))
        curves = np.asarray(dce_signals)[:, mask]
        dce_refit = refit.refit_dce_habitats(
            curves, dce_times, voxel_labels, clusters.k, arrival, dce_maps.iauc[mask], window_s=d.window_s,
            n_bootstrap=p.n_bootstrap if p.ci_method == "bootstrap" else 0, confidence=p.confidence, seed=p.seed,
            progress=task.sub(0.85, 0.97))
        table.update(dce_refit["table"])
        mean_curves = dce_refit["mean_curves"]
    labels = np.zeros(mask.shape, np.uint8)
    labels[mask] = voxel_labels.astype(np.uint8)
    summary = _summary(p, noise, fit, exclusion, clusters, table, voxel_volume_ml, dce_maps, mask)
    summary["analysed_voxels"] = int(analysed.sum())
    summary["boundary_voxels"] = int(mask.sum() - analysed.sum())
    summary["excluded_dce_invalid"] = dce_invalid
    summary.update(dwi_summary(shells, noise, fit))
    task.update(1.0, "Fit-Cluster-Fit done")
    return FitClusterFitResult(fit, noise, exclusion, clusters, labels, table, refitted["mean_signals"],
                               refitted["s0"], refitted["adc"], refitted["b_values_fitted"], summary, dce_maps,
                               mean_curves, None if dce_times is None else np.asarray(dce_times, float), shells)


def dwi_summary(shells: DwiShells, noise: NoiseEstimate | None, fit: MonoexpFit) -> dict:
    """What was fitted: the volumes combined per b-value, where the ADC SE came from, and warnings."""
    undefined = se_undefined(noise, fit)
    if undefined:
        source = f"undefined: {undefined}"
    elif np.unique(fit.b_values).size == 2:
        source = f"the noise sigma ({noise.method}); two b-values leave no residual"
    else:
        source = "the fit residuals" + ("" if noise is None else f", at least the noise sigma ({noise.method})")
    return {"dwi_volumes": shells.n_volumes, "dwi_shells": shells.to_dict(), "adc_se_from": source,
            "warnings": list(shells.warnings) + ([f"the ADC SE is undefined ({undefined}: no usable background air; "
                                                  "give the noise sigma to get SEs), so no voxel was excluded as "
                                                  "uncertain"] if undefined else [])}


def _erode(mask: np.ndarray, voxels: int) -> np.ndarray:
    if voxels <= 0:
        return mask
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, iterations=int(voxels))
    if inner.sum() < MIN_VOXELS:
        raise EmptyMaskError(
            f"Leaving out the tumour's outer {voxels} voxel(s) (partial volume) leaves {int(inner.sum())} of its "
            f"{int(mask.sum())} voxels; the tumour is too small for that: set the boundary erosion to 0.")
    return inner


def noise_estimate(signals, b, mask, p: FitClusterFitParameters, shells: DwiShells | None = None
                   ) -> NoiseEstimate | None:
    """σ as given, else estimated (``p.noise_method``) from the fitted volumes only (``p.min_b``/``p.max_b``);
    None if it cannot be and no correction needs it. ``shells``: as in :func:`estimate_noise_sigma`."""
    if p.noise_sigma is not None:
        return NoiseEstimate(float(p.noise_sigma), "given", 0, "given by the user")
    try:
        return estimate_noise_sigma(signals, b, mask, p.noise_method, min_b=p.min_b, max_b=p.max_b, shells=shells)
    except InvalidValuesError:
        if p.noise_floor or p.voxel_noise_floor:
            raise
        return None  # without σ the voxel SEs come from the residuals alone


def _summary(p, noise, fit, exclusion, clusters, table, voxel_volume_ml, dce_maps, mask) -> dict:
    valid_adc = fit.adc[fit.valid]
    adcs = np.asarray(table["adc"], float)
    summary = {
        "parameters": p.to_dict(),
        "voxel_fit": fit.method,
        "b_values_fitted": [float(v) for v in fit.b_values],
        "noise_sigma": None if noise is None else noise.sigma,
        "noise_method": None if noise is None else noise.method,
        "noise_note": "" if noise is None else noise.note,
        "tumour_voxels": int(mask.sum()),
        "tumour_volume_ml": float(mask.sum() * voxel_volume_ml),
        "fitted_voxels": int(fit.valid.sum()),
        "excluded_uncertain": exclusion.uncertain,
        "excluded_unfitted": exclusion.unfitted,
        "se_threshold_mm2_s": None if exclusion.skipped else exclusion.se_threshold,
        "exclusion": exclusion.describe(),
        "habitats": clusters.k,
        "clustering": clusters.describe(),
        "k_scores": {str(k): v for k, v in clusters.scores.items()},
        "voxel_mean_adc_tumour": float(valid_adc.mean()) if valid_adc.size else float("nan"),
        "voxel_median_adc_tumour": float(np.median(valid_adc)) if valid_adc.size else float("nan"),
        "habitat_adc_min": float(np.nanmin(adcs)) if adcs.size else float("nan"),
    }
    if dce_maps is not None:
        summary["dce_arrival_s"] = dce_maps.region_arrival_s
        summary["dce_arrival_mode"] = dce_maps.arrival_mode
        summary["dce_window_s"] = dce_maps.window_s
        summary["voxel_mean_iauc_tumour"] = float(dce_maps.iauc[mask & dce_maps.valid].mean())
        summary["dce_invalid_voxels"] = int((mask & ~dce_maps.valid).sum())
        summary["dce_arrival_capped_voxels"] = 0 if dce_maps.capped is None else int((mask & dce_maps.capped).sum())
    return summary
