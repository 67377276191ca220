"""Univariate exploration of a feature table against a two-class label, and volume surrogates.

Per feature: the two-sided Mann-Whitney U test between the classes (scipy), its Bonferroni
correction (p x number of features tested, capped at 1) and Benjamini-Hochberg q-value, the
univariate AUC (scikit-learn ``roc_auc_score`` of the raw feature for the positive class; ``auc``
is max(AUC, 1 - AUC) and ``direction`` says which class has the higher values), and the
Spearman correlation with tumour volume: features with |rho| >= 0.8 (default) are flagged as
volume surrogates, since they may only restate the tumour's size.

Missing values are left out feature by feature (``n`` says how many cases each test used).
Figures are PNGs (matplotlib, Agg backend).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from virtualbiopsy.errors import InputError
from virtualbiopsy.signature.tables import labels_as_text

#: pyradiomics' volume features, tried in this order when no volume column is named.
VOLUME_COLUMNS = ("original_shape_MeshVolume", "original_shape_VoxelVolume", "volume_ml")


def two_classes(labels: Sequence, positive=None) -> tuple[np.ndarray, str, str]:
    """(boolean "is positive" per case, negative class, positive class) of a two-class label column."""
    text = labels_as_text(list(labels), "label")
    classes = sorted(set(text))
    if len(classes) != 2:
        raise InputError(f"The label must have exactly two classes to compare; it has {len(classes)}: "
                         + ", ".join(classes[:10]) + ".")
    positive = classes[1] if positive is None else str(positive)
    if positive not in classes:
        raise InputError(f"The positive class '{positive}' is not one of the label's classes ({', '.join(classes)}).")
    negative = classes[0] if positive == classes[1] else classes[1]
    return text == positive, negative, positive


def check_label(labels: Sequence, positive=None, name: str = "label") -> tuple[np.ndarray, str, str]:
    """:func:`two_classes`, refusing a class with fewer than 2 cases (no test can compare it)."""
    try:
        is_positive, negative, positive = two_classes(labels, positive)
    except InputError as error:
        text = str(error)
        text = f"The {name} column " + text[len("The label "):] if text.startswith("The label ") else \
            f"The {name} column: {text}"
        raise InputError(text) from None
    if min(is_positive.sum(), (~is_positive).sum()) < 2:
        raise InputError(f"Each class of the {name} column needs at least 2 cases ({positive}: "
                         f"{int(is_positive.sum())}, {negative}: {int((~is_positive).sum())}).")
    return is_positive, negative, positive


def plain_text(name) -> str:
    """A feature name as matplotlib shows it literally ('$' would start mathtext)."""
    return str(name).replace("$", r"\$")


def univariate_table(features: pd.DataFrame, labels: Sequence, volume: Sequence | None = None, positive=None,
                     surrogate_rho: float = 0.8, alpha: float = 0.05) -> pd.DataFrame:
    """One row per feature column of ``features`` (cases x features): see the module docstring."""
    from scipy.stats import false_discovery_control, mannwhitneyu, spearmanr
    from sklearn.metrics import roc_auc_score

    is_positive, negative, positive = check_label(labels, positive)
    volume_values = None if volume is None else np.asarray(volume, dtype=float)
    rows = []
    for name in features.columns:
        x = features[name].to_numpy(dtype=float)
        ok = np.isfinite(x)
        pos, neg = x[ok & is_positive], x[ok & ~is_positive]
        row = {"feature": name, "n": int(ok.sum()), f"median_{negative}": np.median(neg) if neg.size else np.nan,
               f"median_{positive}": np.median(pos) if pos.size else np.nan}
        if pos.size >= 1 and neg.size >= 1 and np.ptp(x[ok]) > 0:
            result = mannwhitneyu(pos, neg, alternative="two-sided")
            auc_raw = float(roc_auc_score(is_positive[ok], x[ok]))
            row |= {"mann_whitney_u": float(result.statistic), "p_value": float(result.pvalue), "auc_raw": auc_raw,
                    "auc": max(auc_raw, 1.0 - auc_raw),
                    "direction": f"higher in {positive}" if auc_raw >= 0.5 else f"higher in {negative}"}
        else:
            row |= {"mann_whitney_u": np.nan, "p_value": 1.0, "auc_raw": 0.5, "auc": 0.5, "direction": "none"}
        if volume_values is not None:
            both = ok & np.isfinite(volume_values)
            if both.sum() >= 3 and np.ptp(x[both]) > 0 and np.ptp(volume_values[both]) > 0:
                rho, p_rho = spearmanr(x[both], volume_values[both])
            else:
                rho, p_rho = np.nan, np.nan
            row |= {"spearman_rho_volume": float(rho), "spearman_p_volume": float(p_rho),
                    "volume_surrogate": bool(np.isfinite(rho) and abs(rho) >= surrogate_rho)}
        rows.append(row)
    table = pd.DataFrame(rows)
    m = len(table)
    p = table["p_value"].to_numpy(dtype=float)
    table.insert(table.columns.get_loc("p_value") + 1, "p_bonferroni", np.minimum(p * m, 1.0))
    table.insert(table.columns.get_loc("p_bonferroni") + 1, "q_benjamini_hochberg", false_discovery_control(p))
    table.insert(table.columns.get_loc("q_benjamini_hochberg") + 1, "significant_bonferroni",
                 table["p_bonferroni"] < alpha)
    return table.sort_values(["p_value", "feature"], kind="stable").reset_index(drop=True)


def find_volume_column(columns: Sequence[str]) -> str | None:
    """The first of pyradiomics' volume columns present, else None."""
    return next((name for name in VOLUME_COLUMNS if name in columns), None)


# -- figures ---------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_volcano(table: pd.DataFrame, path, alpha: float = 0.05, annotate: int = 8):
    """Univariate AUC against -log10 Mann-Whitney p; the Bonferroni line; volume surrogates hollow."""
    from virtualbiopsy.report import style
    from virtualbiopsy.report.figures import _save

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    y = -np.log10(np.clip(table["p_value"].to_numpy(dtype=float), 1e-300, 1.0))
    x = table["auc_raw"].to_numpy(dtype=float)
    surrogate = table["volume_surrogate"].to_numpy(bool) if "volume_surrogate" in table else np.zeros(len(x), bool)
    ax.scatter(x[~surrogate], y[~surrogate], s=16, color="#555555", label="feature")
    if surrogate.any():
        ax.scatter(x[surrogate], y[surrogate], s=22, facecolors="none", edgecolors="#CC79A7",
                   label="volume surrogate (|rho| >= 0.8)")
    bonferroni = -np.log10(alpha / max(len(table), 1))
    ax.axhline(bonferroni, color="grey", linestyle="--", linewidth=1, label=f"Bonferroni p = {alpha:g}")
    ax.axvline(0.5, color="grey", linewidth=0.5)
    notes = [ax.annotate(plain_text(table["feature"].iloc[i]), (x[i], y[i]), fontsize=6, xytext=(3, 2),
                         textcoords="offset points", arrowprops={"arrowstyle": "-", "color": "#999", "lw": 0.5})
             for i in np.argsort(-y)[:annotate]]
    ax.set_xlabel("univariate AUC (positive class)")
    ax.set_ylabel("-log10 Mann-Whitney p")
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    style.separate_annotations(fig, notes)
    ax.set_title(f"{len(table)} features")
    return _save(fig, path)


def plot_correlation_heatmap(correlation: pd.DataFrame, path, max_features: int = 80):
    """|Pearson r| between features, ordered by hierarchical clustering (average linkage on 1 - |r|)."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    from virtualbiopsy.report.figures import _save

    plt = _plt()
    strength = correlation.abs().fillna(0.0)
    if len(strength) > max_features:  # the most connected features
        keep = strength.sum().sort_values(ascending=False).index[:max_features]
        strength = strength.loc[keep, keep]
    if len(strength) > 2:
        distance = np.clip(1.0 - strength.to_numpy(), 0.0, None)
        np.fill_diagonal(distance, 0.0)
        order = leaves_list(linkage(squareform((distance + distance.T) / 2, checks=False), "average"))
        strength = strength.iloc[order, order]
    size = min(4 + 0.14 * len(strength), 18)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    shown = ax.imshow(strength.to_numpy(), cmap="magma", vmin=0, vmax=1)
    labels = [plain_text(c) for c in strength.columns]
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=5)
    ax.set_yticks(range(len(labels)), labels, fontsize=5)
    ax.set_xlabel("feature")
    ax.set_ylabel("feature")
    fig.colorbar(shown, ax=ax, fraction=0.04, label="|Pearson r|")
    ax.set_title("Feature correlation")
    return _save(fig, path)


def plot_loadings_heatmap(loadings: pd.DataFrame, path, signature: Sequence[str] = ()):
    """Varimax loadings (features x factors), features sorted by their main factor; signature in bold."""
    from virtualbiopsy.report.figures import _save

    plt = _plt()
    factors = [c for c in loadings.columns if str(c).startswith("F") and str(c)[1:].isdigit()]
    values = loadings[factors].astype(float)
    main = values.abs().to_numpy().argmax(axis=1)
    order = np.lexsort((-values.abs().to_numpy().max(axis=1), main))
    values = values.iloc[order]
    height = min(3 + 0.16 * len(values), 20)
    fig, ax = plt.subplots(figsize=(2.5 + 0.6 * len(factors) + 3, height))
    shown = ax.imshow(values.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(factors)), factors)
    ax.set_yticks(range(len(values)), [plain_text(i) for i in values.index], fontsize=6)
    for tick, name in zip(ax.get_yticklabels(), values.index):
        if name in set(signature):
            tick.set_fontweight("bold")
    ax.set_xlabel("factor")
    ax.set_ylabel("feature")
    fig.colorbar(shown, ax=ax, fraction=0.05, label="loading")
    ax.set_title("Factor loadings (varimax); signature in bold")
    return _save(fig, path)
