"""A seeded synthetic cohort whose outcome signal is known, for tests, self-tests and the demo.

Each patient has a hidden phenotype (``aggressive``, probability ``p_aggressive``) and a table row of
image biomarkers and clinical values. What drives what is set here, so a model or a survival
analysis can be checked against it:

* ``adc_mean`` (10^-3 mm^2/s) is THE informative feature of the binary endpoint ``mycn_amplified``:
  ``logit P = intercept + effect * (-standardised adc_mean) + weak_effect * standardised t2_entropy``.
* ``t2_entropy`` is weakly informative; ``adc_p10`` is correlated with ``adc_mean`` (r ~ 0.85) and
  informative only through it; ``age_months`` and ``noise_*`` carry no signal; ``field_strength_t``
  (optional) is constant.
* The aggressive phenotype lowers ``adc_mean`` and raises ``t2_entropy`` and ``dce_iauc60`` (the image
  "signature" that k-means should recover) and multiplies the hazard of death by ``hazard_ratio``:
  Weibull times with proportional hazards (shape 1 = exponential), median ``median_os_days`` in the
  non-aggressive group, censored by uniform follow-up ``followup_days``.
* ``risk_class`` (low / intermediate / high) is a three-class endpoint cut from the same linear predictor.

:func:`shuffled` permutes the endpoints across patients (same features): nothing is learnable,
which is what the leakage test needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from virtualbiopsy.errors import InputError

INFORMATIVE = "adc_mean"
SIGNATURE = ("adc_mean", "t2_entropy", "dce_iauc60")


@dataclass(frozen=True)
class CohortSpec:
    """Parameters of the synthetic cohort (defaults: 200 patients, strong ADC signal, HR 2)."""

    n_patients: int = 200
    seed: int = 0
    effect: float = 2.0  # log-odds per SD of (-adc_mean)
    weak_effect: float = 0.5  # log-odds per SD of t2_entropy
    intercept: float = -0.4
    n_noise: int = 4
    constant_feature: bool = False
    p_aggressive: float = 0.4
    separation: float = 1.6  # phenotype shift of the signature features, in SD
    hazard_ratio: float = 2.0
    median_os_days: float = 415.0
    weibull_shape: float = 1.0
    followup_days: tuple[float, float] = (365.0, 1460.0)
    missing_fraction: float = 0.0  # share of feature cells set missing (MCAR), signature excluded


@dataclass
class Cohort:
    table: pd.DataFrame
    spec: CohortSpec
    features: list[str]
    truth: dict = field(default_factory=dict)


def _standardise(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / values.std()


def generate_cohort(spec: CohortSpec | None = None, **overrides) -> Cohort:
    """The cohort of ``spec`` (or of ``CohortSpec(**overrides)``); same spec, same table."""
    spec = spec or CohortSpec()
    if overrides:
        spec = CohortSpec(**{**spec.__dict__, **overrides})
    n = spec.n_patients
    if n < 10:
        raise InputError(f"A synthetic cohort needs at least 10 patients; {n} were asked for.")
    rng = np.random.default_rng(spec.seed)
    aggressive = (rng.random(n) < spec.p_aggressive).astype(int)
    shift = spec.separation * (aggressive - spec.p_aggressive)
    z_adc = rng.normal(size=n) - shift
    z_t2 = rng.normal(size=n) + shift
    z_dce = rng.normal(size=n) + shift
    z_p10 = 0.85 * _standardise(z_adc) + np.sqrt(1 - 0.85**2) * rng.normal(size=n)

    columns: dict[str, np.ndarray] = {
        "adc_mean": 1.10 + 0.25 * z_adc,
        "adc_p10": 0.70 + 0.18 * z_p10,
        "t2_entropy": 4.5 + 0.4 * z_t2,
        "dce_iauc60": 18.0 + 5.0 * z_dce,
        "age_months": np.round(np.clip(rng.gamma(2.0, 14.0, size=n), 1, 180), 0),
    }
    for k in range(1, spec.n_noise + 1):
        columns[f"noise_{k}"] = rng.normal(size=n)
    if spec.constant_feature:
        columns["field_strength_t"] = np.full(n, 1.5)
    features = list(columns)

    linear = spec.intercept + spec.effect * (-_standardise(z_adc)) + spec.weak_effect * _standardise(z_t2)
    probability = 1.0 / (1.0 + np.exp(-linear))
    mycn = (rng.random(n) < probability).astype(int)
    latent = linear + rng.logistic(size=n)
    cuts = np.quantile(latent, [1 / 3, 2 / 3])
    risk_class = np.array(["low", "intermediate", "high"])[np.searchsorted(cuts, latent)]

    # Weibull proportional hazards: S(t) = exp(-(t / scale)^shape * HR^aggressive)
    k = spec.weibull_shape
    scale = spec.median_os_days / np.log(2.0) ** (1.0 / k)
    hazard_factor = spec.hazard_ratio**aggressive
    event_time = scale * (rng.exponential(size=n) / hazard_factor) ** (1.0 / k)
    followup = rng.uniform(*spec.followup_days, size=n)
    os_event = (event_time <= followup).astype(int)
    os_days = np.round(np.minimum(event_time, followup), 1)
    os_days = np.maximum(os_days, 0.5)

    if spec.missing_fraction > 0:
        holes = [f for f in features if f not in SIGNATURE and f != "field_strength_t"]
        for name in holes:
            column = columns[name].astype(float)
            column[rng.random(n) < spec.missing_fraction] = np.nan
            columns[name] = column

    table = pd.DataFrame({"case_id": [f"NB{i + 1:04d}" for i in range(n)], **columns})
    table["mycn_amplified"] = mycn
    table["risk_class"] = risk_class
    table["os_days"] = os_days
    table["os_event"] = os_event
    truth = {
        "informative": INFORMATIVE,
        "weak": ["t2_entropy"],
        "correlated": ["adc_p10"],
        "uninformative": ["age_months"] + [f"noise_{k}" for k in range(1, spec.n_noise + 1)],
        "constant": ["field_strength_t"] if spec.constant_feature else [],
        "signature": list(SIGNATURE),
        "aggressive": aggressive,
        "probability": probability,
        "hazard_ratio": spec.hazard_ratio,
        "binary_endpoint": "mycn_amplified",
        "multiclass_endpoint": "risk_class",
        "time": "os_days",
        "event": "os_event",
    }
    return Cohort(table, spec, features, truth)


def shuffled(cohort: Cohort, seed: int = 1) -> Cohort:
    """The same features with every endpoint permuted across patients: no learnable signal."""
    rng = np.random.default_rng(seed)
    table = cohort.table.copy()
    order = rng.permutation(len(table))
    for column in ("mycn_amplified", "risk_class", "os_days", "os_event"):
        table[column] = table[column].to_numpy()[order]
    truth = {**cohort.truth, "shuffled": True}
    return Cohort(table, cohort.spec, list(cohort.features), truth)


def clinical_split(cohort: Cohort) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cohort as the two tables a user has: image features, and clinical data + outcomes."""
    clinical_columns = ["age_months", "mycn_amplified", "risk_class", "os_days", "os_event"]
    image = cohort.table.drop(columns=clinical_columns)
    clinical = cohort.table[["case_id", *clinical_columns]]
    return image, clinical
