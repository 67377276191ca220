"""Saving, loading and applying a trained model, with its model card.

A model folder holds:

``model.joblib``
    The fitted scikit-learn pipeline and what is needed to apply and explain it (feature names,
    endpoint, threshold, risk cut-off, k-means background centres, the 5th-95th feature percentiles).
    No patient rows are stored, nor a feature's minimum / maximum (single patients' values).
    **joblib files are Python pickles: loading one can run arbitrary code.**
``model_card.json`` / ``model_card.md``
    Features, training cohort summary, nested-CV metrics with bootstrap CIs, hyper-parameters,
    library versions, date, intended use ("research use only") and the SHA-256 of ``model.joblib``.
``metrics.csv``
    The metrics table.

:func:`load_model` recomputes the SHA-256 of ``model.joblib`` and refuses to unpickle it when it
does not match the card. Residual risk: the hash detects a damaged or swapped model file, not a
malicious author — whoever can write the folder can rewrite both files. Load only model folders
from people you trust, as with any pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.prediction.data import DataWarning, Endpoint, rows_for
from virtualbiopsy.prediction.models import CLASSIFIERS, SURVIVAL_MODELS, TrainedModel

MODEL_FILE, CARD_JSON, CARD_MD, METRICS_CSV = "model.joblib", "model_card.json", "model_card.md", "metrics.csv"
FORMAT_VERSION = 1
INTENDED_USE = ("Research use only. Not a medical device; not for diagnosis, prognosis or treatment decisions "
                "about individual patients. Validated only by cross-validation on its training cohort.")
PICKLE_NOTE = ("model.joblib is a Python pickle: loading it can execute code. The SHA-256 below is checked "
               "before loading, which detects a damaged or replaced file but not a card rewritten with it; "
               "load model folders only from trusted sources.")
LIBRARIES = ("virtualbiopsy", "numpy", "pandas", "scikit-learn", "scipy", "lifelines", "shapiq", "joblib")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def model_card(model: TrainedModel, file_sha256: str | None = None) -> dict:
    """The model card as a JSON-ready dict."""
    parameters = model.parameters or {}
    card = {
        "format_version": FORMAT_VERSION,
        "intended_use": INTENDED_USE,
        "model": {
            "name": model.name,
            "description": {**CLASSIFIERS, **SURVIVAL_MODELS}.get(model.name, model.name),
            "pipeline": [f"{name}: {type(step).__name__}" for name, step in model.pipeline.steps],
            "hyper_parameters": {k: str(v) for k, v in model.best_params.items()},
            "input_features": list(model.features),
            "features_used": model.used_features,
            "case_id_column": model.key,
            "endpoint": model.endpoint.to_dict(),
            "threshold": model.threshold if model.kind != "time-to-event" else None,
            "risk_cut": model.risk_cut,
            "risk_percentile": model.risk_percentile if model.kind == "time-to-event" else None,
        },
        "training_cohort": model.cohort,
        "validation": {
            "method": (f"nested cross-validation: {parameters.get('outer_folds')} outer x "
                       f"{parameters.get('inner_folds')} inner stratified folds (seed {parameters.get('seed')}); "
                       "imputation, scaling and feature selection fitted inside each training fold; "
                       f"percentile bootstrap CIs ({parameters.get('n_bootstrap')} resamples of the out-of-fold "
                       "predictions)"),
            "metrics": model.metrics.to_dict(orient="records") if model.metrics is not None else [],
            "hyper_parameters_per_outer_fold": [{k: str(v) for k, v in p.items()} for p in model.fold_params],
        },
        "warnings": list(model.warnings),
        "trained_at": model.trained_at,
        "libraries": library_versions(),
        "file": {"name": MODEL_FILE, "format": "joblib (Python pickle)", "sha256": file_sha256,
                 "security": PICKLE_NOTE},
        "parameters": {k: (v if not isinstance(v, dict) else {a: str(b) for a, b in v.items()})
                       for k, v in parameters.items()},
    }
    return _json_ready(card)


def card_markdown(card: dict) -> str:
    """A readable model card. Every value is escaped (:func:`~virtualbiopsy.report.html.markdown_text`): feature
    names, class labels and case ids come from a user's table and must reach a Markdown viewer as text."""
    from virtualbiopsy.report.html import markdown_text as t

    def listed(values) -> str:
        return ", ".join(t(v) for v in values)

    model, cohort, validation = card["model"], card["training_cohort"], card["validation"]
    endpoint = model["endpoint"]
    if isinstance(endpoint, dict):
        columns = [c for c in (endpoint.get("column"), endpoint.get("time"), endpoint.get("event")) if c]
        endpoint_text = f"{listed(columns)} ({t(endpoint.get('kind', ''))}"
        endpoint_text += f"; classes: {listed(endpoint['classes'])})" if endpoint.get("classes") else ")"
    else:
        endpoint_text = t(endpoint)
    lines = [f"# Model card: {t(model['description'])}", "", f"**Intended use.** {t(card['intended_use'])}", "",
             "## Model", f"- Model: {t(model['name'])} — pipeline: {' → '.join(t(step) for step in model['pipeline'])}",
             f"- Hyper-parameters: {t(model['hyper_parameters'])}",
             f"- Input features ({len(model['input_features'])}): {listed(model['input_features'])}",
             f"- Features used after selection ({len(model['features_used'])}): {listed(model['features_used'])}",
             f"- Endpoint: {endpoint_text}"]
    if model.get("threshold") is not None:
        lines.append(f"- Probability threshold: {t(model['threshold'])}")
    if model.get("risk_cut") is not None:
        lines.append(f"- High risk: prognostic index > {model['risk_cut']:.4g} "
                     f"(the {model['risk_percentile']:g}th percentile of the training cohort)")
    lines += ["", "## Training cohort", *[f"- {t(k)}: {t(v)}" for k, v in cohort.items()], "",
              "## Validation", t(validation["method"]), "", "| metric | estimate | 95 % CI |", "|---|---|---|"]
    for row in validation["metrics"]:
        low, high = row.get("ci_low"), row.get("ci_high")
        ci = f"{low:.3f} – {high:.3f}" if isinstance(low, float) and isinstance(high, float) else "n/a"
        estimate = row["estimate"]
        lines.append(f"| {t(row['metric'])} | {estimate:.3f} | {ci} |" if isinstance(estimate, float)
                     else f"| {t(row['metric'])} | n/a | {ci} |")
    if card.get("warnings"):
        lines += ["", "## Data warnings", *[f"- {t(w)}" for w in card["warnings"]]]
    lines += ["", "## Provenance", f"- Trained: {t(card['trained_at'])}",
              *[f"- {t(k)}: {t(v)}" for k, v in card["libraries"].items()], "",
              "## Model file",
              f"- {t(card['file']['name'])} ({t(card['file']['format'])}), SHA-256 {t(card['file']['sha256'])}",
              f"- {t(card['file']['security'])}", ""]
    return "\n".join(lines)


def save_model(model: TrainedModel, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``model.joblib``, ``model_card.json``, ``model_card.md`` and ``metrics.csv`` into ``folder``."""
    import joblib

    folder = Path(folder)
    if (folder / CARD_JSON).exists() and not overwrite:
        raise InputError(f"'{folder}' already holds a model; choose another folder (nothing was overwritten).")
    folder.mkdir(parents=True, exist_ok=True)
    bundle = {
        "format_version": FORMAT_VERSION, "name": model.name, "pipeline": model.pipeline,
        "features": list(model.features), "endpoint": model.endpoint.to_dict(), "key": model.key,
        "threshold": model.threshold, "best_params": model.best_params, "risk_cut": model.risk_cut,
        "risk_percentile": model.risk_percentile, "background": model.background,
        "feature_quantiles": model.feature_quantiles, "trained_at": model.trained_at,
    }
    path = folder / MODEL_FILE
    joblib.dump(bundle, path, compress=3)
    card = model_card(model, sha256(path))
    (folder / CARD_JSON).write_text(json.dumps(card, indent=2))
    (folder / CARD_MD).write_text(card_markdown(card))
    if model.metrics is not None:
        model.metrics.to_csv(folder / METRICS_CSV, index=False)
    return folder


def read_card(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / CARD_JSON
    if not path.is_file():
        raise FileFormatError(f"'{folder}' is not a model folder: it has no {CARD_JSON}.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise FileFormatError(f"The model card '{path}' is not valid JSON: {error}.") from error


def load_model(folder: str | Path) -> TrainedModel:
    """Load a model folder after checking ``model.joblib`` against the SHA-256 in its card."""
    import joblib

    folder = Path(folder)
    card = read_card(folder)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise FileFormatError(f"The model folder '{folder}' has no {MODEL_FILE}.")
    expected = (card.get("file") or {}).get("sha256")
    actual = sha256(path)
    if not expected or actual != expected:
        raise FileFormatError(f"Refusing to load '{path}': its SHA-256 ({actual[:12]}...) does not match the model "
                              f"card ({str(expected)[:12]}...). The file was changed or replaced; it is a pickle, "
                              "which can run code when loaded.")
    trained_with = card.get("libraries", {}).get("scikit-learn")
    installed = library_versions()["scikit-learn"]
    if trained_with and trained_with != installed:
        warnings.warn(f"The model was trained with scikit-learn {trained_with}; {installed} is installed. "
                      "Predictions may differ or loading may fail.", DataWarning, stacklevel=2)
    bundle = joblib.load(path)
    if not isinstance(bundle, dict) or bundle.get("format_version") != FORMAT_VERSION:
        raise FileFormatError(f"'{path}' is not a Virtual Biopsy model (format {FORMAT_VERSION}).")
    endpoint = bundle["endpoint"]
    records = (card.get("validation") or {}).get("metrics")
    metrics = pd.DataFrame(records) if records else None
    return TrainedModel(
        name=bundle["name"], pipeline=bundle["pipeline"], features=list(bundle["features"]),
        endpoint=Endpoint(endpoint["kind"], endpoint["column"], endpoint["time"], endpoint["event"],
                          tuple(endpoint["classes"])),
        key=bundle["key"], threshold=bundle["threshold"], best_params=bundle["best_params"], metrics=metrics,
        cohort=card.get("training_cohort", {}), risk_cut=bundle["risk_cut"], risk_percentile=bundle["risk_percentile"],
        background=bundle["background"], feature_quantiles=bundle["feature_quantiles"],
        warnings=card.get("warnings", []), parameters=card.get("parameters", {}), trained_at=bundle["trained_at"],
    )


def apply_model(model: TrainedModel, table, key: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions for a new table: (predictions, feature matrix).

    ``key`` (default: the model's case id column) must be a column of the table; it and missing feature
    columns are clear errors.
    """
    key = key or model.key
    case_ids, X = rows_for(model.features, table, key, model_key=model.key)
    missing = X.isna().sum()
    if missing.any():
        warnings.warn("Missing values in the new table are imputed with the training medians: "
                      + ", ".join(f"{f} ({int(n)})" for f, n in missing.items() if n), DataWarning, stacklevel=2)
    from virtualbiopsy.prediction.threads import single_threaded

    predictions = single_threaded(model.predict)(X, case_ids)
    return predictions, X
