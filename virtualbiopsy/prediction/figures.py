"""PNG figures of outcome models (matplotlib, Agg backend: no display needed).

Kaplan–Meier curves, predicted vs observed outcomes, the density of predicted probabilities with
the per-bin probability error (calibration), a patient placed within the cohort's feature
distributions, SHAP plots (bar, beeswarm, waterfall), Grad-CAM on an image slice and a model
comparison forest plot. The SHAP plots are drawn here from the values table (rather than with
shapiq's plotting) so that values read back from ``shap_values.csv`` plot the same way.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from virtualbiopsy.report import style  # noqa: E402


def _save(fig, path) -> Path:
    return style.save(fig, path, note=True)


def km_curves(path, analysis, title: str = "Overall survival by group", time_unit: str = "days") -> Path:
    """Kaplan–Meier curves with 95 % bands; legend: n, events, median; log-rank p in the title."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, g in enumerate(analysis.groups):
        colour = f"C{index}"
        median = "not reached" if not np.isfinite(g.median) else f"{g.median:.0f}"
        ax.step(g.timeline, g.survival, where="post", color=colour,
                label=f"{g.group}: n = {g.n}, {g.events} events, median {median}, RMST {g.rmst:.0f}")
        ax.fill_between(g.timeline, g.ci_lower, g.ci_upper, step="post", color=colour, alpha=0.15)
    p = float(analysis.logrank["p"].iloc[0])
    ax.set_title(f"{title}\nlog-rank p = {p:.2g}; RMST to {analysis.tau:.0f} {time_unit}")
    ax.set_xlabel(f"time ({time_unit})")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def predicted_vs_observed(path, cv_predictions: pd.DataFrame, endpoint) -> Path:
    """Out-of-fold predictions against what happened.

    Binary / multi-class: the predicted probability of each class for the cases of each observed
    class (strip + box). Time-to-event: prognostic index against follow-up time, events filled.
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if endpoint.kind == "time-to-event":
        event = cv_predictions[endpoint.event].to_numpy(int)
        index, time = cv_predictions["prognostic_index"], cv_predictions[endpoint.time]
        ax.scatter(index[event == 1], time[event == 1], s=14, label="event", color="C3")
        ax.scatter(index[event == 0], time[event == 0], s=14, facecolors="none", edgecolors="C0", label="censored")
        ax.set_xlabel("out-of-fold prognostic index (higher = higher risk)")
        ax.set_ylabel(f"observed {endpoint.time}")
        ax.legend()
    else:
        classes = list(endpoint.classes)
        column = cv_predictions[endpoint.column].astype(str)
        rng = np.random.default_rng(0)
        shown = classes[-1:] if endpoint.kind == "binary" else classes
        width = 0.8 / len(shown)
        for c_index, label in enumerate(shown):
            p = cv_predictions[f"p_{label}"]
            for o_index, observed in enumerate(classes):
                values = p[column == str(observed)].to_numpy()
                x = o_index + (c_index - (len(shown) - 1) / 2) * width
                ax.boxplot(values, positions=[x], widths=width * 0.8, showfliers=False)
                ax.scatter(x + rng.uniform(-width / 4, width / 4, len(values)), values, s=8, alpha=0.6,
                           color=f"C{c_index}", label=f"P({label})" if o_index == 0 else None)
        ax.set_xticks(range(len(classes)), [f"observed {c}" for c in classes])
        ax.set_ylabel("out-of-fold predicted probability")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    ax.set_title("Predicted vs observed outcome (nested cross-validation)")
    return _save(fig, path)


def calibration_bins(y, p, bins: int = 10) -> pd.DataFrame:
    """Per probability bin: cases, mean predicted, observed rate, its error and a Wilson 95 % CI."""
    y, p = np.asarray(y, float), np.asarray(p, float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        if n == 0:
            continue
        observed = float(y[inside].mean())
        z = 1.96
        centre = (observed + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(observed * (1 - observed) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        rows.append({"bin_low": edges[b], "bin_high": edges[b + 1], "n": n, "mean_predicted": float(p[inside].mean()),
                     "observed_rate": observed, "error": float(p[inside].mean()) - observed,
                     "observed_ci_low": centre - half, "observed_ci_high": centre + half})
    return pd.DataFrame(rows)


def probability_calibration(path, y, p, bins: int = 10, label: str = "positive") -> Path:
    """Density of predicted probabilities per observed class (top) and the per-bin probability error (bottom)."""
    table = calibration_bins(y, p, bins)
    y, p = np.asarray(y, int), np.asarray(p, float)
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7, 8), sharex=True,
                                              gridspec_kw={"height_ratios": [1.2, 1.5, 1]})
    edges = np.linspace(0, 1, bins + 1)
    top.hist([p[y == 0], p[y == 1]], bins=edges, density=True, label=[f"observed not {label}", f"observed {label}"],
             color=["C0", "C3"], alpha=0.7)
    top.set_ylabel("density")
    top.legend(fontsize=8)
    top.set_title("Predicted probabilities and calibration (out-of-fold)")
    middle.plot([0, 1], [0, 1], "--", color="#999", lw=1, label="perfect calibration")
    below = np.clip(table.observed_rate - table.observed_ci_low, 0, None)
    above = np.clip(table.observed_ci_high - table.observed_rate, 0, None)
    middle.errorbar(table.mean_predicted, table.observed_rate, yerr=[below, above],
                    fmt="o-", color="C2", capsize=3, label="observed rate (Wilson 95 % CI)")
    middle.set_ylabel(f"observed rate of {label}")
    middle.legend(fontsize=8)
    centres = (table.bin_low + table.bin_high) / 2
    bottom.bar(centres, table.error, width=0.8 / bins, color=np.where(table.error > 0, "C3", "C0"))
    for x, e, n in zip(centres, table.error, table.n):
        bottom.text(x, e, f"n={n}", ha="center", va="bottom" if e >= 0 else "top", fontsize=7)
    bottom.axhline(0, color="#666", lw=0.8)
    bottom.set_ylabel("predicted - observed")
    bottom.set_xlabel("predicted probability")
    bottom.set_xlim(0, 1)
    return _save(fig, path)


def _percentile_text(value: float, quantiles: pd.Series) -> str:
    """Where ``value`` lies among the stored cohort percentiles; beyond the outermost stored level (5 % / 95 %:
    the minimum and maximum are not kept) it says "below" / "above" that level instead of a number."""
    levels = np.asarray(quantiles.index, float) * 100
    values = quantiles.to_numpy(float)
    if not np.isfinite(value) or not np.isfinite(values).all():
        return "percentile n/a"
    if np.ptp(values) == 0:
        return "percentile n/a (constant in the cohort)"
    if value < values[0]:
        return f"below the {levels[0]:.0f}th percentile"
    if value > values[-1]:
        return f"above the {levels[-1]:.0f}th percentile"
    return f"percentile {np.interp(value, values, levels):.0f}"


def patient_in_cohort(path, quantiles: pd.DataFrame, patient: pd.Series, features=None, shap_row=None,
                      title: str = "Patient within the training cohort") -> Path:
    """Each feature's cohort distribution (5-95 % and 25-75 % bands, median) with the patient's value.

    ``quantiles`` has percentile levels (fractions, e.g. 0.05..0.95) as index and features as columns (e.g.
    ``model.feature_quantiles``; levels outside the stored range are clamped to its ends);
    ``shap_row`` (optional) orders the features by the patient's |SHAP| and prints each value.
    """
    features = list(features or quantiles.columns)
    if shap_row is not None:
        features = sorted(features, key=lambda f: -abs(float(shap_row.get(f, 0.0))))
    features = features[:12]
    fig, axes = plt.subplots(len(features), 1, figsize=(7, 0.55 * len(features) + 1.0), squeeze=False)
    for ax, feature in zip(axes[:, 0], features):
        q = quantiles[feature]
        get = lambda level, q=q: float(np.interp(level, np.asarray(q.index, float), q.to_numpy(float)))  # noqa: E731
        ax.hlines(0, get(0.05), get(0.95), color="#bbb", lw=6)
        ax.hlines(0, get(0.25), get(0.75), color="#888", lw=6)
        ax.plot([get(0.5)], [0], "|", color="k", ms=12)
        value = float(patient[feature])
        if np.isfinite(value):
            ax.plot([value], [0], "D", color="C3", ms=7)
        text = f"{feature}: {value:.3g} ({_percentile_text(value, q)})" if np.isfinite(value) else f"{feature}: missing"
        if shap_row is not None:
            text += f"; SHAP {float(shap_row.get(feature, 0.0)):+.3f}"
        ax.set_title(text, fontsize=8, loc="left", pad=2)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    fig.suptitle(title + "\n(grey: 5-95 % and 25-75 % of the cohort, bar: median, red: patient)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def shap_bar(path, shap, top: int = 15) -> Path:
    """Mean |SHAP| per feature over the explained cases (cohort importance)."""
    mean_abs = shap.values.abs().mean(axis=0).sort_values().tail(top)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(mean_abs) + 1.2))
    ax.barh(mean_abs.index, mean_abs.to_numpy(), color="C0")
    ax.set_xlabel(f"mean |SHAP value| (units of {shap.output})")
    ax.set_title(f"Feature importance over {len(shap.values)} cases")
    return _save(fig, path)


def shap_beeswarm(path, shap, top: int = 15) -> Path:
    """One dot per case and feature at its SHAP value, coloured by the feature's value (low blue, high red)."""
    order = shap.values.abs().mean(axis=0).sort_values().tail(top).index
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(order) + 1.4))
    rng = np.random.default_rng(0)
    for row, feature in enumerate(order):
        values = shap.values[feature].to_numpy()
        data = shap.data[feature].to_numpy(float)
        finite = np.isfinite(data)
        low, high = (np.nanpercentile(data, [5, 95]) if finite.any() else (0.0, 1.0))
        colour = np.clip((data - low) / (high - low if high > low else 1.0), 0, 1)
        jitter = rng.uniform(-0.25, 0.25, len(values))
        ax.scatter(values[finite], row + jitter[finite], c=colour[finite], cmap="coolwarm", s=10, vmin=0, vmax=1)
        ax.scatter(values[~finite], row + jitter[~finite], color="#999", s=10)
    ax.axvline(0, color="#666", lw=0.8)
    ax.set_yticks(range(len(order)), order)
    ax.set_xlabel(f"SHAP value (effect on {shap.output})")
    mappable = plt.cm.ScalarMappable(cmap="coolwarm")
    bar = fig.colorbar(mappable, ax=ax, fraction=0.03)
    bar.set_ticks([0, 1], labels=["low", "high"])
    bar.set_label("feature value")
    ax.set_title("SHAP values per case (beeswarm)")
    return _save(fig, path)


def shap_waterfall(path, shap, case, top: int = 10) -> Path:
    """How one case's prediction is built from the base value, feature by feature."""
    case = str(case)
    if case not in shap.values.index:
        from virtualbiopsy.errors import InputError

        raise InputError(f"Case '{case}' was not explained.")
    row = shap.values.loc[case]
    data = shap.data.loc[case]
    order = row.abs().sort_values(ascending=False).index
    shown, rest = list(order[:top]), list(order[top:])
    contributions = [(f"{f} = {data[f]:.3g}", float(row[f])) for f in shown]
    if rest:
        contributions.append((f"{len(rest)} other features", float(row[rest].sum())))
    contributions = contributions[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(contributions) + 1.6))
    position = shap.base_value + sum(c for _, c in contributions)
    end = position
    for y, (_, value) in reversed(list(enumerate(contributions))):
        start = position - value
        ax.barh(y, value, left=start, color="C3" if value > 0 else "C0")
        ax.text(max(start, position), y, f" {value:+.3f}", va="center", fontsize=7)
        position = start
    ax.set_yticks(range(len(contributions)), [label for label, _ in contributions], fontsize=8)
    ax.axvline(shap.base_value, color="#666", lw=0.8, ls="--")
    ax.axvline(end, color="k", lw=0.8)
    ax.margins(x=0.15)
    ax.set_xlabel(shap.output)
    ax.set_title(f"Case {case}: base {shap.base_value:.3f} -> prediction {end:.3f}")
    return _save(fig, path)


def gradcam_slice(path, image: np.ndarray, cam: np.ndarray, mask: np.ndarray | None = None, k: int | None = None,
                  title: str = "Grad-CAM (demo CNN)") -> Path:
    """The axial slice with the most Grad-CAM mass: image, and the map over it (mask outlined)."""
    k = int(np.argmax(cam.reshape(cam.shape[0], -1).sum(axis=1))) if k is None else k
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    for ax in axes:
        ax.imshow(image[k][::-1, ::-1], cmap="gray")
        if mask is not None and mask[k].any():
            ax.contour(mask[k][::-1, ::-1], levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_xticks([])
        ax.set_yticks([])
    shown = axes[1].imshow(np.ma.masked_less(cam[k][::-1, ::-1], 0.05), cmap="inferno", alpha=0.6, vmin=0, vmax=1)
    fig.colorbar(shown, ax=axes[1], fraction=0.04)
    axes[0].set_title(f"slice k = {k}")
    axes[1].set_title(title)
    return _save(fig, path)


def model_comparison(path, table: pd.DataFrame, metric: str = "auc") -> Path:
    """Each model's metric with its bootstrap CI (forest plot), best at the top."""
    table = table.sort_values(metric)
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(table) + 1.4))
    y = np.arange(len(table))
    ax.errorbar(table[metric], y, xerr=[table[metric] - table[f"{metric}_ci_low"],
                                        table[f"{metric}_ci_high"] - table[metric]], fmt="o", capsize=4)
    ax.set_yticks(y, table["model"])
    if metric in ("auc", "c_index"):
        ax.axvline(0.5, color="#999", ls="--", lw=1)
    ax.set_xlabel(f"{metric} (nested CV, bootstrap 95 % CI)")
    ax.set_title("Model comparison")
    return _save(fig, path)
