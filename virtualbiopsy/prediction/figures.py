"""PNG figures of outcome models (matplotlib, Agg backend: no display needed).

Kaplan–Meier curves (number at risk, censoring marks), predicted vs observed outcomes, the density of
predicted probabilities with the per-bin probability error (calibration), a patient placed within
the cohort's feature distributions, SHAP plots (bar, beeswarm, waterfall), Grad-CAM on an image slice
and a model comparison forest plot. The SHAP plots are drawn here from the values table (rather
than with shapiq's plotting) so that values read back from ``shap_values.csv`` plot the same way.

Colours follow :mod:`virtualbiopsy.report.style`: in survival figures the group with the poorest
RMST is vermillion and the best blue (events vermillion too); a SHAP value that raises the
prediction is vermillion, one that lowers it blue. Classes read as ``<endpoint> = <class>`` (0 / 1
as no / yes), features carry their units (:func:`feature_unit`), SHAP values the model output's.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

from virtualbiopsy.prediction.figure_words import (  # noqa: E402
    METRIC_NAMES,
    MISSING,
    MODEL_NAMES,
    _with_unit,
    class_text,
    feature_unit,
    output_words,
    value_text,
)
from virtualbiopsy.report import style  # noqa: E402
from virtualbiopsy.report.style import ORIENTATION  # noqa: E402

NEUTRAL = "#444444"  # unsigned quantities (mean |SHAP|, a metric's estimate)
PATIENT = "#CC79A7"  # the patient's marker among the cohort's distributions


def _save(fig, path) -> Path:
    return style.save(fig, path, note=True)


def _legend_below(ax, handles, ncol: int = 2, gap: float = 6.0, **options):
    """A legend centred under everything drawn below ``ax`` (tick labels, x label), not over the data."""
    fig = ax.figure
    fig.canvas.draw()
    bottom = ax.get_tightbbox(fig.canvas.get_renderer()).y0
    anchor = fig.transFigure.inverted().transform((0, bottom - gap))[1]
    box = ax.get_position()
    return fig.legend(handles=handles, loc="upper center", bbox_to_anchor=((box.x0 + box.x1) / 2, anchor),
                      ncol=ncol, fontsize=8, frameon=False, **options)


def _widen_for(ax, texts, pad: float = 0.02) -> None:
    """Widen the x limits until every text in ``texts`` (placed in data coordinates) lies inside ``ax``."""
    fig = ax.figure
    for _ in range(4):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        inverse = ax.transData.inverted()
        edges = [inverse.transform((x, 0))[0] for t in texts for x in (t.get_window_extent(renderer).x0,
                                                                      t.get_window_extent(renderer).x1)]
        low, high = ax.get_xlim()
        span = high - low
        wanted = (min(low, min(edges) - pad * span), max(high, max(edges) + pad * span))
        if np.allclose(wanted, (low, high)):
            return
        ax.set_xlim(*wanted)


def km_curves(path, analysis, title: str = "Overall survival by group", time_unit: str = "days") -> Path:
    """Kaplan–Meier curves with 95 % bands and censoring marks (+), the number at risk under the axis;
    legend: n, events, median and RMST per group, log-rank p in the title. The group with the poorest
    RMST is drawn in :data:`style.POOR`, the best in :data:`style.GOOD`."""
    groups = analysis.groups
    colours = style.group_colours([g.rmst for g in groups])
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    handles = []
    for g, colour in zip(groups, colours):
        median = "not reached" if not np.isfinite(g.median) else f"{g.median:.0f} {time_unit}"
        ax.fill_between(g.timeline, g.ci_lower, g.ci_upper, step="post", color=colour, alpha=0.15, lw=0)
        ax.step(g.timeline, g.survival, where="post", color=colour, lw=1.6, gid=f"km:{g.group}")
        censored = g.censored_times
        ax.plot(censored, g.survival_at(censored), "+", color=colour, ms=7, mew=1.0, gid=f"censored:{g.group}")
        handles.append(Line2D([], [], color=colour, lw=1.6, label=f"{g.group}: n = {g.n}, {g.events} events, "
                              f"median {median}, RMST {g.rmst:.0f} {time_unit}"))
    handles += [Line2D([], [], color="k", ls="none", marker="+", ms=7, label="censored"),
                Patch(facecolor="#999999", alpha=0.3, label="95 % confidence band")]
    p = float(analysis.logrank["p"].iloc[0])
    ax.set_title(f"{title}\nlog-rank p = {p:.2g}; RMST: restricted mean survival up to {analysis.tau:.0f} {time_unit}")
    ax.set_xlabel(f"time ({time_unit})")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    end = max(float(g.durations.max()) if len(g.durations) else float(g.timeline.max()) for g in groups)
    ax.set_xlim(0, end * 1.02)
    ax.legend(handles=handles, fontsize=8, loc="best")
    fig.tight_layout()
    _at_risk_table(ax, groups, colours)
    return _save(fig, path)


def _at_risk_table(ax, groups, colours) -> None:
    """The number at risk of each group at the x ticks, in rows under the x label (group names in colour)."""
    fig = ax.figure
    fig.canvas.draw()
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    bottom = ax.get_tightbbox(fig.canvas.get_renderer()).y0
    row = 13.0 / fig.bbox.height * fig.dpi / 100  # one 8-point row, in figure fraction
    height = row * (len(groups) + 0.6)
    box = ax.get_position()
    table = fig.add_axes((box.x0, fig.transFigure.inverted().transform((0, bottom))[1] - height - 0.01,
                          box.width, height), gid="at-risk")
    table.set_xlim(ax.get_xlim())
    table.set_ylim(len(groups), 0)
    table.set_xticks([])
    table.set_yticks([])
    table.axis("off")
    table.set_title("number at risk", fontsize=8, loc="left", pad=2)
    widest = max(len(str(g.n)) for g in groups)  # the counts at t = 0 are centred on the left edge
    names = offset_copy(table.get_yaxis_transform(), fig, x=-(2.6 * widest + 6), units="points")
    for index, (g, colour) in enumerate(zip(groups, colours)):
        y = index + 0.5
        table.text(0, y, g.group, transform=names, ha="right", va="center", fontsize=8, color=colour,
                   fontweight="bold")
        for t, n in zip(ticks, g.at_risk(ticks)):
            table.text(t, y, str(int(n)), ha="center", va="center", fontsize=8, color=colour)


def predicted_vs_observed(path, cv_predictions: pd.DataFrame, endpoint) -> Path:
    """Out-of-fold predictions against what happened.

    Binary / multi-class: the predicted probability of each class for the cases of each observed
    class (strip + box). Time-to-event: prognostic index against follow-up time, events (vermillion,
    filled) and censored cases (blue, open).
    """
    fig, ax = plt.subplots(figsize=(7, 4.2))
    if endpoint.kind == "time-to-event":
        event = cv_predictions[endpoint.event].to_numpy(int)
        index, time = cv_predictions["prognostic_index"], cv_predictions[endpoint.time]
        ax.scatter(index[event == 1], time[event == 1], s=14, color=style.POOR,
                   label=f"event ({endpoint.event} = 1), n = {int((event == 1).sum())}")
        ax.scatter(index[event == 0], time[event == 0], s=14, facecolors="none", edgecolors=style.GOOD,
                   label=f"censored ({endpoint.event} = 0), n = {int((event == 0).sum())}")
        ax.set_xlabel("out-of-fold prognostic index (log partial hazard; higher = higher risk)")
        ax.set_ylabel(_with_unit(f"observed {endpoint.time}", feature_unit(endpoint.time)))
        handles = ax.get_legend_handles_labels()[0]
    else:
        classes = list(endpoint.classes)
        column = cv_predictions[endpoint.column].astype(str)
        rng = np.random.default_rng(0)
        shown = classes[-1:] if endpoint.kind == "binary" else classes
        colours = [NEUTRAL] if endpoint.kind == "binary" else list(style.categorical(len(shown)))
        width = 0.8 / len(shown)
        black = {"color": "k"}
        handles = []
        for c_index, (label, colour) in enumerate(zip(shown, colours)):
            p = cv_predictions[f"p_{label}"]
            for o_index, observed in enumerate(classes):
                values = p[column == str(observed)].to_numpy()
                x = o_index + (c_index - (len(shown) - 1) / 2) * width
                ax.boxplot(values, positions=[x], widths=width * 0.8, showfliers=False, boxprops=black,
                           whiskerprops=black, capprops=black, medianprops={"color": "k", "lw": 1.5})
                ax.scatter(x + rng.uniform(-width / 4, width / 4, len(values)), values, s=8, alpha=0.6,
                           color=colour)
            handles.append(Line2D([], [], ls="none", marker="o", ms=4, color=colour,
                                  label="one case: predicted probability of "
                                        f"{class_text(endpoint.column, label, classes)}"))
        handles.append(Patch(facecolor="none", edgecolor="k",
                             label="box: quartiles and median; whiskers: to 1.5 × IQR"))
        counts = column.value_counts()
        ax.set_xticks(range(len(classes)), [f"{class_text(endpoint.column, c, classes)}\n"
                                            f"(n = {int(counts.get(str(c), 0))})" for c in classes])
        ax.set_xlabel("observed outcome")
        ax.set_ylabel("out-of-fold predicted probability" + (f"\nof {class_text(endpoint.column, shown[0], classes)}"
                                                             if endpoint.kind == "binary" else ""))
        ax.set_ylim(-0.02, 1.02)
    ax.set_title("Predicted vs observed outcome (nested cross-validation)")
    fig.tight_layout()
    _legend_below(ax, handles, ncol=1)
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


def probability_calibration(path, y, p, bins: int = 10, label: str = "positive", negative: str | None = None) -> Path:
    """Density of predicted probabilities per observed class (top; ``label`` / ``negative``: the positive /
    other class in words, e.g. ``"mycn_amplified = yes"`` (vermillion) / ``"mycn_amplified = no"`` (blue;
    default "not <label>")), observed rate per bin against the predicted probability (middle) and the
    per-bin error predicted - observed with its case count (bottom)."""
    negative = negative or f"not {label}"
    table = calibration_bins(y, p, bins)
    y, p = np.asarray(y, int), np.asarray(p, float)
    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(7, 8.4), sharex=True,
                                              gridspec_kw={"height_ratios": [1.2, 1.5, 1]})
    edges = np.linspace(0, 1, bins + 1)
    names = [f"observed: {negative} (n = {int((y == 0).sum())})", f"observed: {label} (n = {int((y == 1).sum())})"]
    top.hist([p[y == 0], p[y == 1]], bins=edges, density=True, color=[style.GOOD, style.POOR], alpha=0.8, label=names)
    top.set_ylabel("density")
    top.legend(fontsize=8, loc="upper center")
    top.set_title(f"Predicted probability of {label} and calibration (out-of-fold)")
    middle.plot([0, 1], [0, 1], "--", color=style.REFERENCE, lw=1, label="perfect calibration")
    below = np.clip(table.observed_rate - table.observed_ci_low, 0, None)
    above = np.clip(table.observed_ci_high - table.observed_rate, 0, None)
    middle.errorbar(table.mean_predicted, table.observed_rate, yerr=[below, above],
                    fmt="o-", color="k", capsize=3, label="observed rate per bin (Wilson 95 % CI)")
    middle.set_ylabel(f"observed rate of\n{label}")
    middle.set_ylim(-0.05, 1.05)
    middle.legend(fontsize=8, loc="upper left")
    centres = (table.bin_low + table.bin_high) / 2
    bottom.bar(centres, table.error, width=0.8 / bins, color=style.REFERENCE)
    reach = max(float(np.abs(table.error).max()) if len(table) else 0.0, 0.01)
    for x, e, n in zip(centres, table.error, table.n):
        bottom.text(x, e + np.sign(e or 1) * reach * 0.05, f"n = {n}", ha="center", va="bottom" if e >= 0 else "top",
                    fontsize=7)
    bottom.set_ylim(-reach * 1.45, reach * 1.45)
    bottom.axhline(0, color="k", lw=0.8)
    bottom.set_ylabel("predicted - observed\n(> 0: over-estimated)")
    bottom.set_xlabel(f"out-of-fold predicted probability of {label} (bins of {1 / bins:.2g})")
    bottom.set_xlim(0, 1)
    fig.tight_layout(h_pad=0.8)
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
                      title: str = "Patient within the training cohort", *, prediction: float | None = None,
                      output: str | None = None, classes=()) -> Path:
    """Each feature's cohort distribution (5-95 % and 25-75 % bands, median) with the patient's value.

    ``quantiles`` has percentile levels (fractions, e.g. 0.05..0.95) as index and features as columns (e.g.
    ``model.feature_quantiles``; levels outside the stored range are clamped to its ends);
    ``shap_row`` (optional) orders the features by the patient's |SHAP| and prints each value, in the
    units of ``output`` (``shap.output``), whose value ``prediction`` for this patient goes in the title.
    """
    features = list(features or quantiles.columns)
    if shap_row is not None:
        features = sorted(features, key=lambda f: -abs(float(shap_row.get(f, 0.0))))
    features = features[:12]
    what, unit = output_words(output, classes) if output else ("model output", "model output")
    fig, axes = plt.subplots(len(features), 1, figsize=(7, 0.95 * len(features) + 1.2), squeeze=False)
    for ax, feature in zip(axes[:, 0], features):
        q = quantiles[feature]
        get = lambda level, q=q: float(np.interp(level, np.asarray(q.index, float), q.to_numpy(float)))  # noqa: E731
        ax.hlines(0, get(0.05), get(0.95), color="#bbb", lw=6)
        ax.hlines(0, get(0.25), get(0.75), color="#888", lw=6)
        ax.plot([get(0.5)], [0], "|", color="k", ms=12, mew=1.5)
        value = float(patient[feature])
        feature_units = feature_unit(feature, q.to_numpy(float))
        if np.isfinite(value):
            ax.plot([value], [0], "D", color=PATIENT, mec="k", ms=7)
            text = f"{feature} = {value_text(value, feature_units)} ({_percentile_text(value, q)})"
        else:
            text = f"{feature}: {MISSING}"
        if shap_row is not None:
            text += f"; SHAP {float(shap_row.get(feature, 0.0)):+.3f} ({unit})"
        ax.set_title(text, fontsize=8, loc="left", pad=2)
        ax.set_xlabel(_with_unit(feature, feature_units or "unit not known"), fontsize=7, labelpad=1)
        ax.set_yticks([])
        ax.tick_params(axis="x", labelsize=7)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    heading = title if prediction is None else f"{title}\npredicted {what}: {float(prediction):.3f}"
    fig.suptitle(heading, fontsize=9)
    fig.tight_layout()
    handles = [Patch(color="#bbb", label="5-95 % of the cohort"), Patch(color="#888", label="25-75 %"),
               Line2D([], [], color="k", ls="none", marker="|", ms=10, mew=1.5, label="cohort median"),
               Line2D([], [], color=PATIENT, mec="k", ls="none", marker="D", ms=6, label="this patient")]
    _legend_below(axes[-1, 0], handles, ncol=4)
    return _save(fig, path)


def shap_bar(path, shap, top: int = 15) -> Path:
    """Mean |SHAP| per feature over the explained cases (cohort importance)."""
    mean_abs = shap.values.abs().mean(axis=0).sort_values().tail(top)
    what, _ = output_words(shap.output, shap.classes)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(mean_abs) + 1.4))
    ax.barh(mean_abs.index, mean_abs.to_numpy(), color=NEUTRAL)
    ax.set_xlabel(f"mean |SHAP value|, in units of the model output ({what})")
    ax.set_ylabel("feature")
    ax.set_title(f"Feature importance over {len(shap.values)} cases")
    fig.tight_layout()
    return _save(fig, path)


def shap_beeswarm(path, shap, top: int = 15) -> Path:
    """One dot per case and feature at its SHAP value, coloured by the feature's value (viridis: low dark,
    high yellow, between its 5th and 95th percentile); a missing (imputed) value is a grey dot."""
    order = shap.values.abs().mean(axis=0).sort_values().tail(top).index
    what, _ = output_words(shap.output, shap.classes)
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(order) + 1.6))
    rng = np.random.default_rng(0)
    any_missing = False
    for row, feature in enumerate(order):
        values = shap.values[feature].to_numpy()
        data = shap.data[feature].to_numpy(float)
        finite = np.isfinite(data)
        any_missing |= not finite.all()
        low, high = (np.nanpercentile(data, [5, 95]) if finite.any() else (0.0, 1.0))
        colour = np.clip((data - low) / (high - low if high > low else 1.0), 0, 1)
        jitter = rng.uniform(-0.25, 0.25, len(values))
        ax.scatter(values[finite], row + jitter[finite], c=colour[finite], cmap="viridis", s=10, vmin=0, vmax=1)
        ax.scatter(values[~finite], row + jitter[~finite], color="#999", s=10)
    ax.axvline(0, color=style.REFERENCE, lw=0.8)
    ax.set_yticks(range(len(order)), order)
    ax.set_ylabel("feature (most important at the top)")
    ax.set_xlabel(f"SHAP value, in units of the model output ({what}); > 0 raises it")
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap="viridis"), ax=ax, fraction=0.03)
    bar.set_ticks([0, 1], labels=["low", "high"])
    bar.set_label("feature value (5th to 95th percentile)")
    ax.set_title("SHAP values per case (beeswarm)")
    if any_missing:
        ax.legend(handles=[Line2D([], [], ls="none", marker="o", ms=4, color="#999", label=MISSING)], fontsize=8,
                  loc="lower right")
    return _save(fig, path)


def shap_waterfall(path, shap, case, top: int = 10) -> Path:
    """How one case's prediction is built from E[f(x)] (the mean output over the background), feature by
    feature, up to f(x) at the top: bars that raise the output vermillion, those that lower it blue."""
    case = str(case)
    if case not in shap.values.index:
        from virtualbiopsy.errors import InputError

        raise InputError(f"Case '{case}' was not explained.")
    row = shap.values.loc[case]
    data = shap.data.loc[case]
    what, _ = output_words(shap.output, shap.classes)
    order = row.abs().sort_values(ascending=False).index
    shown, rest = list(order[:top]), list(order[top:])
    contributions = [(f"{f} = {value_text(data[f], feature_unit(f, shap.data[f]))}", float(row[f])) for f in shown]
    if rest:
        contributions.append((f"{len(rest)} other features", float(row[rest].sum())))
    contributions = contributions[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.4 * len(contributions) + 1.8))
    base = float(shap.base_value)
    end = base + sum(c for _, c in contributions)
    position, labels = end, []
    for y, (_, value) in reversed(list(enumerate(contributions))):
        start = position - value
        colour = style.RAISES if value > 0 else style.LOWERS if value < 0 else style.REFERENCE
        ax.barh(y, value, left=start, color=colour, height=0.7, gid=f"contribution:{y}")
        right = value > -5e-4  # the label goes past the bar's end: right of a rise, left of a fall
        text = f"{value:+.3f}" if abs(value) >= 5e-4 else "0.000"
        labels.append(ax.text(position, y, f" {text}" if right else f"{text} ", va="center",
                              ha="left" if right else "right", fontsize=7))
        position = start
    ax.set_yticks(range(len(contributions)), [label for label, _ in contributions], fontsize=8)
    ax.axvline(base, color=style.REFERENCE, lw=1, ls="--")
    ax.axvline(end, color="k", lw=1)
    ax.margins(x=0.05)
    _widen_for(ax, labels)
    ax.set_xlabel(f"model output: {what} (SHAP values in the same units)")
    ax.set_ylabel(f"feature = value of case {case}")
    ax.set_title(f"Case {case}: E[f(x)] = {base:.3f} → f(x) = {end:.3f}")
    fig.tight_layout()
    handles = [Patch(color=style.RAISES, label="raises the prediction"),
               Patch(color=style.LOWERS, label="lowers the prediction"),
               Line2D([], [], color=style.REFERENCE, ls="--", lw=1,
                      label=f"E[f(x)] = {base:.3f}: mean output over the background"),
               Line2D([], [], color="k", lw=1, label=f"f(x) = {end:.3f}: this case's output")]
    _legend_below(ax, handles, ncol=2)
    return _save(fig, path)


def gradcam_slice(path, image: np.ndarray, cam: np.ndarray, mask: np.ndarray | None = None, k: int | None = None,
                  title: str = "Grad-CAM (demo CNN)", *, aspect: float = 1.0, inside: float | None = None) -> Path:
    """The axial slice with the most Grad-CAM mass, radiological view: the image alone, and the map over
    it (values < 0.05 not drawn), the tumour ``mask`` outlined in both; panels of one size with the colour
    bar in its own axes. ``inside`` (share of the whole map's mass inside the mask) goes in the title."""
    empty = not np.any(np.asarray(cam) > 0)
    if k is None:  # the slice with the most map mass; for an empty map, the mask's largest slice
        mass = (mask if empty and mask is not None else cam).reshape(cam.shape[0], -1).sum(axis=1)
        k = int(np.argmax(mass))
    rows, columns = image[k].shape
    width, height = 3.6, 3.6 * rows * aspect / columns  # each panel, inches: the image's own shape, no empty band
    left, gap, bar, top, bottom = 0.1, 0.12, 0.15, 0.6, 0.3
    fig = plt.figure(figsize=(left + 2 * width + 2 * gap + bar + 0.9, bottom + height + top))
    size = fig.get_size_inches()
    place = lambda x, w: (x / size[0], bottom / size[1], w / size[0], height / size[1])  # noqa: E731
    axes = [fig.add_axes(place(left, width)), fig.add_axes(place(left + width + gap, width))]
    colour_bar = fig.add_axes(place(left + 2 * width + 2 * gap, bar))
    outlined = mask is not None and bool(mask[k].any())
    for ax in axes:
        ax.imshow(image[k][::-1, ::-1], cmap="gray", aspect="auto")  # the axes already have the image's shape
        if outlined:
            ax.contour(mask[k][::-1, ::-1], levels=[0.5], colors=[style.TRUE_OUTLINE], linewidths=1.0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(ORIENTATION, fontsize=8)
    shown = axes[1].imshow(np.ma.masked_less(cam[k][::-1, ::-1], 0.05), cmap="inferno", alpha=0.65, vmin=0, vmax=1,
                           aspect="auto")
    bar = fig.colorbar(shown, cax=colour_bar)
    bar.set_label("Grad-CAM, normalised 0-1 (< 0.05 not drawn)")
    axes[0].set_title(f"image, axial slice k = {k}", fontsize=10)
    share = ("\nthe map is empty (no evidence anywhere)" if empty else
             "" if inside is None else f"\n{inside:.0%} of the map's mass inside the outline")
    axes[1].set_title(title + share, fontsize=10)
    if outlined:
        _legend_below(axes[0], [Line2D([], [], color=style.TRUE_OUTLINE, lw=1.5, label="tumour outline "
                                       "(segmentation)")], ncol=1)
    return _save(fig, path)


def model_comparison(path, table: pd.DataFrame, metric: str = "auc") -> Path:
    """Each model's metric with its bootstrap CI (forest plot), best at the top."""
    table = table.sort_values(metric)
    fig, ax = plt.subplots(figsize=(6.5, 0.5 * len(table) + 1.6))
    y = np.arange(len(table))
    # a percentile bootstrap CI can leave the estimate out: its bar then stops at the estimate
    below = np.clip(table[metric] - table[f"{metric}_ci_low"], 0, None)
    above = np.clip(table[f"{metric}_ci_high"] - table[metric], 0, None)
    ax.errorbar(table[metric], y, xerr=[below, above], fmt="o", capsize=4,
                color=NEUTRAL, label="estimate with 95 % bootstrap CI")
    ax.set_yticks(y, [f"{MODEL_NAMES.get(r.model, str(r.model))}\n{getattr(r, metric):.2f} "
                      f"[{getattr(r, f'{metric}_ci_low'):.2f}, {getattr(r, f'{metric}_ci_high'):.2f}]"
                      for r in table.itertuples()])
    if metric in ("auc", "c_index"):
        ax.axvline(0.5, color=style.REFERENCE, ls="--", lw=1, label="0.5: no better than chance")
    ax.set_xlabel(f"{METRIC_NAMES.get(metric, metric)}, out-of-fold (nested CV)")
    ax.set_ylabel("model")
    ax.set_title("Model comparison")
    fig.tight_layout()
    _legend_below(ax, ax.get_legend_handles_labels()[0], ncol=2)
    return _save(fig, path)
