"""Logic of the OutcomePredictor module.

Now: joining feature tables (radiomics, habitat ADC, clinical) by case id, reporting missing
values explicitly. Models, survival analysis, SHAP and Grad-CAM come with issue #6.
"""

from __future__ import annotations

import math

from virtualbiopsy.errors import InputError
from virtualbiopsy.mrml import arrays


def join_columns(
    tables: list[dict[str, list]], key: str = "case_id", names: list[str] | None = None
) -> dict[str, list]:
    """Outer-join ``{column: values}`` tables on ``key``.

    Missing cells become NaN in numeric columns and empty strings in text columns: they are
    marked, never filled.
    Same-named columns from different tables are prefixed with the table's name to keep both.
    Case ids keep the order in which they first appear.
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
    return value == "" or (isinstance(value, float) and math.isnan(value))


class OutcomePredictorLogic:
    def __init__(self, context) -> None:
        self.context = context

    def join_tables(self, table_nodes, key: str = "case_id", name: str = "Joined cases"):
        """A new table with one row per case id found in any of ``table_nodes`` (outer join).

        Missing cells stay NaN or empty (never silently filled); the node's attribute
        ``VirtualBiopsy.MissingCells`` counts them so the user sees how complete the data are.
        """
        nodes = list(table_nodes)
        if not nodes:
            raise InputError("Select at least one table to join.")
        joined = join_columns([arrays.table_columns(n) for n in nodes], key, [n.GetName() for n in nodes])
        missing = sum(1 for values in joined.values() for v in values if is_missing(v))
        with self.context.transaction():
            node = arrays.add_table(self.context, joined, name)
            node.SetAttribute("VirtualBiopsy.MissingCells", str(missing))
        return node
