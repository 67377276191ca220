"""Case tables as pandas DataFrames, shared by the radiomics-signature and outcome steps.

Tables read from CSV or from a Slicer Table node hold numbers as text; here number-like columns
become numeric and empty cells become missing (NaN), so missing values are seen, never guessed.
Identifier columns stay text: a case id such as ``007`` must not become the number 7.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Columns that name the case of a row, tried in this order when no key is given (kept as text, never numbers).
CASE_ID_COLUMNS = ("case_id", "case", "caseid", "id", "subject", "subject_id", "patient", "patient_id")
IDENTIFIER_COLUMNS = frozenset(CASE_ID_COLUMNS)
BLANKS = ("", "nan", "none", "na", "n/a")


def frame_from_table(table, text_columns: Iterable[str] = IDENTIFIER_COLUMNS) -> pd.DataFrame:
    """A DataFrame from a DataFrame or ``{column: values}``: number-like text columns become float,
    blank text cells become NaN; columns named in ``text_columns`` (any case) stay text.

    >>> frame = frame_from_table({"case_id": ["007", "008"], "adc": ["0.7", ""], "site": ["A", ""]})
    >>> frame["case_id"].tolist(), frame["adc"].tolist()[0], frame["adc"].isna().tolist(), frame["site"].tolist()
    (['007', '008'], 0.7, [False, True], ['A', nan])
    """
    frame = table.copy() if isinstance(table, pd.DataFrame) else pd.DataFrame({k: list(v) for k, v in table.items()})
    keep = {name.lower() for name in text_columns}
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object:
            continue
        text = column.astype(str).str.strip()
        blank = text.str.lower().isin(BLANKS)
        parsed = pd.to_numeric(text.where(~blank), errors="coerce")
        if str(name).lower() not in keep and (~blank).any() and parsed[~blank].notna().all():
            frame[name] = parsed.astype(float)
        else:
            frame[name] = text.where(~blank, np.nan)
    return frame
