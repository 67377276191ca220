"""Words and units of the outcome figures: features with their units, classes as "<endpoint> = <class>",
SHAP outputs in words, metric and model names (shared by the figures, their captions and the report)."""

from __future__ import annotations

import re

import numpy as np

from virtualbiopsy.report.style import ADC_UNIT

MISSING = "missing (imputed)"

# Units of the demo cohort's features (virtualbiopsy.prediction.cohort) and of common column names.
FEATURE_UNITS = {"adc_mean": ADC_UNIT, "adc_p10": ADC_UNIT, "t2_entropy": "bits", "dce_iauc60": "s",
                 "age_months": "months", "os_days": "days"}
_SUFFIX_UNITS = (("_days", "days"), ("_months", "months"), ("_years", "years"), ("_ml", "mL"), ("_mm3", "mm³"),
                 ("_cm3", "cm³"), ("_mm", "mm"), ("_s", "s"))
METRIC_NAMES = {"auc": "AUC (area under the ROC curve)", "c_index": "C-index (concordance)",
                "balanced_accuracy": "balanced accuracy", "brier": "Brier score",
                "calibration_slope": "calibration slope"}
MODEL_NAMES = {"logistic": "logistic regression", "random_forest": "random forest",
               "gradient_boosting": "gradient boosting", "svm": "SVM (support vector machine)", "cox": "Cox"}


def feature_unit(name, values=None) -> str:
    """The unit of a feature ('' when unknown): the demo cohort's table, then the name's suffix. ADC
    features read as ×10⁻³ mm²/s unless their values (if given) are on the mm²/s scale (median < 0.05)."""
    name = str(name)
    lower = name.lower()
    if lower.startswith("adc"):
        finite = np.asarray(values, float)[np.isfinite(np.asarray(values, float))] if values is not None else []
        return "mm²/s" if len(finite) and np.median(np.abs(finite)) < 0.05 else ADC_UNIT
    if name in FEATURE_UNITS:
        return FEATURE_UNITS[name]
    return next((unit for suffix, unit in _SUFFIX_UNITS if lower.endswith(suffix)), "")


def _with_unit(name, unit: str) -> str:
    return f"{name} ({unit})" if unit else str(name)


def value_text(value, unit: str = "") -> str:
    """A feature value with its unit; a missing one reads "missing (imputed)" (the pipeline imputes it)."""
    value = float(value)
    if not np.isfinite(value):
        return MISSING
    return f"{value:.3g} {unit}".strip()


def class_text(column, label) -> str:
    """A class as ``<endpoint> = <class>``; the classes 0 / 1 (False / True) of a binary endpoint as no / yes."""
    text = str(label)
    words = {"0": "no", "1": "yes", "0.0": "no", "1.0": "yes", "False": "no", "True": "yes"}
    return f"{column} = {words.get(text, text)}"


def output_words(output: str) -> tuple[str, str]:
    """A SHAP output description (``shap.output``) in words, and the unit its values are in."""
    probability = re.fullmatch(r"P\((.+) = (.+)\)", output)
    if probability:
        return f"probability of {class_text(*probability.groups())}", "probability"
    log_odds = re.fullmatch(r"log-odds of (.+) = (.+)", output)
    if log_odds:
        return f"log-odds of {class_text(*log_odds.groups())}", "log-odds"
    if "log partial hazard" in output:
        return output, "log partial hazard"
    return output, "model output"
