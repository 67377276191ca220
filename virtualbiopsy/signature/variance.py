"""The low-variance filter of the feature reduction (:mod:`virtualbiopsy.signature.reduction`, step 2).

Constant features (one value, or values that differ only by rounding: a range below
:data:`ROUNDING` of the largest magnitude) always go. The default rule, ``"near-constant"``,
drops besides them only features in which at least ``near_constant_share`` (95 %) of the cases
hold one and the same value (caret's ``nearZeroVar`` frequency idea). The other rules work on
the min-max-scaled variance (:func:`scaled_variance`): ``"percentile"``, ``"knee"``
(:func:`knee_threshold`), ``"fixed"`` and ``"off"``. See the reduction's module docstring for why
the default is not a threshold on that variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

VARIANCE_RULES = ("near-constant", "percentile", "knee", "fixed", "off")
ROUNDING = 1e-9  # a feature whose range is below this fraction of its largest magnitude is constant


#: a feature in which at least this share of the cases hold one value is near-constant (caret's freqCut idea)
NEAR_CONSTANT_SHARE = 0.95


@dataclass
class VarianceFilterParameters:
    """Low-variance filter parameters (module docstring)."""

    rule: str = "near-constant"  # "near-constant", "percentile", "knee", "fixed" or "off"
    percentile: float = 10.0  # rule "percentile": drop features below this percentile of the scaled variances
    threshold: float = 0.0  # rule "fixed": drop features whose scaled variance is below this (<= 1/4)
    near_constant_share: float = NEAR_CONSTANT_SHARE  # rule "near-constant": this share of cases holds one value


def scaled_variance(values: pd.DataFrame) -> pd.Series:
    """Variance (ddof = 1) of each column after min-max scaling to [0, 1]; 0 for a constant column."""
    array = values.to_numpy(dtype=float)
    low, high = array.min(axis=0), array.max(axis=0)
    span = high - low
    scaled = (array - low) / np.where(span > 0, span, 1.0)
    variance = scaled.var(axis=0, ddof=1)
    variance[span <= 0] = 0.0
    return pd.Series(variance, index=values.columns, name="scaled_variance")


def constant_features(values: pd.DataFrame) -> pd.Series:
    """True for features whose values are all equal, or differ only by rounding (range < 1e-9 x max |value|)."""
    array = values.to_numpy(dtype=float)
    span = array.max(axis=0) - array.min(axis=0)
    magnitude = np.abs(array).max(axis=0)
    return pd.Series((span <= 0) | (span <= ROUNDING * magnitude), index=values.columns)


def most_common_share(values: pd.DataFrame) -> pd.Series:
    """Per feature: the share of cases holding its most frequent value (1 for a constant feature)."""
    return pd.Series({name: float(values[name].value_counts().iloc[0]) / len(values) for name in values.columns},
                     name="most_common_share", dtype=float)


def knee_threshold(variances: np.ndarray, min_bend: float = 0.05) -> float:
    """A threshold just below the knee that ends the low-variance tail, or 0 when there is none.

    Both axes are normalised to [0, 1]. A low tail makes the ascending sorted curve rise steeply
    and then level off (a concave bend): the knee is the point farthest above the chord joining
    the first and last points, the first feature of the bulk. The threshold is midway between it
    and the previous variance, so every feature before the knee goes. A convex bend (a flat bulk
    and a few high variances, e.g. a right-skewed distribution) lies below the chord and is not a
    low-variance tail: nothing goes.
    """
    values = np.sort(np.asarray(variances, dtype=float))
    if values.size < 3 or values[-1] <= values[0]:
        return 0.0
    x = np.linspace(0.0, 1.0, values.size)
    y = (values - values[0]) / (values[-1] - values[0])
    gap = y - x
    index = int(np.argmax(gap))
    if gap[index] < min_bend or index == 0:
        return 0.0
    return float(values[index - 1] + values[index]) / 2.0


def variance_filter(values: pd.DataFrame, params: VarianceFilterParameters, report: list
                    ) -> tuple[list[str], float, pd.Series]:
    """The filter on a training table (cases x features, finite): (kept features, scaled-variance threshold,
    scaled variances); one report row per dropped feature and one stating the rule are appended to ``report``."""
    variance = scaled_variance(values)
    constant = constant_features(values)
    share = most_common_share(values)
    rule = params.rule
    threshold = 0.0
    if rule == "near-constant":
        rule_text = f"features in which at least {params.near_constant_share:.0%} of the cases hold one value"
    elif rule == "percentile":
        threshold = float(np.percentile(variance.to_numpy(), params.percentile))
        rule_text = f"below the {params.percentile:g}th percentile of the min-max-scaled variances"
    elif rule == "knee":
        threshold = knee_threshold(variance.to_numpy())
        rule_text = "below the knee of the sorted min-max-scaled variances"
    elif rule == "fixed":
        threshold = float(params.threshold)
        rule_text = "below the given minimum min-max-scaled variance"
    else:
        rule_text = "nothing but constant features"
    if rule in ("percentile", "knee", "fixed"):
        rule_line = f"features whose scaled variance is {rule_text} ({threshold:.4g})"
    else:
        rule_line = rule_text
    report.append({"step": "variance", "feature": "(rule)", "action": "rule",
                   "reason": f"low-variance rule '{rule}': drops {rule_line}; constant features (one value, or "
                             f"values that differ only by rounding: range < {ROUNDING:g} of the largest magnitude) "
                             "always go",
                   "threshold": params.near_constant_share if rule == "near-constant" else threshold})
    kept = []
    for name, value in variance.items():
        if constant[name]:
            why = ("constant (every case has the same value)" if value <= 0.0
                   else "constant up to rounding (range < 1e-9 of the largest magnitude)")
            report.append({"step": "variance", "feature": name, "action": "dropped", "reason": why,
                           "value": float(value), "threshold": threshold})
        elif rule == "near-constant" and share[name] >= params.near_constant_share:
            report.append({"step": "variance", "feature": name, "action": "dropped",
                           "reason": f"near-constant: {share[name]:.1%} of the cases hold one value "
                                     f"(>= {params.near_constant_share:.0%})",
                           "value": float(share[name]), "threshold": params.near_constant_share})
        elif value < threshold:
            report.append({"step": "variance", "feature": name, "action": "dropped",
                           "reason": f"scaled variance {value:.4g} {rule_text} ({threshold:.4g})",
                           "value": float(value), "threshold": threshold})
        else:
            kept.append(name)
    return kept, threshold, variance

