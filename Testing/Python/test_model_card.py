"""Saved models: model card contents, SHA-256 check before unpickling, applying to new tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.prediction.cohort import generate_cohort
from virtualbiopsy.prediction.data import prepare_dataset
from virtualbiopsy.prediction.model_card import (
    CARD_JSON,
    CARD_MD,
    METRICS_CSV,
    MODEL_FILE,
    apply_model,
    load_model,
    save_model,
    sha256,
)
from virtualbiopsy.prediction.models import TrainParameters, train

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:These features are constant")]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    cohort = generate_cohort(n_patients=150, seed=8, constant_feature=True)
    dataset = prepare_dataset(cohort.table, "mycn_amplified", features=cohort.features)
    model = train(dataset, TrainParameters(model="random_forest", n_trees=30, n_bootstrap=100,
                                           grid={"select__k": [5], "model__max_depth": [3]}))
    folder = save_model(model, tmp_path_factory.mktemp("model") / "rf")
    return cohort, model, folder


def test_model_card_documents_the_model(saved):
    cohort, model, folder = saved
    card = json.loads((folder / CARD_JSON).read_text())
    assert "research use only" in card["intended_use"].lower()
    assert card["model"]["input_features"] == cohort.features
    assert "field_strength_t" not in card["model"]["features_used"] and len(card["model"]["features_used"]) == 5
    assert card["training_cohort"]["n_cases"] == 150
    assert card["training_cohort"]["class_counts"] == {
        str(k): int(v) for k, v in cohort.table["mycn_amplified"].value_counts().sort_index().items()}
    assert {m["metric"] for m in card["validation"]["metrics"]} >= {"auc", "calibration_slope", "sensitivity"}
    assert "nested cross-validation: 5 outer x 3 inner" in card["validation"]["method"]
    assert card["libraries"]["scikit-learn"] and card["libraries"]["lifelines"] and card["trained_at"]
    assert card["file"]["sha256"] == sha256(folder / MODEL_FILE)
    assert "pickle" in card["file"]["security"].lower()
    assert any("field_strength_t" in w for w in card["warnings"])
    text = (folder / CARD_MD).read_text()
    assert "Research use only" in text and "| auc |" in text and card["file"]["sha256"] in text
    metrics = pd.read_csv(folder / METRICS_CSV)
    assert metrics.set_index("metric").loc["auc", "estimate"] == pytest.approx(
        model.metrics.set_index("metric").loc["auc", "estimate"])


def test_round_trip_gives_the_same_predictions(saved):
    cohort, model, folder = saved
    loaded = load_model(folder)
    new = generate_cohort(n_patients=20, seed=77, constant_feature=True).table
    expected, _ = apply_model(model, new)
    predictions, X = apply_model(loaded, new.sample(frac=1.0, axis=1, random_state=0))  # columns in any order
    pd.testing.assert_frame_equal(predictions, expected)
    assert list(predictions["case_id"]) == list(new["case_id"]) and list(X.columns) == cohort.features
    assert loaded.endpoint == model.endpoint and loaded.used_features == model.used_features


def test_a_changed_model_file_is_refused_before_unpickling(saved, tmp_path):
    _, model, _ = saved
    folder = save_model(model, tmp_path / "copy")
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[-10] ^= 0xFF
    (folder / MODEL_FILE).write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="SHA-256.*does not match"):
        load_model(folder)
    (folder / CARD_JSON).unlink()
    with pytest.raises(FileFormatError, match="not a model folder"):
        load_model(folder)


def test_saving_never_overwrites_a_model(saved):
    _, model, folder = saved
    before = sha256(folder / MODEL_FILE)
    with pytest.raises(InputError, match="already holds a model"):
        save_model(model, folder)
    assert sha256(folder / MODEL_FILE) == before


def test_missing_features_in_a_new_table_are_named(saved):
    _, model, _ = saved
    new = generate_cohort(n_patients=10, seed=1, constant_feature=True).table.drop(columns=["adc_mean", "noise_3"])
    with pytest.raises(InputError, match="lacks 2 feature.*adc_mean, noise_3"):
        apply_model(model, new)


def test_missing_values_in_a_new_table_are_imputed_with_a_warning(saved):
    _, model, _ = saved
    new = generate_cohort(n_patients=10, seed=1, constant_feature=True).table.head(5)
    new.loc[0, "t2_entropy"] = np.nan
    with pytest.warns(UserWarning, match=r"t2_entropy \(1\)"):
        predictions, _ = apply_model(model, new)
    assert predictions["p_1"].between(0, 1).all()


def test_a_table_without_the_case_id_column_is_refused_not_numbered(saved):
    _, model, _ = saved
    new = generate_cohort(n_patients=10, seed=1, constant_feature=True).table
    with pytest.raises(InputError, match=r"no case id column 'case_id' \(it has: .*adc_mean"):
        apply_model(model, new.drop(columns=["case_id"]))
    # a key other than the model's: the error names the model's case id column, which this table has
    with pytest.raises(InputError, match=r"no case id column 'patient'.*trained with case ids in 'case_id', "
                                         r"which the table has.*--key case_id"):
        apply_model(model, new, key="patient")
    predictions, _ = apply_model(model, new.rename(columns={"case_id": "patient"}), key="patient")
    assert list(predictions.iloc[:, 0]) == list(new["case_id"])


def test_the_saved_cohort_summary_keeps_no_minimum_or_maximum(saved, tmp_path):
    cohort, model, folder = saved
    loaded = load_model(folder)
    quantiles = loaded.feature_quantiles
    assert list(quantiles.index) == pytest.approx([0.05 * i for i in range(1, 20)])
    X = cohort.table[cohort.features]
    text = (folder / CARD_JSON).read_text() + (folder / CARD_MD).read_text()
    checked = 0
    for feature in cohort.features:
        values = X[feature]
        for extreme in (values.min(), values.max()):
            if (values == extreme).sum() == 1:  # a single patient's value
                checked += 1
                assert not np.isclose(quantiles[feature].to_numpy(), extreme).any(), (feature, extreme)
                assert float(extreme).is_integer() or repr(float(extreme)) not in text
    assert checked >= 16
    assert (quantiles.diff().dropna() >= 0).all().all()

    from virtualbiopsy.prediction.figures import _percentile_text, patient_in_cohort

    q = quantiles["adc_mean"]
    assert _percentile_text(float(X["adc_mean"].max()), q) == "above the 95th percentile"
    assert _percentile_text(float(X["adc_mean"].min()), q) == "below the 5th percentile"
    assert _percentile_text(float(q.loc[0.5]), q) == "percentile 50"
    patient = X.loc[X["adc_mean"].idxmax()]
    path = patient_in_cohort(tmp_path / "in_cohort.png", quantiles, patient, loaded.used_features)
    assert path.is_file() and path.stat().st_size > 5000


def test_feature_names_and_labels_reach_the_model_card_as_text_not_markup(tmp_path, capsys):
    """Markup injection (issue 10, item 5): names from a user's table are escaped in model_card.md, so a
    Markdown renderer that passes raw HTML through (as most do) shows them and runs nothing."""
    markdown_it = pytest.importorskip("markdown_it", reason="needs markdown-it-py (pip install markdown-it-py)")
    from virtualbiopsy.cli.main import main

    hostile = {"adc_mean": "<script>alert(1)</script>", "noise_1": "[x](javascript:alert(2)) *b*|c",
               "t2_entropy": "<img src=x onerror=alert(3)>"}
    cohort = generate_cohort(n_patients=60, seed=3)
    table = cohort.table.rename(columns=hostile)
    table["mycn_amplified"] = table["mycn_amplified"].map({0: "<b>no</b>", 1: "yes|<i>"})
    table.to_csv(tmp_path / "hostile.csv", index=False)
    assert main(["predict", "train", "--table", str(tmp_path / "hostile.csv"), "--endpoint", "mycn_amplified",
                 "--bootstrap", "20", "--folds", "3", "--out", str(tmp_path / "model")]) == 0
    card = (tmp_path / "model" / CARD_MD).read_text()
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(card)
    for tag in ("<script", "<img", "<b>", "<i>", "<a ", "<em>"):  # no element made from a name, no link
        assert tag not in rendered, tag
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered  # shown as the text it is
    assert json.loads((tmp_path / "model" / CARD_JSON).read_text())  # the JSON card keeps the names as data
    assert "<script>alert(1)</script>" in (tmp_path / "model" / CARD_JSON).read_text()
