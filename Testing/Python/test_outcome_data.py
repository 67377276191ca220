"""Outcome data: joining, endpoint typing, missing values and the checks that refuse or warn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.prediction.cohort import clinical_split, generate_cohort, shuffled
from virtualbiopsy.prediction.data import (
    BINARY,
    MULTICLASS,
    TIME_TO_EVENT,
    DataWarning,
    check_events_for_cox,
    join_frames,
    missing_report,
    prepare_dataset,
    read_table,
    rows_for,
)


def test_cohort_is_seeded_and_has_the_known_structure(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    again = generate_cohort(n_patients=120, seed=4)
    pd.testing.assert_frame_equal(cohort.table, again.table)
    assert not cohort.table.equals(generate_cohort(n_patients=120, seed=5).table)
    table = cohort.table
    # the informative feature separates the endpoint; noise does not
    informative = np.corrcoef(table["adc_mean"], table["mycn_amplified"])[0, 1]
    noise = np.corrcoef(table["noise_1"], table["mycn_amplified"])[0, 1]
    assert informative < -0.3 and abs(noise) < 0.2
    assert np.corrcoef(table["adc_mean"], table["adc_p10"])[0, 1] > 0.7  # the correlated feature
    assert set(table["os_event"]) <= {0, 1} and (table["os_days"] > 0).all()
    assert set(table["risk_class"]) == {"low", "intermediate", "high"}


def test_shuffled_cohort_keeps_features_and_permutes_outcomes(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    mixed = shuffled(cohort)
    pd.testing.assert_frame_equal(mixed.table[cohort.features], cohort.table[cohort.features])
    assert sorted(mixed.table["mycn_amplified"]) == sorted(cohort.table["mycn_amplified"])
    assert not mixed.table["mycn_amplified"].equals(cohort.table["mycn_amplified"])


def test_join_by_case_id_reuses_join_columns(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    image, clinical = clinical_split(cohort)
    clinical = clinical.iloc[::-1].drop(index=[0])  # reordered, one case without clinical data
    joined = join_frames([image, clinical], "case_id", ["image", "clinical"])
    assert list(joined["case_id"]) == list(image["case_id"])
    first = joined.set_index("case_id").loc[image["case_id"].iloc[0]]
    assert np.isnan(first["mycn_amplified"]) and np.isnan(first["age_months"])
    row = joined.set_index("case_id").loc["NB0002"]
    assert row["mycn_amplified"] == cohort.table.set_index("case_id").loc["NB0002", "mycn_amplified"]


def test_the_endpoint_kind_follows_the_column_binary_multiclass_or_time_to_event(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    with pytest.warns(DataWarning, match="Text columns not used as features: risk_class"):
        binary = prepare_dataset(cohort.table, "mycn_amplified")
    assert binary.endpoint.kind == BINARY and binary.endpoint.classes == (0, 1)
    # default features: every numeric column but the key, the endpoint and outcome-like columns
    assert set(binary.features) == set(cohort.features)
    multi = prepare_dataset(cohort.table.drop(columns=["mycn_amplified"]), "risk_class")
    assert multi.endpoint.kind == MULTICLASS and set(multi.endpoint.classes) == {"low", "intermediate", "high"}
    survival = prepare_dataset(cohort.table, time="os_days", event="os_event", features=cohort.features)
    assert survival.endpoint.kind == TIME_TO_EVENT and survival.n_events == int(cohort.table["os_event"].sum())
    # a float 0.0 / 1.0 column (as read back from a Slicer table) gives the classes 0 and 1
    as_float = prepare_dataset(cohort.table.astype({"mycn_amplified": float}), "mycn_amplified",
                               features=cohort.features)
    assert as_float.endpoint.classes == (0, 1)
    positive = prepare_dataset(cohort.table, "mycn_amplified", features=cohort.features, positive=0)
    assert positive.endpoint.positive_class == 0 and (positive.y == 1 - binary.y).all()


def test_outcome_like_columns_are_never_default_features(outcome_cohort):
    """Survival columns are known only after the prediction: a default feature list must not pick them up."""
    cohort = outcome_cohort(120, seed=4)
    table = cohort.table.assign(efs_days=cohort.table["os_days"] * 0.8, vitalStatus=cohort.table["os_event"],
                                dce_time_to_peak=30.0 + cohort.table["noise_1"])
    with pytest.warns(DataWarning, match="look like outcomes.*os_days, os_event, efs_days, vitalStatus") as caught:
        dataset = prepare_dataset(table, "mycn_amplified")
    assert not {"os_days", "os_event", "efs_days", "vitalStatus"} & set(dataset.features)
    assert {"adc_mean", "age_months", "dce_time_to_peak"} <= set(dataset.features)  # image and clinical features stay
    assert any("os_days" in w for w in dataset.warnings)  # ... and the warning goes into the model card
    assert not any("look like outcomes" in str(w.message) and "mycn" in str(w.message) for w in caught)
    # a survival endpoint: the other outcome columns are left out too, the biomarker mycn_amplified is kept
    with pytest.warns(DataWarning, match="look like outcomes.*efs_days, vitalStatus"):
        survival = prepare_dataset(table, time="os_days", event="os_event")
    assert "mycn_amplified" in survival.features and "efs_days" not in survival.features
    # named explicitly they are used, with a warning
    with pytest.warns(DataWarning, match="These features look like outcomes: os_days"):
        explicit = prepare_dataset(table, "mycn_amplified", features=["adc_mean", "os_days"])
    assert explicit.features == ["adc_mean", "os_days"]


def test_text_columns_are_reported_and_left_out(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    with pytest.warns(DataWarning, match="risk_class"):
        dataset = prepare_dataset(cohort.table, "mycn_amplified")
    assert "risk_class" not in dataset.features


def test_missing_features_are_a_clear_error(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    with pytest.raises(InputError, match="feature.*'tumour_volume'.*'glcm_contrast'"):
        prepare_dataset(cohort.table, "mycn_amplified", features=["adc_mean", "tumour_volume", "glcm_contrast"])
    with pytest.raises(InputError, match="endpoint.*'overall_survival'"):
        prepare_dataset(cohort.table, "overall_survival")
    with pytest.raises(InputError, match="risk_class.*not numeric.*low.* for case NB0001 \\(row 1\\)"):
        prepare_dataset(cohort.table, "mycn_amplified", features=["adc_mean", "risk_class"])
    # a model applied to a table without one of its features names it
    with pytest.raises(InputError, match="adc_mean"):
        rows_for(["adc_mean", "t2_entropy"], cohort.table.drop(columns=["adc_mean"]))


def test_single_class_and_continuous_endpoints_are_refused(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    with pytest.raises(InputError, match="single class"):
        prepare_dataset(cohort.table.assign(mycn_amplified=1), "mycn_amplified", features=cohort.features)
    with pytest.raises(InputError, match="looks continuous"):
        prepare_dataset(cohort.table, "adc_p10", features=["adc_mean"])


def test_constant_and_sparse_features_warn(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    table = cohort.table.assign(field_strength_t=1.5)
    table.loc[table.index[:50], "noise_2"] = np.nan
    with pytest.warns(DataWarning) as caught:
        dataset = prepare_dataset(table, "mycn_amplified", features=[*cohort.features, "field_strength_t"])
    messages = " ".join(str(w.message) for w in caught)
    assert "constant" in messages and "field_strength_t" in messages
    assert "noise_2 (42 %)" in messages
    assert dataset.missing.set_index("feature").loc["noise_2", "missing"] == 50
    assert any("field_strength_t" in w for w in dataset.warnings)


def test_rows_without_outcome_are_dropped_with_a_warning(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    table = cohort.table.copy()
    table.loc[[3, 7], "mycn_amplified"] = np.nan
    with pytest.warns(DataWarning, match="2 case.*NB0004, NB0008"):
        dataset = prepare_dataset(table, "mycn_amplified", features=cohort.features)
    assert dataset.n == len(table) - 2 and "NB0004" not in dataset.case_ids


def test_too_few_events_for_cox(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    table = cohort.table.copy()
    table["os_event"] = 0
    table.loc[table.index[:6], "os_event"] = 1
    dataset = prepare_dataset(table, time="os_days", event="os_event", features=cohort.features)
    with pytest.raises(InputError, match="Too few events.*6 event"):
        check_events_for_cox(dataset)
    table.loc[table.index[:30], "os_event"] = 1  # 30 events, 9 features: 3.3 per feature
    dataset = prepare_dataset(table, time="os_days", event="os_event", features=cohort.features)
    with pytest.warns(DataWarning, match="events per feature"):
        check_events_for_cox(dataset)


def test_survival_columns_need_time_and_event_a_0_1_event_and_no_negative_time(outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    with pytest.raises(InputError, match="both the time column and the event column"):
        prepare_dataset(cohort.table, time="os_days")
    with pytest.raises(InputError, match="must hold 1 .* or 0"):
        prepare_dataset(cohort.table.assign(os_event=2), time="os_days", event="os_event", features=cohort.features)
    with pytest.raises(InputError, match="negative"):
        prepare_dataset(cohort.table.assign(os_days=-1.0), time="os_days", event="os_event", features=cohort.features)


def test_missing_report_and_tables(tmp_path, outcome_cohort):
    cohort = outcome_cohort(120, seed=4)
    frame = pd.DataFrame({"a": [1.0, np.nan, 3.0, np.nan], "b": [1, 2, 3, 4]})
    report = missing_report(frame).set_index("feature")
    assert report.loc["a", "missing"] == 2 and report.loc["a", "missing_percent"] == 50.0
    assert report.loc["b", "missing"] == 0
    with pytest.raises(FileFormatError, match="No table"):
        read_table(tmp_path / "absent.csv")
    path = tmp_path / "cohort.csv"
    cohort.table.to_csv(path, index=False)
    pd.testing.assert_frame_equal(read_table(path)[cohort.features], cohort.table[cohort.features], atol=1e-12)
    with pytest.raises(InputError, match="more than once: NB0001"):
        prepare_dataset(pd.concat([cohort.table.iloc[:1], cohort.table]), "mycn_amplified")
