"""ComBat harmonisation of a feature table by batch (site, scanner), fitted once and applied to new cases.

Written here because no library in the stack offers ComBat as a fit/apply estimator with the
fitted parameters stored (neuroCombat, used by the tests as the reference, fits and adjusts in
one call, and its apply-to-new-data function ignores the new cases' covariates).

The model (Johnson, Li & Rabinovic 2007, Biostatistics 8:118; Fortin et al. 2017/2018 for
imaging features), per feature f, case i of batch b with covariates x_i::

    y_if = alpha_f + x_i beta_f + gamma_bf + delta_bf * e_if,    e_if ~ N(0, sigma_f^2)

1. Least squares of every feature on [batch one-hot | covariates] gives the batch coefficients
   and ``beta``; ``alpha_f`` is the batch coefficients' mean weighted by batch size;
   ``sigma_f^2`` the mean squared residual (divided by n, as in sva and neuroCombat).
2. Standardised data ``s = (y - alpha - x beta) / sigma``; per batch, ``gamma_hat`` is its mean
   and ``delta_hat`` its variance (ddof = 1).
3. Empirical Bayes shrinks them across features: *parametric* (normal prior on gamma,
   inverse-gamma prior on delta, priors by the method of moments, posterior found by the
   iteration of the reference implementations, stopping when the largest relative change is
   below ``convergence``) or *non-parametric* (the posterior mean over the other features'
   ``gamma_hat, delta_hat``, weighted by the likelihood of this feature's data under them;
   computed with log-likelihoods so that large batches do not underflow).
4. ``y* = (s - gamma*) / sqrt(delta*) * sigma + alpha + x beta``: the batch's location and
   scale are removed, the covariates' effects kept.

Conventions follow sva's ComBat and neuroCombat 0.2.12, which the tests reproduce to 1e-6:
a batch with one case cannot give a scale, so (as sva does) every batch is then adjusted in
location only (``mean_only``), with the reference's posterior for that case. Numeric covariates
are linear terms, text covariates categorical (first level sorted as reference). Features with
no residual variance (e.g. constant) are passed through unchanged and listed, and do not enter
the priors (neuroCombat substitutes a meaningless value there).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from virtualbiopsy.columns import OUTCOME, discrete_kind, numeric_values, row_name
from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.frames import BLANKS
from virtualbiopsy.progress import as_task
from virtualbiopsy.signature.tables import (
    failed_rows,
    feature_selection,
    level_text,
    require_columns,
    require_finite_features,
)
from virtualbiopsy.signature.tables import labels_as_text as _labels
from virtualbiopsy.signature.variance import NEAR_CONSTANT_SHARE, most_common_share

MODEL_KIND = "virtualbiopsy.combat"
FORMAT_VERSION = 1


@dataclass
class ComBatParameters:
    parametric: bool = True  # False: non-parametric empirical Bayes
    mean_only: bool = False  # adjust the location only (forced when a batch has a single case)
    convergence: float = 1e-4  # parametric EB: stop when the largest relative change is below this
    max_iterations: int = 10000


@dataclass
class ComBatModel:
    """Fitted ComBat parameters; :meth:`transform` harmonises cases of the known batches."""

    features: list[str]
    batches: list[str]
    batch_counts: list[int]
    continuous: list[str]
    categorical: dict[str, list[str]]  # covariate -> its levels; the first is the reference
    beta: np.ndarray  # (design covariate columns, features)
    grand_mean: np.ndarray  # alpha, per feature
    var_pooled: np.ndarray  # sigma^2, per feature
    gamma_star: np.ndarray  # (batches, features)
    delta_star: np.ndarray  # (batches, features)
    gamma_hat: np.ndarray
    delta_hat: np.ndarray
    parametric: bool = True
    mean_only: bool = False
    iterations: list[int] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    batch_column: str = "batch"

    @property
    def covariates(self) -> list[str]:
        return [*self.categorical, *self.continuous]

    def covariate_design(self, covariates: pd.DataFrame | None, n_cases: int) -> np.ndarray:
        """The covariate part of the design matrix for these cases (categories must be known)."""
        if not self.covariates:
            return np.zeros((n_cases, 0))
        if covariates is None:
            raise InputError("This ComBat model preserves the covariate(s) " + ", ".join(self.covariates)
                             + "; give their values for the cases to harmonise.")
        require_columns(covariates, self.covariates, "covariate table")
        blocks = []
        for name, levels in self.categorical.items():
            values = _labels(covariates[name].tolist(), f"covariate '{name}'")
            unknown = sorted(set(values) - set(levels))
            if unknown:
                raise InputError(f"Covariate '{name}' has value(s) {', '.join(unknown)} that the ComBat model was "
                                 f"not fitted with (known: {', '.join(levels)}).")
            blocks.append(np.stack([(values == level).astype(float) for level in levels[1:]], axis=1)
                          if len(levels) > 1 else np.zeros((n_cases, 0)))
        for name in self.continuous:
            column = pd.to_numeric(covariates[name], errors="coerce").to_numpy(dtype=float)
            if not np.isfinite(column).all():
                raise InputError(f"Covariate '{name}' has missing or non-numeric values.")
            blocks.append(column[:, None])
        return np.concatenate(blocks, axis=1)

    def transform(self, values: pd.DataFrame, batch: Sequence, covariates: pd.DataFrame | None = None
                  ) -> pd.DataFrame:
        """Harmonised copy of ``values`` (cases x features, the fitted features at least)."""
        require_columns(values, self.features, "feature table to harmonise")
        data = numeric_values(values, self.features)
        require_finite_features(data, "feature table to harmonise")
        labels = _labels(list(batch), f"batch column '{self.batch_column}'")
        if len(labels) != len(data):
            raise InputError(f"{len(labels)} batch labels were given for {len(data)} cases.")
        unknown = sorted(set(labels) - set(self.batches))
        if unknown:
            raise InputError(f"Batch(es) {', '.join(unknown)} were not in the data ComBat was fitted on (known: "
                             f"{', '.join(self.batches)}); a ComBat model can only harmonise cases of its batches.")
        design = self.covariate_design(covariates, len(data))
        index = np.array([self.batches.index(label) for label in labels], dtype=int)
        y = data.to_numpy()
        active = ~np.isin(self.features, self.unchanged)
        sigma = np.sqrt(self.var_pooled[active])
        location = self.grand_mean[active] + design @ self.beta[:, active]
        s = (y[:, active] - location) / sigma
        adjusted = y.copy()
        adjusted[:, active] = ((s - self.gamma_star[index][:, active]) / np.sqrt(self.delta_star[index][:, active])
                               * sigma + location)
        return pd.DataFrame(adjusted, index=values.index, columns=self.features)

    # -- JSON -----------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        arrays = ("beta", "grand_mean", "var_pooled", "gamma_star", "delta_star", "gamma_hat", "delta_hat")
        data = {"kind": MODEL_KIND, "format_version": FORMAT_VERSION}
        for name, value in self.__dict__.items():
            data[name] = np.asarray(value).tolist() if name in arrays else value
        data["beta_shape"] = list(np.shape(self.beta))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ComBatModel:
        if data.get("kind") != MODEL_KIND:
            raise FileFormatError(f"This is not a saved ComBat model (kind '{data.get('kind')}').")
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise FileFormatError("The saved ComBat model was written by a newer version; update the extension.")
        try:
            values = {k: v for k, v in data.items() if k not in ("kind", "format_version", "beta_shape")}
            for name in ("grand_mean", "var_pooled"):
                values[name] = np.asarray(values[name], float)
            for name in ("gamma_star", "delta_star", "gamma_hat", "delta_hat"):
                values[name] = np.asarray(values[name], float).reshape(len(values["batches"]), len(values["features"]))
            values["beta"] = np.asarray(values["beta"], float).reshape(data["beta_shape"])
            return cls(**values)
        except (KeyError, TypeError, ValueError) as error:
            raise FileFormatError(f"The saved ComBat model is incomplete or damaged ({error}).") from error


def _covariate_spec(covariates: pd.DataFrame | None, categorical: Iterable[str] | None):
    forced = set(categorical or ())
    given = set() if covariates is None else set(covariates.columns)
    if forced - given:
        raise InputError("Categorical column(s) " + ", ".join(sorted(f"'{n}'" for n in forced - given))
                         + " are not among the covariates given.")
    if covariates is None or covariates.shape[1] == 0:
        return {}, []
    cats, nums = {}, []
    for name in covariates.columns:
        column = covariates[name]
        if name in forced or not pd.api.types.is_numeric_dtype(column) or column.dtype == bool:
            cats[name] = sorted(set(_labels(column.tolist(), f"covariate '{name}'")))
        else:
            nums.append(name)
    return cats, nums


def _design(values: pd.DataFrame, batch: Sequence, covariates: pd.DataFrame | None, params: ComBatParameters,
            categorical: Iterable[str] | None, batch_column: str):
    """Every check of the fit on its inputs; (the model so far, batch index per case, covariate design, design,
    least-squares coefficients)."""
    data = values.astype(float)
    require_finite_features(data, "feature table to harmonise")
    features = list(data.columns)
    if len(features) < 2:
        raise InputError(f"ComBat needs at least 2 features ({len(features)} given: {', '.join(features) or 'none'}): "
                         "its priors pool information across features.")
    labels = _labels(list(batch), f"batch column '{batch_column}'")
    if len(labels) != len(data):
        raise InputError(f"{len(labels)} batch labels were given for {len(data)} cases.")
    batches = sorted(set(labels))
    if len(batches) < 2:
        raise InputError(f"Every case is in batch '{batches[0]}' of the batch column '{batch_column}'; ComBat needs "
                         "at least two batches to harmonise.")
    counts = [int(np.sum(labels == b)) for b in batches]
    notes = []
    mean_only = params.mean_only
    if min(counts) < 2 and not mean_only:
        single = [b for b, c in zip(batches, counts) if c < 2]
        mean_only = True
        notes.append(f"batch(es) {', '.join(single)} have a single case, so no batch scale can be estimated: every "
                     "batch is adjusted in location only (as sva's ComBat does)")
    if covariates is not None:
        if len(covariates) != len(data):
            raise InputError(f"{len(covariates)} covariate rows were given for {len(data)} cases.")
        covariates = covariates.reset_index(drop=True)
    cats, nums = _covariate_spec(covariates, categorical)
    model = ComBatModel(features, batches, counts, nums, cats, np.zeros((0, len(features))), np.zeros(0),
                        np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0), params.parametric,
                        mean_only, notes=notes, batch_column=batch_column)
    index = np.array([batches.index(label) for label in labels])
    onehot = (index[:, None] == np.arange(len(batches))[None, :]).astype(float)
    covariate_design = model.covariate_design(covariates, len(data))
    design = np.concatenate([onehot, covariate_design], axis=1)
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise InputError("The covariate(s) " + ", ".join(model.covariates) + " are confounded with the batches (or "
                         "with each other), e.g. a covariate constant within each batch: ComBat cannot tell their "
                         "effects apart. Remove or recode them.")
    if len(data) <= design.shape[1]:
        raise InputError(f"{len(data)} cases are too few for {len(batches)} batches and "
                         f"{covariate_design.shape[1]} covariate term(s).")
    # 1. location/scale model by least squares (here: which features vary beyond it)
    y = data.to_numpy()
    coefficients = np.linalg.lstsq(design, y, rcond=None)[0]
    var_pooled = ((y - design @ coefficients) ** 2).mean(axis=0)
    scale = np.maximum(np.abs(y).max(axis=0), np.finfo(float).tiny)
    flat = var_pooled <= (1e-10 * scale) ** 2
    model.unchanged = [name for name, f in zip(features, flat) if f]
    if model.unchanged:
        notes.append(f"{len(model.unchanged)} feature(s) have no residual variance and are passed through unchanged: "
                     + ", ".join(model.unchanged[:8]) + (" ..." if len(model.unchanged) > 8 else ""))
    if (~flat).sum() < 2:
        raise InputError("Fewer than 2 features vary beyond the batch and covariate effects; nothing to harmonise.")
    return model, index, covariate_design, design, coefficients


def _parametric(s, g_hat, d_hat, g_bar, t2, a, b, convergence, max_iterations):
    """Posterior gamma*, delta* of one batch by the reference implementations' fixed-point iteration."""
    n = s.shape[0]
    g_old, d_old = g_hat.copy(), d_hat.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for count in range(1, max_iterations + 1):
            g_new = (t2 * n * g_hat + d_old * g_bar) / (t2 * n + d_old)
            sum2 = ((s - g_new) ** 2).sum(axis=0)
            d_new = (0.5 * sum2 + b) / (n / 2.0 + a - 1.0)
            # relative change; the signed denominator for gamma is that of sva's it.sol and neuroCombat
            change = max(np.nanmax(np.abs(g_new - g_old) / g_old), np.nanmax(np.abs(d_new - d_old) / d_old))
            g_old, d_old = g_new, d_new
            if change <= convergence:
                return g_new, d_new, count
    raise InputError(f"Parametric ComBat did not converge in {max_iterations} iterations; try the non-parametric "
                     "version.")


def _non_parametric(s, g_hat, d_hat, task, chunk: int = 256):
    """Posterior means over the other features' (gamma_hat, delta_hat), likelihood-weighted (log domain)."""
    n, n_features = s.shape
    mean = s.mean(axis=0)
    ss = ((s - mean) ** 2).sum(axis=0)
    g_star, d_star = np.empty(n_features), np.empty(n_features)
    for start in range(0, n_features, chunk):
        task.update(start / n_features, "Non-parametric empirical Bayes")
        rows = slice(start, min(start + chunk, n_features))
        # sum_k (s_ik - g_j)^2 = SS_i + n (mean_i - g_j)^2
        sum2 = ss[rows, None] + n * (mean[rows, None] - g_hat[None, :]) ** 2
        log_lh = -0.5 * n * np.log(2.0 * np.pi * d_hat)[None, :] - sum2 / (2.0 * d_hat[None, :])
        log_lh[np.arange(rows.stop - rows.start), np.arange(rows.start, rows.stop)] = -np.inf  # leave itself out
        weights = np.exp(log_lh - log_lh.max(axis=1, keepdims=True))
        total = weights.sum(axis=1)
        g_star[rows] = weights @ g_hat / total
        d_star[rows] = weights @ d_hat / total
    return g_star, d_star


def fit_combat(values: pd.DataFrame, batch: Sequence, covariates: pd.DataFrame | None = None,
               parameters: ComBatParameters | None = None, categorical: Iterable[str] | None = None,
               batch_column: str = "batch", progress=None) -> ComBatModel:
    """Fit ComBat on ``values`` (cases x features, all numeric) with one batch label per case.

    ``covariates`` (cases x columns) are the biological effects to preserve; numeric columns
    are linear terms unless named in ``categorical``.
    """
    params = parameters or ComBatParameters()
    task = as_task(progress)
    task.update(0.0, "ComBat: design")
    model, index, covariate_design, design, coefficients = _design(values, batch, covariates, params, categorical,
                                                                   batch_column)
    batches, counts, mean_only = model.batches, model.batch_counts, model.mean_only
    y = values.to_numpy(dtype=float)
    n = len(y)
    grand_mean = (np.asarray(counts) / n) @ coefficients[: len(batches)]
    beta = coefficients[len(batches):]
    var_pooled = ((y - design @ coefficients) ** 2).mean(axis=0)
    active = ~np.isin(model.features, model.unchanged)

    # 2. standardised data and per-batch estimates
    s = (y[:, active] - grand_mean[active] - covariate_design @ beta[:, active]) / np.sqrt(var_pooled[active])
    n_active = int(active.sum())
    g_hat = np.zeros((len(batches), n_active))
    d_hat = np.ones((len(batches), n_active))
    g_star, d_star = np.zeros_like(g_hat), np.ones_like(d_hat)
    iterations = []
    for b in range(len(batches)):
        rows = s[index == b]
        g_hat[b] = rows.mean(axis=0)
        if not mean_only:
            d_hat[b] = rows.var(axis=0, ddof=1)
            d_hat[b][d_hat[b] == 0] = 1.0
    # 3. empirical Bayes, batch by batch
    for b in range(len(batches)):
        sub = task.sub(0.1 + 0.85 * b / len(batches), 0.1 + 0.85 * (b + 1) / len(batches))
        sub.update(0.0, f"ComBat: batch {batches[b]}")
        g_bar, t2 = g_hat[b].mean(), g_hat[b].var(ddof=1)
        rows = s[index == b]
        if params.parametric:
            if mean_only:  # sva / neuroCombat: postmean(gamma_hat, gamma_bar, 1, 1, t2)
                g_star[b] = (t2 * g_hat[b] + g_bar) / (t2 + 1.0)
                iterations.append(0)
            else:
                m, v = d_hat[b].mean(), d_hat[b].var(ddof=1)
                a_prior, b_prior = (2.0 * v + m ** 2) / v, (m * v + m ** 3) / v
                g_star[b], d_star[b], count = _parametric(rows, g_hat[b], d_hat[b], g_bar, t2, a_prior, b_prior,
                                                          params.convergence, params.max_iterations)
                iterations.append(count)
        else:
            g_star[b], d_star[b] = _non_parametric(rows, g_hat[b], d_hat[b], sub)
            if mean_only:
                d_star[b] = 1.0
    # store with the unchanged features as identity adjustments (gamma 0, delta 1)
    model.beta, model.grand_mean, model.var_pooled = beta, grand_mean, var_pooled
    model.gamma_hat, model.delta_hat = _scatter(g_hat, active, 0.0), _scatter(d_hat, active, 1.0)
    model.gamma_star, model.delta_star = _scatter(g_star, active, 0.0), _scatter(d_star, active, 1.0)
    model.iterations = iterations
    task.update(1.0, "ComBat fitted")
    return model


def _scatter(part: np.ndarray, active: np.ndarray, fill: float) -> np.ndarray:
    out = np.full((part.shape[0], active.size), fill)
    out[:, active] = part
    return out


def harmonise(values: pd.DataFrame, batch: Sequence, covariates: pd.DataFrame | None = None,
              parameters: ComBatParameters | None = None, categorical: Iterable[str] | None = None,
              batch_column: str = "batch", progress=None) -> tuple[pd.DataFrame, ComBatModel]:
    """Fit ComBat on these cases and return (their harmonised values, the model)."""
    task = as_task(progress)
    model = fit_combat(values, batch, covariates, parameters, categorical, batch_column, task.sub(0.0, 0.95))
    adjusted = model.transform(values, batch, covariates)
    task.update(1.0, "Harmonised")
    return adjusted, model


@dataclass
class HarmonisationPlan:
    """What :func:`plan_harmonisation` found: the features to harmonise and the columns left unchanged, with why."""

    features: list[str]
    left_unchanged: dict[str, str]  # column -> why it is copied unchanged (binary/categorical, outcome, ...)
    rows: np.ndarray  # True for the cases the fit uses (no failed extraction)
    notes: list[str] = field(default_factory=list)


def plan_harmonisation(table: pd.DataFrame, batch_column: str, covariates: Sequence[str] = (),
                       categorical: Sequence[str] | None = None, features: Sequence[str] | None = None,
                       exclude: Sequence[str] = (), parameters: ComBatParameters | None = None) -> HarmonisationPlan:
    """Every check of :func:`harmonise_table` before any fitting; raises what it would refuse, naming it.

    Features by the shared guard (:func:`~virtualbiopsy.signature.tables.feature_selection`):
    outcome-like, identifier, text, binary and categorical columns are never harmonised by default;
    a binary or categorical column named in ``features`` is still left unchanged (ComBat would
    turn its levels into other numbers), and so is a near-constant feature (at least 95 % of the
    cases hold one value: a spike, not the location / scale model ComBat fits); the notes say so.
    """
    covariates = list(covariates)
    categorical = list(categorical or ())
    if not batch_column:
        raise InputError("Name the batch / site column to harmonise by.")
    require_columns(table, [batch_column, *covariates], "feature table")
    if batch_column in covariates:
        raise InputError(f"'{batch_column}' is the batch column; it cannot also be a covariate.")
    stray = [name for name in categorical if name not in covariates]
    if stray:
        raise InputError("Categorical column(s) " + ", ".join(f"'{name}'" for name in stray) + " are not among the "
                         "covariates (" + (", ".join(covariates) or "none") + "); name them as covariates too.")
    reserved = {batch_column: "batch column", **{name: "covariate" for name in covariates}}
    selection = feature_selection(table, features, exclude, reserved)
    chosen, left = [], {}
    for name in selection.features:
        kind = discrete_kind(table[name]) if features is not None else None
        if kind is not None:
            left[name] = f"{kind}: ComBat would turn its levels into other numbers"
        else:
            chosen.append(name)
    left |= {name: why for name, why in selection.set_aside.items()
             if name not in reserved and why not in ("identifier / clinical column", "pyradiomics diagnostics column",
                                                     "not numeric", "not in the feature list")}
    rows = ~failed_rows(table).to_numpy()
    if not rows.any():
        raise InputError(f"Every one of the {len(rows)} case(s) has a message in the error column (its feature "
                         "extraction failed): there is nothing to harmonise.")
    share = most_common_share(numeric_values(table.loc[rows], chosen))
    for name in [name for name in chosen if share[name] >= NEAR_CONSTANT_SHARE and share[name] < 1.0]:
        chosen.remove(name)
        left[name] = (f"near-constant ({share[name]:.0%} of the cases hold one value): ComBat's location / scale model "
                      "does not apply")
    plan = HarmonisationPlan(chosen, left, rows, list(selection.warnings) if features is not None else [])
    discrete = [name for name, why in left.items() if why.startswith(("binary", "categorical"))]
    if discrete:
        plan.notes.append("binary / categorical column(s) left unchanged (never harmonised): " + ", ".join(discrete))
    near = [name for name, why in left.items() if why.startswith("near-constant")]
    if near:
        plan.notes.append(f"near-constant feature(s) left unchanged (>= {NEAR_CONSTANT_SHARE:.0%} of the cases hold "
                          "one value): " + ", ".join(near))
    outcomes = [name for name, why in left.items() if why == OUTCOME]
    if outcomes:
        plan.notes.append("outcome-like column(s) left unchanged (not features): " + ", ".join(outcomes))
    if not chosen:
        raise InputError("No continuous feature is left to harmonise ("
                         + "; ".join(f"{name}: {why}" for name, why in list(left.items())[:6]) + ").")
    if len(chosen) < 2:
        raise InputError(f"ComBat needs at least 2 features; only {', '.join(chosen)} is left to harmonise ("
                         + "; ".join(f"{name}: {why}" for name, why in list(left.items())[:6]) + ").")
    fitted = table.loc[rows]
    blank = [i for i, v in enumerate(fitted[batch_column].tolist()) if level_text(v).lower() in BLANKS]
    if blank:
        raise InputError(f"The batch column '{batch_column}' is empty for {len(blank)} case(s): "
                         + ", ".join(row_name(fitted, i) for i in blank[:6]) + (" ..." if len(blank) > 6 else "")
                         + ". Give every case its batch (or remove the case).")
    values = numeric_values(fitted, chosen)
    _design(values, fitted[batch_column].tolist(), fitted[covariates] if covariates else None,
            parameters or ComBatParameters(), categorical, batch_column)
    return plan


def harmonise_table(table: pd.DataFrame, batch_column: str, covariates: Sequence[str] = (),
                    parameters: ComBatParameters | None = None, progress=None,
                    categorical: Sequence[str] | None = None, features: Sequence[str] | None = None,
                    exclude: Sequence[str] = ()) -> tuple[pd.DataFrame, ComBatModel]:
    """A cohort table (ids, batch, covariates, features) -> (a copy with its features harmonised, the model).

    Features: ``features`` as given, else the shared guard's default (:func:`plan_harmonisation`:
    never outcomes, ids, text, binary or categorical columns) less ``exclude``; every other column
    is copied unchanged. Text covariates are categorical; numeric ones are linear terms unless
    named in ``categorical`` (e.g. a stage coded 1-4, which then gets one term per level instead
    of a straight line). Cases whose ``error`` column holds a message (failed extraction) are left
    out of the fit and copied unchanged.
    """
    covariates = list(covariates)
    plan = plan_harmonisation(table, batch_column, covariates, categorical, features, exclude, parameters)
    rows = table.loc[plan.rows]
    adjusted, model = harmonise(numeric_values(rows, plan.features), rows[batch_column].tolist(),
                                rows[covariates] if covariates else None, parameters, categorical,
                                batch_column=batch_column, progress=progress)
    model.notes[:0] = plan.notes
    if not plan.rows.all():
        model.notes.append(f"{int((~plan.rows).sum())} case(s) whose feature extraction failed were left out and "
                           "unchanged")
    output = table.copy()
    for name in plan.features:
        output[name] = pd.to_numeric(output[name], errors="coerce").astype(float)
    output.loc[plan.rows, plan.features] = adjusted.to_numpy()
    return output, model


def apply_to_table(model: ComBatModel, table: pd.DataFrame) -> pd.DataFrame:
    """A copy of a cohort table with the model's features harmonised (failed cases unchanged)."""
    require_columns(table, [model.batch_column, *model.covariates], "feature table")
    ok = ~failed_rows(table).to_numpy()
    rows = table.loc[ok]
    adjusted = model.transform(rows, rows[model.batch_column].tolist(),
                               rows[model.covariates] if model.covariates else None)
    output = table.copy()
    output.loc[ok, model.features] = adjusted.to_numpy()
    return output
