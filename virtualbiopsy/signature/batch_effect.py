"""How much batch (site, scanner) effect a feature table shows, before and after ComBat: a table and a figure.

Per feature the Kruskal-Wallis test of batch (a rank test on the values themselves); the figure
shows a PCA of the z-scored features coloured by batch and one feature's per-batch boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from virtualbiopsy.signature.tables import labels_as_text as _labels


def batch_effect_table(before: pd.DataFrame, after: pd.DataFrame, batch: Sequence) -> pd.DataFrame:
    """Per feature: Kruskal-Wallis H and p of batch, before and after harmonisation.

    A rank test on the values themselves: where covariates differ between batches, part of a
    remaining difference can be biological, which ComBat keeps on purpose.
    """
    from scipy.stats import kruskal

    labels = _labels(list(batch), "batch column")
    groups = [labels == b for b in sorted(set(labels))]
    rows = []
    for name in before.columns:
        row = {"feature": name}
        for when, frame in (("before", before), ("after", after)):
            x = frame[name].to_numpy(dtype=float)
            if np.ptp(x) > 0:
                statistic, p = kruskal(*[x[g] for g in groups])
            else:  # every value identical: no batch effect to test
                statistic, p = 0.0, 1.0
            row[f"kruskal_h_{when}"], row[f"p_{when}"] = float(statistic), float(p)
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_batch_effect(table: pd.DataFrame, alpha: float = 0.05) -> dict:
    """Fraction of features with a batch effect (p < alpha) and median p, before and after."""
    return {f"{stat}_{when}": (float((table[f"p_{when}"] < alpha).mean()) if stat == "fraction_significant"
                               else float(table[f"p_{when}"].median()))
            for stat in ("fraction_significant", "median_p") for when in ("before", "after")}


def plot_batch_effect(before: pd.DataFrame, after: pd.DataFrame, batch: Sequence, path, feature: str | None = None):
    """PCA of the z-scored features coloured by batch (before / after) and one feature's per-batch boxes.

    ``feature``: the feature to box-plot; default the one with the strongest batch effect before.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA

    from virtualbiopsy.report.figures import _save
    from virtualbiopsy.signature.exploration import plain_text

    labels = _labels(list(batch), "batch column")
    levels = sorted(set(labels))
    effect = batch_effect_table(before, after, labels)
    if feature is None:
        feature = effect.sort_values("kruskal_h_before", ascending=False)["feature"].iloc[0]
    summary = summarise_batch_effect(effect)
    fig, axes = plt.subplots(2, 2, figsize=(11, 9))
    from virtualbiopsy.report import style

    colours = style.CATEGORICAL
    for column, (title, frame) in enumerate((("before", before), ("after", after))):
        x = frame.to_numpy(dtype=float)
        sd = x.std(axis=0, ddof=1)
        z = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        n_components = min(2, *z.shape)
        scores = PCA(n_components=n_components).fit_transform(z)
        if n_components == 1:
            scores = np.column_stack([scores[:, 0], np.zeros(len(scores))])
        ax = axes[0, column]
        for i, level in enumerate(levels):
            chosen = labels == level
            ax.scatter(scores[chosen, 0], scores[chosen, 1], s=18, color=colours[i % len(colours)],
                       label=plain_text(level), alpha=0.8)
        fraction = summary[f"fraction_significant_{title}"]
        ax.set_title(f"PCA {title} ComBat: {fraction:.0%} of features with batch p < 0.05")
        ax.set_xlabel("PC1")
        ax.set_ylabel("PC2")
        ax.legend(title="batch", fontsize=8)
        ax = axes[1, column]
        ax.boxplot([frame.loc[labels == level, feature].to_numpy(dtype=float) for level in levels])
        ax.set_xticks(range(1, len(levels) + 1), [plain_text(v) for v in levels])
        p = effect.set_index("feature").at[feature, f"p_{title}"]
        ax.set_title(f"{plain_text(feature)} {title} (Kruskal p = {p:.2g})", fontsize=9)
        ax.set_xlabel("batch")
        ax.set_ylabel(f"{plain_text(feature)} (feature value)")
    fig.tight_layout()
    return _save(fig, path)
