"""Patient clustering on an image signature, Kaplan–Meier curves per group, log-rank tests.

* :func:`cluster_patients`: k-means (scikit-learn; k set by the user, default 2) on the
  standardised signature features (missing values: the feature's median, reported). Clusters are
  numbered 1..k by decreasing size, so the same data always give the same names.
* :func:`kaplan_meier`: lifelines' product-limit estimate per group with its 95 % CI (and the
  group's follow-up times, for censoring marks and numbers at risk), median survival and
  restricted mean survival time (RMST: the area under the curve up to ``tau``, by default the
  shortest of the groups' longest follow-up, so every group's RMST covers the same span — the "mean
  survival" of censored data).
* :func:`logrank`: lifelines' multivariate log-rank test (2 groups: the ordinary log-rank test).
* :func:`risk_groups`: a prognostic index split at a percentile of the TRAINING cohort's index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from virtualbiopsy.errors import InputError
from virtualbiopsy.prediction.data import warn
from virtualbiopsy.progress import as_task


@dataclass
class Clustering:
    labels: np.ndarray  # "cluster 1".."cluster k" per patient
    centres: pd.DataFrame  # in the features' own units
    features: list[str]
    imputed_cells: int
    inertia: float


def cluster_patients(X: pd.DataFrame, k: int = 2, seed: int = 0, features=None) -> Clustering:
    """k-means on the standardised ``features`` (default: all columns) of ``X``."""
    from sklearn.cluster import KMeans
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler

    features = list(features or X.columns)
    absent = [f for f in features if f not in X.columns]
    if absent:
        raise InputError(f"The table has no signature feature(s) {', '.join(absent)}.")
    values = X[features].astype(float)
    usable = [f for f in features if values[f].nunique(dropna=True) > 1]
    if not usable:
        raise InputError("Every signature feature is constant or empty: patients cannot be clustered.")
    if len(usable) < len(features):
        warn(f"Constant features left out of the clustering: {', '.join(sorted(set(features) - set(usable)))}.")
    k = int(k)
    if k < 2 or k > len(values) // 2:
        raise InputError(f"k = {k} clusters is not possible with {len(values)} patients (2 <= k <= n / 2).")
    imputer = SimpleImputer(strategy="median")
    scaler = StandardScaler()
    Z = scaler.fit_transform(imputer.fit_transform(values[usable]))
    kmeans = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(Z)
    sizes = np.bincount(kmeans.labels_, minlength=k)
    order = np.argsort(-sizes, kind="stable")  # biggest first
    rename = {old: new for new, old in enumerate(order)}
    labels = np.array([f"cluster {rename[c] + 1}" for c in kmeans.labels_], dtype=object)
    centres = pd.DataFrame(scaler.inverse_transform(kmeans.cluster_centers_[order]), columns=usable,
                           index=[f"cluster {i + 1}" for i in range(k)])
    return Clustering(labels, centres, usable, int(values[usable].isna().sum().sum()), float(kmeans.inertia_))


@dataclass
class GroupSurvival:
    group: str
    n: int
    events: int
    median: float  # inf when the curve never falls to 0.5
    median_ci: tuple[float, float]
    rmst: float
    timeline: np.ndarray
    survival: np.ndarray
    ci_lower: np.ndarray
    ci_upper: np.ndarray
    durations: np.ndarray = field(default_factory=lambda: np.array([]))  # each patient's follow-up time
    observed: np.ndarray = field(default_factory=lambda: np.array([], int))  # 1 = event, 0 = censored

    @property
    def censored_times(self) -> np.ndarray:
        """The follow-up times of the censored patients (sorted; ties repeated)."""
        return np.sort(self.durations[self.observed == 0])

    def at_risk(self, times) -> np.ndarray:
        """Number at risk at each of ``times``: patients still followed (event or censoring at or after t)."""
        times = np.asarray(times, float)
        return (self.durations[None, :] >= times[:, None]).sum(axis=1)

    def survival_at(self, times) -> np.ndarray:
        """The Kaplan–Meier estimate S(t) at ``times`` (a step function, right-continuous)."""
        index = np.searchsorted(self.timeline, np.asarray(times, float), side="right") - 1
        return np.where(index >= 0, self.survival[np.clip(index, 0, None)], 1.0)


@dataclass
class SurvivalAnalysis:
    groups: list[GroupSurvival]
    tau: float
    logrank: pd.DataFrame
    summary: pd.DataFrame
    labels: np.ndarray = field(default_factory=lambda: np.array([]))


def _check_survival(time, event, groups):
    time, event = np.asarray(time, float), np.asarray(event, int)
    groups = np.asarray(groups, dtype=object)
    if not (len(time) == len(event) == len(groups)):
        raise InputError("Time, event and group must have one value per patient.")
    if (time < 0).any() or not np.isfinite(time).all():
        raise InputError("Survival times must be finite and non-negative.")
    if not set(np.unique(event)) <= {0, 1}:
        raise InputError("The event indicator must be 1 (event) or 0 (censored).")
    return time, event, groups


def kaplan_meier(time, event, groups, tau: float | None = None) -> tuple[list[GroupSurvival], float]:
    """Kaplan–Meier curve, median and RMST per group (lifelines)."""
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times, restricted_mean_survival_time

    time, event, groups = _check_survival(time, event, groups)
    names = sorted(set(groups), key=str)
    if tau is None:
        tau = float(min(time[groups == g].max() for g in names))
    results = []
    for name in names:
        rows = groups == name
        kmf = KaplanMeierFitter().fit(time[rows], event[rows], label=str(name))
        ci = kmf.confidence_interval_survival_function_
        median_ci = median_survival_times(kmf.confidence_interval_).to_numpy().ravel()
        results.append(GroupSurvival(
            str(name), int(rows.sum()), int(event[rows].sum()), float(kmf.median_survival_time_),
            (float(median_ci[0]), float(median_ci[1])), float(restricted_mean_survival_time(kmf, t=tau)),
            kmf.survival_function_.index.to_numpy(float), kmf.survival_function_.iloc[:, 0].to_numpy(float),
            ci.iloc[:, 0].to_numpy(float), ci.iloc[:, 1].to_numpy(float), time[rows], event[rows],
        ))
    return results, float(tau)


def logrank(time, event, groups) -> pd.DataFrame:
    """Log-rank test across the groups: statistic (chi-square), degrees of freedom, p."""
    from lifelines.statistics import multivariate_logrank_test

    time, event, groups = _check_survival(time, event, groups)
    if len(set(groups)) < 2:
        raise InputError("The log-rank test needs at least two groups.")
    result = multivariate_logrank_test(time, groups, event)
    return pd.DataFrame([{"test": "log-rank", "groups": len(set(groups)), "statistic": float(result.test_statistic),
                          "df": int(result.degrees_of_freedom), "p": float(result.p_value)}])


def analyse_groups(time, event, groups, tau: float | None = None) -> SurvivalAnalysis:
    """Kaplan–Meier + log-rank for given groups, with a per-group summary table."""
    curves, tau = kaplan_meier(time, event, groups, tau)
    summary = pd.DataFrame([{
        "group": g.group, "n": g.n, "events": g.events, "median_survival": g.median,
        "median_ci_low": g.median_ci[0], "median_ci_high": g.median_ci[1],
        "rmst": g.rmst, "rmst_tau": tau,
    } for g in curves])
    return SurvivalAnalysis(curves, tau, logrank(time, event, groups), summary, np.asarray(groups, dtype=object))


def cluster_survival(X: pd.DataFrame, time, event, k: int = 2, seed: int = 0, features=None,
                     progress=None) -> tuple[Clustering, SurvivalAnalysis]:
    """k-means groups on the signature, then Kaplan–Meier and log-rank between them."""
    task = as_task(progress)
    task.update(0.0, "k-means clustering")
    clustering = cluster_patients(X, k, seed, features)
    task.update(0.5, "Kaplan–Meier and log-rank")
    analysis = analyse_groups(time, event, clustering.labels)
    task.update(1.0, "Survival analysis done")
    return clustering, analysis


def risk_groups(prognostic_index, cut: float) -> np.ndarray:
    """'high risk' above ``cut`` (a training-cohort percentile of the index), else 'low risk'."""
    index = np.asarray(prognostic_index, float)
    if cut is None or not np.isfinite(cut):
        raise InputError("The model has no risk cut-off (train a Cox model to get one).")
    return np.where(index > cut, "high risk", "low risk").astype(object)


def curve_table(analysis: SurvivalAnalysis, step: bool = True) -> dict[str, list]:
    """Kaplan–Meier curves as plain columns (group, time, survival, CI), as a staircase if ``step``."""
    columns: dict[str, list] = {"group": [], "time": [], "survival": [], "ci_lower": [], "ci_upper": []}
    for g in analysis.groups:
        t, s, lo, hi = g.timeline, g.survival, g.ci_lower, g.ci_upper
        if step:  # each drop drawn as a vertical edge: repeat the previous value at the new time
            t = np.repeat(t, 2)[1:]
            s, lo, hi = (np.repeat(a, 2)[:-1] for a in (s, lo, hi))
        columns["group"] += [g.group] * len(t)
        columns["time"] += t.tolist()
        columns["survival"] += s.tolist()
        columns["ci_lower"] += lo.tolist()
        columns["ci_upper"] += hi.tolist()
    return columns
