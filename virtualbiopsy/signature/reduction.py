"""Feature reduction to a signature: variance filter, correlation pruning, factor analysis.

A :class:`FeatureReduction` is fitted on a training cohort and then applied unchanged to new
cases (:meth:`~FeatureReduction.transform`, :meth:`~FeatureReduction.factor_scores`); it saves to
and loads from JSON (no pickle). Every dropped feature is listed in :attr:`~FeatureReduction.report_`
with the step, the reason and the numbers behind it.

The steps, in order (parameters in :class:`ReductionParameters`):

1. **Feature columns**: by the guard the outcome models share (:mod:`virtualbiopsy.columns`):
   numeric columns that are not identifiers/clinical/diagnostics columns, outcome-like names
   (``os_days``, ``os_event``: known only after the prediction), binary or categorical columns
   (labels, clinical codes) or excluded; or exactly the columns the user names
   (``features``). Text in a numeric column and duplicate case ids are refused, naming them.
   Missing values: an error, or (``missing="drop"``) the incomplete features are dropped and listed.
2. **Low-variance filter**: constant features (every case the same value, or values that differ
   only by rounding: range below 1e-9 of the largest magnitude) are always dropped. The default
   rule, ``"near-constant"``, drops besides them only features in which at least
   ``near_constant_share`` (default 95 %) of the cases hold one and the same value (as caret's
   ``nearZeroVar`` frequency rule): a feature that hardly varies. It never drops a continuous
   feature for having a smaller spread than others, which the distribution rules below do by
   design (on the synthetic demo cohort the 10th-percentile rule dropped ``adc_mean``, its one
   informative feature). A threshold on the min-max-scaled variance cannot tell the two apart:
   one outlier among n equal cases gives 1/n (0.005 for 200 cases), a normal feature with one
   30-SD outlier gives 0.0009. The other rules work on that scaled variance: each feature min-max
   scaled to [0, 1] over the training cases, variance (ddof = 1); min-max makes it scale-free (a
   z-score would make every variance 1) and independent of sign and offset (unlike the
   coefficient of variation). ``rule="percentile"`` (features below the ``percentile``-th
   percentile of these variances are dropped), ``"knee"`` (the knee of the ascending sorted
   variance curve where its steep rise out of the low tail levels off into the bulk: the point
   farthest above the chord from the smallest to the largest variance, as in the Kneedle method;
   the features before it are dropped; nothing beyond constants is dropped when the curve has no
   such knee, i.e. bends less than 0.05 of the normalised range, as for a right-skewed curve
   whose only bend is a few high variances), ``"fixed"`` (a given minimum) or ``"off"``
   (constants only).
3. **Normalisation**: z-score with the training mean and standard deviation (ddof = 1) of each
   remaining feature; factor analysis and factor scores use it.
4. **Correlation pruning**: from the Pearson correlation matrix of the remaining features,
   repeatedly take the pair with the highest |r| above the threshold (default 0.9) and drop the
   one of the two with the higher mean |r| with all other remaining features (ties: the one
   later in the table), until no pair is above the threshold.
5. **Factor analysis** (scikit-learn ``FactorAnalysis(rotation="varimax")``, exact LAPACK SVD)
   of the z-scored remaining features. Number of factors: given, or from the eigenvalues of
   their correlation matrix by ``rule``: ``"parallel"`` (default; Horn's parallel analysis: the
   leading eigenvalues that exceed the 95th percentile of those of 20 seeded random normal
   tables of the same size) or ``"kaiser"`` (eigenvalues above 1). Kaiser's rule is the classic
   one but grossly overestimates when features outnumber cases (110 factors for 12 true ones
   with 200 cases x 1000 features), which parallel analysis does not. At most one fewer than
   the number of features and of cases. Factors are ordered by the variance they explain (sum of
   squared loadings) and signed so that their largest loading is positive.
6. **Signature**: per factor, the feature with the highest |loading| (not already chosen for an
   earlier factor).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from virtualbiopsy.columns import FeatureSelection, numeric_values
from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.progress import as_task
from virtualbiopsy.signature.tables import (
    case_names,
    failed_rows,
    feature_selection,
    require_cases,
    require_columns,
    require_finite_features,
    split_columns,
)
from virtualbiopsy.signature.variance import (  # noqa: F401 - part of this module's API
    ROUNDING,
    VARIANCE_RULES,
    VarianceFilterParameters,
    constant_features,
    knee_threshold,
    most_common_share,
    scaled_variance,
    variance_filter,
)

MODEL_KIND = "virtualbiopsy.feature_reduction"
FORMAT_VERSION = 1
REPORT_COLUMNS = ("step", "feature", "action", "reason", "value", "threshold", "partner")


@dataclass
class CorrelationParameters:
    enabled: bool = True
    threshold: float = 0.9  # pairs with |Pearson r| above this are pruned


@dataclass
class FactorParameters:
    enabled: bool = True
    n_factors: int | None = None  # None: chosen by ``rule``
    rule: str = "parallel"  # "parallel" (Horn's parallel analysis) or "kaiser" (eigenvalues > 1)
    max_factors: int | None = None  # cap on the count the rule gives
    max_iter: int = 1000
    tol: float = 1e-2  # scikit-learn's default stopping tolerance on the log-likelihood
    random_state: int = 0


@dataclass
class ReductionParameters:
    variance: VarianceFilterParameters = field(default_factory=VarianceFilterParameters)
    correlation: CorrelationParameters = field(default_factory=CorrelationParameters)
    factors: FactorParameters = field(default_factory=FactorParameters)
    normalisation: str = "zscore"  # the only one: (x - training mean) / training SD (ddof = 1)
    exclude: tuple[str, ...] = ()  # columns never used as features (besides ids, labels, outcomes, diagnostics_*)
    features: tuple[str, ...] | None = None  # exactly these columns are the features (None: the default rule)
    missing: str = "raise"  # "raise": refuse missing values; "drop": drop incomplete features
    min_cases: int = 5

    def validate(self) -> None:
        if self.variance.rule not in VARIANCE_RULES:
            raise InputError(f"Unknown variance-filter rule '{self.variance.rule}'; use "
                             + ", ".join(VARIANCE_RULES) + ".")
        if not 0.5 < self.variance.near_constant_share <= 1.0:
            raise InputError("The near-constant share must be above 0.5 and at most 1 (the share of cases holding "
                             f"one value); got {self.variance.near_constant_share}.")
        if not 0.0 <= self.variance.percentile < 100.0:
            raise InputError(f"The variance percentile must be in [0, 100); got {self.variance.percentile}.")
        if not 0.0 <= self.variance.threshold <= 0.25:
            raise InputError("The fixed variance threshold applies to features scaled to [0, 1], whose variance is "
                             f"at most 0.25; got {self.variance.threshold}.")
        if not 0.0 < self.correlation.threshold <= 1.0:
            raise InputError(f"The correlation threshold must be in (0, 1]; got {self.correlation.threshold}.")
        if self.factors.rule not in ("parallel", "kaiser"):
            raise InputError(f"Unknown rule for the number of factors '{self.factors.rule}'; use parallel or kaiser.")
        if self.factors.n_factors is not None and self.factors.n_factors < 1:
            raise InputError(f"The number of factors must be at least 1; got {self.factors.n_factors}.")
        if self.normalisation != "zscore":
            raise InputError(f"Unknown normalisation '{self.normalisation}'; only 'zscore' is offered.")
        if self.missing not in ("raise", "drop"):
            raise InputError(f"missing must be 'raise' or 'drop'; got '{self.missing}'.")
        if self.min_cases < 3:
            raise InputError("min_cases must be at least 3 (correlations need three cases).")

    @classmethod
    def from_dict(cls, values: dict) -> ReductionParameters:
        values = dict(values)
        return cls(variance=VarianceFilterParameters(**values.pop("variance", {})),
                   correlation=CorrelationParameters(**values.pop("correlation", {})),
                   factors=FactorParameters(**values.pop("factors", {})),
                   exclude=tuple(values.pop("exclude", ())),
                   features=None if values.get("features") is None else tuple(values.pop("features")),
                   **{k: v for k, v in values.items() if k != "features"})


def prune_correlated(z: pd.DataFrame, threshold: float, task=None) -> tuple[list[str], list[dict], np.ndarray]:
    """Correlation pruning (module docstring, step 4): (kept features, report rows, full r matrix)."""
    names = list(z.columns)
    r = np.corrcoef(z.to_numpy(dtype=float), rowvar=False) if len(names) > 1 else np.ones((1, 1))
    r = np.atleast_2d(r)
    strength = np.abs(r)
    np.fill_diagonal(strength, 0.0)
    row_sum = strength.sum(axis=1)
    active = np.ones(len(names), bool)
    rows = []
    total = len(names)
    while active.sum() > 1:
        flat = int(np.argmax(strength))
        i, j = divmod(flat, len(names))
        best = strength[i, j]
        if best <= threshold:
            break
        others = active.sum() - 1
        mean_i, mean_j = row_sum[i] / others, row_sum[j] / others
        # the one with the higher mean |r| goes; on a tie the later column (j > i) goes
        drop, keep = (i, j) if mean_i > mean_j else (j, i)
        rows.append({
            "step": "correlation", "feature": names[drop], "action": "dropped",
            "reason": (f"|r| = {best:.4f} with {names[keep]}; mean |r| with the other features "
                       f"{row_sum[drop] / others:.4f} (vs {row_sum[keep] / others:.4f} for {names[keep]})"),
            "value": float(r[i, j]), "threshold": threshold, "partner": names[keep],
        })
        active[drop] = False
        row_sum -= strength[:, drop]
        strength[drop, :] = 0.0
        strength[:, drop] = 0.0
        if task is not None:
            task.update(1.0 - active.sum() / total, f"Correlation pruning: {len(rows)} dropped")
    return [name for name, keep in zip(names, active) if keep], rows, r


def parallel_analysis_eigenvalues(n_cases: int, n_features: int, draws: int = 20, percentile: float = 95.0,
                                  seed: int = 0) -> np.ndarray:
    """Per rank, the ``percentile`` of the correlation-matrix eigenvalues of ``draws`` seeded tables
    of independent normal values (Horn 1965), largest first; min(cases, features) of them."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        x = rng.standard_normal((n_cases, n_features))
        x = (x - x.mean(axis=0)) / x.std(axis=0, ddof=1)
        singular = np.linalg.svd(x, compute_uv=False)
        values.append(singular ** 2 / (n_cases - 1))
    return np.percentile(np.array(values), percentile, axis=0)


@dataclass
class ReductionInputs:
    """What :meth:`FeatureReduction.check` found: the feature choice, the values, the log so far and the filter."""

    selection: FeatureSelection
    values: pd.DataFrame
    report: list
    variance: pd.Series
    threshold: float
    kept: list[str]


class FeatureReduction:
    """Fit on a training table, then apply the same reduction to new cases.

    >>> # reduction = FeatureReduction(ReductionParameters()).fit(train)
    >>> # reduction.signature_, reduction.loadings_, reduction.report_
    >>> # reduction.transform(new_cases)      # signature feature values of new cases
    """

    def __init__(self, parameters: ReductionParameters | None = None) -> None:
        self.parameters = parameters or ReductionParameters()
        self.fitted = False

    # -- fitting --------------------------------------------------------------------------------

    def check(self, table: pd.DataFrame, reserved: dict[str, str] | None = None) -> ReductionInputs:
        """Every check of :meth:`fit` on ``table`` that needs no model (columns, cases, values, the
        variance filter), with its outcome; raises what :meth:`fit` would refuse, before any work.

        ``reserved``: {column: role} of columns the caller uses otherwise (e.g. the label of the
        exploration), never features.
        """
        params = self.parameters
        params.validate()
        selection = feature_selection(table, params.features, params.exclude, reserved)
        features = selection.features
        report = [{"step": "columns", "feature": name, "action": "not a feature", "reason": why}
                  for name, why in selection.set_aside.items()]
        failed = failed_rows(table)
        if failed.any():
            messages = table.loc[failed, [c for c in table.columns if str(c).lower() in ("error", "errors")][0]]
            for case, message in zip(np.array(case_names(table))[failed.to_numpy()], messages):
                report.append({"step": "cases", "feature": case, "action": "excluded",
                               "reason": f"extraction failed: {str(message)[:120]}"})
            table = table.loc[~failed]
        require_cases(len(table), params.min_cases, "feature table")
        values = numeric_values(table, features)
        if params.missing == "drop":
            incomplete = [name for name in features if not np.isfinite(values[name]).all()]
            for name in incomplete:
                count = int((~np.isfinite(values[name])).sum())
                report.append({"step": "missing", "feature": name, "action": "dropped",
                               "reason": f"{count} case(s) without a finite value", "value": float(count)})
            values = values.drop(columns=incomplete)
            if values.shape[1] == 0:
                raise InputError("Every feature has missing values; nothing is left to reduce.")
        require_finite_features(values, "feature table")
        kept, threshold, variance = variance_filter(values, params.variance, report)
        if not kept:
            raise InputError(f"Every one of the {values.shape[1]} feature(s) was removed by the low-variance filter "
                             f"(rule {params.variance.rule}); relax its threshold or choose another rule.")
        limit = min(len(kept) - 1, len(values) - 1)
        if params.factors.enabled and params.factors.n_factors is not None and params.factors.n_factors > limit:
            raise InputError(f"{params.factors.n_factors} factors were asked for, but with {len(kept)} feature(s) "
                             f"after the variance filter and {len(values)} case(s) at most {max(limit, 0)} can be "
                             "fitted.")
        return ReductionInputs(selection, values, report, variance, threshold, kept)

    def fit(self, table: pd.DataFrame, progress=None, reserved: dict[str, str] | None = None) -> FeatureReduction:
        """Fit the reduction on a training table (module docstring); ``reserved`` as in :meth:`check`."""
        params = self.parameters
        task = as_task(progress)
        task.update(0.0, "Selecting feature columns")
        inputs = self.check(table, reserved)
        task.update(0.05, "Low-variance filter")
        values, report, kept = inputs.values, inputs.report, inputs.kept
        self.features_in_ = list(values.columns)
        self.variance_ = inputs.variance
        self.variance_threshold_ = inputs.threshold

        # 3. normalisation
        self.mean_ = values[kept].mean()
        self.scale_ = values[kept].std(ddof=1)
        z = (values[kept] - self.mean_) / self.scale_

        # 4. correlation pruning
        if params.correlation.enabled and len(kept) > 1:
            kept, rows, r = prune_correlated(z, params.correlation.threshold, task.sub(0.1, 0.4))
            report.extend(rows)
        else:
            r = np.corrcoef(z.to_numpy(), rowvar=False) if len(kept) > 1 else np.ones((1, 1))
        self.correlation_ = pd.DataFrame(np.atleast_2d(r), index=z.columns, columns=z.columns)
        self.kept_ = kept
        task.update(0.4, "Factor analysis")

        # 5. factor analysis + 6. signature
        self._fit_factors(z[kept], report, task.sub(0.4, 0.95))
        for name in self.signature_:
            report.append({"step": "signature", "feature": name, "action": "selected",
                           "reason": self._signature_reason(name)})
        self.report_ = pd.DataFrame(report, columns=REPORT_COLUMNS)
        self.fitted = True
        task.update(1.0, f"Signature of {len(self.signature_)} feature(s)")
        return self

    def _fit_factors(self, z: pd.DataFrame, report: list, task) -> None:
        params = self.parameters.factors
        n_cases, n_features = z.shape
        self.n_factors_rule_ = "none"
        self.eigenvalues_ = (np.sort(np.linalg.eigvalsh(self.correlation_.loc[z.columns, z.columns].to_numpy()))[::-1]
                             if n_features > 1 else np.ones(1))
        limit = min(n_features - 1, n_cases - 1)
        if not params.enabled or limit < 1:
            self.n_factors_ = 0
            self.loadings_ = pd.DataFrame(index=z.columns)
            self.components_ = np.zeros((0, n_features))
            self.noise_variance_ = np.ones(n_features)
            self.fa_mean_ = np.zeros(n_features)
            self.signature_ = list(z.columns)
            self.signature_table_ = pd.DataFrame({"factor": [""] * n_features, "feature": list(z.columns)})
            why = "factor analysis off" if not params.enabled else f"{n_features} feature(s) left: too few to factor"
            report.append({"step": "factors", "feature": "(all)", "action": "skipped", "reason": why})
            return
        if params.n_factors is not None:
            if params.n_factors > limit:
                raise InputError(f"{params.n_factors} factors were asked for, but with {n_features} feature(s) and "
                                 f"{n_cases} case(s) left at most {limit} can be fitted.")
            k, self.n_factors_rule_ = params.n_factors, "given"
        else:
            if params.rule == "kaiser":
                count = int(np.sum(self.eigenvalues_ > 1.0))
                why = f"Kaiser: {count} eigenvalue(s) of the correlation matrix > 1"
            else:
                random = parallel_analysis_eigenvalues(n_cases, n_features, seed=params.random_state)
                above = self.eigenvalues_[: random.size] > random
                count = int(np.argmin(above)) if not above.all() else int(above.size)
                why = (f"parallel analysis: {count} eigenvalue(s) of the correlation matrix above the 95th percentile "
                       "of random data's")
            k = max(1, min(count, limit, params.max_factors or limit))
            self.n_factors_rule_ = why + (f", capped at {k}" if k != count else "")
        from sklearn.decomposition import FactorAnalysis
        from sklearn.exceptions import ConvergenceWarning

        task.update(0.1, f"Factor analysis with {k} factor(s)")
        model = FactorAnalysis(n_components=k, rotation="varimax", svd_method="lapack", max_iter=params.max_iter,
                               tol=params.tol, random_state=params.random_state)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            model.fit(z.to_numpy(dtype=float))
        if any(issubclass(w.category, ConvergenceWarning) for w in caught):
            report.append({"step": "factors", "feature": "(all)", "action": "warning",
                           "reason": f"factor analysis did not converge in {params.max_iter} iterations"})
        components = model.components_
        order = np.argsort(-(components ** 2).sum(axis=1), kind="stable")
        components = components[order]
        signs = np.sign(components[np.arange(k), np.argmax(np.abs(components), axis=1)])
        components = components * np.where(signs == 0, 1.0, signs)[:, None]
        self.n_factors_ = k
        self.components_ = components
        self.noise_variance_ = model.noise_variance_.copy()
        self.fa_mean_ = model.mean_.copy()
        names = [f"F{i + 1}" for i in range(k)]
        self.loadings_ = pd.DataFrame(components.T, index=z.columns, columns=names)
        chosen, rows = [], []
        for factor in names:
            ranking = self.loadings_[factor].abs().sort_values(ascending=False, kind="stable")
            feature = next(name for name in ranking.index if name not in chosen)
            chosen.append(feature)
            rows.append({"factor": factor, "feature": feature, "loading": float(self.loadings_.at[feature, factor]),
                         "communality": float((self.loadings_.loc[feature] ** 2).sum()),
                         "variance_explained": float((self.loadings_[factor] ** 2).sum() / n_features)})
        self.signature_ = chosen
        self.signature_table_ = pd.DataFrame(rows)
        report.append({"step": "factors", "feature": "(all)", "action": "fitted",
                       "reason": f"{k} factor(s), varimax rotation ({self.n_factors_rule_})", "value": float(k)})
        task.update(1.0, "Factor analysis done")

    def _signature_reason(self, name: str) -> str:
        if self.n_factors_ == 0:
            return "kept after filtering (no factor analysis)"
        row = self.signature_table_.set_index("feature").loc[name]
        return f"highest |loading| on {row['factor']} ({row['loading']:+.3f})"

    # -- applying -------------------------------------------------------------------------------

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise InputError("The feature reduction is not fitted yet; fit it on a training table first.")

    def loadings_table(self) -> pd.DataFrame:
        """Features x factors with each feature's communality and the factor it represents (if any)."""
        self._require_fitted()
        table = self.loadings_.copy()
        table.insert(0, "feature", table.index)
        if self.n_factors_:
            table["communality"] = (self.loadings_ ** 2).sum(axis=1)
            chosen = dict(zip(self.signature_table_["feature"], self.signature_table_["factor"]))
            table["signature_factor"] = [chosen.get(name, "") for name in table.index]
        return table.reset_index(drop=True)

    def transform(self, table: pd.DataFrame, carry: tuple[str, ...] | list[str] = ()) -> pd.DataFrame:
        """The signature features' values (as given, missing stays missing) of ``table``'s cases,
        after ``carry`` columns."""
        self._require_fitted()
        require_columns(table, list(carry) + self.signature_, "table to reduce")
        return pd.concat([table[list(carry)], numeric_values(table, self.signature_)], axis=1)

    def signature_table(self, table: pd.DataFrame) -> pd.DataFrame:
        """:meth:`transform` carrying the table's identifier / label / clinical columns (not diagnostics)."""
        _, others = split_columns(table, self.parameters.exclude)
        return self.transform(table, [name for name, why in others.items()
                                      if why != "pyradiomics diagnostics column" and name not in self.signature_])

    def factor_scores(self, table: pd.DataFrame) -> pd.DataFrame:
        """Factor scores of new cases (scikit-learn's ``FactorAnalysis.transform`` with the stored model);
        NaN for cases with a missing value."""
        self._require_fitted()
        if self.n_factors_ == 0:
            raise InputError("This reduction has no factors (factor analysis was off or too few features were left).")
        require_columns(table, self.kept_, "table to score")
        values = numeric_values(table, self.kept_)
        z = ((values - self.mean_[self.kept_]) / self.scale_[self.kept_]).to_numpy()
        w = self.components_
        w_psi = w / self.noise_variance_
        posterior = np.linalg.inv(np.eye(len(w)) + w_psi @ w.T)
        scores = (z - self.fa_mean_) @ w_psi.T @ posterior
        scores[~np.isfinite(z).all(axis=1)] = np.nan
        return pd.DataFrame(scores, index=table.index, columns=list(self.loadings_.columns))

    # -- JSON -----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        self._require_fitted()
        return {
            "kind": MODEL_KIND, "format_version": FORMAT_VERSION,
            "parameters": asdict(self.parameters) | {"exclude": list(self.parameters.exclude)},
            "features_in": self.features_in_,
            "scaled_variance": self.variance_.to_dict(), "variance_threshold": self.variance_threshold_,
            "kept": self.kept_, "mean": self.mean_.to_dict(), "scale": self.scale_.to_dict(),
            "n_factors": self.n_factors_, "n_factors_rule": self.n_factors_rule_,
            "eigenvalues": self.eigenvalues_.tolist(),
            "components": self.components_.tolist(), "noise_variance": self.noise_variance_.tolist(),
            "fa_mean": self.fa_mean_.tolist(),
            "signature": self.signature_, "signature_table": self.signature_table_.to_dict(orient="list"),
            "report": self.report_.astype(object).where(self.report_.notna(), None).to_dict(orient="list"),
        }

    @classmethod
    def from_dict(cls, data: dict) -> FeatureReduction:
        if data.get("kind") != MODEL_KIND:
            raise FileFormatError(f"This is not a saved feature reduction (kind '{data.get('kind')}').")
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise FileFormatError("The saved feature reduction was written by a newer version; update the extension.")
        try:
            reduction = cls(ReductionParameters.from_dict(data["parameters"]))
            reduction.features_in_ = list(data["features_in"])
            reduction.variance_ = pd.Series(data["scaled_variance"], name="scaled_variance")
            reduction.variance_threshold_ = float(data["variance_threshold"])
            reduction.kept_ = list(data["kept"])
            reduction.mean_ = pd.Series(data["mean"])
            reduction.scale_ = pd.Series(data["scale"])
            reduction.n_factors_ = int(data["n_factors"])
            reduction.n_factors_rule_ = data["n_factors_rule"]
            reduction.eigenvalues_ = np.asarray(data["eigenvalues"], float)
            k = reduction.n_factors_
            reduction.components_ = np.asarray(data["components"], float).reshape(k, len(reduction.kept_))
            reduction.noise_variance_ = np.asarray(data["noise_variance"], float)
            reduction.fa_mean_ = np.asarray(data["fa_mean"], float)
            reduction.loadings_ = pd.DataFrame(reduction.components_.T, index=reduction.kept_,
                                               columns=[f"F{i + 1}" for i in range(k)])
            reduction.signature_ = list(data["signature"])
            reduction.signature_table_ = pd.DataFrame(data["signature_table"])
            report = pd.DataFrame(data["report"], columns=REPORT_COLUMNS)
            report[["value", "threshold"]] = report[["value", "threshold"]].astype(float)
            reduction.report_ = report.where(report.notna(), np.nan)
        except (KeyError, TypeError, ValueError) as error:
            raise FileFormatError(f"The saved feature reduction is incomplete or damaged ({error}).") from error
        reduction.fitted = True
        return reduction
