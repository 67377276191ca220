"""The demo's HTML report (``report.html``): every figure the demo writes, every table with its
definitions, results far from the phantom's truth flagged, and a link to every output file.

Kept apart from :mod:`virtualbiopsy.demo` (which runs the steps) so each reads as one idea.
"""

from __future__ import annotations

import csv
import math
import platform
from pathlib import Path

from virtualbiopsy import __version__
from virtualbiopsy.mrml import arrays
from virtualbiopsy.radiomics.ibsi import summary_line
from virtualbiopsy.report.html import Cell, Report
from virtualbiopsy.segmentation.metrics import METRIC_WORDS

FAR_FROM_TRUTH_PERCENT = 20.0
"""A value further than this from the phantom's truth (relative) is flagged in the report."""

# Radiomics features the report shows (all go to the CSV).
RADIOMICS_SHOWN = ("original_shape_MeshVolume", "original_shape_Sphericity", "original_firstorder_Mean",
                   "original_firstorder_Entropy", "original_glcm_Contrast", "original_glszm_ZoneEntropy")
NOT_FEATURES = {"segment", "segment_id", "images"}  # identifying columns of the radiomics table

OUTCOME_CAPTIONS = {
    "model_comparison": "Every model's out-of-fold AUC with its 95 % bootstrap CI (nested cross-validation)",
    "predicted_vs_observed": "Out-of-fold predicted probability for the patients of each observed outcome",
    "calibration": "Predicted probabilities and calibration (observed rate per bin, per-bin error)",
    "shap_importance": "Mean |SHAP value| per feature over the explained patients (logistic model)",
    "shap_beeswarm": "SHAP values per patient (logistic model)",
    "shap_waterfall": "One patient's prediction explained, feature by feature",
    "patient_in_cohort": "One patient's feature values within the training cohort's distributions",
    "kaplan_meier": "Kaplan–Meier by image-signature cluster, with the number at risk",
    "cox_risk_groups": "Kaplan–Meier by Cox-model risk group (out-of-fold prognostic index)",
    "gradcam": "Grad-CAM of the demo CNN on the sample study (overlay volume in the scene)",
}


def flagged(value: float, truth: float, digits: int = 3, scale: float = 1.0) -> Cell | float:
    """``value`` as a cell, flagged (CSS class ``flag`` and a note) when it is further than
    :data:`FAR_FROM_TRUTH_PERCENT` from ``truth``; NaN when either is undefined."""
    if not (math.isfinite(value) and math.isfinite(truth)):
        return float("nan") if not math.isfinite(value) else value * scale
    text = f"{value * scale:.{digits}g}"
    if truth == 0:
        return Cell(text, "num")
    percent = 100.0 * (value - truth) / abs(truth)
    if abs(percent) > FAR_FROM_TRUTH_PERCENT:
        return Cell(f"{text} ⚠ {percent:+.0f} % from truth", "num flag",
                    f"more than {FAR_FROM_TRUTH_PERCENT:g} % from the phantom's true value")
    return Cell(text, "num")


def write_report(result, study, adc_columns: dict, volumes: dict) -> Path:
    """Write ``result.report`` for a :class:`virtualbiopsy.demo.DemoResult`."""
    report = Report("Virtual Biopsy — demo on the synthetic sample study")
    report.paragraph(
        "Synthetic data and a research tool: nothing here is for clinical decisions. The study is the seeded "
        "phantom described in virtualbiopsy/phantom/README.md, so every value below can be checked against truth. "
        f"Values further than {FAR_FROM_TRUTH_PERCENT:g} % from the truth are flagged ⚠. Click a figure to open "
        "it at full size.", "warning")
    _study(report, result, study)
    _segmentation(report, result, study)
    report.heading("Segment volumes")
    report.table(volumes, "Ground-truth segments of the sample study.")
    _adc(report, result, adc_columns)
    _habitats(report, result)
    report.heading("DCE")
    report.figure(result.figures["dce_curves"], "DCE signal per tissue: measured means (markers) and the true "
                  "curves (lines); the two kidneys share one true curve", result.folder)
    _radiomics(report, result)
    _outcome(report, result)
    _outputs(report, result)
    report.paragraph(f"virtualbiopsy {__version__}, Python {platform.python_version()}.")
    return report.write(result.report)


def _study(report: Report, result, study) -> None:
    report.heading("Study")
    volumes_ml = study.volumes_ml()
    report.paragraph(
        f"Seed {study.seed}. T2w {study.t2w.shape[::-1]} voxels of {tuple(study.t2_grid.spacing)} mm; DWI/DCE "
        f"{study.dwi.shape[1:][::-1]} voxels of {tuple(study.dwi_grid.spacing)} mm; b-values "
        f"{', '.join(f'{b:g}' for b in study.b_values)} s/mm²; {len(study.dce_times)} DCE frames, bolus arrival "
        f"{study.t0:.1f} s. True tumour volume {volumes_ml['tumour']:.1f} mL "
        f"(rim {volumes_ml['rim']:.1f} mL, necrotic core {volumes_ml['core']:.1f} mL).")
    report.figure(result.figures["overview"], "T2w with the true tissue outlines, DWI at the lowest and highest b, "
                  "fitted ADC (inside the body) and true ADC; axial, radiological view", result.folder)


def _segmentation(report: Report, result, study) -> None:
    report.heading("Tumour segmentation with uncertainty (NeuroblastomaSeg)")
    summary = result.segmentation
    truth_ml = study.volumes_ml()["tumour"]
    volume = flagged(summary["tumour_volume_ml"], truth_ml, 3)
    volume_text = volume.text if isinstance(volume, Cell) else f"{volume:.3g}"
    report.paragraph(
        f"{summary['model']}. DEMO model trained on synthetic phantoms only. Predicted tumour {volume_text} mL "
        f"(truth {truth_ml:.1f} mL); {100 * summary['uncertain_fraction']:.1f} % of its voxels are uncertain "
        f"(normalised entropy ≥ {summary['threshold']}); slices to review first, most uncertain first: "
        f"{', '.join(map(str, summary['slices_to_review']))}.")
    metrics = result.segmentation_metrics
    report.table({"metric": [METRIC_WORDS.get(m, m) for m in metrics["metric"]], "value": list(metrics["value"]),
                  "unit": list(metrics["unit"]), "definition": list(metrics["description"])},
                 "AI segment vs the true tumour (standing in for the radiologist's corrected segment).",
                 undefined="the masks do not overlap or one is empty")
    report.paragraph(
        "TP, FP, FN: voxels in both masks, in the AI mask only, in the corrected mask only. FPR here is "
        "FP/(TP+FN), as in the source study (AI volume outside the corrected mask per corrected volume; not the "
        "FP/(FP+TN) of ROC analysis), and FNR = FN/(TP+FN). The surface-DSC tolerance is stated in its "
        "definition.", "caption")
    report.figure(result.figures["segmentation"], "Slices to review, ranked by summed uncertainty: AI outline "
                  "(orange), true outline (green), mean tumour probability ≥ 10 % (dashed blue), and the "
                  "normalised predictive entropy", result.folder)


def _adc(report: Report, result, adc_columns: dict) -> None:
    report.heading("ADC per tissue (FitClusterFit)")
    scaled = {
        "segment": adc_columns["segment"],
        "voxels": adc_columns["voxels"],
        "ADC mean (×10⁻³ mm²/s)": [flagged(v, t, 3, 1e3) for v, t in
                                   zip(adc_columns["adc_mean"], adc_columns["adc_true"])],
        "ADC SD (×10⁻³ mm²/s)": [v * 1e3 for v in adc_columns["adc_sd"]],
        "ADC true (×10⁻³ mm²/s)": [v * 1e3 for v in adc_columns["adc_true"]],
        "bias (%)": [round(v, 2) for v in adc_columns["bias_percent"]],
    }
    report.table(scaled, "Voxel-wise log-linear fit, mean over each tissue's interior (one-voxel erosion), "
                 "against truth. tables/adc_by_tissue.csv has the same in mm²/s.", digits=3)
    report.figure(result.figures["adc_by_tissue"], "ADC per tissue: voxel-wise fit (mean ± SD) and truth",
                  result.folder)


def _habitats(report: Report, result) -> None:
    report.heading("Habitats: Fit-Cluster-Fit on DWI and DCE (FitClusterFit)")
    fcf = result.fit_cluster_fit
    report.paragraph(fcf.text)
    truth = fcf.extra["truth"]
    columns = {
        "habitat": truth["habitat"], "voxels": truth["voxels"], "tissue": truth["tissue"],
        "tissue share": truth["tissue_share"],
        "ADC refit (×10⁻³ mm²/s)": [flagged(v, t, 3, 1e3) for v, t in zip(truth["adc"], truth["adc_true"])],
        "ADC true (×10⁻³ mm²/s)": [v * 1e3 for v in truth["adc_true"]],
        "ADC error (%)": truth["adc_error_percent"],
        "voxel-mean ADC (×10⁻³ mm²/s)": [v * 1e3 for v in truth["voxel_mean_adc"]],
        "iAUC60 (s)": [flagged(v, t, 3) for v, t in zip(truth["iauc60"], truth["iauc60_true"])],
        "iAUC60 true (s)": truth["iauc60_true"],
    }
    mixed = "mixed tissues, no single truth"
    report.table(columns, "Each habitat's refitted ADC and iAUC60 against the tissue most of its voxels belong to; "
                 "voxel-mean ADC is the mean of the voxel-wise fits over the same voxels.", digits=3,
                 undefined={c: mixed for c in ("ADC true (×10⁻³ mm²/s)", "ADC error (%)", "iAUC60 true (s)")})
    for key, caption in (("signal_vs_b", "Mean signal per habitat against b, with the refit"),
                         ("habitat_map", "Habitats on the b = 0 image"),
                         ("habitat_enhancement", "Mean DCE enhancement per habitat")):
        report.figure(fcf.figures[key], caption, result.folder)


def _radiomics(report: Report, result) -> None:
    report.heading("Radiomics (RadiomicsBiomarkers)")
    radiomics = result.radiomics
    columns = arrays.table_columns(radiomics.nodes["features"])
    features = [c for c in columns if c.split(":")[-1] not in NOT_FEATURES]
    shown = [c for c in features if c.split(":")[-1] in RADIOMICS_SHOWN]
    report.table({"feature": shown, **{str(columns["segment"][r]): [columns[c][r] for c in shown]
                                       for r in range(len(columns["segment"]))}},
                 f"A few of the {len(features)} pyradiomics features of the tumour rim and necrotic core on the "
                 "T2w (study preset: fixed bin width, no resampling); all are in radiomics/t2w_tumour_features.csv "
                 "with the settings and library versions beside them.", digits=4)
    report.paragraph(f"{summary_line(radiomics.summary)} Full table: ",
                     links={"radiomics/ibsi/ibsi_compliance.html": "radiomics/ibsi/ibsi_compliance.html"})


def _outcome(report: Report, result) -> None:
    outcome = result.outcome
    summary = outcome.summary
    report.heading("Outcome models on a synthetic cohort (OutcomePredictor)")
    report.paragraph(
        "A synthetic cohort of 200 patients with known signal (virtualbiopsy/prediction/README.md): "
        f"'{summary['informative_feature']}' drives the binary endpoint (MYCN amplification) and a hidden "
        "aggressive phenotype shortens survival. Every model is a nested cross-validated pipeline (imputation, "
        f"scaling and feature selection inside the folds). Logistic regression: AUC {summary['auc']:.3f} "
        f"[{summary['auc_ci'][0]:.3f}, {summary['auc_ci'][1]:.3f}] (95 % bootstrap CI, out-of-fold); SHAP "
        f"(shapiq) ranks '{summary['top_shap_feature']}' first. k-means (k = 2) on the image signature: "
        "median survival " + " vs ".join(f"{g}: {v:.0f} days" for g, v in summary["median_survival"].items())
        + f", log-rank p = {summary['logrank_p']:.2g}. Cox model C-index {summary['cox_c_index']:.2f}.")
    with open(outcome.tables["model_comparison"], newline="") as stream:
        rows = list(csv.DictReader(stream))
    if rows:
        names = {"model": "model", "auc": "AUC", "auc_ci_low": "AUC 95 % CI low", "auc_ci_high": "AUC 95 % CI high",
                 "balanced_accuracy": "balanced accuracy", "calibration_slope": "calibration slope"}
        columns = [c for c in rows[0] if c in names]
        report.table({names[c]: [r[c] if c == "model" else float(r[c]) for r in rows] for c in columns},
                     "Model comparison: out-of-fold predictions of nested cross-validation, 95 % bootstrap CIs.",
                     digits=3)
        report.definitions({
            "AUC": "area under the ROC curve: the probability that a random patient with the endpoint is ranked "
                   "above a random patient without it (0.5 = chance, 1 = perfect)",
            "balanced accuracy": "mean of sensitivity and specificity at probability 0.5",
            "calibration slope": "slope of the observed log-odds on the predicted log-odds (1 = ideal; < 1: "
                                 "predictions too extreme)"})
    captions = {**OUTCOME_CAPTIONS, **outcome.captions}
    for key, path in outcome.figures.items():
        report.figure(path, captions.get(key, key.replace("_", " ")), result.folder)


def _outputs(report: Report, result) -> None:
    """Every file the demo wrote, linked; a DICOM series folder is one row (its slices are many)."""
    report.heading("Outputs")
    folder = Path(result.folder)
    series = sorted(p for p in (folder / "study" / "dicom").glob("*") if p.is_dir())
    files = [p for p in folder.rglob("*") if p.is_file() and p != result.report
             and not any(s in p.parents for s in series)]
    report.links(files, folder, "Every file of this demo folder (the report itself aside).")
    if series:
        report.links(series, folder, "The study written as DICOM MR series (one file per slice).")
