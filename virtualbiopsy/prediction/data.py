"""From a joined case table to a checked modelling data set: features, endpoint, warnings.

Missing feature values are reported here and left missing (NaN): they are imputed inside each
model's pipeline, fitted on the training folds only. Rows without an endpoint are dropped (an
outcome is never imputed). Problems that make a model meaningless (a missing column, a single
class, too few events) raise :class:`~virtualbiopsy.errors.InputError`; problems the user should
know about (a constant feature, few events per feature, much missingness) are
:class:`DataWarning` s, issued with :mod:`warnings` and kept in ``Dataset.warnings``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from virtualbiopsy.columns import (  # noqa: F401 - outcome_like and OUTCOME_WORDS are part of this module's API
    OUTCOME_WORDS,
    numeric_values,
    outcome_like,
    require_unique_cases,
    select_features,
    text_cell_error,
)
from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.frames import frame_from_table
from virtualbiopsy.tables import join_columns

BINARY, MULTICLASS, TIME_TO_EVENT = "binary", "multiclass", "time-to-event"
MAX_CLASSES = 10
MIN_EVENTS = 10  # fewer events than this: no Cox model at all
EVENTS_PER_FEATURE = 10  # the usual rule of thumb for Cox models
MISSING_WARN = 0.3  # warn when a feature misses more than this share of its values


class DataWarning(UserWarning):
    """Something in the data the user should know about; the analysis goes on."""


@dataclass(frozen=True)
class Endpoint:
    kind: str
    column: str | None = None  # class label column (binary / multi-class)
    time: str | None = None  # follow-up time column (time-to-event)
    event: str | None = None  # 1 = event, 0 = censored
    classes: tuple = ()  # class labels, sorted; y holds their indices

    @property
    def name(self) -> str:
        return self.column if self.kind != TIME_TO_EVENT else f"{self.time}/{self.event}"

    @property
    def positive_class(self):
        return self.classes[-1] if self.kind == BINARY else None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "column": self.column, "time": self.time, "event": self.event,
                "classes": [_plain(c) for c in self.classes]}


@dataclass
class Dataset:
    case_ids: list[str]
    X: pd.DataFrame
    endpoint: Endpoint
    y: np.ndarray | None = None  # class index per case
    time: np.ndarray | None = None
    event: np.ndarray | None = None
    key: str = "case_id"
    warnings: list[str] = field(default_factory=list)
    missing: pd.DataFrame | None = None

    @property
    def features(self) -> list[str]:
        return list(self.X.columns)

    @property
    def n(self) -> int:
        return len(self.case_ids)

    @property
    def n_events(self) -> int:
        return int(self.event.sum()) if self.event is not None else 0

    def summary(self) -> dict:
        """A JSON-ready description of the cohort (for the model card; no patient-level data)."""
        summary = {"n_cases": self.n, "n_features": len(self.features), "endpoint": self.endpoint.to_dict(),
                   "missing_cells": int(self.X.isna().sum().sum()),
                   "features_with_missing": int((self.X.isna().sum() > 0).sum())}
        if self.y is not None:
            counts = np.bincount(self.y, minlength=len(self.endpoint.classes))
            summary["class_counts"] = {str(_plain(c)): int(k) for c, k in zip(self.endpoint.classes, counts)}
        if self.time is not None:
            summary["events"] = self.n_events
            summary["censored"] = self.n - self.n_events
            summary["median_time"] = float(np.median(self.time))
            summary["max_time"] = float(np.max(self.time))
        return summary

    def subset(self, rows) -> Dataset:
        rows = np.asarray(rows)
        return Dataset([self.case_ids[r] for r in rows], self.X.iloc[rows].reset_index(drop=True), self.endpoint,
                       None if self.y is None else self.y[rows], None if self.time is None else self.time[rows],
                       None if self.event is None else self.event[rows], self.key, list(self.warnings), self.missing)


def _plain(value):
    """numpy scalars -> Python scalars (JSON, CSV)."""
    return value.item() if hasattr(value, "item") else value


def warn(message: str, collected: list[str] | None = None) -> None:
    if collected is not None:
        collected.append(message)
    warnings.warn(message, DataWarning, stacklevel=3)


# -- tables ----------------------------------------------------------------------------------------


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (or TSV) case table; a clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"No table at '{path}'.")
    try:
        return pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",")
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise FileFormatError(f"Could not read the table '{path.name}': {error}") from error


def join_frames(frames: Sequence[pd.DataFrame], key: str = "case_id", names: Sequence[str] | None = None):
    """Outer-join case tables on ``key`` with :func:`virtualbiopsy.tables.join_columns`."""
    tables = [{c: [_plain(v) for v in frame[c].tolist()] for c in frame.columns} for frame in frames]
    return frame_from_table(join_columns(tables, key, list(names) if names else None))


def missing_report(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Per column: missing count and percentage (the explicit record of what imputation will fill)."""
    columns = list(columns if columns is not None else frame.columns)
    missing = frame[columns].isna().sum()
    return pd.DataFrame({"feature": columns, "missing": [int(missing[c]) for c in columns],
                         "missing_percent": [100.0 * missing[c] / max(len(frame), 1) for c in columns]})


# -- data set ----------------------------------------------------------------------------------------


def _require_columns(frame: pd.DataFrame, names: Sequence[str], what: str) -> None:
    absent = [n for n in names if n not in frame.columns]
    if absent:
        listed = ", ".join(map(str, frame.columns[:30])) + (" ..." if len(frame.columns) > 30 else "")
        raise InputError(f"The table has no {what} column(s) {', '.join(repr(a) for a in absent)} "
                         f"(it has: {listed}).")


def endpoint_kind(values: pd.Series, name: str) -> str:
    """Binary (2 classes) or multi-class (3-10 classes); a continuous column is refused."""
    classes = values.dropna().unique()
    if len(classes) < 2:
        only = ", ".join(map(str, classes)) or "no value"
        raise InputError(f"The endpoint '{name}' has a single class ({only}) in all {values.notna().sum()} "
                         "cases: there is nothing to predict.")
    if len(classes) == 2:
        return BINARY
    numeric = pd.api.types.is_numeric_dtype(values)
    if len(classes) > MAX_CLASSES or (numeric and not np.allclose(classes, np.round(classes))):
        raise InputError(f"The endpoint '{name}' has {len(classes)} distinct values: it looks continuous. "
                         f"Choose a binary or multi-class endpoint (up to {MAX_CLASSES} classes), or a survival "
                         "time with its event column.")
    return MULTICLASS


def prepare_dataset(
    table,
    endpoint: str | None = None,
    *,
    time: str | None = None,
    event: str | None = None,
    features: Sequence[str] | None = None,
    key: str = "case_id",
    positive=None,
) -> Dataset:
    """Check a case table and split it into features and endpoint.

    ``endpoint`` names a class column (binary or multi-class); ``time`` + ``event`` make a
    time-to-event endpoint instead. ``features`` defaults to every numeric column other than the
    key, the endpoint columns and columns whose names look like outcomes (:func:`outcome_like`:
    ``os_days``, ``efs_event``, ... are known only after the prediction; using them would leak the
    answer), with a warning naming those left out; name them in ``features`` to use them anyway.
    ``positive`` is the class of a binary endpoint whose probability is predicted (default: the
    larger label, 1 for 0/1).
    """
    frame = frame_from_table(table)
    collected: list[str] = []
    _require_columns(frame, [key], "case id")
    survival = time is not None or event is not None
    if survival and (time is None or event is None):
        raise InputError("A time-to-event endpoint needs both the time column and the event column.")
    if not survival and not endpoint:
        raise InputError("Choose the endpoint column (or a time and an event column for survival).")
    outcome_columns = [time, event] if survival else [endpoint]
    _require_columns(frame, outcome_columns, "endpoint")
    require_unique_cases(frame, key)

    reserved = {key: "case id", **{name: "endpoint" for name in outcome_columns}}
    selection = select_features(frame, features=features, reserved=reserved, key=key)
    features = selection.features
    for message in selection.warnings:
        warn(message, collected)

    if survival:  # named on the whole table, before rows without an outcome are left out
        error = text_cell_error(frame, time, key, what="The time column")
        if error is not None:
            raise error

    # rows without an outcome cannot be used (outcomes are never imputed)
    no_outcome = frame[outcome_columns].isna().any(axis=1).to_numpy()
    if no_outcome.all():
        raise InputError(f"No case has a value in {', '.join(outcome_columns)}.")
    if no_outcome.any():
        dropped = frame[key][no_outcome].astype(str).tolist()
        warn(f"{len(dropped)} case(s) without {'/'.join(outcome_columns)} were left out: "
             f"{', '.join(dropped[:10])}{' ...' if len(dropped) > 10 else ''}.", collected)
    frame = frame[~no_outcome].reset_index(drop=True)
    X = numeric_values(frame, features, key)
    infinite = [f for f in features if np.isinf(X[f]).any()]
    if infinite:
        raise InputError(f"These features contain infinite values: {', '.join(infinite)}.")

    dataset = Dataset(frame[key].astype(str).tolist(), X, Endpoint(BINARY), key=key, warnings=collected)
    if survival:
        dataset.endpoint = Endpoint(TIME_TO_EVENT, time=time, event=event)
        dataset.time, dataset.event = _survival_columns(frame, time, event, key)
    else:
        values = frame[endpoint]
        if pd.api.types.is_float_dtype(values) and np.allclose(values, np.round(values)):
            frame[endpoint] = values.round().astype(int)  # 0.0 / 1.0 from a table node are the classes 0 / 1
        kind = endpoint_kind(frame[endpoint], endpoint)
        classes = sorted(frame[endpoint].unique().tolist(), key=lambda v: (str(type(v)), v))
        if positive is not None and kind == BINARY:
            matches = [c for c in classes if str(c) == str(positive)]
            if not matches:
                raise InputError(f"The positive class {positive!r} is not among the values of '{endpoint}' "
                                 f"({', '.join(map(str, classes))}).")
            classes = [c for c in classes if c != matches[0]] + matches
        dataset.endpoint = Endpoint(kind, column=endpoint, classes=tuple(classes))
        index = {c: i for i, c in enumerate(classes)}
        dataset.y = np.array([index[v] for v in frame[endpoint]], dtype=int)

    dataset.missing = missing_report(X)
    _feature_warnings(dataset, collected)
    return dataset


def _survival_columns(frame: pd.DataFrame, time: str, event: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    times = frame[time].to_numpy(float)
    bad = np.flatnonzero((times < 0) | ~np.isfinite(times))
    if bad.size:
        raise InputError(f"The time column '{time}' has {bad.size} negative or infinite value(s), e.g. "
                         f"{times[bad[0]]:g} for case {frame[key].iloc[int(bad[0])]}.")
    values = frame[event]
    if values.dtype == bool:
        values = values.astype(int)
    if not pd.api.types.is_numeric_dtype(values) or not set(np.unique(values)) <= {0, 1}:
        found = ", ".join(map(str, sorted(set(values.astype(str)))[:6]))
        raise InputError(f"The event column '{event}' must hold 1 (event) or 0 (censored); it holds {found}.")
    return times, values.to_numpy(int)


def _feature_warnings(dataset: Dataset, collected: list[str]) -> None:
    X = dataset.X
    empty = [f for f in X.columns if X[f].isna().all()]
    constant = [f for f in X.columns if f not in empty and X[f].nunique(dropna=True) <= 1]
    if empty:
        warn(f"These features have no value in any case and are ignored: {', '.join(empty)}.", collected)
    if constant:
        warn(f"These features are constant and are dropped inside the model pipeline: {', '.join(constant)}.",
             collected)
    share = X.isna().mean()
    sparse = [f"{f} ({100 * share[f]:.0f} %)" for f in X.columns if f not in empty and share[f] > MISSING_WARN]
    if sparse:
        warn(f"These features miss many values (imputed with the training median inside each fold): "
             f"{', '.join(sparse)}.", collected)


def usable_features(dataset: Dataset) -> list[str]:
    """Features that are neither empty nor constant (label-free: no information about the endpoint)."""
    X = dataset.X
    return [f for f in X.columns if X[f].nunique(dropna=True) > 1]


def check_events_for_cox(dataset: Dataset, n_features: int | None = None) -> None:
    """Refuse a Cox model with fewer than MIN_EVENTS events; warn below EVENTS_PER_FEATURE per feature."""
    if dataset.endpoint.kind != TIME_TO_EVENT:
        raise InputError("A Cox model needs a time-to-event endpoint (time and event columns).")
    events = dataset.n_events
    n_features = n_features or len(usable_features(dataset))
    if events < MIN_EVENTS:
        raise InputError(f"Too few events for a Cox model: {events} event(s) in {dataset.n} cases "
                         f"('{dataset.endpoint.event}' = 1); at least {MIN_EVENTS} are needed.")
    if events < EVENTS_PER_FEATURE * n_features:
        warn(f"Only {events / n_features:.1f} events per feature ({events} events, {n_features} features); "
             f"the rule of thumb is at least {EVENTS_PER_FEATURE}. The ridge-penalised Cox model may still "
             "overfit: use fewer features.", dataset.warnings)


def check_classes_for_cv(dataset: Dataset, folds: int) -> None:
    """Every class needs at least ``folds`` cases for stratified cross-validation."""
    counts = np.bincount(dataset.y, minlength=len(dataset.endpoint.classes))
    small = [f"'{c}' ({k})" for c, k in zip(dataset.endpoint.classes, counts) if k < folds]
    if small:
        raise InputError(f"The endpoint '{dataset.endpoint.column}' has too few cases in class(es) "
                         f"{', '.join(small)} for {folds}-fold cross-validation (at least {folds} each).")


def rows_for(dataset_features: Sequence[str], table, key: str = "case_id",
             model_key: str | None = None) -> tuple[list[str], pd.DataFrame]:
    """Case ids and the feature matrix of a NEW table for a trained model (missing columns: error).

    The case id column ``key`` is required (cases are never numbered silently); ``model_key`` (the
    trained model's case id column) is named in the error when it differs from ``key``.
    """
    frame = frame_from_table(table)
    if key not in frame.columns:
        listed = ", ".join(map(str, frame.columns[:30])) + (" ..." if len(frame.columns) > 30 else "")
        hint = ""
        if model_key and model_key != key:
            present = model_key in frame.columns
            hint = (f" The model was trained with case ids in '{model_key}'"
                    + (f", which the table has: use it as the key (--key {model_key})." if present else "."))
        raise InputError(f"The table has no case id column '{key}' (it has: {listed}).{hint}")
    absent = [f for f in dataset_features if f not in frame.columns]
    if absent:
        raise InputError(f"The table lacks {len(absent)} feature(s) the model was trained on: "
                         f"{', '.join(absent)}.")
    ids = frame[key].astype(str).tolist()
    return ids, numeric_values(frame, dataset_features, key).reset_index(drop=True)

