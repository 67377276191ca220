"""Case tables as plain ``{column: values}`` dicts, what a Table node holds: the outer join by case id.

No pandas and no MRML here, so the join serves Table nodes (:mod:`virtualbiopsy.logic.outcome_predictor`)
and DataFrames (:func:`virtualbiopsy.prediction.data.join_frames`) alike, and loads in a Slicer that has
only what Slicer ships.
"""

from __future__ import annotations

import math

from virtualbiopsy.errors import InputError


def join_columns(
    tables: list[dict[str, list]], key: str = "case_id", names: list[str] | None = None
) -> dict[str, list]:
    """Outer-join ``{column: values}`` tables on ``key``.

    Missing cells become NaN in numeric columns and empty strings in text columns: they are
    marked, never filled.
    Same-named columns from different tables are prefixed with the table's name to keep both.
    Case ids keep the order in which they first appear.

    >>> join_columns([{"case_id": ["a", "b"], "adc": [1.1, 0.9]}, {"case_id": ["b"], "site": ["X"]}])
    {'case_id': ['a', 'b'], 'adc': [1.1, 0.9], 'site': ['', 'X']}
    """
    names = names or [f"table{i + 1}" for i in range(len(tables))]
    for table, table_name in zip(tables, names):
        if key not in table:
            raise InputError(f"Table '{table_name}' has no '{key}' column (it has: {', '.join(table)}).")
        ids = [str(v) for v in table[key]]
        duplicates = sorted({v for v in ids if ids.count(v) > 1})
        if duplicates:
            raise InputError(
                f"Table '{table_name}' lists these {key} values more than once: {', '.join(duplicates[:10])}."
            )
    order: list[str] = []
    for table in tables:
        order += [str(v) for v in table[key] if str(v) not in order]
    counts: dict[str, int] = {}
    for table in tables:
        for column in table:
            counts[column] = counts.get(column, 0) + (column != key)
    joined: dict[str, list] = {key: order}
    for table, table_name in zip(tables, names):
        row_of = {str(v): r for r, v in enumerate(table[key])}
        for column, values in table.items():
            if column == key:
                continue
            out_name = column if counts[column] == 1 else f"{table_name}:{column}"
            numeric = all(isinstance(v, (int, float)) for v in values)
            blank = math.nan if numeric else ""
            joined[out_name] = [values[row_of[c]] if c in row_of else blank for c in order]
    return joined


def is_missing(value) -> bool:
    """Whether a cell of a joined table is missing: an empty string (text) or NaN (numbers)."""
    return value == "" or (isinstance(value, float) and math.isnan(value))
