"""PNG figures of Fit-Cluster-Fit results (matplotlib, Agg backend: no display needed).

Slices are shown like the project's other figures: radiological convention for RAS-aligned
volumes (patient's right on the image's left, anterior at the top).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from virtualbiopsy.diffusion import rician_mean  # noqa: E402
from virtualbiopsy.report import style  # noqa: E402


def _save(fig, path) -> Path:
    return style.save(fig, path, note=False)


def _axial(volume: np.ndarray, k: int) -> np.ndarray:
    return volume[k][::-1, ::-1]


def signal_vs_b(path, b_values, mean_signals, s0, adc, names, colours, ci=None, noise_sigma: float | None = None,
                noise_floor: bool = False, fitted_b=None) -> Path:
    """Mean signal of each habitat against b (points, log scale) with its monoexponential refit (line).

    ``mean_signals[n_b, k]``; ``ci`` optional (low, high) ADC arrays for the legend; with
    ``noise_floor`` the line is the Rician expected magnitude of the fit (what was fitted), and the
    mean magnitude of pure noise, σ√(π/2), is drawn as the floor.
    """
    b = np.asarray(b_values, float)
    grid = np.linspace(0.0, b.max() * 1.05, 200)
    fig, ax = plt.subplots(figsize=(6.5, 4.3))
    for h, name in enumerate(names):
        colour = colours[h % len(colours)]
        line = s0[h] * np.exp(-grid * adc[h])
        if noise_floor and noise_sigma:
            line = rician_mean(line, noise_sigma)
        label = f"{name}: ADC {adc[h] * 1e3:.3f}"
        if ci is not None and np.isfinite(ci[0][h]):
            label += f" [{ci[0][h] * 1e3:.3f}, {ci[1][h] * 1e3:.3f}]"
        ax.plot(grid, line, "-", color=colour, lw=1.2)
        ax.plot(b, mean_signals[:, h], "o", color=colour, ms=5, label=label)
        if fitted_b is not None:
            unused = ~np.isin(b, np.asarray(fitted_b, float))
            if unused.any():
                ax.plot(b[unused], mean_signals[unused, h], "o", mfc="white", color=colour, ms=5)
    if noise_sigma:
        ax.axhline(noise_sigma * np.sqrt(np.pi / 2), color="0.5", ls=":", lw=1,
                   label=f"noise floor σ√(π/2), σ = {noise_sigma:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("b (s/mm²)")
    ax.set_ylabel("mean signal of the habitat")
    ax.set_title("Habitat signal vs b, with the refit" + (" (Rician model)" if noise_floor else ""))
    ax.legend(fontsize=7, title="ADC ×10⁻³ mm²/s [95 % CI]", title_fontsize=7)
    return _save(fig, path)


def habitat_map(path, background: np.ndarray, labels: np.ndarray, names, colours, slice_k: int | None = None,
                aspect: float = 1.0, excluded_label: int = 255) -> Path:
    """One axial slice: ``background`` (e.g. the b = 0 image) in grey with the habitats in colour.

    ``slice_k`` defaults to the slice with the most habitat voxels; excluded voxels are hatched grey.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    labels = np.asarray(labels)
    if slice_k is None:
        counts = ((labels > 0) & (labels != excluded_label)).reshape(labels.shape[0], -1).sum(1)
        slice_k = int(np.argmax(counts))
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(_axial(background, slice_k), cmap="gray", aspect=aspect)
    shown = _axial(labels, slice_k).astype(float)
    k = len(names)
    overlay = np.where((shown >= 1) & (shown <= k), shown, np.nan)
    cmap = ListedColormap([colours[h % len(colours)] for h in range(k)])
    ax.imshow(overlay, cmap=cmap, vmin=0.5, vmax=k + 0.5, alpha=0.75, aspect=aspect, interpolation="nearest")
    excluded = np.where(shown == excluded_label, 1.0, np.nan)
    ax.imshow(excluded, cmap=ListedColormap(["0.6"]), alpha=0.8, aspect=aspect, interpolation="nearest")
    handles = [Patch(color=colours[h % len(colours)], label=names[h]) for h in range(k)]
    if np.any(labels == excluded_label):
        handles.append(Patch(color="0.6", label="excluded (boundary or uncertain fit)"))
    ax.legend(handles=handles, fontsize=7, loc="lower right")
    ax.set_title(f"Habitats, axial slice k = {slice_k}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("patient right ←  → patient left")
    return _save(fig, path)


def enhancement_curves(path, times, curves: dict, arrival_s: float, window_s: float = 60.0, colours=None) -> Path:
    """Relative enhancement S/S_pre − 1 of mean curves (one per region) with the iAUC window shaded;
    ``colours`` (one per curve, e.g. the habitats' map colours) default to matplotlib's cycle."""
    t = np.asarray(times, float)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for index, (name, curve) in enumerate(curves.items()):
        curve = np.asarray(curve, float)
        before = t < arrival_s
        base = curve[before].mean() if before.any() else curve[0]
        colour = colours[index % len(colours)] if colours else f"C{index}"
        ax.plot(t, curve / base - 1.0, "o-", ms=3, lw=1, color=colour, label=name)
    ax.axvspan(arrival_s, arrival_s + window_s, color="0.9", zorder=0, label=f"iAUC window ({window_s:g} s)")
    ax.axvline(arrival_s, color="0.4", ls="--", lw=1, label=f"bolus arrival {arrival_s:.1f} s")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("relative enhancement S/S_pre − 1")
    ax.legend(fontsize=7)
    ax.set_title("Mean enhancement curves")
    return _save(fig, path)
