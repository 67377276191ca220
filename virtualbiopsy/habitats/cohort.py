"""Step 4: compare groups of a cohort (e.g. benign vs malignant) by habitat ADC and by voxel-mean ADC.

A cohort table has one row per case: a group column and measurement columns, for instance the
``habitat_adc_min`` (ADC of the most restricted habitat) and ``voxel_mean_adc`` (mean of the
voxel ADCs over the whole tumour) that :func:`case_row` takes from one Fit-Cluster-Fit result. :func:`compare_groups`
tests each measurement with the two-sided Mann-Whitney U test (``scipy.stats.mannwhitneyu``: exact
p-value for small samples without ties, normal approximation with tie correction otherwise) and
reports, side by side, two effect sizes that do not assume normality:

* common-language effect size CL = U_A / (n_A·n_B) = P(a value of group A > one of group B), ties
  counting one half (0.5 = no difference);
* rank-biserial correlation r = 2·CL − 1 (from −1 to 1; positive: A tends to be larger).

Tables are ``{column: list}`` mappings (a pandas DataFrame works as well).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from virtualbiopsy.errors import InputError

DEFAULT_MEASURES = ("habitat_adc_min", "voxel_mean_adc")


def case_row(summary: Mapping, case_id: str, group: str) -> dict:
    """One cohort-table row from a Fit-Cluster-Fit summary (``FitClusterFitResult.summary``)."""
    return {"case_id": case_id, "group": group, "habitat_adc_min": float(summary["habitat_adc_min"]),
            "voxel_mean_adc": float(summary["voxel_mean_adc_tumour"]), "habitats": int(summary["habitats"])}


def rows_to_columns(rows: Sequence[Mapping]) -> dict[str, list]:
    """[{column: value}, ...] -> {column: [values]} (columns of the first row)."""
    if not rows:
        raise InputError("The cohort has no cases.")
    return {name: [row[name] for row in rows] for name in rows[0]}


def compare_groups(table: Mapping, group_column: str = "group", measures: Sequence[str] = DEFAULT_MEASURES,
                   groups: Sequence[str] | None = None) -> dict[str, list]:
    """Mann-Whitney U test of each measure between two groups; one output row per measure.

    ``groups`` = (A, B) names the two groups (default: the two distinct values of ``group_column``,
    sorted). Rows with a missing (NaN) value of a measure are left out of that measure's test.
    Output columns: measure, group_a, group_b, n_a, n_b, median_a, median_b, u_a, p_value,
    common_language, rank_biserial.
    """
    from scipy.stats import mannwhitneyu

    if group_column not in table:
        raise InputError(f"The cohort table has no column '{group_column}' (it has: {', '.join(map(str, table))}).")
    labels = np.asarray([str(v) for v in table[group_column]])
    if groups is None:
        found = sorted(set(labels))
        if len(found) != 2:
            raise InputError(f"Column '{group_column}' has {len(found)} groups ({', '.join(found)}); choose two.")
        groups = found
    if len(groups) != 2:
        raise InputError(f"Compare exactly two groups, not {len(groups)}.")
    a_name, b_name = str(groups[0]), str(groups[1])
    out: dict[str, list] = {c: [] for c in ("measure", "group_a", "group_b", "n_a", "n_b", "median_a", "median_b",
                                            "u_a", "p_value", "common_language", "rank_biserial")}
    for measure in measures:
        if measure not in table:
            raise InputError(f"The cohort table has no column '{measure}'.")
        try:
            values = np.asarray(table[measure], dtype=float)
        except (TypeError, ValueError) as error:
            raise InputError(f"Column '{measure}' of the cohort table is not numeric.") from error
        a = values[(labels == a_name) & np.isfinite(values)]
        b = values[(labels == b_name) & np.isfinite(values)]
        if a.size < 1 or b.size < 1:
            raise InputError(f"'{measure}': group '{a_name}' has {a.size} and '{b_name}' {b.size} cases with a "
                             "value; each group needs at least one.")
        result = mannwhitneyu(a, b, alternative="two-sided")
        cl = float(result.statistic) / (a.size * b.size)
        out["measure"].append(measure)
        out["group_a"].append(a_name)
        out["group_b"].append(b_name)
        out["n_a"].append(int(a.size))
        out["n_b"].append(int(b.size))
        out["median_a"].append(float(np.median(a)))
        out["median_b"].append(float(np.median(b)))
        out["u_a"].append(float(result.statistic))
        out["p_value"].append(float(result.pvalue))
        out["common_language"].append(cl)
        out["rank_biserial"].append(2.0 * cl - 1.0)
    return out


def format_comparison(result: Mapping, scale: float = 1e3, unit: str = "×10⁻³ mm²/s") -> str:
    """A Markdown table of :func:`compare_groups` output, measures side by side (values × ``scale``)."""
    lines = [f"| measure | {result['group_a'][0]} median | {result['group_b'][0]} median ({unit}) | n | U | p | "
             "CL | rank-biserial r |", "|---|---|---|---|---|---|---|---|"]
    for i, measure in enumerate(result["measure"]):
        lines.append(
            f"| {measure} | {result['median_a'][i] * scale:.3f} | {result['median_b'][i] * scale:.3f} | "
            f"{result['n_a'][i]} vs {result['n_b'][i]} | {result['u_a'][i]:.1f} | {result['p_value'][i]:.3g} | "
            f"{result['common_language'][i]:.2f} | {result['rank_biserial'][i]:+.2f} |")
    return "\n".join(lines)
