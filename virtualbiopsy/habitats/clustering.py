"""Step 2 of Fit-Cluster-Fit: drop uncertain voxel fits, cluster the rest into habitats.

* :func:`reliable_voxels` excludes voxels whose ADC standard error is above a threshold, given as
  a percentile of the tumour's SEs (default: the 90th, i.e. the most uncertain 10 % go) or as an
  absolute SE in mm²/s; voxels without a fit are always excluded. The threshold actually applied
  and the counts are reported.
* :func:`cluster_voxels` clusters the kept voxels on their fitted parameters (standardised to zero
  mean and unit variance, so mm²/s and signal units weigh alike) with a Gaussian mixture
  (scikit-learn, full covariances) or k-means. The number of habitats k is the user's, or chosen by
  the Bayesian information criterion for the mixture (k = 1 allowed: a homogeneous tumour is one
  habitat) or by the silhouette for k-means (k >= 2), among the k whose every habitat has at least
  ``min_voxels`` voxels. Seeds are fixed, so the same input gives the same habitats.
* Habitats are numbered by increasing mean ADC: habitat 1 is the most diffusion-restricted
  (most cellular) one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from virtualbiopsy.errors import InputError
from virtualbiopsy.progress import as_task

METHODS = ("gmm", "kmeans")
THRESHOLD_KINDS = ("percentile", "absolute")


@dataclass(frozen=True)
class Exclusion:
    """Which voxels were kept for clustering, and why the others were not."""

    keep: np.ndarray  # bool over the voxels given
    threshold_kind: str
    threshold_value: float  # the percentile or the absolute SE asked for
    se_threshold: float  # the SE (mm²/s) above which voxels were excluded
    unfitted: int  # voxels without a fit (always excluded)
    uncertain: int  # voxels above the SE threshold
    skipped: str = ""  # why no voxel was excluded as uncertain (the SE is undefined), '' when it was applied

    def describe(self) -> str:
        if self.skipped:
            return (f"kept {int(self.keep.sum())} voxels; none excluded as uncertain (ADC SE undefined: "
                    f"{self.skipped}) and {self.unfitted} without a fit")
        asked = (f"{self.threshold_value:g}th percentile" if self.threshold_kind == "percentile"
                 else "absolute threshold")
        return (f"kept {int(self.keep.sum())} voxels; excluded {self.uncertain} with ADC SE > "
                f"{self.se_threshold * 1e3:.4g} ×10⁻³ mm²/s ({asked}) and {self.unfitted} without a fit")


def reliable_voxels(adc_se: np.ndarray, valid: np.ndarray | None = None, kind: str = "percentile",
                    value: float = 90.0) -> Exclusion:
    """Keep voxels with a fit whose ADC SE is at most the threshold (``kind`` percentile or absolute).

    >>> se = np.array([1.0, 2.0, 3.0, 4.0, np.inf]) * 1e-4
    >>> ex = reliable_voxels(se, kind="absolute", value=2.5e-4)
    >>> ex.keep.tolist(), ex.uncertain, ex.unfitted
    ([True, True, False, False, False], 2, 1)
    """
    se = np.asarray(adc_se, dtype=np.float64).ravel()
    fitted = np.isfinite(se) if valid is None else np.asarray(valid, bool).ravel() & np.isfinite(se)
    if kind not in THRESHOLD_KINDS:
        raise InputError(f"Unknown uncertainty threshold '{kind}'; use 'percentile' or 'absolute'.")
    if not fitted.any():
        raise InputError("No voxel of the tumour could be fitted (each needs two positive signals at distinct "
                         "b-values); check the DWI volumes and the mask.")
    if kind == "percentile":
        if not 0 < value <= 100:
            raise InputError(f"The uncertainty percentile must be in (0, 100], got {value:g}.")
        threshold = float(np.percentile(se[fitted], value))
    else:
        if not value > 0:
            raise InputError(f"The absolute ADC standard-error threshold must be > 0 mm²/s, got {value:g}.")
        threshold = float(value)
    keep = fitted & (se <= threshold)
    return Exclusion(keep, kind, float(value), threshold, int((~fitted).sum()), int((fitted & ~keep).sum()))


def no_exclusion(valid: np.ndarray, reason: str) -> Exclusion:
    """Keep every fitted voxel: the exclusion by ADC SE is skipped because the SE is undefined (``reason``,
    e.g. two b-values and no noise estimate)."""
    fitted = np.asarray(valid, bool).ravel()
    if not fitted.any():
        raise InputError("No voxel of the tumour could be fitted (each needs two positive signals at distinct "
                         "b-values); check the DWI volumes and the mask.")
    return Exclusion(fitted, "none", float("nan"), float("nan"), int((~fitted).sum()), 0, reason)


@dataclass
class Clustering:
    """Habitat labels (1..k, by increasing mean ADC) of the voxels clustered, and how k was chosen."""

    labels: np.ndarray  # int over the voxels clustered
    k: int
    method: str
    criterion: str  # "BIC", "silhouette" or "user"
    scores: dict = field(default_factory=dict)  # k -> criterion value for the k tried
    features: tuple[str, ...] = ()
    centres: np.ndarray | None = None  # k x features, in feature units

    def describe(self) -> str:
        if self.criterion == "user":
            return f"{self.k} habitat(s) ({self.method}, k given)"
        tried = ", ".join(f"k={k}: {v:.4g}" for k, v in sorted(self.scores.items()))
        best = "lowest" if self.criterion == "BIC" else "highest"
        return f"{self.k} habitat(s) ({self.method}, {best} {self.criterion} among {tried})"


def _standardise(features: np.ndarray) -> np.ndarray:
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit_transform(features)


def _fit(method: str, x: np.ndarray, k: int, seed: int):
    """Fit one model on a single thread: on a few features per voxel, BLAS/OpenMP threads cost far more
    than they save (up to 30x slower on a busy 2-core machine), and Slicer's GUI keeps its cores."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _fit_model(method, x, k, seed)


def _fit_model(method: str, x: np.ndarray, k: int, seed: int):
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        model = GaussianMixture(n_components=k, covariance_type="full", n_init=3, random_state=seed,
                                reg_covar=1e-6)
        labels = model.fit(x).predict(x)
        return model, labels
    from sklearn.cluster import KMeans

    model = KMeans(n_clusters=k, n_init=10, random_state=seed)
    labels = model.fit_predict(x)
    return model, labels


def cluster_voxels(features: Mapping[str, np.ndarray], method: str = "gmm", k: int | None = None, k_max: int = 4,
                   min_voxels: int = 20, seed: int = 0, order_by: str = "adc", progress=None) -> Clustering:
    """Cluster voxels on ``features`` ({name: values over the voxels}) into habitats 1..k.

    ``k=None`` chooses k in 1..k_max by BIC (``gmm``) or in 2..k_max by silhouette (``kmeans``,
    computed on at most 5000 voxels sampled with ``seed``), skipping any k that leaves a habitat with
    fewer than ``min_voxels`` voxels. Habitats are renumbered by increasing mean ``order_by``.
    """
    task = as_task(progress)
    if method not in METHODS:
        raise InputError(f"Unknown clustering method '{method}'; use 'gmm' (Gaussian mixture) or 'kmeans'.")
    if not features:
        raise InputError("Choose at least one fitted parameter to cluster on (e.g. adc).")
    names = tuple(features)
    x = np.column_stack([np.asarray(features[n], dtype=np.float64).ravel() for n in names])
    n = x.shape[0]
    if not np.all(np.isfinite(x)):
        raise InputError(f"Clustering features {', '.join(names)} contain NaN or infinite values.")
    if k is not None:
        if not 1 <= int(k) <= max(n // 2, 1):
            raise InputError(f"{k} habitats cannot be made from {n} voxels; choose 1 to {max(n // 2, 1)}.")
        candidates = [int(k)]
    else:
        if k_max < 1:
            raise InputError(f"The largest number of habitats to try must be >= 1, got {k_max}.")
        low = 1 if method == "gmm" else 2
        candidates = [c for c in range(low, int(k_max) + 1) if c * max(min_voxels, 1) <= n]
        if not candidates:
            candidates = [1] if method == "gmm" or n < 4 else [2]
    z = _standardise(x) if n > 1 else x * 0.0
    results = {}
    for candidate in task.steps(candidates, "Clustering voxels into habitats"):
        if candidate == 1:
            labels = np.zeros(n, int)
            model = _fit("gmm", z, 1, seed)[0] if method == "gmm" and n > 2 else None
        else:
            model, labels = _fit(method, z, candidate, seed)
        sizes = np.bincount(labels, minlength=candidate)
        results[candidate] = (model, labels, sizes)
    if k is not None:
        chosen, criterion, scores = int(k), "user", {}
    else:
        scores = {}
        for candidate, (model, labels, sizes) in results.items():
            if len(results) > 1 and sizes.min() < min_voxels:
                continue  # a habitat this small is not a habitat
            if method == "gmm":
                scores[candidate] = float(model.bic(z)) if model is not None else float("inf")
            elif len(np.unique(labels)) > 1:
                from sklearn.metrics import silhouette_score
                from threadpoolctl import threadpool_limits

                with threadpool_limits(limits=1):
                    scores[candidate] = float(silhouette_score(z, labels, sample_size=min(n, 5000),
                                                               random_state=seed))
        criterion = "BIC" if method == "gmm" else "silhouette"
        finite = {c: v for c, v in scores.items() if np.isfinite(v)}
        chosen = (min if method == "gmm" else max)(finite, key=finite.get) if finite else min(results)
    labels = results[chosen][1]
    # renumber by increasing mean of order_by (habitat 1 = lowest ADC)
    key = x[:, names.index(order_by)] if order_by in names else x[:, 0]
    means = np.array([key[labels == c].mean() if np.any(labels == c) else np.inf for c in range(chosen)])
    order = np.argsort(means, kind="stable")
    rank = np.empty(chosen, int)
    rank[order] = np.arange(1, chosen + 1)
    habitats = rank[labels]
    present = np.unique(habitats)
    if present.size < chosen:  # an empty component (possible with a mixture): close the gaps in the numbering
        habitats = np.searchsorted(present, habitats) + 1
        chosen = int(present.size)
    centres = np.array([x[habitats == h].mean(0) for h in range(1, chosen + 1)])
    return Clustering(habitats, chosen, method, criterion, scores, names, centres)
