"""ComBat harmonisation: agreement with neuroCombat, known batch effects removed, covariates kept, fit/apply."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pandas as pd
import pytest

from virtualbiopsy.errors import InputError, InvalidValuesError
from virtualbiopsy.logic.radiomics_signature import MODEL_ATTRIBUTE, RadiomicsSignatureMixin
from virtualbiopsy.mrml import arrays
from virtualbiopsy.signature import load_model, save_model
from virtualbiopsy.signature.batch_effect import batch_effect_table, plot_batch_effect, summarise_batch_effect
from virtualbiopsy.signature.combat import (
    ComBatModel,
    ComBatParameters,
    apply_to_table,
    fit_combat,
    harmonise,
    harmonise_table,
)
from virtualbiopsy.signature.synthetic import GROUPS, synthetic_cohort


class SignatureLogic(RadiomicsSignatureMixin):
    def __init__(self, context) -> None:
        self.context = context


def multisite(n=66, seed=3, sizes=(18, 26, 22)):
    """Features on varied scales; per-batch shift and scale; float32-exact age and a text sex covariate."""
    rng = np.random.default_rng(seed)
    batch = np.repeat(["A", "B", "C"], sizes)[:n]
    age = np.float32(rng.uniform(1, 15, n)).astype(float)  # neuroCombat casts continuous covariates to float32
    sex = rng.choice(["F", "M"], n)
    x = rng.normal(size=(n, 12)) * rng.uniform(0.5, 3.0, 12) + rng.uniform(-20, 20, 12)
    shift, scale = {"A": 0.0, "B": 3.0, "C": -2.0}, {"A": 1.0, "B": 2.0, "C": 0.6}
    for i, b in enumerate(batch):
        x[i] = x[i] * scale[b] + shift[b]
    x += 0.4 * age[:, None] + 1.5 * (sex == "M")[:, None]
    return pd.DataFrame(x, columns=[f"f{i}" for i in range(12)]), batch, pd.DataFrame({"age": age, "sex": sex})


def neuro_combat(values, batch, covariates=None, **options):
    from neuroCombat import neuroCombat

    covars = pd.DataFrame({"batch": batch})
    kwargs = {}
    if covariates is not None:
        covars = pd.concat([covars, covariates.reset_index(drop=True)], axis=1)
        kwargs = {"categorical_cols": ["sex"], "continuous_cols": ["age"]}
    with contextlib.redirect_stdout(io.StringIO()):  # neuroCombat prints its steps
        result = neuroCombat(values.to_numpy().T.copy(), covars, "batch", **kwargs, **options)
    return result["data"].T


@pytest.mark.parametrize("parametric", [True, False], ids=["parametric", "non-parametric"])
@pytest.mark.parametrize("with_covariates", [False, True], ids=["no-covariates", "covariates"])
def test_matches_neurocombat(parametric, with_covariates):
    values, batch, covariates = multisite()
    covariates = covariates if with_covariates else None
    ours, model = harmonise(values, batch, covariates, ComBatParameters(parametric=parametric))
    reference = neuro_combat(values, batch, covariates, parametric=parametric)
    assert np.max(np.abs(ours.to_numpy() - reference)) < 1e-6
    assert np.max(np.abs(ours.to_numpy() - values.to_numpy())) > 1.0  # it did adjust something
    assert model.mean_only is False and model.unchanged == []


@pytest.mark.parametrize("parametric", [True, False], ids=["parametric", "non-parametric"])
def test_single_case_batch_is_location_only_like_the_reference(parametric):
    values, batch, covariates = multisite()
    batch = batch.copy()
    batch[0] = "D"  # a batch with one case: no scale can be estimated
    ours, model = harmonise(values, batch, covariates, ComBatParameters(parametric=parametric))
    assert model.mean_only and "single case" in model.notes[0] and "D" in model.notes[0]
    reference = neuro_combat(values, batch, covariates, parametric=parametric, mean_only=True)
    assert np.max(np.abs(ours.to_numpy() - reference)) < 1e-6
    assert np.allclose(model.delta_star, 1.0)


def test_non_parametric_does_not_underflow_on_a_large_batch():
    rng = np.random.default_rng(0)
    n = 1200  # likelihoods of 600 cases underflow without logs
    values = pd.DataFrame(rng.normal(size=(n, 6)), columns=list("abcdef"))
    batch = np.repeat(["x", "y"], n // 2)
    values[batch == "y"] += 1.0
    adjusted, model = harmonise(values, batch, parameters=ComBatParameters(parametric=False))
    assert np.all(np.isfinite(adjusted.to_numpy())) and np.all(np.isfinite(model.gamma_star))
    gap = adjusted[batch == "y"].mean() - adjusted[batch == "x"].mean()
    assert np.abs(gap).max() < 0.1  # from 1.0
    with np.errstate(all="ignore"):  # the reference multiplies raw likelihoods, which underflow to 0/0 here
        assert np.isnan(neuro_combat(values, batch, parametric=False)).any()


def test_removes_known_batch_shift_and_keeps_covariate_effect():
    table, truth = synthetic_cohort(150, seed=4, batch_shifts=(0.0, 1.5, -1.0), batch_scales=(1.0, 1.8, 0.6),
                                    age_effect=0.15)
    features = [*GROUPS["A"], *GROUPS["B"], *GROUPS["C"]]
    batch, age = table["batch"].to_numpy(), table["age"].to_numpy()
    dummies = (batch[:, None] == np.array(["site2", "site3"])[None, :]).astype(float)
    design = np.column_stack([np.ones(len(age)), dummies, age])

    def effects(frame):  # per feature, in feature SDs of the clean data: batch coefficients and age slope
        coefficients = np.linalg.lstsq(design, frame[features].to_numpy(), rcond=None)[0]
        sd = np.array([truth["clean"][name].std(ddof=1) for name in features])
        return coefficients[1:3] / sd, coefficients[3] / sd

    clean_batch, true_slope = effects(pd.DataFrame(truth["clean"]))  # biological differences between batches
    added = effects(table)[0] - clean_batch
    assert np.allclose(added.mean(axis=1), [1.5, -1.0], atol=0.15)  # the known shifts, in SDs
    with_age, model = harmonise(table[features], batch, table[["age"]])
    after_batch, slope = effects(with_age)
    left = after_batch - clean_batch
    # the shifts are gone; what differs from the clean data is (part of) the sampled cases' own between-batch
    # difference, which no covariate explains and ComBat therefore also removes
    assert np.all(np.abs(left.mean(axis=1)) < 0.15) and np.abs(left).max() < 0.35
    b_group = [features.index(name) for name in GROUPS["B"]]
    assert np.allclose(slope[b_group], true_slope[b_group], atol=0.03)  # 0.15 SD/year kept
    without_age, _ = harmonise(table[features], batch)
    # figure of merit: Kruskal-Wallis p of batch per feature
    effect = batch_effect_table(table[features], without_age, batch)
    summary = summarise_batch_effect(effect)
    assert summary["fraction_significant_before"] > 0.9 and summary["fraction_significant_after"] == 0.0
    assert model.iterations and max(model.iterations) < 100


def test_covariate_imbalanced_across_batches_is_preserved_only_when_given():
    rng = np.random.default_rng(8)
    index = np.repeat([0, 1, 2], 40)
    batch = np.array(["A", "B", "C"])[index]
    age = np.round(rng.uniform(1.0, 6.0, index.size) + 4.0 * index, 1)  # older cases at the later sites
    values = pd.DataFrame(rng.normal(size=(index.size, 10)) + 0.3 * age[:, None]
                          + np.array([0.0, 2.0, -1.5])[index][:, None], columns=[f"f{i}" for i in range(10)])

    def age_slope(frame):  # marginal slope per feature; the truth is 0.3 per year
        return np.polyfit(age, frame.to_numpy(), 1)[0]

    kept, _ = harmonise(values, batch, pd.DataFrame({"age": age}))
    assert abs(age_slope(kept).mean() - 0.3) < 0.04 and np.allclose(age_slope(kept), 0.3, atol=0.1)
    lost, _ = harmonise(values, batch)  # without the covariate the sites' age difference is "harmonised" away
    assert np.all(age_slope(lost) < 0.15)


def test_fit_then_apply_to_new_cases_and_json_round_trip(tmp_path):
    values, batch, covariates = multisite(n=66)
    train = np.arange(66) % 3 != 0
    model = fit_combat(values[train], batch[train], covariates[train], ComBatParameters(parametric=True))
    fitted = model.transform(values[train], batch[train], covariates[train])
    # applying to the training cases gives exactly the fit's result (the reference, on the same cases)
    reference = neuro_combat(values[train].reset_index(drop=True), batch[train], covariates[train])
    assert np.max(np.abs(fitted.to_numpy() - reference)) < 1e-6
    # a new case is harmonised with the stored parameters, independently of the other new cases
    new = model.transform(values[~train], batch[~train], covariates[~train])
    one = model.transform(values[~train].iloc[[0]], batch[~train][:1], covariates[~train].iloc[[0]])
    assert np.allclose(new.iloc[0].to_numpy(), one.iloc[0].to_numpy(), atol=1e-12)
    # harmonised new cases of batch B sit where batch A's do (shift +3 and scale 2 removed)
    gap = new[batch[~train] == "B"].mean() - new[batch[~train] == "A"].mean()
    raw_gap = values[~train][batch[~train] == "B"].mean() - values[~train][batch[~train] == "A"].mean()
    assert np.abs(gap).mean() < 0.5 * np.abs(raw_gap).mean()
    path = save_model(model, tmp_path / "combat.json")
    text = path.read_text()
    assert json.loads(text)["kind"] == "virtualbiopsy.combat"
    loaded = load_model(path)
    assert isinstance(loaded, ComBatModel)
    assert np.array_equal(loaded.transform(values[~train], batch[~train], covariates[~train]).to_numpy(),
                          new.to_numpy())


def test_apply_refuses_unknown_batch_level_and_missing_covariate():
    values, batch, covariates = multisite()
    model = fit_combat(values, batch, covariates)
    with pytest.raises(InputError, match="Batch\\(es\\) Z were not in the data") as error:
        model.transform(values.iloc[:2], ["A", "Z"], covariates.iloc[:2])
    assert "known: A, B, C" in str(error.value)
    odd = covariates.iloc[:2].copy()
    odd["sex"] = ["F", "X"]
    with pytest.raises(InputError, match="Covariate 'sex' has value\\(s\\) X"):
        model.transform(values.iloc[:2], ["A", "B"], odd)
    with pytest.raises(InputError, match="preserves the covariate"):
        model.transform(values.iloc[:2], ["A", "B"])
    with pytest.raises(InputError, match="no column"):
        model.transform(values.iloc[:2, :5], ["A", "B"], covariates.iloc[:2])


def test_bad_inputs_are_refused_clearly():
    values, batch, covariates = multisite()
    with pytest.raises(InputError, match="at least two batches"):
        fit_combat(values, ["A"] * len(values))
    broken = values.copy()
    broken.iloc[3, 2] = np.nan
    with pytest.raises(InvalidValuesError, match="f2 \\(1 case\\)"):
        fit_combat(broken, batch)
    confounded = pd.DataFrame({"scanner_type": [{"A": "x", "B": "y", "C": "y"}[b] for b in batch]})
    with pytest.raises(InputError, match="confounded with the batches"):
        fit_combat(values, batch, confounded)
    with pytest.raises(InputError, match="at least 2 features"):
        fit_combat(values[["f0"]], batch)
    labels = list(batch)
    labels[5] = ""
    with pytest.raises(InputError, match="batch column 'batch' is missing for 1 case"):
        fit_combat(values, labels)


def test_a_table_where_every_case_failed_is_refused_by_name():
    table, _ = synthetic_cohort(12, seed=9, batch_shifts=(0.0, 2.0))
    table["error"] = "Image and mask are not on one voxel grid"
    with pytest.raises(InputError, match="Every one of the 12 case"):
        harmonise_table(table, "batch")


def test_table_with_failed_cases():
    table, _ = synthetic_cohort(40, seed=9, batch_shifts=(0.0, 2.0), age_effect=0.1)
    table["error"] = ""
    table.loc[5, "error"] = "Image and mask are not on one voxel grid"
    features = [c for c in table.columns if c.startswith("original_")]
    table.loc[5, features] = np.nan
    output, model = harmonise_table(table, "batch", ["age"])
    assert sum(model.batch_counts) == 39 and "1 case(s) whose feature extraction failed" in model.notes[-1]
    assert output.loc[5, features].isna().all() and np.isfinite(output.drop(index=5)[features].to_numpy()).all()
    # the near-constant feature (1 in every case but one) is copied unchanged, and said so
    harmonised = [name for name in features if name != "original_near_constant"]
    assert model.features == harmonised and any("near-constant" in note for note in model.notes)
    assert output["original_near_constant"].equals(table["original_near_constant"])
    expected, _ = harmonise(table.drop(index=5)[harmonised], table.drop(index=5)["batch"],
                            table.drop(index=5)[["age"]])
    assert np.allclose(output.drop(index=5)[harmonised].to_numpy(), expected.to_numpy())
    assert apply_to_table(model, table).equals(output)
    with pytest.raises(InputError, match="cannot also be a covariate"):
        harmonise_table(table, "batch", ["batch"])


def staged_cohort(seed=11):
    """Stage coded 1-3 whose effect is not a line (stage 2 highest), imbalanced across three shifted sites."""
    rng = np.random.default_rng(seed)
    counts = {"A": (20, 4, 4), "B": (4, 20, 4), "C": (4, 4, 20)}
    site = np.concatenate([[name] * sum(c) for name, c in counts.items()])
    stage = np.concatenate([np.repeat([1, 2, 3], c) for c in counts.values()])
    clean = rng.normal(size=(site.size, 8)) + np.array([0.0, 3.0, 1.0])[stage - 1][:, None]
    shift = np.array([{"A": 0.0, "B": 2.0, "C": -1.5}[name] for name in site])
    table = pd.DataFrame(clean + shift[:, None], columns=[f"f{i}" for i in range(8)])
    table.insert(0, "stage", stage)
    table.insert(0, "site", site)
    return table, pd.DataFrame(clean, columns=table.columns[2:])


def test_numeric_covariate_listed_as_categorical_keeps_each_category(tmp_path):
    import argparse

    from neuroCombat import neuroCombat

    from virtualbiopsy.cli import signature

    table, clean = staged_cohort()
    features = list(clean.columns)

    def stage_gaps(frame):  # per feature: mean of stage 2 minus stage 1, and of stage 3 minus stage 1
        means = frame[features].groupby(table["stage"].to_numpy()).mean()
        return np.stack([means.loc[2] - means.loc[1], means.loc[3] - means.loc[1]])

    truth = stage_gaps(clean)
    categories, model = harmonise_table(table, "site", ["stage"], categorical=["stage"])
    assert model.categorical == {"stage": ["1", "2", "3"]} and model.continuous == []
    error = np.abs(stage_gaps(categories) - truth)
    assert error.mean() < 0.15 and error.max() < 0.4  # every stage's mean kept
    line, linear = harmonise_table(table, "site", ["stage"])  # numeric: a linear term, by default
    assert linear.continuous == ["stage"] and linear.categorical == {}
    assert (truth[0] - stage_gaps(line)[0]).mean() > 0.6  # the stage-2 bump is partly "harmonised" away
    covars = table[["site", "stage"]]
    with contextlib.redirect_stdout(io.StringIO()):
        reference = neuroCombat(table[features].to_numpy().T.copy(), covars, "site",
                                categorical_cols=["stage"])["data"].T
    assert np.max(np.abs(categories[features].to_numpy() - reference)) < 1e-6
    assert np.max(np.abs(categories[features].to_numpy() - line[features].to_numpy())) > 1.0
    with pytest.raises(InputError, match="'grade' are not among the covariates"):
        harmonise_table(table, "site", ["stage"], categorical=["grade"])

    parser = argparse.ArgumentParser()
    signature.add_parser(parser.add_subparsers(dest="command"))
    table.to_csv(tmp_path / "staged.csv", index=False)
    args = parser.parse_args(["harmonise", "--table", str(tmp_path / "staged.csv"), "--batch", "site",
                              "--covariate", "stage", "--categorical", "stage", "--out", str(tmp_path / "out")])
    assert args.run(args) == 0
    written = pd.read_csv(tmp_path / "out" / "harmonised.csv")
    assert np.allclose(written[features].to_numpy(), reference, atol=1e-6)
    saved = load_model(tmp_path / "out" / "combat_model.json")
    assert saved.categorical == {"stage": ["1", "2", "3"]}
    assert np.allclose(apply_to_table(saved, table)[features].to_numpy(), reference, atol=1e-6)


def test_logic_passes_categorical_covariates(context):
    table, _ = staged_cohort()
    node = arrays.add_frame(context, table, "staged")
    logic = SignatureLogic(context)
    linear = logic.fitted_model(logic.harmonise_feature_table(node, "site", ["stage"]))
    out = logic.harmonise_feature_table(node, "site", ["stage"], categorical=["stage"])
    assert linear.continuous == ["stage"] and logic.fitted_model(out).categorical == {"stage": ["1", "2", "3"]}
    expected, _ = harmonise_table(table, "site", ["stage"], categorical=["stage"])
    assert np.allclose(arrays.table_columns(out)["f1"], expected["f1"], atol=1e-9)


def test_constant_feature_passes_through_unchanged():
    values, batch, _ = multisite()
    values["flat"] = 4.0
    adjusted, model = harmonise(values, batch)
    assert model.unchanged == ["flat"] and "flat" in model.notes[0]
    assert np.all(adjusted["flat"] == 4.0)
    reference, _ = harmonise(values.drop(columns="flat"), batch)
    assert np.allclose(adjusted.drop(columns="flat").to_numpy(), reference.to_numpy(), atol=1e-12)


def test_logic_harmonises_into_a_new_node_and_applies_the_stored_model(context, tmp_path):
    table, _ = synthetic_cohort(60, seed=5, batch_shifts=(0.0, 2.0), age_effect=0.1)
    node = arrays.add_frame(context, table, "features")
    before = arrays.table_columns(node)
    logic = SignatureLogic(context)
    out = logic.harmonise_feature_table(node, "batch", covariates=["age"], parametric=False)
    assert arrays.table_columns(node) == before  # the input is never changed
    columns = arrays.table_columns(out)
    assert list(columns) == list(before)
    assert columns["case_id"] == before["case_id"] and columns["age"] == before["age"]
    model = logic.fitted_model(out)
    assert isinstance(model, ComBatModel) and not model.parametric and model.covariates == ["age"]
    assert "age" not in model.features and "label" not in model.features
    assert "original_constant" in model.unchanged
    site2 = np.array(before["batch"]) == "site2"
    gap_before = np.mean(np.array(before["original_c1"])[site2]) - np.mean(np.array(before["original_c1"])[~site2])
    gap_after = np.mean(np.array(columns["original_c1"])[site2]) - np.mean(np.array(columns["original_c1"])[~site2])
    assert abs(gap_after) < 0.2 * abs(gap_before)
    effect = arrays.table_columns(logic.batch_effect_table(node, out, "batch"))
    assert "age" not in effect["feature"] and max(effect["p_after"]) > 0.5 > min(effect["p_before"])
    path = logic.save_fitted_model(out, tmp_path / "combat.json")
    again = logic.apply_fitted_model(node, path)
    assert np.allclose(arrays.table_columns(again)["original_c1"], columns["original_c1"], atol=1e-9)
    assert again.GetAttribute(MODEL_ATTRIBUTE)


def test_logic_failures_leave_the_scene_unchanged(context):
    table, _ = synthetic_cohort(30, seed=6, batch_shifts=(0.0, 1.0))
    node = arrays.add_frame(context, table, "features")
    logic = SignatureLogic(context)
    ids = context.node_ids()
    with pytest.raises(InputError, match="no column\\(s\\) 'site'"):
        logic.harmonise_feature_table(node, "site")
    table["batch"] = "one site"
    single = arrays.add_frame(context, table, "single")
    ids = context.node_ids()
    with pytest.raises(InputError, match="at least two batches"):
        logic.harmonise_feature_table(single, "batch")
    with pytest.raises(InputError, match="carries no fitted"):
        logic.apply_fitted_model(single, node)
    assert context.node_ids() == ids


def test_batch_effect_figure_is_drawn_and_labelled(tmp_path):
    import matplotlib.image

    from virtualbiopsy.report import style

    values, batch, covariates = multisite()
    adjusted, _ = harmonise(values, batch, covariates)
    with style.checking() as found:
        path = plot_batch_effect(values, adjusted, batch, tmp_path / "batch.png")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 500 and image.shape[1] > 500 and image[..., :3].std() > 0.05
    assert found[str(path)] == []
