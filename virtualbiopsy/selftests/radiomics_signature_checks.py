"""Self-check of the feature-table steps (reduction, exploration, ComBat) on real Table nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.radiomics_signature import RadiomicsSignatureMixin
from virtualbiopsy.mrml import arrays
from virtualbiopsy.signature.synthetic import GROUPS, synthetic_cohort


def _logic(context):
    from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic

    if issubclass(RadiomicsBiomarkersLogic, RadiomicsSignatureMixin):
        return RadiomicsBiomarkersLogic(context)

    class SignatureLogic(RadiomicsSignatureMixin):
        def __init__(self, context) -> None:
            self.context = context

    return SignatureLogic(context)


def check_radiomics_signature(context, workdir: str) -> None:
    """A seeded cohort with known structure: reduction, exploration and ComBat recover it; a bad
    batch column is refused with the scene unchanged."""
    logic = _logic(context)
    table, _ = synthetic_cohort(80, seed=21, batch_shifts=(0.0, 1.5), age_effect=0.1)
    node = arrays.add_frame(context, table, "self-check cohort")
    before = arrays.table_columns(node)

    from virtualbiopsy.signature.reduction import ReductionParameters

    out = logic.reduce_feature_table(logic.harmonise_feature_table(node, "batch", ["age"]),
                                     ReductionParameters(exclude=("age",)))
    model = logic.fitted_model(out["signature"])
    dropped = set(model.report_.loc[model.report_["action"] == "dropped", "feature"])
    assert {"original_constant", "original_near_constant"} <= dropped, f"dropped: {sorted(dropped)}"
    assert model.n_factors_ == 3, f"{model.n_factors_} factors ({model.n_factors_rule_}); 3 latent groups expected"
    groups = [next(g for g, names in GROUPS.items() if f in names or (g == "C" and "Volume" in f))
              for f in model.signature_]
    assert sorted(groups) == ["A", "B", "C"], f"signature {model.signature_} does not cover each latent group"

    explored = arrays.table_columns(logic.explore_features(node, "label"))
    significant = {f for f, s in zip(explored["feature"], explored["significant_bonferroni"]) if s == "yes"}
    assert set(GROUPS["A"]) <= significant and not significant & set(GROUPS["B"]), f"significant: {significant}"

    harmonised = arrays.table_columns(logic.harmonise_feature_table(node, "batch", ["age"]))
    site2 = np.array(before["batch"]) == "site2"
    for name in GROUPS["C"]:
        raw, adjusted = np.array(before[name]), np.array(harmonised[name])
        gap_raw = raw[site2].mean() - raw[~site2].mean()
        gap = adjusted[site2].mean() - adjusted[~site2].mean()
        assert abs(gap) < 0.25 * abs(gap_raw), f"{name}: batch gap {gap_raw:.3g} -> {gap:.3g}"
    logic.save_fitted_model(out["signature"], Path(workdir) / "reduction_model.json")
    assert arrays.table_columns(node) == before, "the input table was changed"

    ids = context.node_ids()
    try:
        logic.harmonise_feature_table(node, "scanner")
    except InputError as error:
        assert "scanner" in str(error), str(error)
    else:
        raise AssertionError("a missing batch column was not refused")
    assert context.node_ids() == ids, "a failed step left new nodes in the scene"
