"""Which columns of a cohort table are features, and the checks every step shares.

A cohort table mixes identifiers and clinical columns (case id, label, batch/site, errors,
outcomes, pyradiomics' ``diagnostics_*`` columns) with feature columns. Which are features is
decided by the one guard the outcome models use too (:mod:`virtualbiopsy.columns`): outcome-like,
identifier and text columns are never default features, and here (reduction, ComBat) neither are
binary or categorical columns (labels and clinical codes); everything else is carried along
unchanged where it makes sense (a case id stays next to its row).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from virtualbiopsy.columns import (
    BOOKKEEPING_COLUMNS,
    BOOKKEEPING_PREFIXES,
    FeatureSelection,
    case_id_column,
    require_unique_cases,
    select_features,
    why_not_a_feature,
)
from virtualbiopsy.errors import InputError, InvalidValuesError
from virtualbiopsy.frames import BLANKS

#: Column names never treated as features (compared case-insensitively).
META_COLUMNS = BOOKKEEPING_COLUMNS
#: Column-name prefixes never treated as features (pyradiomics writes its settings/diagnostics there).
META_PREFIXES = BOOKKEEPING_PREFIXES


def feature_selection(frame: pd.DataFrame, features: Sequence[str] | None = None, exclude: Iterable[str] = (),
                      reserved: Mapping[str, str] | None = None) -> FeatureSelection:
    """The features of a cohort table by the shared guard (binary / categorical columns left out by default),
    refusing duplicate case ids, unknown column names and text in numeric cells (naming the cell)."""
    require_unique_cases(frame)
    return select_features(frame, features=features, exclude=exclude, reserved=reserved, discrete=True)


def split_columns(frame: pd.DataFrame, exclude: Iterable[str] = ()) -> tuple[list[str], dict[str, str]]:
    """(default feature columns in table order, {other column: why it is not a feature}); never raises.

    For carrying the non-feature columns along (a signature table keeps the case id and the
    outcomes); :func:`feature_selection` is the checked choice of features.
    """
    excluded = list(exclude)
    features, others = [], {}
    for name in frame.columns:
        reason = why_not_a_feature(frame, name, exclude=excluded, discrete=True)
        if reason is None:
            features.append(name)
        else:
            others[name] = reason
    return features, others


def require_columns(frame: pd.DataFrame, names: Iterable[str], what: str) -> None:
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InputError(f"The {what} has no column(s) {', '.join(map(repr, missing))}; its columns are: "
                         + ", ".join(map(str, frame.columns[:30])) + (" ..." if len(frame.columns) > 30 else "") + ".")


def require_finite_features(values: pd.DataFrame, what: str) -> None:
    """Refuse NaN / infinite values, naming the first affected features and how many cases each has."""
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if bad.any():
        counts = bad.sum(axis=0)
        named = [f"{name} ({count} case{'s' if count > 1 else ''})" for name, count in zip(values.columns, counts)
                 if count]
        raise InvalidValuesError(
            f"The {what} has missing or infinite values in {len(named)} feature(s): {', '.join(named[:8])}"
            + (" ..." if len(named) > 8 else "")
            + ". Remove or impute them first (the reduction can drop incomplete features: missing='drop')."
        )


def require_cases(n_cases: int, minimum: int, what: str) -> None:
    if n_cases < minimum:
        raise InputError(f"The {what} has {n_cases} case(s); at least {minimum} are needed.")


def level_text(value) -> str:
    """A batch or category label as text; 2.0 and 2 are the same level."""
    if isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return str(int(value))
    return str(value).strip()


def labels_as_text(values: Sequence, what: str) -> np.ndarray:
    labels = np.array([level_text(v) for v in values], dtype=object)
    missing = [i for i, v in enumerate(labels) if v.lower() in BLANKS]
    if missing:
        raise InputError(f"The {what} is missing for {len(missing)} case(s) (rows "
                         f"{', '.join(str(i + 1) for i in missing[:8])}"
                         + (" ..." if len(missing) > 8 else "") + ").")
    return labels


#: Columns in which a cohort extraction records why a case failed (empty when it succeeded).
ERROR_COLUMNS = ("error", "errors")


def failed_rows(frame: pd.DataFrame) -> pd.Series:
    """True for cases whose ``error`` column holds a message (their features are missing)."""
    failed = pd.Series(False, index=frame.index)
    for name in frame.columns:
        if str(name).lower() in ERROR_COLUMNS and not pd.api.types.is_numeric_dtype(frame[name]):
            text = frame[name].fillna("").astype(str).str.strip()
            failed |= ~text.str.lower().isin(("", "nan", "none"))
    return failed


def case_names(frame: pd.DataFrame) -> list[str]:
    """A name per row: the case id column if there is one, else the (1-based) row number."""
    column = case_id_column(frame)
    if column is not None:
        return [str(v) for v in frame[column]]
    return [f"row {i + 1}" for i in range(len(frame))]
