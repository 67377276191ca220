"""Which columns of a cohort table are features, and the checks every step shares.

A cohort table mixes identifiers and clinical columns (case id, label, batch/site, errors,
pyradiomics' ``diagnostics_*`` columns) with feature columns. Features are the numeric columns
that are not excluded by name (case-insensitive) or by prefix; everything else is carried along
unchanged where it makes sense (a case id stays next to its row).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from virtualbiopsy.errors import InputError, InvalidValuesError

#: Column names never treated as features (compared case-insensitively).
META_COLUMNS = frozenset({
    "case", "case_id", "caseid", "id", "subject", "subject_id", "patient", "patient_id", "image", "image_path",
    "mask", "mask_path", "label", "mask_label", "segment", "segment_id", "batch", "site", "centre", "center",
    "scanner", "outcome", "error", "errors", "status",
})
#: Column-name prefixes never treated as features (pyradiomics writes its settings/diagnostics there).
META_PREFIXES = ("diagnostics_",)


def frame_from_columns(columns: Mapping[str, Sequence]) -> pd.DataFrame:
    """A DataFrame from {name: values}; see :func:`virtualbiopsy.frames.frame_from_table`."""
    from virtualbiopsy.frames import frame_from_table

    return frame_from_table(columns)


def split_columns(frame: pd.DataFrame, exclude: Iterable[str] = (), prefixes: Iterable[str] = META_PREFIXES,
                  meta_names: Iterable[str] = META_COLUMNS) -> tuple[list[str], dict[str, str]]:
    """(feature columns in table order, {other column: why it is not a feature})."""
    excluded = {str(name) for name in exclude}
    meta = {name.lower() for name in meta_names}
    prefixes = tuple(prefixes)
    features, others = [], {}
    for name in frame.columns:
        column = frame[name]
        if name in excluded:
            others[name] = "excluded by the user"
        elif str(name).lower() in meta:
            others[name] = "identifier / clinical column"
        elif str(name).startswith(prefixes):
            others[name] = "pyradiomics diagnostics column"
        elif column.dtype == bool or not pd.api.types.is_numeric_dtype(column):
            others[name] = "not numeric"
        else:
            features.append(name)
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
    missing = [i for i, v in enumerate(labels) if v in ("", "nan", "None", "NaN")]
    if missing:
        raise InputError(f"The {what} is missing for {len(missing)} case(s) (rows {', '.join(map(str, missing[:8]))}"
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
    """A name per row: the case_id column if there is one, else the row number."""
    for name in frame.columns:
        if str(name).lower() in ("case_id", "case", "caseid", "id", "subject", "patient_id"):
            return [str(v) for v in frame[name]]
    return [f"row {i}" for i in range(len(frame))]

