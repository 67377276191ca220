"""PNG figures of Fit-Cluster-Fit results (matplotlib, Agg backend: no display needed).

Habitat k has one colour everywhere (:func:`virtualbiopsy.report.style.habitat_colour`, the
colours of the scene's habitat segments too), taken from its number, never from the order in
which a figure draws it; voxels left out of the clustering are white with black cross-hatching.
Given the Fit-Cluster-Fit table, every habitat legend gives the habitat's volume, ADC (×10⁻³ mm²/s)
and, when the DCE step ran, its iAUC (s), each with its confidence interval where known; curves of
a habitat segmentation without that table (``virtualbiopsy dce --habitats``) give the iAUC of each
curve. Legends sit below the data, never on it.

Slices are shown like the project's other figures: radiological convention for RAS-aligned
volumes (patient's right on the image's left, anterior at the top).

Each ``*_figure`` function builds the matplotlib figure; the function of the same name without
the suffix writes it through :func:`virtualbiopsy.report.style.save` and returns the PNG's path.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import ListedColormap, to_rgba  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, PathPatch, Rectangle  # noqa: E402
from matplotlib.path import Path as MplPath  # noqa: E402

from virtualbiopsy.diffusion import rician_mean  # noqa: E402
from virtualbiopsy.habitats import dce  # noqa: E402
from virtualbiopsy.report import style  # noqa: E402

ADC_UNIT = "×10⁻³ mm²/s"
FILL_ALPHA = 0.65  # habitat fill on the image; the outline is drawn at full opacity
EXCLUDED_NAME = "excluded (boundary or uncertain fit)"
_HABITAT = re.compile(r"\s*habitat\s+(\d+)\b", re.IGNORECASE)
_IAUC = re.compile(r"iauc(\d+(?:\.\d+)?)")


def _save(fig, path) -> Path:
    return style.save(fig, path, note=False)


def _axial(volume: np.ndarray, k: int) -> np.ndarray:
    return volume[k][::-1, ::-1]


# -- habitat numbers, colours and legend texts --------------------------------------------------------


def habitat_number(name) -> int | None:
    """The number of a region named "habitat N" (a table row, a segment), else None."""
    match = _HABITAT.match(str(name))
    return int(match.group(1)) if match else None


def region_style(name, index: int = 0) -> dict:
    """Line keywords for a region's curve: "habitat N" in habitat N's colour whatever its position,
    the whole tumour black, the excluded voxels black dotted with white markers (their map colour is
    white), any other region a tissue colour."""
    number = habitat_number(name)
    if number is not None:
        return {"color": style.habitat_colour(number)}
    if str(name).strip().lower() == "tumour":
        return {"color": "#000000", "lw": 1.8, "marker": "None"}
    if str(name).strip().lower().startswith("excluded"):
        return {"color": "#000000", "ls": ":", "mfc": style.EXCLUDED_COLOUR}
    return {"color": style.tissue_colour(name, index)}


def _numbers(table) -> list[int]:
    """Habitat numbers of the table's rows: its "label" column, else parsed from "habitat N"."""
    if "label" in table:
        return [int(v) for v in table["label"]]
    return [habitat_number(name) or i + 1 for i, name in enumerate(table["habitat"])]


def _iauc_column(table) -> str | None:
    return next((key for key in table if _IAUC.fullmatch(str(key))), None)


def _interval(table, column: str, i: int, digits: int, scale: float = 1.0) -> str:
    low, high = (table.get(f"{column}_ci_{end}", [math.nan] * (i + 1))[i] for end in ("low", "high"))
    if not (np.isfinite(low) and np.isfinite(high)):
        return ""
    return f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


def habitat_labels(table) -> dict[int, str]:
    """Legend text of each habitat by number, from the Fit-Cluster-Fit table's columns: name, volume,
    ADC (×10⁻³ mm²/s) and iAUC (s, when the table has an ``iauc<window>`` column), each with its
    confidence interval where the table has one, e.g.
    "habitat 2 · 2.5 mL · ADC 1.399 [1.330, 1.478] ×10⁻³ mm²/s · iAUC60 39.5 [36.6, 42.7] s"."""
    iauc = _iauc_column(table)
    labels = {}
    for i, (number, name) in enumerate(zip(_numbers(table), table["habitat"])):
        parts = [str(name)]
        if "volume_ml" in table:
            parts.append(f"{table['volume_ml'][i]:.3g} mL")
        adc = float(table["adc"][i])
        parts.append(f"ADC {adc * 1e3:.3f}{_interval(table, 'adc', i, 3, 1e3)} {ADC_UNIT}" if np.isfinite(adc)
                     else "ADC n/a (no fit)")
        if iauc is not None:
            window = _IAUC.fullmatch(iauc).group(1)
            value = float(table[iauc][i])
            parts.append(f"iAUC{window} {value:.1f}{_interval(table, iauc, i, 1)} s" if np.isfinite(value)
                         else f"iAUC{window} n/a")
        labels[number] = " · ".join(parts)
    return labels


def _legend_title(confidence: float | None, what: str, table) -> str:
    """``what`` (with "{values}": "ADC", or "ADC and iAUC" when the table has an iAUC) and the CI level."""
    values = "ADC and iAUC" if _iauc_column(table) is not None else "ADC"
    ci = f" [{confidence * 100:g} % CI]" if confidence and "adc_ci_low" in table else ""
    return what.format(values=values) + ci


def _legend_below(fig, handles, title: str | None = None):
    return fig.legend(handles=handles, loc="outside lower center", fontsize=7, title=title, title_fontsize=7,
                      frameon=False, ncols=1)


# -- signal vs b ------------------------------------------------------------------------------------------


def signal_vs_b_figure(b_values, mean_signals, s0, adc, table, noise_sigma: float | None = None,
                       noise_floor: bool = False, fitted_b=None, confidence: float | None = 0.95):
    """Mean signal of each habitat against b (points, log scale) with its monoexponential refit (line).

    ``mean_signals[n_b, k]``, ``s0`` and ``adc`` in the order of ``table``'s rows (the Fit-Cluster-Fit
    table's columns, which give the habitats' numbers and legend texts); with ``noise_floor`` the
    line is the Rician expected magnitude of the fit (what was fitted), and the mean magnitude of
    pure noise, σ√(π/2), is drawn as the floor. b-values left out of the fit (not in ``fitted_b``)
    are open circles.
    """
    b = np.asarray(b_values, float)
    mean_signals = np.asarray(mean_signals, float)
    grid = np.linspace(0.0, b.max() * 1.05, 200)
    labels = habitat_labels(table)
    fig, ax = plt.subplots(figsize=(6.5, 5.4), layout="constrained")
    handles = []
    unused = np.zeros(b.shape, bool) if fitted_b is None else ~np.isin(b, np.asarray(fitted_b, float))
    for h, number in enumerate(_numbers(table)):
        colour = style.habitat_colour(number)
        line = s0[h] * np.exp(-grid * adc[h])
        if noise_floor and noise_sigma:
            line = rician_mean(line, noise_sigma)
        ax.plot(grid, line, "-", color=colour, lw=1.2)
        ax.plot(b[~unused], mean_signals[~unused, h], "o", color=colour, ms=5)
        if unused.any():
            ax.plot(b[unused], mean_signals[unused, h], "o", mfc="white", color=colour, ms=5)
        handles.append(Line2D([], [], color=colour, marker="o", ms=5, lw=1.2, label=labels[number]))
    if unused.any():
        handles.append(Line2D([], [], color="#000000", marker="o", mfc="white", ls="None", ms=5,
                              label="open circle: b-value not used in the refit"))
    if noise_sigma:
        floor = ax.axhline(noise_sigma * np.sqrt(np.pi / 2), color=style.REFERENCE, ls=":", lw=1,
                           label=f"noise floor σ√(π/2), σ = {noise_sigma:.3g}")
        handles.append(floor)
    ax.set_yscale("log")
    ax.set_xlabel("b (s/mm²)")
    ax.set_ylabel("mean signal of the habitat")
    ax.set_title("Habitat signal vs b, with the refit" + (" (Rician model)" if noise_floor else ""))
    what = "points: the habitat's mean signal, line: its refit · {values}"
    _legend_below(fig, handles, _legend_title(confidence, what, table))
    return fig


def signal_vs_b(path, b_values, mean_signals, s0, adc, table, noise_sigma: float | None = None,
                noise_floor: bool = False, fitted_b=None, confidence: float | None = 0.95) -> Path:
    """:func:`signal_vs_b_figure` written to ``path``."""
    return _save(signal_vs_b_figure(b_values, mean_signals, s0, adc, table, noise_sigma, noise_floor, fitted_b,
                                    confidence), path)


# -- habitat map --------------------------------------------------------------------------------------------


def showing_slice(labels: np.ndarray, numbers) -> int:
    """The axial slice that shows the most of the habitats ``numbers`` (then the most habitat voxels,
    then the lowest k)."""
    labels = np.asarray(labels)
    per_slice = np.stack([(labels == h).reshape(labels.shape[0], -1).sum(1) for h in [*numbers, -1]], 1)
    present, voxels = (per_slice > 0).sum(1), per_slice.sum(1)
    return int(np.lexsort((-np.arange(labels.shape[0]), voxels, present))[-1])


def _edges(region: np.ndarray) -> np.ndarray:
    """The voxel edges between ``region`` and the rest, as segments in image coordinates."""
    padded = np.pad(region, 1)
    rows, cols = np.nonzero(padded[1:-1, :-1] != padded[1:-1, 1:])
    vertical = [[(c - 0.5, r - 0.5), (c - 0.5, r + 0.5)] for r, c in zip(rows, cols)]
    rows, cols = np.nonzero(padded[:-1, 1:-1] != padded[1:, 1:-1])
    horizontal = [[(c - 0.5, r - 0.5), (c + 0.5, r - 0.5)] for r, c in zip(rows, cols)]
    return np.asarray(vertical + horizontal, float).reshape(-1, 2, 2)


def _voxels_path(region: np.ndarray) -> MplPath:
    rows, cols = np.nonzero(region)
    squares = [MplPath([(c - 0.5, r - 0.5), (c + 0.5, r - 0.5), (c + 0.5, r + 0.5), (c - 0.5, r + 0.5),
                        (c - 0.5, r - 0.5)], closed=True) for r, c in zip(rows, cols)]
    return MplPath.make_compound_path(*squares)


def _excluded_patch(**keywords) -> dict:
    return dict(facecolor=style.EXCLUDED_COLOUR, edgecolor="#000000", hatch=style.EXCLUDED_HATCH, **keywords)


def _draw_habitats(ax, shown, numbers, excluded_label, aspect, outline_width) -> None:
    """Fill each habitat in its colour (translucent) and outline it at full opacity, so a habitat of
    a few voxels still shows; excluded voxels white with black cross-hatching."""
    for number in numbers:
        region = shown == number
        if not region.any():
            continue
        colour = style.habitat_colour(number)
        ax.imshow(np.where(region, 1.0, np.nan), cmap=ListedColormap([colour]), vmin=0, vmax=1, alpha=FILL_ALPHA,
                  aspect=aspect, interpolation="nearest")
        ax.add_collection(LineCollection(_edges(region), colors=colour, linewidths=outline_width,
                                         gid=f"habitat {number} outline"), autolim=False)
    excluded = shown == excluded_label
    if excluded.any():
        ax.add_patch(PathPatch(_voxels_path(excluded), **_excluded_patch(lw=0, gid="excluded")))


def _zoom_box(shown: np.ndarray, aspect: float, pad: int = 4) -> tuple[float, float, float, float]:
    """(row0, row1, col0, col1) around the tumour's voxels on the slice, padded, widened to the shape of
    the whole slice on screen (so both panels are the same size) and kept inside it."""
    n_rows, n_cols = shown.shape
    rows, cols = np.nonzero(shown > 0)
    if rows.size == 0:
        return -0.5, n_rows - 0.5, -0.5, n_cols - 0.5
    height = rows.max() - rows.min() + 1 + 2 * pad
    width = cols.max() - cols.min() + 1 + 2 * pad
    shape = n_cols / (n_rows * aspect)  # width / height on screen
    if width < height * aspect * shape:
        width = height * aspect * shape
    else:
        height = width / shape / aspect
    height, width = min(height, n_rows), min(width, n_cols)
    r0 = float(np.clip((rows.min() + rows.max()) / 2 - height / 2, -0.5, n_rows - 0.5 - height))
    c0 = float(np.clip((cols.min() + cols.max()) / 2 - width / 2, -0.5, n_cols - 0.5 - width))
    return r0, r0 + height, c0, c0 + width


def habitat_map_figure(background: np.ndarray, labels: np.ndarray, table, slice_k: int | None = None,
                       aspect: float = 1.0, excluded_label: int = 255, confidence: float | None = 0.95):
    """One axial slice: ``background`` (e.g. the b = 0 image) in grey with the habitats in colour, the
    whole slice on the left and a zoom on the tumour on the right.

    ``table``: the Fit-Cluster-Fit table's columns (habitat numbers and legend texts). ``slice_k``
    defaults to the slice that shows the most habitats (then the most habitat voxels); a habitat
    absent from it is named so in the legend. Each habitat is filled translucent and outlined at
    full opacity; excluded voxels are white with black cross-hatching.
    """
    labels = np.asarray(labels)
    numbers = _numbers(table)
    if slice_k is None:
        slice_k = showing_slice(labels, numbers)
    image, shown = _axial(background, slice_k), _axial(labels, slice_k)
    fig, (whole, zoom) = plt.subplots(1, 2, figsize=(9.0, 5.0), layout="constrained")
    for ax, width in ((whole, 0.9), (zoom, 2.0)):
        ax.imshow(image, cmap="gray", aspect=aspect, interpolation="nearest")
        _draw_habitats(ax, shown, numbers, excluded_label, aspect, width)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("patient right ←  → patient left")
    r0, r1, c0, c1 = _zoom_box(shown, aspect)
    zoom.set_xlim(c0, c1)
    zoom.set_ylim(r1, r0)
    whole.add_patch(Rectangle((c0, r0), c1 - c0, r1 - r0, fill=False, edgecolor="#FFFFFF", lw=1, ls="--"))
    whole.set_title(f"Habitats, axial slice k = {slice_k}", fontsize=10)
    zoom.set_title("Zoom on the tumour (dashed box)", fontsize=10)
    texts = habitat_labels(table)
    handles = []
    for number in numbers:
        colour = style.habitat_colour(number)
        label = texts[number] + ("" if np.any(shown == number) else " (not on this slice)")
        handles.append(Patch(facecolor=to_rgba(colour, FILL_ALPHA), edgecolor=colour, lw=1.5, label=label))
    if np.any(labels == excluded_label):
        handles.append(Patch(**_excluded_patch(lw=0.8), label=EXCLUDED_NAME))
    _legend_below(fig, handles, _legend_title(confidence, "habitat · volume · {values} of its mean signal", table))
    return fig


def habitat_map(path, background: np.ndarray, labels: np.ndarray, table, slice_k: int | None = None,
                aspect: float = 1.0, excluded_label: int = 255, confidence: float | None = 0.95) -> Path:
    """:func:`habitat_map_figure` written to ``path``."""
    return _save(habitat_map_figure(background, labels, table, slice_k, aspect, excluded_label, confidence), path)


# -- enhancement curves -----------------------------------------------------------------------------------


def enhancement_curves_figure(times, curves: dict, arrival_s: float, window_s: float = dce.IAUC_WINDOW_S,
                              table=None, confidence: float | None = 0.95):
    """Relative enhancement S/S_pre − 1 of mean curves (one per region, e.g. "tumour" and "habitat N"),
    with the bolus arrival and the iAUC window marked.

    Colours follow :func:`region_style` (habitat N in its own colour whatever the regions drawn).
    A habitat's legend text comes from ``table`` (the Fit-Cluster-Fit table: ADC and iAUC with their
    intervals) when it has that habitat; otherwise every region's legend gives the iAUC of its
    curve, computed here as :mod:`virtualbiopsy.habitats.dce` defines it, with the same arrival.
    """
    t = np.asarray(times, float)
    texts = habitat_labels(table) if table is not None else {}
    fig, ax = plt.subplots(figsize=(6.5, 5.2), layout="constrained")
    window = ax.axvspan(arrival_s, arrival_s + window_s, color="0.9", zorder=0,
                        label=f"iAUC{window_s:g} window: {arrival_s:.1f} to {arrival_s + window_s:.1f} s")
    arrival = ax.axvline(arrival_s, color="0.4", ls="--", lw=1, label=f"bolus arrival {arrival_s:.1f} s")
    handles = []
    for index, (name, curve) in enumerate(curves.items()):
        metrics = dce.curve_metrics(np.asarray(curve, float), t, arrival_s, window_s)
        keywords = {"marker": "o", "ms": 3, "lw": 1.0, **region_style(name, index)}
        number = habitat_number(name)
        label = texts.get(number) if number is not None else None
        if label is None:
            label = f"{name} · iAUC{window_s:g} {float(metrics.iauc):.1f} s"
        (line,) = ax.plot(t, np.asarray(curve, float) / float(metrics.baseline) - 1.0, label=label, **keywords)
        handles.append(line)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("relative enhancement S/S_pre − 1")
    ax.set_title("Mean enhancement curves")
    title = (_legend_title(confidence, "habitat · volume · {values} of its mean signal", table) if texts
             else "region · iAUC of its mean curve")
    _legend_below(fig, [*handles, arrival, window], title)
    return fig


def enhancement_curves(path, times, curves: dict, arrival_s: float, window_s: float = dce.IAUC_WINDOW_S,
                       table=None, confidence: float | None = 0.95) -> Path:
    """:func:`enhancement_curves_figure` written to ``path``."""
    return _save(enhancement_curves_figure(times, curves, arrival_s, window_s, table, confidence), path)
