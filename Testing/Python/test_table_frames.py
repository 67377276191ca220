"""Table node <-> DataFrame, the one conversion every step uses (virtualbiopsy.mrml.arrays), on real MRML."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from virtualbiopsy.logic.outcome_predictor import OutcomePredictorLogic
from virtualbiopsy.mrml import arrays


@pytest.fixture
def cases_with_gaps() -> pd.DataFrame:
    """Three cases: a zero-padded id, a number with a gap, a yes/no column, text with a gap."""
    return pd.DataFrame({"case_id": ["007", "008", "009"], "adc": [0.7, np.nan, 1.1],
                         "relapse": [True, False, True], "site": ["A", None, "B"]})


def test_a_frame_becomes_a_table_node_with_numbers_numeric_booleans_yes_no_and_gaps_blank(context, cases_with_gaps):
    node = arrays.add_frame(context, cases_with_gaps, "cases")
    columns = arrays.table_columns(node)
    assert columns["case_id"] == ["007", "008", "009"]
    assert columns["adc"][0] == 0.7 and math.isnan(columns["adc"][1])
    assert columns["relapse"] == ["yes", "no", "yes"]
    assert columns["site"] == ["A", "", "B"]


def test_booleans_mixed_with_gaps_are_still_yes_no():
    frame = pd.DataFrame({"relapse": [True, None, False]})  # object dtype, not bool
    assert arrays.columns_from_frame(frame) == {"relapse": ["yes", "", "no"]}


def test_a_table_node_reads_back_with_ids_as_text_numbers_as_float_and_gaps_missing(context, cases_with_gaps):
    frame = arrays.frame_from_table_node(arrays.add_frame(context, cases_with_gaps, "cases"))
    assert frame["case_id"].tolist() == ["007", "008", "009"]
    assert frame["adc"].dtype == float and frame["adc"].isna().tolist() == [False, True, False]
    assert frame["relapse"].tolist() == ["yes", "no", "yes"]  # text stays text: never guessed back to booleans
    assert frame["site"].isna().tolist() == [False, True, False]


def test_the_outcome_logic_writes_a_frame_as_the_shared_conversion_does(context, cases_with_gaps):
    node = OutcomePredictorLogic(context).add_frame(cases_with_gaps, "cases")
    assert arrays.table_columns(node)["relapse"] == ["yes", "no", "yes"]

