"""Performance metrics of out-of-fold predictions, with percentile bootstrap confidence intervals.

Binary endpoints: AUC, balanced accuracy, sensitivity, specificity (at a probability threshold),
calibration slope and Brier score; multi-class: one-vs-rest AUC, balanced accuracy, accuracy;
time-to-event: Harrell's C-index. The AUC and the calibration slope are hand-written because they
run inside the bootstrap loop (the tests check them against scikit-learn).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from virtualbiopsy.errors import InputError
from virtualbiopsy.prediction.data import BINARY, TIME_TO_EVENT, Endpoint
from virtualbiopsy.prediction.threads import single_threaded


def concordance(time, risk, event) -> float:
    """Harrell's C-index of a risk score (higher = earlier event), via lifelines."""
    from lifelines.utils import concordance_index

    return float(concordance_index(time, -np.asarray(risk, float), event))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def calibration_slope(y: np.ndarray, p: np.ndarray) -> float:
    """Slope b of the logistic recalibration ``logit P(y = 1) = a + b * logit(p)`` (1 = well calibrated).

    Hand-written Newton-Raphson for these two parameters: it runs inside the bootstrap loop, where a
    scikit-learn fit per resample is ~50x slower (the tests check it against scikit-learn). NaN when
    the outcome is separated (the slope diverges).
    """
    from scipy.special import expit

    y = np.asarray(y, float)
    if len(np.unique(y)) < 2:
        return math.nan
    design = np.column_stack([np.ones_like(y), _logit(np.asarray(p, float))])
    beta = np.array([0.0, 1.0])
    for _ in range(100):
        mu = expit(design @ beta)
        weights = mu * (1.0 - mu)
        hessian = design.T @ (design * weights[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            return math.nan
        beta += step
        if not np.isfinite(beta).all() or abs(beta[1]) > 1e3:
            return math.nan
        if np.abs(step).max() < 1e-10:
            return float(beta[1])
    return math.nan


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count one half).

    Hand-written from scipy's ranks for speed inside the bootstrap loop (equal to scikit-learn's
    ``roc_auc_score``, checked in the tests).
    """
    from scipy.stats import rankdata

    y = np.asarray(y) == 1
    positives, negatives = int(y.sum()), int((~y).sum())
    ranks = rankdata(score)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _binary_point(y, p, threshold: float) -> dict:
    predicted = p >= threshold
    positives = y == 1
    sensitivity = float(predicted[positives].mean())
    specificity = float(1 - predicted[~positives].mean())
    return {
        "auc": auc(y, p),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "calibration_slope": calibration_slope(y, p),
        "brier": float(np.mean((p - y) ** 2)),
    }


def _multiclass_point(y, proba, n_classes: int) -> dict:
    return {
        "auc": float(roc_auc_score(y, proba, multi_class="ovr", labels=list(range(n_classes)))),
        "balanced_accuracy": float(balanced_accuracy_score(y, proba.argmax(axis=1))),
        "accuracy": float(np.mean(proba.argmax(axis=1) == y)),
    }


def _survival_point(time, event, risk) -> dict:
    return {"c_index": concordance(time, risk, event)}


def _point_metrics(endpoint: Endpoint, observed, prediction, threshold: float, rows=None) -> dict | None:
    """Metrics of one (re)sample, None when it cannot be scored (e.g. a single class)."""
    rows = slice(None) if rows is None else rows
    if endpoint.kind == TIME_TO_EVENT:
        time, event = observed[0][rows], observed[1][rows]
        return _survival_point(time, event, prediction[rows]) if event.sum() > 0 else None
    y = observed[rows]
    n_classes = len(endpoint.classes)
    if len(np.unique(y)) < n_classes:
        return None
    if endpoint.kind == BINARY:
        return _binary_point(y, prediction[rows][:, 1], threshold)
    return _multiclass_point(y, prediction[rows], n_classes)


@dataclass
class Metrics:
    table: pd.DataFrame  # metric, estimate, ci_low, ci_high, n_bootstrap
    replicates: dict[str, np.ndarray]  # per metric, one value per bootstrap resample (NaN: unscorable)


@single_threaded
def bootstrap_metrics(endpoint: Endpoint, observed, prediction, threshold: float = 0.5, n_bootstrap: int = 1000,
                      seed: int = 0, confidence: float = 0.95) -> Metrics:
    """Point estimates and percentile bootstrap CIs over patients (seeded: same seed, same resamples).

    ``observed`` is the class index array, or ``(time, event)``; ``prediction`` the probabilities
    ``[n, n_classes]`` or the risk score. Resamples that cannot be scored (one class, no event) are
    skipped and counted out of ``n_bootstrap``.
    """
    n = len(prediction)
    point = _point_metrics(endpoint, observed, prediction, threshold)
    if point is None:
        raise InputError("The predictions cannot be scored: the observed endpoint has a single class or no event.")
    rng = np.random.default_rng(seed)
    replicates = {name: np.full(n_bootstrap, np.nan) for name in point}
    for b in range(n_bootstrap):
        values = _point_metrics(endpoint, observed, prediction, threshold, rng.integers(0, n, n))
        for name, value in (values or {}).items():
            replicates[name][b] = value
    alpha = (1 - confidence) / 2
    rows = []
    for name, estimate in point.items():
        finite = replicates[name][np.isfinite(replicates[name])]
        low, high = (np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (math.nan, math.nan))
        rows.append({"metric": name, "estimate": estimate, "ci_low": float(low), "ci_high": float(high),
                     "n_bootstrap": int(finite.size)})
    return Metrics(pd.DataFrame(rows), replicates)
