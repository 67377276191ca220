"""The RadiomicsBiomarkers part of ``virtualbiopsy demo``: pyradiomics features of the sample study's tumour
rim and core on the T2w, and the IBSI digital-phantom check of the extraction."""

from __future__ import annotations

from virtualbiopsy.demo_steps import StepOutputs
from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy.mrml import arrays
from virtualbiopsy.progress import as_task


def demo_step(context, nodes: dict, out_dir, progress=None) -> StepOutputs:
    """The demo's radiomics step: study-preset features of the tumour rim and core on the T2w, and the IBSI
    phantom report. ``nodes``: the sample study's nodes by role (``t2w``, ``segmentation``).

    Writes ``radiomics/t2w_tumour_features.csv`` (+ ``_settings.csv``) and ``radiomics/ibsi/ibsi_compliance.*``
    under ``out_dir``; returns their paths (``tables``), the features table node (``nodes["features"]``) and
    the IBSI summary counts (``summary``).
    """
    from pathlib import Path

    from virtualbiopsy.mrml import io
    from virtualbiopsy.radiomics import ibsi, ibsi_page

    task = as_task(progress)
    folder = Path(out_dir) / "radiomics"
    logic = RadiomicsBiomarkersLogic(context)
    segmentation = nodes["segmentation"]
    ids = [arrays.segment_id_by_name(segmentation, name) for name in ("tumour rim", "tumour core")]
    table = logic.extract_features(nodes["t2w"], segmentation, ids, progress=task.sub(0.0, 0.8))
    features = io.write_csv(table, folder / "t2w_tumour_features.csv")
    settings = io.write_csv(logic.settings_table(table), folder / "t2w_tumour_features_settings.csv")
    rows = ibsi.compliance_report(progress=task.sub(0.8, 1.0))
    ibsi_csv, ibsi_html = ibsi_page.write_report(rows, folder / "ibsi")
    return StepOutputs(tables={"features": features, "settings": settings, "ibsi_csv": ibsi_csv,
                               "ibsi_html": ibsi_html}, nodes={"features": table}, summary=ibsi.summary(rows))
