"""The whole pipeline on the bundled sample study: what ``virtualbiopsy demo`` runs.

Steps (each existing module's logic on real MRML nodes): generate and write the sample study,
load it into a fresh scene through storage nodes, tabulate segment volumes (NeuroblastomaSeg),
T2w statistics per tissue (RadiomicsBiomarkers), fit the ADC map (FitClusterFit), join the
per-tissue tables (OutcomePredictor), write the study as DICOM and export the AI segmentation
and ADC map as DICOM SEG / SR / Parametric Maps, then write figures, CSV tables, an HTML report and the
scene bundle ``scene.mrb``. Later issues add their steps here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from virtualbiopsy.demo_report import write_report
from virtualbiopsy.demo_steps import StepOutputs
from virtualbiopsy.demo_steps.fit_cluster_fit import demo_step as fcf_demo_step
from virtualbiopsy.demo_steps.outcome import demo_step as outcome_demo_step
from virtualbiopsy.demo_steps.radiomics import demo_step as radiomics_demo_step
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
from virtualbiopsy.logic.outcome_predictor import OutcomePredictorLogic
from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.phantom.tissues import TISSUES
from virtualbiopsy.progress import as_task
from virtualbiopsy.report import figures
from virtualbiopsy.sample_study import load_study, write_study


@dataclass
class DemoResult:
    folder: Path
    scene: Path
    report: Path
    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    context: MRMLContext | None = None
    segmentation: dict = field(default_factory=dict)
    segmentation_metrics: dict = field(default_factory=dict)
    radiomics: StepOutputs | None = None
    fit_cluster_fit: StepOutputs | None = None
    dicom: list[Path] = field(default_factory=list)
    outcome: StepOutputs | None = None


def adc_by_tissue(adc: np.ndarray, labels: np.ndarray) -> dict[str, list]:
    """Fitted ADC per tissue over its interior (one-voxel erosion keeps partial volume out)."""
    table: dict[str, list] = {k: [] for k in ("segment", "voxels", "adc_mean", "adc_sd", "adc_true", "bias_percent")}
    for t in TISSUES[1:]:
        interior = ndimage.binary_erosion(labels == t.label)
        if not interior.any():
            continue
        values = adc[interior]
        table["segment"].append(t.name)
        table["voxels"].append(int(values.size))
        table["adc_mean"].append(float(values.mean()))
        table["adc_sd"].append(float(values.std(ddof=1)))
        table["adc_true"].append(t.adc)
        table["bias_percent"].append(100.0 * (values.mean() - t.adc) / t.adc)
    return table


def run_demo(out: str | Path, seed: int = 0, progress=None) -> DemoResult:
    """Run every existing pipeline step on the sample study of ``seed``; outputs go to ``out``."""
    task = as_task(progress)
    out = Path(out)
    tables_dir, figures_dir = out / "tables", out / "figures"
    study = generate_study(seed, progress=task.sub(0.0, 0.2))
    write_study(study, out / "study", progress=task.sub(0.2, 0.35))

    context = MRMLContext.create()
    loaded = load_study(context, out / "study", progress=task.sub(0.35, 0.5))
    nodes = loaded.nodes
    result = DemoResult(out, out / "scene.mrb", out / "report.html", context=context)

    task.update(0.5, "Segment volumes")
    volumes = NeuroblastomaSegLogic(context).segment_volumes_table(nodes["segmentation"])
    result.tables["segment_volumes"] = io.write_csv(volumes, tables_dir / "segment_volumes.csv")

    segmentation = _segmentation_step(context, study, nodes, result, out, task.sub(0.5, 0.55))

    task.update(0.55, "T2w statistics per tissue")
    stats = RadiomicsBiomarkersLogic(context).intensity_statistics_table(nodes["t2w"], nodes["segmentation"])
    result.tables["t2w_statistics"] = io.write_csv(stats, tables_dir / "t2w_statistics.csv")
    result.radiomics = radiomics_demo_step(context, nodes, out, task.sub(0.55, 0.6))
    result.tables["radiomics"] = result.radiomics.tables["features"]

    adc_node = FitClusterFitLogic(context).fit_adc_map(nodes["dwi"], progress=task.sub(0.6, 0.65))
    io.save_node(adc_node, out / "adc.nrrd")
    adc = arrays.array_from_volume(adc_node)
    dwi_labels = arrays.array_from_volume(nodes["dwi_labels"])
    adc_columns = adc_by_tissue(adc, dwi_labels)
    adc_table = arrays.add_table(context, adc_columns, "ADC by tissue")
    result.tables["adc_by_tissue"] = io.write_csv(adc_table, tables_dir / "adc_by_tissue.csv")

    result.fit_cluster_fit = fcf_demo_step(context, study, nodes, out / "fit_cluster_fit", task.sub(0.65, 0.7))
    result.tables["habitats"] = result.fit_cluster_fit.tables["habitats"]
    result.figures.update({f"fcf_{k}": v for k, v in result.fit_cluster_fit.figures.items()})

    result.dicom = _dicom_step(context, study, segmentation, adc_node, out, task.sub(0.7, 0.74))

    task.update(0.74, "Joining tables")
    joined = OutcomePredictorLogic(context).join_tables([stats, adc_table], key="segment", name="Tissue summary")
    result.tables["tissue_summary"] = io.write_csv(joined, tables_dir / "tissue_summary.csv")
    result.outcome = outcome_demo_step(context, out / "outcome", task.sub(0.74, 0.88), volume_node=nodes["t2w"],
                                       segmentation_node=nodes["segmentation"], seed=seed)
    result.tables["model_comparison"] = result.outcome.tables["model_comparison"]

    task.update(0.88, "Figures")
    result.figures.update(_figures(study, adc, adc_columns, figures_dir))
    task.update(0.9, "Report and scene bundle")
    io.save_scene(context, result.scene)
    write_report(result, study, adc_columns, arrays.table_columns(volumes))
    task.update(1.0, "Done")
    return result


def _segmentation_step(context, study, nodes, result: DemoResult, out: Path, task) -> None:
    """The demo nnU-Net model on the T2w, with uncertainty, compared with the true tumour."""
    from virtualbiopsy.logic.neuroblastoma_seg import SegmentParameters
    from virtualbiopsy.segmentation.demo_model import demo_model_path

    logic = NeuroblastomaSegLogic(context)
    outputs = logic.segment([nodes["t2w"]], SegmentParameters(str(demo_model_path()), device="cpu"), task)
    folder = out / "segmentation"
    io.save_node(outputs.segmentation, folder / "segmentation.seg.nrrd")
    io.save_node(outputs.uncertainty, folder / "uncertainty.nrrd")
    io.save_node(outputs.agreement, folder / "agreement.seg.nrrd")
    (folder / "summary.json").write_text(json.dumps(outputs.summary, indent=2))
    geometry = Geometry.from_node(nodes["t2w"])
    truth = np.isin(study.t2_labels, (6, 7)).astype(np.uint8)
    corrected = arrays.add_segmentation_from_labels(context, truth, geometry, {1: ("tumour", (0.2, 0.8, 0.2))},
                                                    "True tumour (stands for the corrected segmentation)", nodes["t2w"])
    metrics = logic.compare(outputs.segmentation, arrays.segment_ids(outputs.segmentation)[0], corrected,
                            arrays.segment_ids(corrected)[0], nodes["t2w"])
    result.tables["segmentation_metrics"] = io.write_csv(metrics, folder / "metrics.csv")
    result.segmentation = outputs.summary
    result.segmentation_metrics = arrays.table_columns(metrics)
    ai = arrays.mask_from_segment(outputs.segmentation, arrays.segment_ids(outputs.segmentation)[0], nodes["t2w"],
                                  allow_empty=True)
    entropy = arrays.array_from_volume(outputs.uncertainty).astype(np.float32) / 255.0
    p10 = arrays.mask_from_segment(outputs.agreement, arrays.segment_ids(outputs.agreement)[0], nodes["t2w"],
                                   allow_empty=True)
    spacing = study.t2_grid.spacing
    result.figures["segmentation"] = figures.segmentation_uncertainty(
        out / "figures" / "segmentation_uncertainty.png", study.t2w, ai, truth.astype(bool), entropy,
        outputs.summary["slices_to_review"], spacing[1] / spacing[0], p10,
        true_label="true tumour (stands for the corrected one)")
    return outputs


def _dicom_step(context, study, segmentation, adc_node, out: Path, task) -> list[Path]:
    """The study written as DICOM MR series too (study/dicom/), and the AI segmentation (SEG, SR,
    uncertainty map) and the ADC map exported as DICOM objects referencing them (dicom/)."""
    from virtualbiopsy.dicom.export import write_parametric_map
    from virtualbiopsy.dicom.phantom import write_study_dicom
    from virtualbiopsy.dicom.results import export_ai_segmentation

    folders = write_study_dicom(study, out / "study" / "dicom", progress=task.sub(0.0, 0.6))["folders"]
    task.update(0.6, "DICOM results")
    t2 = io.load_volume(context, folders["t2w"], "T2w (DICOM)")
    frames, _ = io.load_frames(context, folders["dwi"], "DWI (DICOM)")
    try:
        written = export_ai_segmentation(segmentation, t2, out / "dicom", demo=True)
        written.append(write_parametric_map(adc_node, frames[0], out / "dicom" / "adc_pm.dcm", "ADC",
                                            "apparent diffusion coefficient, monoexponential fit", "mm2/s"))
    finally:  # the scene keeps the NRRD-loaded study only
        for node in [t2, *frames]:
            context.scene.RemoveNode(node)
    task.update(1.0, "DICOM written")
    return written


def _figures(study, adc, table: dict, folder: Path) -> dict[str, Path]:
    t2_rows = np.argwhere(np.isin(study.t2_labels, (6, 7)))
    dwi_rows = np.argwhere(np.isin(study.dwi_labels, (6, 7)))
    k_t2, k_dwi = int(np.median(t2_rows[:, 0])), int(np.median(dwi_rows[:, 0]))
    t2s, dws = study.t2_grid.spacing, study.dwi_grid.spacing
    out = {
        "overview": figures.study_overview(
            folder / "overview.png", study.t2w, study.t2_labels, study.dwi, study.b_values, adc,
            study.adc_true, study.dwi_labels, k_t2, k_dwi, t2s[1] / t2s[0], dws[1] / dws[0],
            {t.label: t.name for t in TISSUES[1:]}),
    }
    out["adc_by_tissue"] = figures.adc_by_tissue(
        folder / "adc_by_tissue.png", table["segment"], table["adc_mean"], table["adc_sd"], table["adc_true"])
    times = np.asarray(study.dce_times)
    measured, truth = {}, {}
    for t in TISSUES[1:]:
        interior = ndimage.binary_erosion(study.dwi_labels == t.label)
        if interior.any():
            measured[t.name] = study.dce[:, interior].mean(axis=1)
            s = np.clip(times - study.t0, 0, None)
            enhancement = t.amplitude * (1 - np.exp(-s / t.tau_in)) * np.exp(-s / t.tau_out)
            truth[t.name] = t.s_pre * (1 + enhancement)
    out["dce_curves"] = figures.dce_curves(folder / "dce_curves.png", times, measured, truth, study.t0)
    return out
