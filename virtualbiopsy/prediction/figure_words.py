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
_SUFFIX_UNITS = (("_per_s", "1/s"), ("_days", "days"), ("_months", "months"), ("_years", "years"), ("_ml", "mL"),
                 ("_mm3", "mm³"), ("_cm3", "cm³"), ("_mm", "mm"), ("_s", "s"))
METRIC_NAMES = {"auc": "AUC (area under the ROC curve)", "c_index": "C-index (concordance)",
                "balanced_accuracy": "balanced accuracy", "brier": "Brier score",
                "calibration_slope": "calibration slope"}
MODEL_NAMES = {"logistic": "logistic regression", "random_forest": "random forest",
               "gradient_boosting": "gradient boosting", "svm": "SVM (support vector machine)", "cox": "Cox"}


_ADC_VALUE = re.compile(r"adc(_(mean|median|sd|p\d+|min|max|iqr))?", re.IGNORECASE)


def feature_unit(name, values=None) -> str:
    """The unit of a feature ('' when unknown): the demo cohort's table, then an ADC value column (``adc``,
    ``adc_mean``, ``adc_p10``...; not a radiomics feature of an image named adc, whose unit depends on the
    feature), then the name's suffix. An ADC column's scale comes from its values when given (median < 0.05:
    mm²/s; > 50: ×10⁻⁶ mm²/s, as scanners store ADC maps; else ×10⁻³ mm²/s).

    >>> feature_unit("adc_mean", [1.1, 0.9]), feature_unit("adc_mean", [1100.0]), feature_unit("wash_in_per_s")
    ('×10⁻³ mm²/s', '×10⁻⁶ mm²/s', '1/s')
    """
    name = str(name)
    lower = name.lower()
    if _ADC_VALUE.fullmatch(lower):
        values = np.asarray(values if values is not None else [], float)
        finite = np.abs(values[np.isfinite(values)])
        if finite.size and np.median(finite) < 0.05:
            return "mm²/s"
        if finite.size and np.median(finite) > 50:
            return "×10⁻⁶ mm²/s"
        return ADC_UNIT
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


_NO_YES = ({"0", "1"}, {"0.0", "1.0"}, {"False", "True"})


def class_text(column, label, classes=()) -> str:
    """A class as ``<endpoint> = <class>``; when the endpoint's ``classes`` are exactly 0 / 1 (or False / True),
    as no / yes (a multi-class stage 0, 1, 2 keeps its numbers).

    >>> class_text("mycn_amplified", 1, (0, 1)), class_text("stage", 1, (0, 1, 2))
    ('mycn_amplified = yes', 'stage = 1')
    """
    text = str(label)
    if {str(c) for c in classes} in _NO_YES:
        text = "yes" if text in ("1", "1.0", "True") else "no"
    return f"{column} = {text}"


def output_words(output: str, classes=()) -> tuple[str, str]:
    """A SHAP output description (``shap.output``) in words, and the unit its values are in; ``classes``: the
    endpoint's (``shap.classes``), for :func:`class_text`."""
    probability = re.fullmatch(r"P\((.+) = (.+)\)", output)
    if probability:
        return f"probability of {class_text(*probability.groups(), classes)}", "probability"
    log_odds = re.fullmatch(r"log-odds of (.+) = (.+)", output)
    if log_odds:
        return f"log-odds of {class_text(*log_odds.groups(), classes)}", "log-odds"
    if "log partial hazard" in output:
        return output, "log partial hazard"
    return output, "model output"
