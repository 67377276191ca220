"""The FitClusterFit part of ``virtualbiopsy demo``: habitats of the sample study's tumour from its DWI and
DCE, each compared with the tissue most of its voxels belong to."""

from __future__ import annotations

import json

import numpy as np

from virtualbiopsy.demo_steps import StepOutputs
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy.mrml import arrays
from virtualbiopsy.progress import as_task


def demo_step(context, study, nodes: dict, out_dir, progress=None) -> StepOutputs:
    """Fit-Cluster-Fit (DWI + DCE) on the sample study, for ``virtualbiopsy demo``.

    ``nodes`` are the study's nodes by role (:func:`virtualbiopsy.sample_study.study_to_scene` or
    ``load_study(...).nodes``): the DWI and DCE sequences, the ground-truth segmentation (its "tumour
    rim" and "tumour core" segments, together, stand for the tumour segmentation) and the DWI-grid
    label map used to compare each habitat with the tissue most of its voxels are. ``study`` (a
    SampleStudy or None) only supplies the true bolus arrival. Writes to ``out_dir``: habitats.csv,
    habitats_vs_truth.csv, adc.nrrd, adc_se.nrrd, iauc60.nrrd, habitats.seg.nrrd, signal_vs_b.png,
    habitat_map.png, habitat_enhancement.png and summary.json. Returns the paths (``tables``,
    ``figures``), ``summary``, ``text`` (a paragraph for the report) and in ``extra`` "truth" (the columns
    of habitats_vs_truth) and "outputs" (the :class:`FitClusterFitOutputs`).
    """
    from pathlib import Path

    from virtualbiopsy.habitats import figures
    from virtualbiopsy.mrml import io
    from virtualbiopsy.phantom.tissues import TISSUES

    task = as_task(progress)
    out = Path(out_dir)
    logic = FitClusterFitLogic(context)
    outputs = logic.fit_cluster_fit(nodes["dwi"], mask=nodes["segmentation"], segments=["tumour rim", "tumour core"],
                                    dce=nodes["dce"], progress=task.sub(0.0, 0.8))
    task.update(0.8, "Writing the Fit-Cluster-Fit results")
    result, summary = outputs.result, outputs.summary
    table = arrays.table_columns(outputs.table)
    labels = arrays.array_from_volume(nodes["dwi_labels"])
    truth: dict[str, list] = {c: [] for c in ("habitat", "voxels", "tissue", "tissue_share", "adc", "adc_true",
                                              "adc_error_percent", "voxel_mean_adc", "iauc60", "iauc60_true")}
    for h in range(1, result.k + 1):
        values, counts = np.unique(labels[result.labels == h], return_counts=True)
        order = np.argsort(counts)[::-1]
        tissue = TISSUES[int(values[order[0]])]
        share = float(counts[order[0]] / counts.sum())
        mixed = share < 0.8  # a partial-volume habitat: no single true value
        name = tissue.name if not mixed else "mixed: " + " / ".join(
            f"{TISSUES[int(values[i])].name} {100 * counts[i] / counts.sum():.0f} %" for i in order[:2])
        truth["habitat"].append(f"habitat {h}")
        truth["voxels"].append(int(counts.sum()))
        truth["tissue"].append(name)
        truth["tissue_share"].append(share)
        truth["adc"].append(table["adc"][h - 1])
        truth["adc_true"].append(float("nan") if mixed else tissue.adc)
        truth["adc_error_percent"].append(float("nan") if mixed else 100.0 * (table["adc"][h - 1] - tissue.adc)
                                          / tissue.adc)
        truth["voxel_mean_adc"].append(table["voxel_mean_adc"][h - 1])
        truth["iauc60"].append(table["iauc60"][h - 1])
        truth["iauc60_true"].append(float("nan") if mixed else tissue.iauc60)
    tables = {"habitats": io.write_csv(outputs.table, out / "habitats.csv"),
              "habitats_vs_truth": io.write_csv(truth, out / "habitats_vs_truth.csv")}
    for node, file_name in ((outputs.adc, "adc.nrrd"), (outputs.adc_se, "adc_se.nrrd"),
                            (outputs.habitats, "habitats.seg.nrrd"), (outputs.dce.get("iauc"), "iauc60.nrrd")):
        if node is not None:
            io.save_node(node, out / file_name)
    dwi_volumes = logic.dwi_volumes(nodes["dwi"])[0]
    b_values = result.shells.b_values
    names = table["habitat"]
    spacing = dwi_volumes[0].GetSpacing()
    confidence = summary["parameters"]["confidence"]
    figure_paths = {
        "signal_vs_b": figures.signal_vs_b(out / "signal_vs_b.png", b_values, result.mean_signals, result.habitat_s0,
                                           result.habitat_adc, table, summary["noise_sigma"], False, result.b_values,
                                           confidence),
        "habitat_map": figures.habitat_map(out / "habitat_map.png", arrays.array_from_volume(dwi_volumes[0]),
                                           result.labels, table, aspect=spacing[1] / spacing[0],
                                           confidence=confidence),
        "habitat_enhancement": figures.enhancement_curves(
            out / "habitat_enhancement.png", result.dce_times,
            {name: result.dce_mean_curves[:, i] for i, name in enumerate(names)}, summary["dce_arrival_s"],
            summary["dce_window_s"], table, confidence),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    t0 = getattr(study, "t0", None)
    arrival = f"bolus arrival {summary['dce_arrival_s']:.1f} s" + (f" (true {t0:.1f} s)" if t0 is not None else "")
    rows = "; ".join(
        f"{h}: ADC {a * 1e3:.3f} ×10⁻³ mm²/s "
        + (f"vs {t} {at * 1e3:.2f} ({e:+.1f} %)" if np.isfinite(at) else f"({t})")
        for h, a, t, at, e in zip(truth["habitat"], truth["adc"], truth["tissue"], truth["adc_true"],
                                  truth["adc_error_percent"]))
    text = (f"Fit-Cluster-Fit on the true tumour (rim + core): {summary['clustering']}; {summary['exclusion']}; "
            f"{summary['boundary_voxels']} boundary voxels not clustered; noise σ {summary['noise_sigma']:.1f} "
            f"({summary['noise_method']}); {arrival}. {rows}.")
    task.update(1.0, "Fit-Cluster-Fit done")
    return StepOutputs(tables=tables, figures=figure_paths, summary=summary, text=text,
                       extra={"truth": truth, "outputs": outputs})
