"""``virtualbiopsy predict``: cohort, train, apply and survival through the sub-command's own parser."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

from virtualbiopsy.cli import predict
from virtualbiopsy.errors import InputError

pytestmark = pytest.mark.slow


def run(*arguments: str) -> int:
    parser = argparse.ArgumentParser(prog="virtualbiopsy")
    predict.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["predict", *arguments])
    return args.run(args)


def test_predict_train_apply_and_survival(tmp_path, capsys):
    data, model, applied, survival = (tmp_path / name for name in ("data", "model", "applied", "survival"))
    assert run("cohort", "--out", str(data), "--n", "120", "--seed", "3") == 0
    features = ["adc_mean", "adc_p10", "t2_entropy", "noise_1", "noise_2"]
    assert run("train", "--table", str(data / "image_features.csv"), "--table", str(data / "clinical.csv"),
               "--endpoint", "mycn_amplified", "--features", *features, "--model", "logistic", "--folds", "3",
               "--inner-folds", "2", "--bootstrap", "100", "--out", str(model)) == 0
    for name in ("model.joblib", "model_card.json", "model_card.md", "metrics.csv", "cv_predictions.csv",
                 "shap_importance.csv", "figures/calibration.png", "figures/shap_beeswarm.png"):
        assert (model / name).is_file(), name
    metrics = pd.read_csv(model / "metrics.csv").set_index("metric")
    assert metrics.loc["auc", "ci_low"] > 0.5
    assert pd.read_csv(model / "shap_importance.csv")["feature"].iloc[0] == "adc_mean"
    assert json.loads((model / "model_card.json").read_text())["model"]["input_features"] == features
    assert "auc" in capsys.readouterr().out

    assert run("apply", "--model", str(model), "--table", str(data / "cohort.csv"), "--out", str(applied),
               "--figures", "1") == 0
    predictions = pd.read_csv(applied / "predictions.csv")
    shap = pd.read_csv(applied / "shap_values.csv")
    assert len(predictions) == len(shap) == 120 and {"p_0", "p_1", "predicted"} <= set(predictions.columns)
    assert set(shap.columns) >= {"case_id", "model_output", "base_value", *(f"shap_{f}" for f in features)}
    assert (applied / "figures" / "NB0001_waterfall.png").is_file()

    assert run("survival", "--table", str(data / "cohort.csv"), "--time", "os_days", "--event", "os_event",
               "--features", "adc_mean,t2_entropy,dce_iauc60", "--k", "2", "--out", str(survival)) == 0
    logrank = pd.read_csv(survival / "logrank.csv")
    assert logrank["p"].iloc[0] < 0.05 and (survival / "kaplan_meier.png").is_file()
    assert set(pd.read_csv(survival / "clusters.csv")["cluster"]) == {"cluster 1", "cluster 2"}


def test_predict_errors_name_the_problem(tmp_path):
    assert run("cohort", "--out", str(tmp_path / "data"), "--n", "40") == 0
    table = str(tmp_path / "data" / "cohort.csv")
    with pytest.raises(InputError, match="Unknown model.*xgboost"):
        run("train", "--table", table, "--endpoint", "mycn_amplified", "--model", "xgboost",
            "--out", str(tmp_path / "m"))
    with pytest.raises(InputError, match="feature.*'glcm_contrast'"):
        run("train", "--table", table, "--endpoint", "mycn_amplified", "--features", "adc_mean", "glcm_contrast",
            "--out", str(tmp_path / "m"))
    with pytest.raises(InputError, match="not a model folder|no model_card"):
        run("apply", "--model", str(tmp_path / "data"), "--table", table, "--out", str(tmp_path / "a"))
