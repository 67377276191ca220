"""Feature reduction to a signature: variance filter, correlation pruning, factor analysis.

A :class:`FeatureReduction` is fitted on a training cohort and then applied unchanged to new
cases (:meth:`~FeatureReduction.transform`, :meth:`~FeatureReduction.factor_scores`); it saves to
and loads from JSON (no pickle). Every dropped feature is listed in :attr:`~FeatureReduction.report_`
with the step, the reason and the numbers behind it.

The steps, in order (parameters in :class:`ReductionParameters`):

1. **Feature columns**: numeric columns that are not identifiers/clinical/diagnostics columns
   (:mod:`virtualbiopsy.signature.tables`). Missing values: an error, or (``missing="drop"``)
   the incomplete features are dropped and listed.
2. **Low-variance filter**: each feature is min-max scaled to [0, 1] over the training cases and
   its variance (ddof = 1) computed there. Min-max makes the variance scale-free (a z-score
   would make every variance 1) and independent of the feature's sign and offset (unlike the
   coefficient of variation). A low value means most cases sit together and the range comes
   from a few cases: e.g. one outlier case with every other case equal gives about 1/n.
   Constant features are always dropped. The threshold comes from the distribution of these
   variances: ``rule="percentile"`` (default: features below the 10th percentile are dropped),
   ``"knee"`` (the knee of the ascending sorted variance curve where its steep rise out of the
   low tail levels off into the bulk: the point farthest above the chord from the smallest to
   the largest variance, as in the Kneedle method; the features before it are dropped; nothing
   beyond constants is dropped when the curve has no such knee, i.e. bends less than 0.05 of
   the normalised range, as for a right-skewed curve whose only bend is a few high variances),
   ``"fixed"`` (a given minimum) or ``"off"`` (constants only).
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

from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.progress import as_task
from virtualbiopsy.signature.tables import (
    case_names,
    failed_rows,
    require_cases,
    require_columns,
    require_finite_features,
    split_columns,
)

MODEL_KIND = "virtualbiopsy.feature_reduction"
FORMAT_VERSION = 1
REPORT_COLUMNS = ("step", "feature", "action", "reason", "value", "threshold", "partner")


@dataclass
class VarianceFilterParameters:
    """Low-variance filter on min-max-scaled features (see the module docstring)."""

    rule: str = "percentile"  # "percentile", "knee", "fixed" or "off"
    percentile: float = 10.0  # rule "percentile": drop features below this percentile of the variances
    threshold: float = 0.0  # rule "fixed": drop features whose scaled variance is below this (<= 1/4)


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
    exclude: tuple[str, ...] = ()  # columns never used as features (besides ids, labels, diagnostics_*)
    missing: str = "raise"  # "raise": refuse missing values; "drop": drop incomplete features
    min_cases: int = 5

    def validate(self) -> None:
        if self.variance.rule not in ("percentile", "knee", "fixed", "off"):
            raise InputError(f"Unknown variance-filter rule '{self.variance.rule}'; use percentile, knee, fixed "
                             "or off.")
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
                   exclude=tuple(values.pop("exclude", ())), **values)


def scaled_variance(values: pd.DataFrame) -> pd.Series:
    """Variance (ddof = 1) of each column after min-max scaling to [0, 1]; 0 for a constant column."""
    array = values.to_numpy(dtype=float)
    low, high = array.min(axis=0), array.max(axis=0)
    span = high - low
    scaled = (array - low) / np.where(span > 0, span, 1.0)
    variance = scaled.var(axis=0, ddof=1)
    variance[span <= 0] = 0.0
    return pd.Series(variance, index=values.columns, name="scaled_variance")


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

    def fit(self, table: pd.DataFrame, progress=None) -> FeatureReduction:
        params = self.parameters
        params.validate()
        task = as_task(progress)
        task.update(0.0, "Selecting feature columns")
        features, others = split_columns(table, params.exclude)
        report = [{"step": "columns", "feature": name, "action": "not a feature", "reason": why}
                  for name, why in others.items()]
        failed = failed_rows(table)
        if failed.any():
            messages = table.loc[failed, [c for c in table.columns if str(c).lower() in ("error", "errors")][0]]
            for case, message in zip(np.array(case_names(table))[failed.to_numpy()], messages):
                report.append({"step": "cases", "feature": case, "action": "excluded",
                               "reason": f"extraction failed: {str(message)[:120]}"})
            table = table.loc[~failed]
        if not features:
            raise InputError("The table has no numeric feature columns (only: " + ", ".join(map(str, table.columns))
                             + ").")
        require_cases(len(table), params.min_cases, "feature table")
        values = table[features].astype(float)
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
        self.features_in_ = list(values.columns)

        # 2. low-variance filter
        task.update(0.05, "Low-variance filter")
        variance = scaled_variance(values)
        rule = params.variance.rule
        if rule == "percentile":
            threshold = float(np.percentile(variance.to_numpy(), params.variance.percentile))
            rule_text = f"below the {params.variance.percentile:g}th percentile of the min-max-scaled variances"
        elif rule == "knee":
            threshold = knee_threshold(variance.to_numpy())
            rule_text = "below the knee of the sorted min-max-scaled variances"
        elif rule == "fixed":
            threshold = float(params.variance.threshold)
            rule_text = "below the given minimum min-max-scaled variance"
        else:
            threshold, rule_text = 0.0, "constant"
        kept = []
        for name, value in variance.items():
            if value <= 0.0:
                report.append({"step": "variance", "feature": name, "action": "dropped",
                               "reason": "constant (every case has the same value)", "value": 0.0,
                               "threshold": threshold})
            elif value < threshold:
                report.append({"step": "variance", "feature": name, "action": "dropped",
                               "reason": f"scaled variance {value:.4g} {rule_text} ({threshold:.4g})",
                               "value": float(value), "threshold": threshold})
            else:
                kept.append(name)
        self.variance_ = variance
        self.variance_threshold_ = threshold
        if not kept:
            raise InputError("Every feature was removed by the low-variance filter; relax its threshold.")

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
        return pd.concat([table[list(carry)], table[self.signature_].astype(float)], axis=1)

    def signature_table(self, table: pd.DataFrame) -> pd.DataFrame:
        """:meth:`transform` carrying the table's identifier / label / clinical columns (not diagnostics)."""
        _, others = split_columns(table, self.parameters.exclude)
        return self.transform(table, [name for name, why in others.items() if why != "pyradiomics diagnostics column"])

    def factor_scores(self, table: pd.DataFrame) -> pd.DataFrame:
        """Factor scores of new cases (scikit-learn's ``FactorAnalysis.transform`` with the stored model);
        NaN for cases with a missing value."""
        self._require_fitted()
        if self.n_factors_ == 0:
            raise InputError("This reduction has no factors (factor analysis was off or too few features were left).")
        require_columns(table, self.kept_, "table to score")
        values = table[self.kept_].astype(float)
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
