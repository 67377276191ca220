"""PNG figures of a study and its results (matplotlib, Agg backend: no display needed).

Each function takes arrays indexed [k, j, i] and writes one PNG; slices are shown in radiological
convention (patient's right on the image's left, anterior at the top).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from virtualbiopsy.report import style  # noqa: E402


def _axial(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice k in radiological display, for volumes with RAS-aligned axes.

    Rows are j (posterior -> anterior): flipped so anterior is at the top. Columns are i (+x points
    to the patient's right in RAS): flipped so the patient's right is on the image's left.
    """
    return volume[k][::-1, ::-1]


def _save(fig, path) -> Path:
    return style.save(fig, path, note=False)


def study_overview(path, t2w, t2_labels, dwi, b_values, adc_fit, adc_true, dwi_labels, slice_t2: int,
                   slice_dwi: int, aspect_t2: float = 1.0, aspect_dwi: float = 1.0) -> Path:
    """T2w with the true tissue outlines, DWI at the lowest and highest b, fitted and true ADC."""
    fig, axes = plt.subplots(1, 5, figsize=(19, 4.2))
    t2_slice = _axial(t2w, slice_t2)
    axes[0].imshow(t2_slice, cmap="gray", aspect=aspect_t2)
    axes[0].contour(_axial(t2_labels, slice_t2), levels=np.arange(0.5, t2_labels.max() + 0.5), colors="yellow",
                    linewidths=0.5)
    axes[0].set_title("T2w + true tissue outlines")
    order = np.argsort(b_values)
    for ax, index in zip(axes[1:3], (order[0], order[-1])):
        ax.imshow(_axial(dwi[index], slice_dwi), cmap="gray", aspect=aspect_dwi)
        ax.set_title(f"DWI b = {b_values[index]:g} s/mm²")
    scale = 1e3
    for ax, image, title in ((axes[3], adc_fit, "ADC fitted"), (axes[4], adc_true, "ADC truth")):
        shown = ax.imshow(_axial(image, slice_dwi) * scale, cmap="viridis", vmin=0, vmax=3.0, aspect=aspect_dwi)
        ax.set_title(f"{title} (×10⁻³ mm²/s)")
    fig.colorbar(shown, ax=axes[3:], fraction=0.03)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_xlabel("patient right ←  → patient left")
    return _save(fig, path)


def adc_by_tissue(path, names, fitted_mean, fitted_sd, truth) -> Path:
    """Fitted ADC (mean ± SD over each tissue's interior) against the true ADC."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(names))
    ax.bar(x - 0.2, np.asarray(truth) * 1e3, width=0.4, label="truth", color="#999")
    ax.bar(x + 0.2, np.asarray(fitted_mean) * 1e3, width=0.4, yerr=np.asarray(fitted_sd) * 1e3, capsize=3,
           label="voxel fit, mean ± SD", color="#3b7dd8")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("ADC (×10⁻³ mm²/s)")
    ax.legend()
    ax.set_title("ADC per tissue: voxel-wise fit vs truth")
    return _save(fig, path)


def dce_curves(path, times, measured: dict[str, np.ndarray], truth: dict[str, np.ndarray], t0: float) -> Path:
    """Mean DCE signal per tissue (points) against the true enhancement curve (lines)."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for index, (name, curve) in enumerate(measured.items()):
        colour = f"C{index}"
        ax.plot(times, curve, "o", ms=3, color=colour, label=f"{name} (measured mean)")
        ax.plot(times, truth[name], "-", lw=1, color=colour)
    ax.axvline(t0, color="k", ls=":", lw=1)
    ax.axvspan(t0, t0 + 60, color="k", alpha=0.05, label="iAUC60 window")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("signal (scanner units)")
    ax.set_title("DCE: tissue means (points) and true curves (lines)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def segmentation_uncertainty(path, t2w, ai_tumour, true_tumour, entropy, slices: list[int], aspect: float = 1.0,
                             agreement_10=None) -> Path:
    """For the slices to review: T2w with AI (orange) and true (green) outlines, and the entropy map."""
    slices = list(slices)[:3] or [int(np.argmax(ai_tumour.sum(axis=(1, 2))))]
    fig, axes = plt.subplots(2, len(slices), figsize=(5.2 * len(slices), 8.4), squeeze=False)
    for column, k in enumerate(slices):
        top, bottom = axes[0, column], axes[1, column]
        top.imshow(_axial(t2w, k), cmap="gray", aspect=aspect)
        top.contour(_axial(true_tumour.astype(float), k), levels=[0.5], colors="lime", linewidths=1.0)
        top.contour(_axial(ai_tumour.astype(float), k), levels=[0.5], colors="orange", linewidths=1.0)
        if agreement_10 is not None:
            top.contour(_axial(agreement_10.astype(float), k), levels=[0.5], colors="yellow", linewidths=0.6,
                        linestyles="dotted")
        top.set_title(f"slice k = {k}: AI (orange), truth (green), p ≥ 10 % (dotted)", fontsize=9)
        bottom.imshow(_axial(t2w, k), cmap="gray", aspect=aspect)
        shown = bottom.imshow(np.ma.masked_less(_axial(entropy.astype(np.float32), k), 0.05), cmap="inferno",
                              vmin=0, vmax=1, alpha=0.85, aspect=aspect)
        bottom.set_title("predictive entropy (0 = certain, 1 = undecided)", fontsize=9)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(shown, ax=axes[1, :].tolist(), fraction=0.025)
    return _save(fig, path)
