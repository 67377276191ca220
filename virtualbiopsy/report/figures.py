"""PNG figures of a study and its results (matplotlib, Agg backend: no display needed).

Each function takes arrays indexed [k, j, i] and writes one PNG; slices are shown in radiological
convention (patient's right on the image's left, anterior at the top). Colours come from
:mod:`virtualbiopsy.report.style`: one colour per tissue, the AI / truth / p >= 10 % outlines
alike in every figure. Colour bars sit in their own axes, so panels keep equal sizes.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from virtualbiopsy.report import style  # noqa: E402
from virtualbiopsy.report.style import ADC_UNIT, ORIENTATION  # noqa: E402

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "h")


def _axial(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k in radiological display, for volumes with RAS-aligned axes.

    Rows are j (posterior -> anterior): flipped so anterior is at the top. Columns are i (+x points
    to the patient's right in RAS): flipped so the patient's right is on the image's left.
    """
    return volume[k][::-1, ::-1]


def _save(fig, path) -> Path:
    return style.save(fig, path, note=False)


def _image_axes(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def study_overview(path, t2w, t2_labels, dwi, b_values, adc_fit, adc_true, dwi_labels, slice_t2: int,
                   slice_dwi: int, aspect_t2: float = 1.0, aspect_dwi: float = 1.0,
                   tissue_names: dict[int, str] | None = None) -> Path:
    """T2w with the true tissue outlines (one colour per tissue, in the legend), DWI at the lowest and
    highest b, fitted ADC (inside the body only: air has no diffusion to fit) and true ADC."""
    names = tissue_names or {int(v): f"label {int(v)}" for v in np.unique(t2_labels) if v > 0}
    fig, axes = plt.subplots(1, 5, figsize=(19, 4.4), gridspec_kw={"wspace": 0.08})
    labels_t2 = _axial(t2_labels, slice_t2)
    axes[0].imshow(_axial(t2w, slice_t2), cmap="gray", aspect=aspect_t2)
    handles = []
    for index, (label, name) in enumerate(sorted(names.items())):
        if not (labels_t2 == label).any():
            continue
        colour = style.tissue_colour(name, index)
        axes[0].contour(labels_t2 == label, levels=[0.5], colors=[colour], linewidths=1.0)
        handles.append(Line2D([], [], color=colour, lw=1.5, label=name))
    axes[0].set_title(f"T2w, slice k = {slice_t2}, true outlines")
    if handles:  # a slice without any labelled tissue has no outlines to explain
        axes[0].legend(handles=handles, loc="upper left", bbox_to_anchor=(0.0, -0.1), ncol=len(handles),
                       fontsize=8, frameon=False, title="tissue outlines on the T2w", title_fontsize=8,
                       alignment="left")
    order = np.argsort(b_values)
    for ax, index in zip(axes[1:3], (order[0], order[-1])):
        ax.imshow(_axial(dwi[index], slice_dwi), cmap="gray", aspect=aspect_dwi)
        ax.set_title(f"DWI b = {b_values[index]:g} s/mm², slice k = {slice_dwi}")
    body = _axial(dwi_labels, slice_dwi) > 0
    cmap = plt.get_cmap("viridis").with_extremes(bad="black")
    for ax, image, title in ((axes[3], adc_fit, "ADC fitted (body only)"), (axes[4], adc_true, "ADC truth")):
        shown = np.ma.masked_where(~body, _axial(image, slice_dwi) * 1e3)
        mappable = ax.imshow(shown, cmap=cmap, vmin=0, vmax=3.0, aspect=aspect_dwi, interpolation="nearest")
        ax.set_title(f"{title}, slice k = {slice_dwi}")
    bar = fig.colorbar(mappable, cax=axes[4].inset_axes((1.04, 0.0, 0.05, 1.0)))
    bar.set_label(f"ADC ({ADC_UNIT})")
    for ax in axes:
        _image_axes(ax)
        ax.set_xlabel(ORIENTATION, fontsize=8)
    return _save(fig, path)


def adc_by_tissue(path, names, fitted_mean, fitted_sd, truth) -> Path:
    """Fitted ADC (mean ± SD over each tissue's interior, bar in the tissue's colour) against the true ADC."""
    fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 1.4))
    y = np.arange(len(names))[::-1]
    colours = [style.tissue_colour(n, i) for i, n in enumerate(names)]
    ax.barh(y, np.asarray(fitted_mean) * 1e3, height=0.6, xerr=np.asarray(fitted_sd) * 1e3, capsize=3,
            color=colours, edgecolor="#333", linewidth=0.5, error_kw={"ecolor": "#444", "lw": 1})
    ax.plot(np.asarray(truth) * 1e3, y, "D", color="k", mfc="white", ms=7, mew=1.5, zorder=4)
    handles = [Patch(facecolor="#ddd", edgecolor="#333", label="voxel fit, mean ± SD (bar in the tissue's colour)"),
               Line2D([], [], marker="D", color="k", mfc="white", ls="none", ms=7, mew=1.5, label="truth")]
    ax.set_yticks(y, names)
    ax.set_ylabel("tissue")
    ax.set_xlabel(f"ADC ({ADC_UNIT})")
    ends = np.concatenate([np.asarray(fitted_mean, float) + np.nan_to_num(np.asarray(fitted_sd, float)),
                           np.asarray(truth, float)])
    ends = ends[np.isfinite(ends)]
    ax.set_xlim(0, (ends.max() if ends.size and ends.max() > 0 else 1e-3) * 1e3 * 1.1)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.set_title("ADC per tissue: voxel-wise fit vs truth")
    return _save(fig, path)


def dce_curves(path, times, measured: dict[str, np.ndarray], truth: dict[str, np.ndarray], t0: float,
               window_s: float = 60.0) -> Path:
    """Mean DCE signal per tissue (markers) against its true enhancement curve (line of the same colour).

    Tissues with the same true curve (the two kidneys) get different markers (one hollow) and one
    true line, so neither hides the other; the legend sits outside the data.
    """
    fig, ax = plt.subplots(figsize=(9, 4.6))
    handles, drawn_truth = [], []
    for index, (name, curve) in enumerate(measured.items()):
        colour = style.tissue_colour(name, index)
        marker = _MARKERS[index % len(_MARKERS)]
        twin = next((other for other, line in drawn_truth if np.allclose(line, truth[name])), None)
        hollow = twin is not None
        ax.plot(times, curve, marker, ms=8 if hollow else 4, color=colour, mfc="none" if hollow else colour,
                mew=1.2, zorder=3)
        if twin is None:
            ax.plot(times, truth[name], "-", lw=1.2, color=colour, zorder=2)
            drawn_truth.append((name, truth[name]))
        label = f"{name}" + (f" (true curve = {twin}'s)" if twin else "")
        handles.append(Line2D([], [], color=colour, marker=marker, ls="none" if twin else "-",
                              mfc="none" if hollow else colour, label=label))
    arrival = ax.axvline(t0, color="k", ls=":", lw=1.2, label=f"bolus arrival t₀ = {t0:.1f} s")
    window = ax.axvspan(t0, t0 + window_s, color="k", alpha=0.06, label=f"iAUC{window_s:g} window")
    handles += [Line2D([], [], color="#555", marker="o", ls="none", label="markers: measured tissue mean"),
                Line2D([], [], color="#555", ls="-", label="lines: true curve"), arrival, window]
    ax.set_xlabel("time after the start of the acquisition (s)")
    ax.set_ylabel("signal (scanner units)")
    ax.set_title("DCE: tissue means (markers) and true curves (lines)")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _save(fig, path)


def segmentation_uncertainty(path, t2w, ai_tumour, true_tumour, entropy, slices: list[int], aspect: float = 1.0,
                             agreement_10=None, true_label: str = "truth") -> Path:
    """The slices to review, ranked by summed uncertainty (most uncertain first, as the summary ranks them):
    T2w with the AI outline, the true (or corrected) outline and the p >= 10 % contour on top, the
    normalised predictive entropy below; equal panels, one labelled colour bar."""
    entropy = np.asarray(entropy, np.float32)
    slices = list(slices)[:3] or [int(np.argmax(ai_tumour.sum(axis=(1, 2))))]
    n = len(slices)
    fig = plt.figure(figsize=(5.0 * n + 1.0, 9.0))
    grid = fig.add_gridspec(2, n + 1, width_ratios=[1] * n + [0.05], hspace=0.16, wspace=0.06)
    shown = None
    for column, k in enumerate(slices):
        top, bottom = fig.add_subplot(grid[0, column]), fig.add_subplot(grid[1, column])
        top.imshow(_axial(t2w, k), cmap="gray", aspect=aspect)
        top.contour(_axial(true_tumour.astype(float), k), levels=[0.5], colors=[style.TRUE_OUTLINE],
                    linewidths=1.2)
        top.contour(_axial(ai_tumour.astype(float), k), levels=[0.5], colors=[style.AI_OUTLINE], linewidths=1.6)
        if agreement_10 is not None:
            top.contour(_axial(agreement_10.astype(float), k), levels=[0.5], colors=[style.P10_OUTLINE],
                        linewidths=1.4, linestyles="dashed")
        rank = column + 1
        top.set_title(f"#{rank} to review: slice k = {k} (summed entropy {entropy[k].sum():.0f})", fontsize=9)
        bottom.imshow(_axial(t2w, k), cmap="gray", aspect=aspect)
        shown = bottom.imshow(np.ma.masked_less(_axial(entropy, k), 0.05), cmap="inferno", vmin=0, vmax=1,
                              alpha=0.85, aspect=aspect, interpolation="nearest")
        bottom.set_title(f"slice k = {k}: entropy ≥ 0.05 shown", fontsize=9)
        for ax in (top, bottom):
            _image_axes(ax)
        bottom.set_xlabel(ORIENTATION, fontsize=8)
    bar = fig.colorbar(shown, cax=fig.add_subplot(grid[1, n]))
    bar.set_label("normalised predictive entropy\n(0 = certain, 1 = undecided)", fontsize=9)
    handles = [Line2D([], [], color=style.AI_OUTLINE, lw=1.6, label="AI segmentation"),
               Line2D([], [], color=style.TRUE_OUTLINE, lw=1.2, label=true_label)]
    if agreement_10 is not None:
        handles.append(Line2D([], [], color=style.P10_OUTLINE, lw=1.4, ls="--",
                              label="mean tumour probability ≥ 10 %"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(handles), fontsize=9,
               frameon=False)
    fig.suptitle("Slices to review, ranked by summed predictive entropy (most uncertain first)", y=0.99)
    return _save(fig, path)
