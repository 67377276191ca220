"""Diagnostic and prognostic models, validated by nested cross-validation without leakage.

Every model is one scikit-learn :class:`~sklearn.pipeline.Pipeline`::

    median imputation -> drop constant features -> standardisation -> univariate selection (k best) -> model

so that everything learnt from data (medians, means/SDs, which features are kept, the model) is
fitted on the training folds only. Hyper-parameters (including k) are chosen by an inner
cross-validated grid search inside each outer fold (nested CV); the out-of-fold predictions of the
outer loop are what the metrics and their bootstrap confidence intervals are computed from. The
model that is saved is the same procedure refitted on all cases.

Classifiers: ``logistic``, ``random_forest``, ``gradient_boosting``, ``svm`` (binary or
multi-class endpoints). Survival: ``cox`` (lifelines' ridge-penalised Cox proportional hazards,
features selected by their univariate concordance index); its output is the prognostic index
(log partial hazard) and risk groups split at a training percentile of it. The metrics are in
:mod:`virtualbiopsy.prediction.metrics`, the Cox estimator in :mod:`virtualbiopsy.prediction.cox`.
"""

from __future__ import annotations

import datetime
import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.feature_selection import SelectKBest, VarianceThreshold, f_classif
from sklearn.impute import SimpleImputer
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from virtualbiopsy.errors import InputError
from virtualbiopsy.prediction.cox import CoxRegression, survival_y, univariate_concordance
from virtualbiopsy.prediction.data import (
    BINARY,
    TIME_TO_EVENT,
    Dataset,
    Endpoint,
    check_classes_for_cv,
    check_events_for_cox,
    usable_features,
)
from virtualbiopsy.prediction.metrics import bootstrap_metrics
from virtualbiopsy.prediction.threads import single_threaded
from virtualbiopsy.progress import as_task

CLASSIFIERS = {
    "logistic": "Logistic regression (L2)",
    "random_forest": "Random forest",
    "gradient_boosting": "Gradient boosting (trees)",
    "svm": "Support vector machine (RBF, Platt probabilities)",
}
SURVIVAL_MODELS = {"cox": "Cox proportional hazards (ridge, lifelines)"}
MODEL_NAMES = (*CLASSIFIERS, *SURVIVAL_MODELS)
TREE_MODELS = ("random_forest", "gradient_boosting")


@dataclass
class TrainParameters:
    """How a model is built and validated (every random step is seeded by ``seed``)."""

    model: str = "logistic"
    outer_folds: int = 5
    inner_folds: int = 3
    n_bootstrap: int = 1000
    confidence: float = 0.95
    threshold: float = 0.5  # probability threshold for sensitivity / specificity / balanced accuracy
    seed: int = 0
    n_trees: int = 100  # random forest / gradient boosting
    max_features: int | None = None  # largest k tried by the univariate selection (None: all)
    grid: dict | None = None  # replaces the default hyper-parameter grid (keys as in the pipeline)
    risk_percentile: float = 50.0  # Cox: high risk above this training percentile of the index


QUANTILE_LEVELS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 5 % .. 95 %; no 0 / 100 %: single patients


def cohort_quantiles(X: pd.DataFrame) -> pd.DataFrame:
    """5th..95th percentiles (5 % steps) of each training feature: the cohort summary saved with a model.

    The minimum and maximum are left out on purpose: each is one patient's value.
    """
    return X.quantile(list(QUANTILE_LEVELS))


# -- pipelines -----------------------------------------------------------------------------------------


def _estimator(name: str, seed: int, n_trees: int):
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC

    if name == "logistic":
        return LogisticRegression(max_iter=2000)
    if name == "random_forest":
        return RandomForestClassifier(n_estimators=n_trees, random_state=seed, n_jobs=1)
    if name == "gradient_boosting":
        return GradientBoostingClassifier(n_estimators=n_trees, max_depth=2, subsample=0.8, random_state=seed)
    if name == "svm":  # Platt scaling on internal CV predictions (scikit-learn's replacement of probability=True)
        from sklearn.calibration import CalibratedClassifierCV

        return CalibratedClassifierCV(SVC(random_state=seed), method="sigmoid", cv=3, ensemble=False)
    if name == "cox":
        return CoxRegression()
    raise InputError(f"Unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}.")


def make_pipeline(name: str, seed: int = 0, n_trees: int = 100) -> Pipeline:
    """imputer -> constant-feature filter -> scaler -> univariate selection -> model (all fitted in-fold)."""
    score = univariate_concordance if name == "cox" else f_classif
    return Pipeline([
        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
        ("drop_constant", VarianceThreshold(0.0)),
        ("scale", StandardScaler()),
        ("select", SelectKBest(score, k="all")),
        ("model", _estimator(name, seed, n_trees)),
    ])


def default_grid(name: str, n_usable: int, max_features: int | None = None) -> dict:
    """A small grid: k features kept by the selection, plus one or two model hyper-parameters."""
    top = min(n_usable, max_features or n_usable)
    ks = sorted({min(top, 5), top})
    grids = {
        "logistic": {"model__C": [0.1, 1.0]},
        "random_forest": {"model__max_depth": [3, 6]},
        "gradient_boosting": {"model__learning_rate": [0.05, 0.1]},
        "svm": {"model__estimator__C": [0.5, 2.0]},
        "cox": {"model__penalizer": [0.1, 1.0]},
    }
    return {"select__k": ks, **grids[name]}


def selected_features(pipeline: Pipeline, features: list[str]) -> list[str]:
    """The input features the fitted pipeline's model actually uses (after the filter and selection)."""
    kept = np.asarray(features)[pipeline.named_steps["drop_constant"].get_support()]
    return kept[pipeline.named_steps["select"].get_support()].tolist()


# -- metrics -------------------------------------------------------------------------------------------




@dataclass
class TrainedModel:
    """A fitted pipeline with what is needed to apply, explain and describe it."""

    name: str
    pipeline: Pipeline
    features: list[str]
    endpoint: Endpoint
    key: str = "case_id"
    threshold: float = 0.5
    best_params: dict = field(default_factory=dict)
    metrics: pd.DataFrame | None = None
    cv_predictions: pd.DataFrame | None = None
    fold_params: list = field(default_factory=list)
    cohort: dict = field(default_factory=dict)
    risk_cut: float | None = None
    risk_percentile: float = 50.0
    background: np.ndarray | None = None  # k-means centres of the training features (SHAP background)
    feature_quantiles: pd.DataFrame | None = None  # 5..95 % percentiles (no min / max) of each training feature
    warnings: list = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    trained_at: str = ""
    replicates: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.endpoint.kind

    @property
    def used_features(self) -> list[str]:
        return selected_features(self.pipeline, self.features)

    def predict(self, X: pd.DataFrame, case_ids=None) -> pd.DataFrame:
        """One row per case: class probabilities and predicted class, or prognostic index and risk group."""
        values = X[self.features].to_numpy(float)
        out = pd.DataFrame({self.key: list(case_ids) if case_ids is not None else range(1, len(X) + 1)})
        if self.kind == TIME_TO_EVENT:
            index = self.pipeline.predict(values)
            out["prognostic_index"] = index
            out["risk_group"] = np.where(index > self.risk_cut, "high risk", "low risk")
            return out
        proba = self.pipeline.predict_proba(values)
        for c, label in enumerate(self.endpoint.classes):
            out[f"p_{label}"] = proba[:, c]
        if self.kind == BINARY:
            positive = proba[:, 1]
            out["predicted"] = np.where(positive >= self.threshold, self.endpoint.classes[1], self.endpoint.classes[0])
        else:
            out["predicted"] = np.asarray(self.endpoint.classes, dtype=object)[proba.argmax(axis=1)]
        return out


def _targets(dataset: Dataset) -> np.ndarray:
    survival = dataset.endpoint.kind == TIME_TO_EVENT
    return survival_y(dataset.time, dataset.event) if survival else dataset.y


def _search(dataset: Dataset, params: TrainParameters, inner_splits) -> GridSearchCV:
    """The inner grid search (AUC for classifiers, one-vs-rest AUC for multi-class, C-index for Cox)."""
    name, grid = params.model, _grid(dataset, params)
    if name in SURVIVAL_MODELS:
        scoring = None  # CoxRegression.score: the C-index
    else:
        scoring = "roc_auc" if dataset.endpoint.kind == BINARY else "roc_auc_ovr"
    return GridSearchCV(make_pipeline(name, params.seed, params.n_trees), grid, scoring=scoring, cv=inner_splits,
                        n_jobs=1, refit=True, error_score="raise")


def _fit_quietly(search, X, y):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is greater than n_features.*")
        warnings.filterwarnings("ignore", message="Features .* are constant", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)  # f_classif on a fold-constant column
        return search.fit(X, y)


def _strata(dataset: Dataset) -> np.ndarray:
    return dataset.event if dataset.endpoint.kind == TIME_TO_EVENT else dataset.y


def check_model(dataset: Dataset, params: TrainParameters) -> None:
    """Refuse a model / endpoint / folds combination that cannot be trained on ``dataset`` (before any fit)."""
    name = params.model
    if name not in MODEL_NAMES:
        raise InputError(f"Unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}.")
    survival = dataset.endpoint.kind == TIME_TO_EVENT
    if survival and name not in SURVIVAL_MODELS:
        raise InputError(f"'{name}' predicts a class; for the time-to-event endpoint choose: "
                         f"{', '.join(SURVIVAL_MODELS)}.")
    if not survival and name in SURVIVAL_MODELS:
        raise InputError(f"'{name}' needs a time-to-event endpoint (time and event columns); "
                         f"for '{dataset.endpoint.column}' choose one of: {', '.join(CLASSIFIERS)}.")
    if params.outer_folds < 2 or params.inner_folds < 2:
        raise InputError("Cross-validation needs at least 2 outer and 2 inner folds.")
    if not usable_features(dataset):
        raise InputError("Every feature is constant or empty: there is nothing to learn from.")
    if survival:
        check_events_for_cox(dataset)
        check_classes_for_cv(_event_view(dataset), params.outer_folds)
    else:
        check_classes_for_cv(dataset, params.outer_folds)


def _event_view(dataset: Dataset) -> Dataset:
    """The event indicator as a two-class endpoint (to check that stratified folds are possible)."""
    view = Dataset(dataset.case_ids, dataset.X, Endpoint(BINARY, column=dataset.endpoint.event, classes=(0, 1)),
                   y=dataset.event)
    return view


@dataclass
class CrossValidation:
    prediction: np.ndarray  # out-of-fold probabilities [n, K] or prognostic index [n]
    fold: np.ndarray
    fold_params: list[dict]
    risk_group: np.ndarray | None = None  # Cox: split at each training fold's percentile


@single_threaded
def cross_validate(dataset: Dataset, params: TrainParameters, progress=None) -> CrossValidation:
    """Nested CV: an inner grid search per outer fold; returns the outer folds' predictions."""
    task = as_task(progress)
    check_model(dataset, params)
    X, y, strata = dataset.X.to_numpy(float), _targets(dataset), _strata(dataset)
    survival = dataset.endpoint.kind == TIME_TO_EVENT
    n = dataset.n
    prediction = np.full(n, np.nan) if survival else np.full((n, len(dataset.endpoint.classes)), np.nan)
    fold = np.zeros(n, int)
    risk_group = np.empty(n, dtype=object) if survival else None
    chosen = []
    outer = list(StratifiedKFold(params.outer_folds, shuffle=True, random_state=params.seed).split(X, strata))
    for i, (train, test) in enumerate(task.steps(outer, f"Nested cross-validation ({params.model})")):
        counts = np.bincount(strata[train])
        if counts.min() < params.inner_folds:
            raise InputError(f"An outer training fold has only {counts.min()} case(s) of a class; "
                             f"{params.inner_folds} inner folds need more. Use fewer folds.")
        inner = list(StratifiedKFold(params.inner_folds, shuffle=True, random_state=params.seed + 1 + i)
                     .split(X[train], strata[train]))
        search = _fit_quietly(_search(dataset, params, inner), X[train], y[train])
        chosen.append(dict(search.best_params_))
        fold[test] = i
        if survival:
            prediction[test] = search.predict(X[test])
            cut = np.percentile(search.predict(X[train]), params.risk_percentile)
            risk_group[test] = np.where(prediction[test] > cut, "high risk", "low risk")
        else:
            prediction[test] = search.predict_proba(X[test])
    return CrossValidation(prediction, fold, chosen, risk_group)


def _grid(dataset: Dataset, params: TrainParameters) -> dict:
    grid = dict(params.grid) if params.grid else default_grid(params.model, len(usable_features(dataset)),
                                                            params.max_features)
    if "select__k" not in grid:
        grid["select__k"] = ["all"]
    n_usable = len(usable_features(dataset))
    grid["select__k"] = sorted({k if k == "all" else min(int(k), n_usable) for k in grid["select__k"]},
                               key=lambda k: math.inf if k == "all" else k)
    return grid


@single_threaded
def train(dataset: Dataset, params: TrainParameters | None = None, progress=None) -> TrainedModel:
    """Nested-CV metrics with bootstrap CIs, then the final pipeline refitted on every case."""
    params = params or TrainParameters()
    task = as_task(progress)
    cv = cross_validate(dataset, params, task.sub(0.0, 0.75))
    survival = dataset.endpoint.kind == TIME_TO_EVENT
    observed = (dataset.time, dataset.event) if survival else dataset.y
    task.update(0.75, "Bootstrap confidence intervals")
    metrics = bootstrap_metrics(dataset.endpoint, observed, cv.prediction, params.threshold, params.n_bootstrap,
                                params.seed, params.confidence)
    task.update(0.85, "Fitting the final model on every case")
    X, y, strata = dataset.X.to_numpy(float), _targets(dataset), _strata(dataset)
    inner = list(StratifiedKFold(params.inner_folds, shuffle=True, random_state=params.seed).split(X, strata))
    search = _fit_quietly(_search(dataset, params, inner), X, y)
    pipeline = search.best_estimator_
    model = TrainedModel(
        name=params.model, pipeline=pipeline, features=dataset.features, endpoint=dataset.endpoint, key=dataset.key,
        threshold=params.threshold, best_params=dict(search.best_params_), metrics=metrics.table,
        fold_params=cv.fold_params, cohort=dataset.summary(), risk_percentile=params.risk_percentile,
        warnings=list(dataset.warnings), parameters=asdict(params),
        trained_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        replicates=metrics.replicates,
    )
    model.cv_predictions = _cv_table(dataset, cv)
    if survival:
        model.risk_cut = float(np.percentile(pipeline.predict(X), params.risk_percentile))
    task.update(0.95, "Cohort summary for explanations")
    imputed = pipeline.named_steps["impute"].transform(X)
    centres = min(20, dataset.n)
    model.background = KMeans(centres, n_init=4, random_state=params.seed).fit(imputed).cluster_centers_
    model.feature_quantiles = cohort_quantiles(dataset.X)
    task.update(1.0, "Model trained")
    return model


def _cv_table(dataset: Dataset, cv: CrossValidation) -> pd.DataFrame:
    table = pd.DataFrame({dataset.key: dataset.case_ids, "fold": cv.fold + 1})
    endpoint = dataset.endpoint
    if endpoint.kind == TIME_TO_EVENT:
        table[endpoint.time], table[endpoint.event] = dataset.time, dataset.event
        table["prognostic_index"] = cv.prediction
        table["risk_group"] = cv.risk_group
    else:
        table[endpoint.column] = np.asarray(endpoint.classes, dtype=object)[dataset.y]
        for c, label in enumerate(endpoint.classes):
            table[f"p_{label}"] = cv.prediction[:, c]
    return table


def compare_models(dataset: Dataset, names, params: TrainParameters | None = None, progress=None):
    """Train each model with the same folds and bootstrap resamples; a comparison table and the models.

    The table has one row per model with each metric and its CI, plus the difference in the
    primary metric (AUC or C-index) to the best model with a paired bootstrap CI.
    """
    params = params or TrainParameters()
    task = as_task(progress)
    names = list(names)
    models: dict[str, TrainedModel] = {}
    for i, name in enumerate(names):
        run = TrainParameters(**{**asdict(params), "model": name, "grid": params.grid if len(names) == 1 else None})
        models[name] = train(dataset, run, task.sub(i / len(names), (i + 1) / len(names)))
    primary = "c_index" if dataset.endpoint.kind == TIME_TO_EVENT else "auc"
    rows = []
    for name, model in models.items():
        row = {"model": name}
        for record in model.metrics.itertuples():
            row[record.metric] = record.estimate
            row[f"{record.metric}_ci_low"], row[f"{record.metric}_ci_high"] = record.ci_low, record.ci_high
        rows.append(row)
    table = pd.DataFrame(rows)
    best = table.loc[table[primary].idxmax(), "model"]
    alpha = (1 - params.confidence) / 2
    deltas = []
    for name in names:
        difference = models[name].replicates[primary] - models[best].replicates[primary]
        finite = difference[np.isfinite(difference)]
        low, high = np.quantile(finite, [alpha, 1 - alpha]) if finite.size else (math.nan, math.nan)
        deltas.append((float(table.loc[table.model == name, primary].iloc[0] - table[primary].max()), low, high))
    table[f"delta_{primary}_vs_best"] = [d[0] for d in deltas]
    table[f"delta_{primary}_ci_low"] = [d[1] for d in deltas]
    table[f"delta_{primary}_ci_high"] = [d[2] for d in deltas]
    return table.sort_values(primary, ascending=False).reset_index(drop=True), models
