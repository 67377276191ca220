"""Feature reduction and exploration on a synthetic cohort with known structure (virtualbiopsy.signature)."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from virtualbiopsy.errors import FileFormatError, InputError, InvalidValuesError
from virtualbiopsy.logic.radiomics_signature import MODEL_ATTRIBUTE, RadiomicsSignatureMixin
from virtualbiopsy.mrml import arrays
from virtualbiopsy.signature import exploration, load_model, save_model
from virtualbiopsy.signature.reduction import (
    CorrelationParameters,
    FactorParameters,
    FeatureReduction,
    ReductionParameters,
    VarianceFilterParameters,
    knee_threshold,
    prune_correlated,
    scaled_variance,
)
from virtualbiopsy.signature.synthetic import GROUPS, synthetic_cohort


class SignatureLogic(RadiomicsSignatureMixin):
    def __init__(self, context) -> None:
        self.context = context


@pytest.fixture(scope="module")
def feature_cohort_80():
    """The 80-case synthetic feature table of known groups and surrogates (seed 1): (table, truth)."""
    return synthetic_cohort(80, seed=1)


@pytest.fixture(scope="module")
def fitted(feature_cohort_80):
    return FeatureReduction().fit(feature_cohort_80[0])


def dropped(reduction, step):
    report = reduction.report_
    return report[(report["step"] == step) & (report["action"] == "dropped")]


def test_reduction_recovers_the_known_structure(feature_cohort_80, fitted):
    table, truth = feature_cohort_80
    report = fitted.report_
    not_features = set(report.loc[report["step"] == "columns", "feature"])
    assert not_features == {"case_id", "label", "diagnostics_Versions_PyRadiomics"}
    # low-variance filter: the constant and the one-outlier feature, nothing else
    variance = dropped(fitted, "variance")
    assert list(variance["feature"]) == ["original_constant", "original_near_constant"]
    assert variance["reason"].iloc[0].startswith("constant")
    assert fitted.variance_["original_near_constant"] == pytest.approx(1 / 80)  # one outlier among n: 1/n
    # correlation pruning: only the near-duplicate pair, and the one of the two with the higher mean |r| goes
    correlation = dropped(fitted, "correlation")
    assert len(correlation) == 1 and correlation["value"].iloc[0] > 0.95
    pair = {correlation["feature"].iloc[0], correlation["partner"].iloc[0]}
    assert pair == {"original_a1", "original_a1_dup"}
    features = list(fitted.correlation_.columns)
    others = [f for f in features if f not in pair]
    strength = table[features].corr().abs()
    mean_r = {name: strength.loc[name, [*others, *(pair - {name})]].mean() for name in pair}
    assert correlation["feature"].iloc[0] == max(mean_r, key=mean_r.get)
    # three factors (parallel analysis; Kaiser agrees here), each grouping exactly one latent group; the volume
    # goes with group C
    assert fitted.n_factors_ == 3 and fitted.n_factors_rule_.startswith("parallel analysis: 3")
    kaiser = FeatureReduction(ReductionParameters(factors=FactorParameters(rule="kaiser"))).fit(table)
    assert kaiser.n_factors_ == 3 and kaiser.n_factors_rule_.startswith("Kaiser: 3")
    groups = {"A": set(GROUPS["A"]), "B": set(GROUPS["B"]), "C": set(GROUPS["C"]) | {"original_shape_MeshVolume"}}
    found = []
    for factor in fitted.loadings_.columns:
        strong = set(fitted.loadings_.index[fitted.loadings_[factor].abs() > 0.6])
        found.append(next(name for name, members in groups.items() if strong == members))
        assert fitted.loadings_[factor].max() > 0.8  # signed so that the largest loading is positive
    assert sorted(found) == ["A", "B", "C"]
    # the signature: one feature per factor, the one with the highest |loading|
    assert len(fitted.signature_) == 3
    for factor, feature in zip(fitted.signature_table_["factor"], fitted.signature_table_["feature"]):
        assert feature == fitted.loadings_[factor].abs().idxmax()
    assert {next(g for g, m in groups.items() if f in m) for f in fitted.signature_} == {"A", "B", "C"}
    # factors are ordered by variance explained
    explained = fitted.signature_table_["variance_explained"].to_numpy()
    assert np.all(np.diff(explained) <= 0)


def test_correlation_pruning_follows_the_stated_rule():
    rng = np.random.default_rng(0)
    base, other = rng.normal(size=200), rng.normal(size=200)
    frame = pd.DataFrame({
        "x": base,
        "x_twin": base + 0.05 * rng.normal(size=200) + 0.3 * other,  # also tied to "w" and "v"
        "w": other + 0.2 * rng.normal(size=200),
        "v": other + 0.9 * rng.normal(size=200),
        "same1": rng.normal(size=200),
    })
    frame["same2"] = frame["same1"]  # an exact duplicate: equal mean |r|, so the later column goes
    z = (frame - frame.mean()) / frame.std()
    kept, rows, r = prune_correlated(z, 0.9)
    assert [row["feature"] for row in rows] == ["same2", "x_twin"]  # the most correlated pair first (r = 1)
    by_feature = {row["feature"]: row for row in rows}
    assert by_feature["same2"]["partner"] == "same1" and by_feature["x_twin"]["partner"] == "x"
    # the rule, recomputed independently: x_twin has the higher mean |r| with the others
    strength = np.abs(np.corrcoef(frame.to_numpy(), rowvar=False))
    np.fill_diagonal(strength, 0)
    names = list(frame.columns)
    assert strength[names.index("x_twin")].sum() > strength[names.index("x")].sum()
    assert kept == ["x", "w", "v", "same1"]


def test_scaled_variance_is_scale_free_and_the_knee_drops_the_tiny_variances():
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"a": rng.normal(size=50), "b": rng.uniform(size=50)})
    frame["a_scaled"] = 1000 * frame["a"] - 7  # min-max scaling makes the variance scale-free
    frame["flipped"] = -frame["a"]
    variance = scaled_variance(frame)
    assert variance["a"] == pytest.approx(variance["a_scaled"]) == pytest.approx(variance["flipped"])
    assert variance["b"] == pytest.approx(frame["b"].var() / (frame["b"].max() - frame["b"].min()) ** 2)
    # knee: three tiny variances, then a steady rise -> the three go (threshold between the knee and the next)
    curve = np.array([0.001, 0.002, 0.003, 0.04, 0.045, 0.05, 0.055, 0.06, 0.065, 0.07])
    assert knee_threshold(curve) == pytest.approx((0.003 + 0.04) / 2)
    assert knee_threshold(np.linspace(0.01, 0.08, 20)) == 0.0  # a straight line has no knee
    # a small low tail (5 of 105) is found; a right-skewed curve (a few high variances) has no low tail: nothing goes
    tail = np.r_[np.full(5, 0.001), np.linspace(0.05, 0.08, 100)]
    assert knee_threshold(tail) == pytest.approx((0.001 + 0.05) / 2)
    skewed = np.exp(np.random.default_rng(0).normal(-3.0, 0.6, 107))
    assert knee_threshold(skewed) == 0.0
    assert knee_threshold(np.r_[np.linspace(0.01, 0.06, 100), 0.2, 0.25]) == 0.0
    table, _ = synthetic_cohort(60, seed=3)
    knee = FeatureReduction(ReductionParameters(variance=VarianceFilterParameters("knee"))).fit(table)
    # the cohort's sorted variances rise steeply from the constant and the one-outlier feature, then level off
    gone = list(dropped(knee, "variance")["feature"])
    assert {"original_constant", "original_near_constant"} <= set(gone) and len(gone) <= 3
    assert all(knee.variance_[name] < knee.variance_threshold_ for name in gone)
    fixed = FeatureReduction(ReductionParameters(variance=VarianceFilterParameters("fixed", threshold=0.25))).fit
    with pytest.raises(InputError, match="removed by the low-variance filter"):
        fixed(table)
    off = FeatureReduction(ReductionParameters(variance=VarianceFilterParameters("off"))).fit(table)
    assert list(dropped(off, "variance")["feature"]) == ["original_constant"]


def test_number_of_factors_when_features_outnumber_cases():
    rng = np.random.default_rng(7)
    latent = rng.normal(size=(40, 3))
    loadings = np.kron(np.eye(3), np.ones((1, 40)))  # 120 features, 40 per factor
    table = pd.DataFrame(latent @ loadings + 0.8 * rng.normal(size=(40, 120)), columns=[f"f{i}" for i in range(120)])
    reduction = FeatureReduction(ReductionParameters(variance=VarianceFilterParameters("off"),
                                                     correlation=CorrelationParameters(enabled=False))).fit(table)
    assert reduction.n_factors_ == 3 and reduction.n_factors_rule_.startswith("parallel analysis: 3")
    assert np.sum(reduction.eigenvalues_ > 1) > 10  # Kaiser's rule would have fitted noise factors


def test_apply_to_new_cases_factor_scores_and_json_round_trip(tmp_path):
    from sklearn.decomposition import FactorAnalysis

    table, _ = synthetic_cohort(100, seed=4)
    train, new = table.iloc[:70], table.iloc[70:]
    reduction = FeatureReduction().fit(train)
    signature = reduction.transform(new, ["case_id", "label"])
    assert list(signature.columns) == ["case_id", "label", *reduction.signature_]
    assert np.array_equal(signature[reduction.signature_].to_numpy(), new[reduction.signature_].to_numpy())
    # factor scores equal scikit-learn's own transform (up to the factors' order and sign, fixed by us)
    z = (train[reduction.kept_] - reduction.mean_[reduction.kept_]) / reduction.scale_[reduction.kept_]
    fa = FactorAnalysis(reduction.n_factors_, rotation="varimax", svd_method="lapack", random_state=0).fit(z.to_numpy())
    z_new = (new[reduction.kept_] - reduction.mean_[reduction.kept_]) / reduction.scale_[reduction.kept_]
    theirs = fa.transform(z_new.to_numpy())
    ours = reduction.factor_scores(new).to_numpy()
    for k in range(reduction.n_factors_):
        match = np.argmax([abs(np.corrcoef(ours[:, k], theirs[:, j])[0, 1]) for j in range(theirs.shape[1])])
        sign = np.sign(np.corrcoef(ours[:, k], theirs[:, match])[0, 1])
        assert np.allclose(ours[:, k], sign * theirs[:, match], atol=1e-8)
    path = save_model(reduction, tmp_path / "reduction.json")
    assert json.loads(path.read_text())["kind"] == "virtualbiopsy.feature_reduction"
    loaded = load_model(path)
    assert loaded.signature_ == reduction.signature_ and loaded.kept_ == reduction.kept_
    assert np.array_equal(loaded.factor_scores(new).to_numpy(), ours)
    pd.testing.assert_frame_equal(loaded.report_, reduction.report_)
    with pytest.raises(InputError, match="no column\\(s\\) 'original_"):
        reduction.transform(new.drop(columns=reduction.signature_[0]))
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    with pytest.raises(FileFormatError, match="Not a saved"):
        load_model(tmp_path / "bad.json")


def test_bad_tables_are_refused_or_handled_explicitly():
    table, _ = synthetic_cohort(40, seed=5)
    with pytest.raises(InputError, match="4 case\\(s\\); at least 5"):
        FeatureReduction().fit(table.iloc[:4])
    holes = table.copy()
    holes.loc[3, "original_b2"] = np.nan
    with pytest.raises(InvalidValuesError, match="original_b2 \\(1 case\\)"):
        FeatureReduction().fit(holes)
    tolerant = FeatureReduction(ReductionParameters(missing="drop")).fit(holes)
    assert list(dropped(tolerant, "missing")["feature"]) == ["original_b2"]
    assert "original_b2" not in tolerant.features_in_
    text = table.copy()
    text["original_grade"] = ["high" if v else "low" for v in table["label"]]  # a text column is not a feature
    reduction = FeatureReduction(ReductionParameters(exclude=("original_c4",))).fit(text)
    why = reduction.report_.set_index("feature")["reason"]
    assert why["original_grade"] == "not numeric" and why["original_c4"] == "excluded by the user"
    with pytest.raises(InputError, match="no numeric feature columns"):
        FeatureReduction().fit(table[["case_id", "label"]])
    with pytest.raises(InputError, match="at most"):
        FeatureReduction(ReductionParameters(factors=FactorParameters(n_factors=30))).fit(table)
    with pytest.raises(InputError, match="Unknown variance-filter rule"):
        FeatureReduction(ReductionParameters(variance=VarianceFilterParameters("median"))).fit(table)
    with pytest.raises(InputError, match="not fitted"):
        FeatureReduction().transform(table)
    # a cohort table with failed extractions (error message, no feature values): those cases are left out
    failed = table.copy()
    failed["error"] = ""
    failed.loc[[2, 7], "error"] = "Mask is empty for label 1"
    failed.loc[[2, 7], [c for c in table.columns if c.startswith("original_")]] = np.nan
    reduction = FeatureReduction().fit(failed)
    excluded = reduction.report_[reduction.report_["step"] == "cases"]
    assert list(excluded["feature"]) == ["case002", "case007"] and "Mask is empty" in excluded["reason"].iloc[0]
    assert reduction.signature_ == FeatureReduction().fit(table.drop(index=[2, 7])).signature_
    signature = reduction.signature_table(failed)
    assert list(signature["case_id"]) == list(table["case_id"]) and signature.iloc[[2, 7], -1].isna().all()
    assert reduction.factor_scores(failed).iloc[[2, 7]].isna().all().all()
    given = FeatureReduction(ReductionParameters(factors=FactorParameters(n_factors=2),
                                                 correlation=CorrelationParameters(enabled=False))).fit(table)
    assert given.n_factors_ == 2 and given.n_factors_rule_ == "given" and dropped(given, "correlation").empty


def test_exploration_finds_the_label_group_and_volume_surrogates(feature_cohort_80):
    table, truth = feature_cohort_80
    features = [c for c in table.columns if c.startswith("original_")]
    stats = exploration.univariate_table(table[features], table["label"], table["original_shape_MeshVolume"])
    stats = stats.set_index("feature")
    m = len(features)
    assert np.allclose(stats["p_bonferroni"], np.minimum(stats["p_value"] * m, 1.0))
    significant = set(stats.index[stats["significant_bonferroni"]])
    assert set(GROUPS["A"]) <= significant and not significant & set(GROUPS["B"] + GROUPS["C"])
    assert (stats.loc[GROUPS["A"], "auc"] > 0.75).all() and (stats.loc[GROUPS["A"], "direction"] == "higher in 1").all()
    assert np.allclose(stats["auc"], np.maximum(stats["auc_raw"], 1 - stats["auc_raw"]))
    surrogates = set(stats.index[stats["volume_surrogate"]])
    assert surrogates == set(GROUPS["C"]) | {"original_shape_MeshVolume"}
    flipped = exploration.univariate_table(-table[["original_a2"]], table["label"]).iloc[0]
    assert flipped["direction"] == "higher in 0" and flipped["auc"] == pytest.approx(stats.at["original_a2", "auc"])
    assert stats.at["original_constant", "p_value"] == 1.0 and stats.at["original_constant", "auc"] == 0.5
    with pytest.raises(InputError, match="exactly two classes"):
        exploration.univariate_table(table[features], np.arange(len(table)) % 3)


def test_figures_are_drawn_labelled_and_without_overlapping_labels(feature_cohort_80, fitted, tmp_path):
    import matplotlib.image

    from virtualbiopsy.report import style

    table, _ = feature_cohort_80
    features = [c for c in table.columns if c.startswith("original_")]
    stats = exploration.univariate_table(table[features], table["label"], table["original_shape_MeshVolume"])
    with style.checking() as found:
        paths = [exploration.plot_volcano(stats, tmp_path / "volcano.png"),
                 exploration.plot_correlation_heatmap(fitted.correlation_, tmp_path / "correlation.png"),
                 exploration.plot_loadings_heatmap(fitted.loadings_, tmp_path / "loadings.png", fitted.signature_)]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.shape[0] > 300 and image[..., :3].std() > 0.05
        assert found[str(path)] == [], path.name  # the volcano's point labels are moved apart


def test_logic_writes_new_nodes_and_leaves_the_input_alone(context, feature_cohort_80):
    table, _ = feature_cohort_80
    # as Slicer reads a CSV: every column text
    text = {k: [str(v) for v in vals] for k, vals in arrays.columns_from_frame(table).items()}
    node = arrays.add_table(context, text, "cohort")
    before = arrays.table_columns(node)
    logic = SignatureLogic(context)
    out = logic.reduce_feature_table(node)
    assert arrays.table_columns(node) == before
    signature = arrays.table_columns(out["signature"])
    model = logic.fitted_model(out["signature"])
    assert list(signature) == ["case_id", "label", *model.signature_]
    assert signature["case_id"] == before["case_id"]
    loadings = arrays.table_columns(out["loadings"])
    assert loadings["feature"] == model.kept_ and {"F1", "F2", "F3", "communality"} <= set(loadings)
    log = arrays.table_columns(out["log"])
    assert "original_constant" in log["feature"] and "correlation" in log["step"]
    again = arrays.table_columns(logic.apply_fitted_model(node, out["signature"]))
    assert again == signature  # the stored reduction applied to the same cases gives the same table
    explored = arrays.table_columns(logic.explore_features(node, "label"))
    assert set(GROUPS["C"]) <= {f for f, s in zip(explored["feature"], explored["volume_surrogate"]) if s == "yes"}
    ids = context.node_ids()
    small = arrays.add_frame(context, table.iloc[:3], "three cases")
    ids = context.node_ids()
    with pytest.raises(InputError, match="3 case"):
        logic.reduce_feature_table(small)
    with pytest.raises(InputError, match="no column\\(s\\) 'outcome'"):
        logic.explore_features(node, "outcome")
    assert context.node_ids() == ids
    assert out["signature"].GetAttribute(MODEL_ATTRIBUTE).startswith("{")


def test_reduce_and_harmonise_commands_write_their_tables_and_figures(tmp_path):
    from virtualbiopsy.cli import signature

    parser = argparse.ArgumentParser()
    signature.add_parser(parser.add_subparsers(dest="command"))
    table, _ = synthetic_cohort(60, seed=6, batch_shifts=(0.0, 1.0), age_effect=0.1)
    table.to_csv(tmp_path / "features.csv", index=False)
    args = parser.parse_args(["reduce", "--table", str(tmp_path / "features.csv"), "--label", "label",
                              "--exclude", "age", "--out", str(tmp_path / "reduced")])
    assert args.run(args) == 0
    for name in ("signature.csv", "loadings.csv", "reduction_log.csv", "reduction_model.json", "exploration.csv",
                 "volcano.png", "correlation.png", "loadings.png"):
        assert (tmp_path / "reduced" / name).stat().st_size > 0, name
    log = pd.read_csv(tmp_path / "reduced" / "reduction_log.csv")
    assert "original_constant" in set(log["feature"]) and "age" in set(log["feature"])
    args = parser.parse_args(["reduce", "--table", str(tmp_path / "features.csv"), "--out", str(tmp_path / "new"),
                              "--apply", str(tmp_path / "reduced" / "reduction_model.json")])
    assert args.run(args) == 0
    applied = pd.read_csv(tmp_path / "new" / "signature.csv")
    first = pd.read_csv(tmp_path / "reduced" / "signature.csv")
    assert np.allclose(applied[first.columns[-1]], first[first.columns[-1]]) and "F1" in applied
    args = parser.parse_args(["harmonise", "--table", str(tmp_path / "features.csv"), "--batch", "batch",
                              "--covariate", "age", "--non-parametric", "--out", str(tmp_path / "combat")])
    assert args.run(args) == 0
    harmonised = pd.read_csv(tmp_path / "combat" / "harmonised.csv")
    assert list(harmonised.columns) == list(table.columns) and (harmonised["age"] == table["age"]).all()
    effect = pd.read_csv(tmp_path / "combat" / "batch_effect.csv").set_index("feature")
    assert (effect.loc[[*GROUPS["A"], *GROUPS["B"], *GROUPS["C"]], "p_after"] > 0.05).all()
    assert (effect["p_before"] < 0.001).sum() >= 12
    assert (tmp_path / "combat" / "batch_effect.png").stat().st_size > 10000
    args = parser.parse_args(["harmonise", "--table", str(tmp_path / "features.csv"), "--out", str(tmp_path / "x")])
    with pytest.raises(InputError, match="--batch"):
        args.run(args)


def test_the_default_variance_rule_keeps_the_informative_feature_of_the_outcome_cohort():
    """Issue 10, item 15: the old default (drop the lowest 10 % of scaled variances) dropped adc_mean, the one
    informative feature of the outcome cohort; the default now drops only near-constant features."""
    from virtualbiopsy.prediction.cohort import generate_cohort

    for seed in range(5):
        cohort = generate_cohort(n_patients=200, seed=seed)
        table = cohort.table[["case_id", *cohort.features]]
        default = FeatureReduction(ReductionParameters()).fit(table)
        assert cohort.truth["informative"] not in set(dropped(default, "variance")["feature"]), seed
        assert dropped(default, "variance").empty  # nothing here is near-constant
        percentile = FeatureReduction(ReductionParameters(variance=VarianceFilterParameters("percentile"))).fit(table)
        assert len(dropped(percentile, "variance")) >= 1  # the percentile rule drops a fixed share, as documented
