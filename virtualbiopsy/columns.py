"""Which columns of a case table are features: the one guard shared by ``reduce``, ``harmonise`` and ``predict``.

A case table mixes features with identifiers (case id), bookkeeping (batch, site, error,
pyradiomics' ``diagnostics_*``), outcomes (``os_days``, ``efs_event``: recorded after the time
of prediction, they leak the answer) and text. :func:`select_features` decides, the same way
for every step, which columns are features by default, and why each other column is not:

1. columns the step reserves (the case id, the endpoint, the batch, covariates, a label) and
   columns the user excludes;
2. identifier / bookkeeping names (:data:`BOOKKEEPING_COLUMNS`, any case) and ``diagnostics_*``;
3. outcome-like names (:func:`outcome_like`), named in a warning;
4. text columns; a column of numbers with a few text cells (``abc`` among ADC values) is
   refused, naming the cell (case id, row, column, value), since dropping it silently would
   lose a feature and treating the text as missing would hide a data-entry error;
5. optionally (``discrete=True``: reduce, harmonise) columns of codes (:func:`discrete_kind`:
   0/1, 1/2, a stage 1-4, whole numbers with at most :data:`MAX_CATEGORY_LEVELS` repeated levels):
   labels and clinical categories, not continuous image features; ComBat would turn their levels
   into other numbers.

A feature list the user gives is used as given, after checking that every column exists, is
not reserved and holds numbers only (each bad cell named); outcome-like names in it warn.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from virtualbiopsy.errors import InputError
from virtualbiopsy.frames import BLANKS, CASE_ID_COLUMNS

#: Identifier and bookkeeping column names, never default features (compared case-insensitively).
BOOKKEEPING_COLUMNS = frozenset({
    "case", "case_id", "caseid", "id", "subject", "subject_id", "patient", "patient_id", "image", "image_path",
    "mask", "mask_path", "label", "mask_label", "segment", "segment_id", "batch", "site", "centre", "center",
    "scanner", "outcome", "error", "errors", "status",
})
#: Column-name prefixes never treated as features (pyradiomics writes its settings/diagnostics there).
BOOKKEEPING_PREFIXES = ("diagnostics_",)
#: A whole-number column with at most this many distinct (repeated) values is categorical (stage 1-4, grade 1-3).
MAX_CATEGORY_LEVELS = 5
#: ... whose levels lie at most this far apart (codes 0-5, not one outlier of 100 among 1s).
MAX_CODE_SPAN = 10

# Name parts that mark a column as an outcome (follow-up, events, survival, response): recorded AFTER
# the time of prediction, such a column leaks the answer when used as a feature. Abbreviations are
# whole name parts (``os_days``, ``EFS.event``), so ``dce_ttp`` (time to peak) or ``age_months`` are not
# outcomes; ``*_status`` alone is not one either (``mycn_status`` is a tumour biomarker).
OUTCOME_WORDS = frozenset({
    "os", "efs", "pfs", "dfs", "rfs", "dss", "css", "mfs", "lfs", "ttr", "survival", "surv", "survived",
    "event", "events", "death", "dead", "died", "deceased", "alive", "vital", "relapse", "relapsed",
    "recurrence", "progression", "progressed", "censor", "censored", "censoring", "outcome", "outcomes",
    "followup", "fu", "response", "responder", "remission",
})
OUTCOME_PHRASES = ("follow_up",)  # "time_to_" alone is no outcome: "time_to_peak" is a DCE feature


def outcome_like(name) -> bool:
    """Whether a column name looks like an outcome (``os_days``, ``efs_event``, ``vital_status``, ``followUp``).

    >>> [outcome_like(n) for n in ("os_days", "EFS.event", "vitalStatus", "adc_mean", "dce_ttp", "age_months")]
    [True, True, True, False, False, False]
    """
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name)).lower()
    parts = [p for p in re.split(r"[^a-z0-9]+", text) if p]
    joined = "_".join(parts) + "_"
    return any(p in OUTCOME_WORDS for p in parts) or any(phrase in joined for phrase in OUTCOME_PHRASES)


# -- cells ---------------------------------------------------------------------------------------


def case_id_column(frame: pd.DataFrame, key: str | None = None) -> str | None:
    """The column naming each row's case: ``key`` when the table has it, else the first of :data:`CASE_ID_COLUMNS`."""
    if key is not None and key in frame.columns:
        return key
    lower = {str(name).lower(): name for name in frame.columns}
    return next((lower[name] for name in CASE_ID_COLUMNS if name in lower), None)


def row_name(frame: pd.DataFrame, position: int, key: str | None = None) -> str:
    """'case NB0007 (row 7)': the case id and the 1-based row of the table (the header is not a row)."""
    column = case_id_column(frame, key)
    where = f"row {position + 1}"
    if column is None:
        return where
    return f"case {frame[column].iloc[position]} ({where})"


def _text_cells(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(is a non-blank cell, is a number) per cell of a column."""
    text = column.astype(str).str.strip()
    filled = column.notna().to_numpy() & ~text.str.lower().isin(BLANKS).to_numpy()
    numbers = pd.to_numeric(text.where(filled), errors="coerce").notna().to_numpy()
    return filled, numbers


def text_cell_error(frame: pd.DataFrame, name, key: str | None = None, what: str = "Column") -> InputError | None:
    """The error naming the first cell of column ``name`` that is not a number, or None when every filled cell is.

    ``what`` names the column's role in the message ("The time column").
    """
    column = frame[name]
    if column.dtype == bool:
        return InputError(f"{what} '{name}' holds yes/no values, not numbers ({row_name(frame, 0, key)}: "
                          f"{column.iloc[0]!r}); code it as 0/1 or leave it out.")
    if pd.api.types.is_numeric_dtype(column):
        return None
    filled, numbers = _text_cells(column)
    bad = np.flatnonzero(filled & ~numbers)
    if bad.size == 0:
        return None
    position = int(bad[0])
    cell = f"{str(column.iloc[position])!r} for {row_name(frame, position, key)}"
    if not mostly_numbers(column):
        return InputError(f"{what} '{name}' is not numeric: it holds text ({cell}); encode it as numbers or leave "
                          "it out.")
    more = f" and {bad.size - 1} more cell(s)" if bad.size > 1 else ""
    return InputError(f"{what} '{name}' holds the text {cell}{more} where numbers are expected: correct the cell "
                      "(leave it empty for a missing value) or leave the column out.")


def mostly_numbers(column: pd.Series) -> bool:
    """A text column most of whose filled cells are numbers: a numeric column with data-entry errors."""
    if pd.api.types.is_numeric_dtype(column) or column.dtype == bool:
        return False
    filled, numbers = _text_cells(column)
    return bool(numbers.any()) and numbers.sum() >= (filled & ~numbers).sum()


def require_numbers(frame: pd.DataFrame, names: Iterable, key: str | None = None) -> None:
    """Refuse the first of these columns holding a cell that is not a number, naming the cell."""
    for name in names:
        error = text_cell_error(frame, name, key)
        if error is not None:
            raise error


def numeric_values(frame: pd.DataFrame, names: Sequence, key: str | None = None) -> pd.DataFrame:
    """``frame[names]`` as floats (blank cells NaN), refusing text cells by name."""
    require_numbers(frame, names, key)
    return frame[list(names)].apply(lambda column: pd.to_numeric(column, errors="coerce")).astype(float)


def discrete_kind(column: pd.Series) -> str | None:
    """'binary (0, 1)' or 'categorical (3 whole-number levels: 1, 2, 3)' for a column of codes, else None.

    Codes are whole numbers, 2 to :data:`MAX_CATEGORY_LEVELS` distinct values no more than
    :data:`MAX_CODE_SPAN` apart (0/1, 1/2, a stage 1-4, a grade 0-3), each held by two cases or
    more on average. A feature that is 1 in every case but one, where it is 100, is no code:
    the low-variance filter deals with it.
    """
    values = pd.to_numeric(column, errors="coerce").dropna().to_numpy(dtype=float)
    levels = np.unique(values)
    if not (2 <= levels.size <= MAX_CATEGORY_LEVELS and values.size >= 2 * levels.size):
        return None
    if not (np.all(levels == np.round(levels)) and levels[-1] - levels[0] <= MAX_CODE_SPAN):
        return None
    shown = ", ".join(f"{v:g}" for v in levels)
    if levels.size == 2:
        return f"binary ({shown})"
    return f"categorical ({levels.size} whole-number levels: {shown})"


def require_unique_cases(frame: pd.DataFrame, key: str | None = None) -> None:
    """Refuse a table that lists a case id twice (its rows would be counted as two cases)."""
    column = case_id_column(frame, key)
    if column is None:
        return
    ids = frame[column].astype(str)
    duplicated = ids[ids.duplicated()]
    if not duplicated.empty:
        names = sorted(set(duplicated))
        raise InputError(f"The table lists these {column} values more than once: {', '.join(names[:10])}"
                         + (" ..." if len(names) > 10 else "") + "; each case must have one row.")


# -- the guard -------------------------------------------------------------------------------------


@dataclass
class FeatureSelection:
    """The feature columns (table order), why each other column is not one, and what the user should know."""

    features: list[str]
    set_aside: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _listed(names: Iterable) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:12]) + (f" ... ({len(names)} in all)" if len(names) > 12 else "")


def _require_present(frame: pd.DataFrame, names: Sequence, option: str) -> None:
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise InputError(f"{option} names column(s) the table does not have: {', '.join(map(repr, absent))} "
                         f"(its columns: {_listed(frame.columns)}).")


OUTCOME = "looks like an outcome (known only after the prediction)"
NOT_NUMERIC = "not numeric"
TEXT_IN_NUMBERS = "numbers with text cells"


def why_not_a_feature(frame: pd.DataFrame, name, reserved: Mapping[str, str] | None = None, exclude: Iterable = (),
                      discrete: bool = False) -> str | None:
    """Why column ``name`` is not a default feature (steps 1-5 of the module docstring), or None when it is one.

    Never raises: a column of numbers with text cells gives :data:`TEXT_IN_NUMBERS`, which
    :func:`select_features` refuses and a caller that only carries columns along may keep.
    """
    column = frame[name]
    if reserved and name in reserved:
        return reserved[name]
    if name in set(exclude):
        return "excluded by the user"
    if str(name).lower() in BOOKKEEPING_COLUMNS:
        return "identifier / clinical column"
    if str(name).startswith(BOOKKEEPING_PREFIXES):
        return "pyradiomics diagnostics column"
    if outcome_like(name):
        return OUTCOME
    if mostly_numbers(column):
        return TEXT_IN_NUMBERS
    if column.dtype == bool or not pd.api.types.is_numeric_dtype(column):
        return NOT_NUMERIC
    if discrete:
        kind = discrete_kind(column)
        if kind is not None:
            return f"{kind}: a label or clinical code, not a continuous feature"
    return None


def select_features(
    frame: pd.DataFrame,
    *,
    features: Sequence | None = None,
    exclude: Iterable = (),
    reserved: Mapping[str, str] | None = None,
    key: str | None = None,
    discrete: bool = False,
) -> FeatureSelection:
    """The feature columns of a case table (module docstring); refuses what cannot be used, naming it.

    ``features``: the user's list (used as given, checked); None: the default rule. ``exclude``:
    columns the user leaves out (each must exist). ``reserved``: {column: role} of columns the
    step uses otherwise (case id, endpoint, batch, covariate, label). ``key``: the case id column
    used to name bad cells. ``discrete``: also leave binary / categorical columns out by default.
    """
    reserved = {name: role for name, role in (reserved or {}).items() if name is not None}
    exclude = list(dict.fromkeys(exclude))
    _require_present(frame, exclude, "--exclude (exclude)")
    if features is not None:
        features = list(dict.fromkeys(features))
        if not features:
            raise InputError("The feature list (--features) is empty; name at least one column.")
        _require_present(frame, features, "--features (features)")
        clash = [f"{name} (the {reserved[name]})" for name in features if name in reserved]
        if clash:
            raise InputError(f"These columns cannot be both a feature and {'; '.join(clash)}: leave them out of "
                             "--features.")
        dropped = [name for name in features if name in exclude]
        if dropped:
            raise InputError(f"{', '.join(map(str, dropped))} is both in --features and in --exclude; choose one.")
        require_numbers(frame, features, key)
        chosen = set(features)
        selection = FeatureSelection(features, {name: reserved.get(name, "not in the feature list")
                                                for name in frame.columns if name not in chosen})
        outcomes = [name for name in features if outcome_like(name)]
        if outcomes:
            selection.warnings.append(
                f"These features look like outcomes: {', '.join(map(str, outcomes))}. If they are recorded after "
                "the time of prediction (follow-up, events, response), they leak the answer into the model.")
        return selection

    selection = FeatureSelection([])
    outcomes, text = [], []
    for name in frame.columns:
        reason = why_not_a_feature(frame, name, reserved, exclude, discrete)
        if reason == TEXT_IN_NUMBERS:
            raise text_cell_error(frame, name, key)
        if reason is None:
            selection.features.append(name)
            continue
        selection.set_aside[name] = reason
        if reason == OUTCOME:
            outcomes.append(name)
        elif reason == NOT_NUMERIC:
            text.append(name)
    if outcomes:
        selection.warnings.append(
            f"Columns that look like outcomes are not used as features (known only after the prediction, they "
            f"would leak the answer): {', '.join(map(str, outcomes))}. Name them in the feature list to use them "
            "anyway.")
    if text:
        selection.warnings.append(f"Text columns not used as features: {', '.join(map(str, text))}.")
    if not selection.features:
        why = [f"{name}: {reason}" for name, reason in selection.set_aside.items()]
        listed = "; ".join(why[:6]) + (" ..." if len(why) > 6 else "")
        raise InputError(f"The table has no numeric feature columns ({listed or 'no columns'}); name the features "
                         "with --features.")
    return selection
