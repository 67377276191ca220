"""Outcome figures read at a glance (issue 14): each figure of the outcome demo, drawn from real models
trained on the synthetic cohort, has no unlabelled axis, unlabelled colour bar, empty legend entry or
overlapping text; survival groups are coloured by prognosis (poorest RMST vermillion), SHAP bars by
sign and end at the model's output; a missing value reads "missing (imputed)"; Grad-CAM says where
its mass lies."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex

from virtualbiopsy.prediction import figures
from virtualbiopsy.prediction.cohort import SIGNATURE, generate_cohort
from virtualbiopsy.prediction.data import prepare_dataset
from virtualbiopsy.prediction.explain import explain, mass_fraction, spill
from virtualbiopsy.prediction.models import TrainParameters, compare_models, train
from virtualbiopsy.prediction.survival import analyse_groups
from virtualbiopsy.report import style

FEATURES = ["adc_mean", "adc_p10", "t2_entropy", "dce_iauc60", "age_months", "noise_1", "noise_2"]


@pytest.fixture(scope="module")
def outcome():
    """Models of the demo kinds on a small cohort with missing cells: a logistic model and its SHAP values,
    a two-model comparison, k-means-like groups (the hidden phenotype) and Cox out-of-fold risk groups."""
    cohort = generate_cohort(n_patients=120, seed=2, missing_fraction=0.05)
    dataset = prepare_dataset(cohort.table, "mycn_amplified", features=FEATURES)
    parameters = TrainParameters(n_bootstrap=40, outer_folds=3, inner_folds=2, n_trees=20, seed=0,
                                 grid={"select__k": ["all"]})
    comparison, models = compare_models(dataset, ["logistic", "random_forest"], parameters)
    model = models["logistic"]
    missing = [i for i in range(dataset.n) if dataset.X.iloc[i].isna().any()][:3]
    rows = sorted(set(range(12)) | set(missing))
    shap = explain(model, dataset.X.iloc[rows], [dataset.case_ids[i] for i in rows])
    table = cohort.table
    phenotype = np.where(cohort.truth["aggressive"] == 1, "aggressive", "indolent")
    groups = analyse_groups(table["os_days"], table["os_event"], phenotype)
    survival = prepare_dataset(table, time="os_days", event="os_event", features=[*SIGNATURE, "age_months"])
    cox = train(survival, TrainParameters(model="cox", n_bootstrap=20, outer_folds=3, inner_folds=2,
                                          grid={"select__k": ["all"], "model__penalizer": [0.1]}))
    cv = cox.cv_predictions
    risk = analyse_groups(cv["os_days"], cv["os_event"], cv["risk_group"])
    return {"comparison": comparison, "model": model, "shap": shap, "groups": groups, "cox": cox, "risk": risk,
            "missing_cases": [dataset.case_ids[i] for i in missing]}


@pytest.fixture()
def drawn(monkeypatch):
    """The figures written through style.save, kept open for inspection: {file name: Figure}."""
    kept = {}
    save = style.save

    def keep(fig, path, note=True):
        kept[str(path).rsplit("/", 1)[-1]] = fig
        return save(fig, path, note)

    monkeypatch.setattr(style, "save", keep)
    return kept


def _draw_all(outcome, folder):
    shap, model = outcome["shap"], outcome["model"]
    cv = model.cv_predictions
    case = outcome["missing_cases"][0]
    prediction = float(shap.prediction[list(shap.values.index).index(case)])
    blob = _blob()
    return {
        "model_comparison": figures.model_comparison(folder / "model_comparison.png", outcome["comparison"]),
        "calibration": figures.probability_calibration(
            folder / "calibration.png", cv["mycn_amplified"].astype(int), cv["p_1"],
            label=figures.class_text("mycn_amplified", 1), negative=figures.class_text("mycn_amplified", 0)),
        "predicted_vs_observed": figures.predicted_vs_observed(folder / "predicted_vs_observed.png", cv,
                                                               model.endpoint),
        "predicted_vs_observed_cox": figures.predicted_vs_observed(folder / "predicted_vs_observed_cox.png",
                                                                   outcome["cox"].cv_predictions,
                                                                   outcome["cox"].endpoint),
        "shap_bar": figures.shap_bar(folder / "shap_importance.png", shap),
        "shap_beeswarm": figures.shap_beeswarm(folder / "shap_beeswarm.png", shap),
        "shap_waterfall": figures.shap_waterfall(folder / "shap_waterfall.png", shap, case),
        "patient_in_cohort": figures.patient_in_cohort(
            folder / "patient_in_cohort.png", model.feature_quantiles, shap.data.loc[case], model.used_features,
            shap.values.loc[case], title=f"Case {case}", prediction=prediction, output=shap.output),
        "kaplan_meier": figures.km_curves(folder / "kaplan_meier.png", outcome["groups"], "By phenotype"),
        "cox_risk_groups": figures.km_curves(folder / "cox_risk_groups.png", outcome["risk"], "Cox risk groups"),
        "gradcam": figures.gradcam_slice(folder / "gradcam.png", blob["image"], blob["cam"], blob["mask"],
                                         inside=mass_fraction(blob["cam"], blob["mask"])),
    }


def _blob():
    """A bright sphere in noise and a Grad-CAM-like map around it (a smooth bump, part of it outside)."""
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:12, :40, :56]
    mask = (zz - 6) ** 2 + (yy - 20) ** 2 + (xx - 30) ** 2 <= 25
    image = rng.normal(0, 1, mask.shape) + 4 * mask
    cam = np.exp(-((zz - 6) ** 2 + (yy - 21) ** 2 + (xx - 32) ** 2) / 30.0)
    return {"image": image, "cam": cam / cam.max(), "mask": mask}


@pytest.mark.slow
def test_every_outcome_figure_has_labelled_axes_and_colour_bars_and_no_overlapping_text(outcome, tmp_path):
    with style.checking() as found:
        paths = _draw_all(outcome, tmp_path)
    assert len(found) == len(paths)
    for name, path in paths.items():
        assert path.is_file(), name
        assert found[str(path)] == [], (name, found[str(path)])


def _hex(colour) -> str:
    return to_hex(colour).lower()


@pytest.mark.slow
def test_survival_groups_are_coloured_by_prognosis_with_censoring_marks_and_numbers_at_risk(outcome, tmp_path,
                                                                                          drawn):
    for key, file in (("groups", "kaplan_meier.png"), ("risk", "cox_risk_groups.png")):
        analysis = outcome[key]
        figures.km_curves(tmp_path / file, analysis)
        fig = drawn[file]
        ax = fig.axes[0]
        lines = {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}
        poorest = min(analysis.groups, key=lambda g: g.rmst)
        best = max(analysis.groups, key=lambda g: g.rmst)
        assert _hex(lines[f"km:{poorest.group}"].get_color()) == style.POOR.lower()
        assert _hex(lines[f"km:{best.group}"].get_color()) == style.GOOD.lower()
        for g in analysis.groups:
            marks = lines[f"censored:{g.group}"]
            assert marks.get_marker() == "+" and len(marks.get_xdata()) == g.n - g.events
            assert _hex(marks.get_color()) == _hex(lines[f"km:{g.group}"].get_color())
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert "censored" in legend
        assert any(f"RMST {poorest.rmst:.0f} days" in t and poorest.group in t for t in legend)
        table = next(a for a in fig.axes if a.get_gid() == "at-risk")
        texts = [t.get_text() for t in table.texts]
        for g in analysis.groups:  # everyone is at risk at t = 0, no one after the last follow-up
            assert g.group in texts and str(g.n) in texts
        assert table.get_position().y1 < ax.get_position().y0  # under the axis, below its x label


@pytest.mark.slow
def test_time_to_event_predictions_draw_events_in_the_poor_colour(outcome, tmp_path, drawn):
    cox = outcome["cox"]
    figures.predicted_vs_observed(tmp_path / "pvo.png", cox.cv_predictions, cox.endpoint)
    events, censored = drawn["pvo.png"].axes[0].collections[:2]
    assert _hex(events.get_facecolor()[0]) == style.POOR.lower()
    assert _hex(censored.get_edgecolor()[0]) == style.GOOD.lower()
    assert len(events.get_offsets()) == int(cox.cv_predictions["os_event"].sum())


@pytest.mark.slow
def test_waterfall_bars_are_coloured_by_sign_and_chain_from_the_base_value_to_the_prediction(outcome, tmp_path,
                                                                                            drawn):
    shap = outcome["shap"]
    for index, case in enumerate(list(shap.values.index)[:4]):
        figures.shap_waterfall(tmp_path / f"w{index}.png", shap, case)
        ax = drawn[f"w{index}.png"].axes[0]
        bars = sorted((p for p in ax.patches if str(p.get_gid()).startswith("contribution:")), key=lambda p: p.get_y())
        assert len(bars) == len(shap.values.columns)  # 7 features: all shown, none summed away
        for bar in bars:
            colour = _hex(bar.get_facecolor())
            width = bar.get_width()
            assert colour == (style.RAISES if width > 0 else style.LOWERS if width < 0 else style.REFERENCE).lower()
        # bottom bar starts at E[f(x)], each starts where the one below ends, the top one ends at f(x)
        assert bars[0].get_x() == pytest.approx(shap.base_value)
        for below, above in zip(bars, bars[1:]):
            assert above.get_x() == pytest.approx(below.get_x() + below.get_width())
        prediction = float(shap.prediction[index])
        assert bars[-1].get_x() + bars[-1].get_width() == pytest.approx(prediction, abs=1e-9)
        legend = [t.get_text() for t in drawn[f"w{index}.png"].legends[0].get_texts()]
        assert f"f(x) = {prediction:.3f}: this case's output" in legend
        assert any(t.startswith(f"E[f(x)] = {shap.base_value:.3f}") for t in legend)
        assert {"raises the prediction", "lowers the prediction"} <= set(legend)


@pytest.mark.slow
def test_a_missing_feature_value_reads_missing_imputed_with_units_on_the_others(outcome, tmp_path, drawn):
    shap = outcome["shap"]
    case = outcome["missing_cases"][0]
    absent = [f for f in shap.data.columns if not np.isfinite(shap.data.loc[case, f])]
    assert absent
    figures.shap_waterfall(tmp_path / "w.png", shap, case)
    labels = [t.get_text() for t in drawn["w.png"].axes[0].get_yticklabels()]
    for feature in absent:
        assert f"{feature} = missing (imputed)" in labels
    assert not any("nan" in label for label in labels)
    adc = shap.data.loc[case, "adc_mean"]
    assert f"adc_mean = {adc:.3g} ×10⁻³ mm²/s" in labels  # the cohort's ADC is about 1.1 (x 10^-3 mm²/s)


def test_units_come_from_the_name_and_the_scale_of_the_values():
    assert figures.feature_unit("adc_mean", [1.1, 0.9, np.nan]) == "×10⁻³ mm²/s"
    assert figures.feature_unit("adc_mean", [0.0011, 0.0009]) == "mm²/s"
    assert figures.feature_unit("age_months") == "months"
    assert figures.feature_unit("dce_iauc60") == "s"
    assert figures.feature_unit("tumour_volume_ml") == "mL"
    assert figures.feature_unit("noise_1") == ""
    assert figures.value_text(np.nan, "s") == "missing (imputed)"
    assert figures.class_text("mycn_amplified", 1, (0, 1)) == "mycn_amplified = yes"
    assert figures.class_text("stage", 1, (0, 1, 2)) == "stage = 1"  # a multi-class endpoint keeps its numbers
    assert figures.class_text("y", 2, (1, 2)) == "y = 2"
    assert figures.class_text("risk_class", "high") == "risk_class = high"
    assert figures.output_words("P(mycn_amplified = 1)", (0, 1)) == ("probability of mycn_amplified = yes",
                                                                    "probability")
    assert figures.output_words("P(stage = 1)", (0, 1, 2))[0] == "probability of stage = 1"
    assert figures.feature_unit("adc:original_shape_VoxelVolume", [5000.0]) == ""  # radiomics of an ADC image
    assert figures.feature_unit("adc_mean", [1100.0, 1250.0]) == "×10⁻⁶ mm²/s"
    assert figures.feature_unit("wash_in_per_s") == "1/s"
    assert figures.output_words("log-odds of y = 1")[1] == "log-odds"


def test_gradcam_shares_split_the_whole_map_and_the_caption_states_them():
    from virtualbiopsy.demo_steps.outcome import _gradcam_caption

    blob = _blob()
    cam, mask = blob["cam"], blob["mask"]
    kidney = np.zeros(mask.shape, bool)
    kidney[:, 30:, :] = True
    where = spill(cam, mask, spacing=(4.0, 1.0, 1.0), band_mm=3.0, tissues={"kidney": kidney})
    assert where["inside"] == pytest.approx(mass_fraction(cam, mask))
    assert where["inside"] + where["band"] + where["beyond_band"] == pytest.approx(1.0)
    assert where["inside"] + sum(where["tissues"].values()) == pytest.approx(1.0)
    assert where["tissues"]["kidney"] == pytest.approx(float(cam[kidney & ~mask].sum() / cam.sum()))
    caption = _gradcam_caption(where)
    assert f"{where['inside']:.0%} of the map's mass lies inside the tumour outline" in caption
    assert f"kidney ({where['tissues']['kidney']:.0%})" in caption


@pytest.mark.slow
def test_gradcam_panels_have_one_size_and_a_labelled_colour_bar(tmp_path, drawn):
    blob = _blob()
    figures.gradcam_slice(tmp_path / "g.png", blob["image"], blob["cam"], blob["mask"], inside=0.5)
    fig = drawn["g.png"]
    image, overlay, bar = fig.axes
    assert image.get_position().bounds[2:] == pytest.approx(overlay.get_position().bounds[2:])
    assert bar.get_position().height == pytest.approx(overlay.get_position().height)
    assert bar.get_ylabel() == "Grad-CAM, normalised 0-1 (< 0.05 not drawn)"
    assert "50% of the map's mass inside the outline" in overlay.get_title()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["tumour outline (segmentation)"]


def test_calibration_and_predicted_vs_observed_name_the_endpoint_classes(outcome, tmp_path, drawn):
    model = outcome["model"]
    cv = model.cv_predictions
    figures.predicted_vs_observed(tmp_path / "p.png", cv, model.endpoint)
    ticks = [t.get_text() for t in drawn["p.png"].axes[0].get_xticklabels()]
    counts = cv["mycn_amplified"].value_counts()
    assert ticks == [f"mycn_amplified = no\n(n = {counts[0]})", f"mycn_amplified = yes\n(n = {counts[1]})"]
    figures.probability_calibration(tmp_path / "c.png", cv["mycn_amplified"], cv["p_1"], label="mycn_amplified = yes",
                                    negative="mycn_amplified = no")
    legend = [t.get_text() for t in drawn["c.png"].axes[0].get_legend().get_texts()]
    assert legend == [f"observed: mycn_amplified = no (n = {counts[0]})",
                      f"observed: mycn_amplified = yes (n = {counts[1]})"]


def test_numbers_at_risk_and_censoring_times_come_from_each_groups_follow_up():
    from virtualbiopsy.prediction.survival import kaplan_meier

    time = np.array([2, 3, 3, 5, 6, 6, 8, 9, 10, 12], float)
    event = np.array([1, 1, 0, 1, 1, 1, 0, 1, 0, 1])
    (group,), _ = kaplan_meier(time, event, ["a"] * 10)
    assert list(group.at_risk([0, 3, 3.5, 12, 13])) == [10, 9, 7, 1, 0]  # followed to at least t
    assert list(group.censored_times) == [3, 8, 10]
    assert list(group.survival_at([0, 2, 2.5, 3, 12])) == pytest.approx([1.0, 0.9, 0.9, 0.8, 0.0])


def test_a_ci_that_leaves_out_its_estimate_and_an_empty_grad_cam_map_still_draw(tmp_path):
    """A percentile bootstrap CI may exclude the estimate; a Grad-CAM map may be empty: both draw, labelled."""
    import pandas as pd

    table = pd.DataFrame({"model": ["logistic", "svm"], "auc": [0.70, 0.80], "auc_ci_low": [0.72, 0.70],
                          "auc_ci_high": [0.90, 0.90]})
    image = np.random.default_rng(0).random((4, 20, 20))
    mask = np.zeros(image.shape, bool)
    mask[2, 5:10, 5:10] = True
    with style.checking() as found:
        figures.model_comparison(tmp_path / "m.png", table)
        figures.gradcam_slice(tmp_path / "g.png", image, np.zeros_like(image), mask)
    assert all(problems == [] for problems in found.values()) and len(found) == 2
