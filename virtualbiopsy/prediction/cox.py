"""Ridge-penalised Cox proportional hazards as a scikit-learn estimator, and its feature score.

The survival target is ``y = [time, event]`` (one row per patient), so that the Cox model runs in
the same pipeline, grid search and nested cross-validation as the classifiers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from virtualbiopsy.prediction.metrics import concordance


def survival_y(time, event) -> np.ndarray:
    """The survival target of :class:`CoxRegression`: columns ``[time, event]`` as floats."""
    return np.column_stack([np.asarray(time, float), np.asarray(event, float)])


def univariate_concordance(X, y) -> np.ndarray:
    """Score for :class:`SelectKBest` on a survival ``y = [time, event]``: |C-index - 0.5| per feature."""
    X = np.asarray(X, float)
    scores = np.zeros(X.shape[1])
    for j in range(X.shape[1]):
        if np.ptp(X[:, j]) > 0:
            scores[j] = abs(concordance(y[:, 0], X[:, j], y[:, 1]) - 0.5)
    return scores


class CoxRegression(BaseEstimator):
    """lifelines' :class:`~lifelines.CoxPHFitter` as a scikit-learn estimator on ``y = [time, event]``.

    ``predict`` returns the prognostic index (log partial hazard); ``score`` the C-index, so a
    grid search can tune the ridge ``penalizer``.
    """

    def __init__(self, penalizer: float = 0.1):
        self.penalizer = penalizer

    def fit(self, X, y):
        from lifelines import CoxPHFitter

        X = np.asarray(X, float)
        frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
        frame["_time"], frame["_event"] = y[:, 0], y[:, 1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # lifelines' convergence chatter; the penalizer keeps it stable
            self.model_ = CoxPHFitter(penalizer=self.penalizer).fit(frame, "_time", "_event")
        self.n_features_in_ = X.shape[1]
        # lifelines' log partial hazard is (x - training mean) . beta; kept as arrays because predict
        # runs thousands of times inside the SHAP explainer (equality with lifelines is tested)
        self.coef_ = self.model_.params_.to_numpy(float)
        self.offset_ = float(X.mean(axis=0) @ self.coef_)
        return self

    def predict(self, X) -> np.ndarray:
        """The prognostic index: lifelines' log partial hazard, ``(x - training mean) . beta``."""
        return np.asarray(X, float) @ self.coef_ - self.offset_

    def score(self, X, y) -> float:
        return concordance(y[:, 0], self.predict(X), y[:, 1])
