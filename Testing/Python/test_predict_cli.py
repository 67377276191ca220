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
    no_key = tmp_path / "no_key.csv"
    pd.read_csv(data / "cohort.csv").drop(columns=["case_id"]).head(5).to_csv(no_key, index=False)
    with pytest.raises(InputError, match=r"no case id column 'case_id' \(it has: .*adc_mean"):
        run("apply", "--model", str(model), "--table", str(no_key), "--out", str(tmp_path / "no_key"))
    with pytest.raises(InputError, match=r"no case id column 'patient'.*trained with case ids in 'case_id'"):
        run("apply", "--model", str(model), "--table", str(data / "cohort.csv"), "--key", "patient",
            "--out", str(tmp_path / "no_key"))
    assert not (tmp_path / "no_key").exists()

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
    assert not (tmp_path / "m").exists() and not (tmp_path / "a").exists()  # refused before --out was created
    with pytest.raises(InputError, match="'cox' needs a time-to-event endpoint"):
        run("train", "--table", table, "--endpoint", "mycn_amplified", "--model", "logistic,cox",
            "--out", str(tmp_path / "m"))
    assert not (tmp_path / "m").exists()


def test_a_failed_run_removes_only_the_folder_it_created(tmp_path, capsys):
    from virtualbiopsy.cli.main import main

    assert run("cohort", "--out", str(tmp_path / "data"), "--n", "40") == 0
    table = str(tmp_path / "data" / "cohort.csv")
    survival = ["predict", "survival", "--table", table, "--time", "os_days", "--event", "os_event",
                "--features", "adc_mean,t2_entropy", "--k", "30"]
    assert main([*survival, "--out", str(tmp_path / "new" / "s")]) == 2  # fails after --out is created
    assert "k = 30 clusters is not possible" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "notes.txt").write_text("user file")
    assert main([*survival, "--out", str(kept), "--overwrite"]) == 2
    assert "k = 30" in capsys.readouterr().err
    assert (kept / "notes.txt").read_text() == "user file"
