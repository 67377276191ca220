"""The OutcomePredictor part of ``virtualbiopsy demo``: models on a synthetic cohort with known signal.

:func:`demo_step` joins the cohort's image-feature and clinical tables as Table nodes, compares the
four classifiers for the binary endpoint, saves the best-documented one (logistic regression) with
its model card, explains it with SHAP, clusters patients on the image signature for Kaplan–Meier
and log-rank, trains a Cox model, and (given the study's image and tumour segmentation) adds a
Grad-CAM overlay of the demo CNN with where its mass lies (inside the tumour, in a 5 mm band, on
which other segment). Figures and CSV tables go to ``out_dir``; ``StepOutputs.captions`` says what
each figure shows (keyed like ``figures``), with the numbers of this run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from virtualbiopsy import attributes
from virtualbiopsy.demo_steps import StepOutputs
from virtualbiopsy.progress import as_task


def demo_step(context, out_dir, progress=None, *, volume_node=None, segmentation_node=None, seed: int = 0,
              n_patients: int = 200) -> StepOutputs:
    """Run the outcome-prediction demo; returns the paths written and the key numbers.

    ``volume_node`` / ``segmentation_node`` (optional): the study's T2w and tumour segmentation, for
    the Grad-CAM overlay. About half a minute on two CPU cores.
    """
    from virtualbiopsy.logic.outcome_predictor import (
        EndpointParameters,
        OutcomePredictorLogic,
        SurvivalParameters,
        TrainModelParameters,
    )
    from virtualbiopsy.mrml.arrays import frame_from_table_node
    from virtualbiopsy.mrml.io import save_node, write_csv
    from virtualbiopsy.prediction import figures
    from virtualbiopsy.prediction.cohort import clinical_split, generate_cohort
    from virtualbiopsy.prediction.data import prepare_dataset
    from virtualbiopsy.prediction.explain import ranking
    from virtualbiopsy.prediction.models import TrainParameters, compare_models

    task = as_task(progress)
    out = Path(out_dir)
    tables_dir, figures_dir = out / "tables", out / "figures"
    tables_dir.mkdir(parents=True, exist_ok=True)
    result = StepOutputs()
    logic = OutcomePredictorLogic(context)

    task.update(0.0, "Synthetic cohort with known signal")
    cohort = generate_cohort(n_patients=n_patients, seed=seed, missing_fraction=0.03)
    image, clinical = clinical_split(cohort)
    image_node = logic.add_frame(image, "Cohort image features")
    clinical_node = logic.add_frame(clinical, "Cohort clinical data")
    joined = logic.join_tables([image_node, clinical_node], name="Cohort")
    result.tables["cohort"] = write_csv(joined, tables_dir / "cohort.csv")
    frame = frame_from_table_node(joined)
    features = cohort.features

    task.update(0.05, "Comparing models (nested cross-validation)")
    dataset = prepare_dataset(frame, "mycn_amplified", features=features)
    parameters = TrainParameters(n_bootstrap=500, n_trees=50, seed=seed)
    comparison, models = compare_models(dataset, ["logistic", "random_forest", "gradient_boosting", "svm"],
                                        parameters, task.sub(0.05, 0.55))
    result.tables["model_comparison"] = _csv(comparison, tables_dir / "model_comparison.csv")
    result.figures["model_comparison"] = figures.model_comparison(figures_dir / "model_comparison.png", comparison)

    task.update(0.55, "Logistic model: SHAP, model card")
    model_folder = out / "model_logistic"
    if (model_folder / "model_card.json").is_file():  # the demo's own output from an earlier run
        shutil.rmtree(model_folder)
    train = TrainModelParameters(EndpointParameters("mycn_amplified", features=features), model="logistic",
                                 n_bootstrap=500, seed=seed, explain_cases=100,
                                 model_folder=str(model_folder))
    trained = logic.train_model(joined, train, task.sub(0.55, 0.75))
    model, shap = trained.model, trained.shap
    result.extra["model_folder"] = trained.folder
    result.tables["metrics"] = _csv(model.metrics, tables_dir / "metrics_logistic.csv")
    result.tables["shap_importance"] = write_csv(trained.importance, tables_dir / "shap_importance.csv")
    result.tables["cv_predictions"] = _csv(model.cv_predictions, tables_dir / "cv_predictions.csv")
    cv = model.cv_predictions
    positive = figures.class_text("mycn_amplified", 1, model.endpoint.classes)
    result.figures["calibration"] = figures.probability_calibration(
        figures_dir / "calibration.png", cv["mycn_amplified"].astype(int), cv["p_1"], label=positive,
        negative=figures.class_text("mycn_amplified", 0, model.endpoint.classes))
    result.figures["predicted_vs_observed"] = figures.predicted_vs_observed(
        figures_dir / "predicted_vs_observed.png", cv, model.endpoint)
    result.figures["shap_bar"] = figures.shap_bar(figures_dir / "shap_importance.png", shap)
    result.figures["shap_beeswarm"] = figures.shap_beeswarm(figures_dir / "shap_beeswarm.png", shap)
    case = str(shap.values.index[int(abs(shap.prediction - 0.5).argmax())])  # a confidently predicted case
    result.figures["shap_waterfall"] = figures.shap_waterfall(figures_dir / "shap_waterfall.png", shap, case)
    prediction = float(shap.prediction[list(shap.values.index).index(case)])
    result.figures["patient_in_cohort"] = figures.patient_in_cohort(
        figures_dir / "patient_in_cohort.png", model.feature_quantiles, shap.data.loc[case], model.used_features,
        shap.values.loc[case], title=f"Case {case} within the training cohort", prediction=prediction,
        output=shap.output, classes=shap.classes)

    task.update(0.75, "Survival by image-signature cluster")
    signature = list(cohort.truth["signature"])
    survival = logic.survival_analysis(joined, SurvivalParameters("os_days", "os_event", signature, k=2, seed=seed),
                                       task.sub(0.75, 0.8))
    result.tables["survival_by_cluster"] = write_csv(survival.summary, tables_dir / "survival_by_cluster.csv")
    result.tables["logrank"] = write_csv(survival.logrank, tables_dir / "logrank.csv")
    result.figures["kaplan_meier"] = figures.km_curves(figures_dir / "kaplan_meier.png", survival.analysis,
                                                       "Overall survival by image-signature cluster (k = 2)")

    task.update(0.8, "Cox model")
    cox = logic.train_model(joined, TrainModelParameters(
        EndpointParameters(time="os_days", event="os_event", features=list(cohort.truth["signature"]) + ["age_months"]),
        model="cox", n_bootstrap=300, seed=seed, explain_cases=60), task.sub(0.8, 0.92))
    result.tables["metrics_cox"] = _csv(cox.model.metrics, tables_dir / "metrics_cox.csv")
    from virtualbiopsy.prediction.survival import analyse_groups

    cox_cv = cox.model.cv_predictions
    risk = analyse_groups(cox_cv["os_days"], cox_cv["os_event"], cox_cv["risk_group"])
    result.figures["cox_risk_groups"] = figures.km_curves(figures_dir / "cox_risk_groups.png", risk,
                                                          "Cox risk groups (out-of-fold prognostic index)")

    if volume_node is not None:
        task.update(0.92, "Grad-CAM overlay (demo CNN)")
        from virtualbiopsy.mrml.arrays import array_from_volume, mask_from_segment, segment_ids
        from virtualbiopsy.mrml.geometry import Geometry
        from virtualbiopsy.prediction.explain import spill

        tumour = None
        if segmentation_node is not None:  # the tumour segments (all segments if none is named so)
            seg = segmentation_node.GetSegmentation()
            ids = segment_ids(segmentation_node)
            tumour = [s for s in ids if any(w in seg.GetSegment(s).GetName().lower() for w in ("tumour", "tumor"))]
            tumour = tumour or ids
        overlay = logic.gradcam_overlay(volume_node, segmentation_node, tumour, progress=task.sub(0.92, 0.99))
        result.nodes["gradcam"] = overlay
        save_node(overlay, out / "gradcam.nrrd")
        image, cam = array_from_volume(volume_node), array_from_volume(overlay)
        spacing = tuple(float(v) for v in Geometry.from_node(volume_node).spacing[::-1])  # (k, j, i) in mm
        mask, where = None, None
        if segmentation_node is not None:
            mask = sum(mask_from_segment(segmentation_node, s, volume_node) for s in tumour) > 0
            others = {seg.GetSegment(s).GetName(): mask_from_segment(segmentation_node, s, volume_node)
                      for s in ids if s not in tumour}
            where = spill(cam, mask, spacing, band_mm=5.0, tissues=others)
            result.summary["gradcam_fraction_in_segment"] = float(
                overlay.GetAttribute(attributes.GRADCAM_FRACTION_IN_SEGMENT))
            result.summary["gradcam_spill"] = where
        result.figures["gradcam"] = figures.gradcam_slice(figures_dir / "gradcam.png", image, cam, mask,
                                                          aspect=spacing[1] / spacing[2],
                                                          inside=None if where is None else where["inside"])
        result.captions["gradcam"] = _gradcam_caption(where)

    metrics = model.metrics.set_index("metric")
    clusters = survival.analysis.summary.set_index("group")
    result.summary.update({
        "auc": float(metrics.loc["auc", "estimate"]), "auc_ci": [float(metrics.loc["auc", "ci_low"]),
                                                               float(metrics.loc["auc", "ci_high"])],
        "top_shap_feature": str(ranking(shap)["feature"].iloc[0]),
        "informative_feature": cohort.truth["informative"],
        "logrank_p": float(survival.analysis.logrank["p"].iloc[0]),
        "median_survival": {g: float(clusters.loc[g, "median_survival"]) for g in clusters.index},
        "rmst": {g: float(clusters.loc[g, "rmst"]) for g in clusters.index},
        "cox_c_index": float(cox.model.metrics.set_index("metric").loc["c_index", "estimate"]),
        "best_model": str(comparison["model"].iloc[0]),
    })
    result.captions.update(_captions(result.summary, case, prediction, shap))
    result.nodes.update({"cohort": joined, "metrics": trained.metrics, "survival": survival.summary})
    (out / "outcome_summary.json").write_text(json.dumps(result.summary, indent=2))
    task.update(1.0, "Outcome prediction done")
    return result


def _gradcam_caption(where: dict | None) -> str:
    """What the Grad-CAM figure shows and where the map's mass lies (``where``: :func:`~explain.spill`)."""
    from virtualbiopsy.logic.outcome_predictor import GradCamParameters

    margin = GradCamParameters().margin_mm
    text = ("Grad-CAM of the demo CNN (a bright-blob detector trained on synthetic noise images, not a clinical "
            "model) over the sample study's T2w, on the axial slice holding most of the map: bright is where the "
            "network's evidence for 'bright blob present' comes from (normalised 0-1 over the volume; the CNN sees "
            f"the tumour's bounding box plus {margin:g} mm, the map is 0 elsewhere).")
    if where is None:
        return text
    if where["inside"] + where["band"] + where["beyond_band"] <= 0:
        return text + " The map is empty: the network found no evidence anywhere in this image."
    text += (f" Over the whole volume, {where['inside']:.0%} of the map's mass lies inside the tumour outline, "
             f"{where['band']:.0%} within {where['band_mm']:g} mm outside it and {where['beyond_band']:.0%} "
             "further out")
    outside = sorted(((name, share) for name, share in where["tissues"].items() if share >= 0.005),
                     key=lambda item: -item[1])
    if outside:
        text += "; the rest spills onto " + ", ".join(f"{name} ({share:.0%})" for name, share in outside)
    return text + "."


def _captions(summary: dict, case: str, prediction: float, shap) -> dict[str, str]:
    """Captions of the outcome figures (the report may use them beside each figure)."""
    from virtualbiopsy.prediction.figures import output_words

    what, unit = output_words(shap.output, shap.classes)
    rmst = ", ".join(f"{g} {v:.0f} days" for g, v in summary["rmst"].items())
    return {
        "model_comparison": "AUC (area under the ROC curve) of each classifier for mycn_amplified, out-of-fold "
                            "predictions of nested cross-validation, with 95 % bootstrap CIs; 0.5 is chance.",
        "calibration": "Out-of-fold predicted probability of mycn_amplified = yes: its density per observed class "
                       "(top), the observed rate per probability bin with Wilson 95 % CIs against the diagonal of "
                       "perfect calibration (middle) and each bin's error, predicted - observed, with its number "
                       "of cases (bottom).",
        "predicted_vs_observed": "Out-of-fold predicted probability of mycn_amplified = yes for the cases that "
                                 "were not amplified and those that were (boxes: quartiles and median).",
        "shap_bar": f"Mean |SHAP value| per feature over the explained cases, in {unit} units ({what}).",
        "shap_beeswarm": f"SHAP value of each feature for each explained case, in {unit} units ({what}); colour: "
                         "the feature's value (grey: missing, imputed by the model).",
        "shap_waterfall": f"How the logistic model's output for case {case} ({what} = {prediction:.3f}) is built "
                          "from the mean output over the background E[f(x)], feature by feature: vermillion bars "
                          "raise it, blue bars lower it; feature values with their units.",
        "patient_in_cohort": f"Case {case}'s feature values (diamonds) within the training cohort's distributions "
                             f"(5-95 % and 25-75 % bands, median), with each feature's SHAP value ({unit}).",
        "kaplan_meier": "Kaplan–Meier overall survival of the two k-means clusters of the image signature, 95 % "
                        f"confidence bands, censoring marks (+) and the number at risk; RMST {rmst} "
                        f"(log-rank p = {summary['logrank_p']:.2g}). Poorer RMST vermillion, better blue.",
        "cox_risk_groups": "Kaplan–Meier overall survival of the Cox model's out-of-fold risk groups (prognostic "
                           "index above / below the median of its training folds), with censoring marks and the "
                           "number at risk. Poorer RMST vermillion, better blue.",
    }


def _csv(frame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
