"""The per-module checks behind :func:`virtualbiopsy.selftests.run_module_checks`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.phantom.tissues import TUMOUR_CORE, TUMOUR_RIM
from virtualbiopsy.sample_study import study_to_scene
from virtualbiopsy.selftests.common import small_study


def check_neuroblastoma_seg(context, workdir: str) -> None:
    check_segment_volumes(context, workdir)
    check_segment_then_compare(context, workdir)


def check_segment_then_compare(context, workdir: str) -> None:
    """The demo model on a sample study, then the AI result compared with the true tumour."""
    from virtualbiopsy.logic.neuroblastoma_seg import SegmentParameters
    from virtualbiopsy.segmentation.demo_model import demo_model_path

    study = generate_study(2100)
    nodes = study_to_scene(context, study)
    logic = NeuroblastomaSegLogic(context)
    outputs = logic.segment([nodes["t2w"]], SegmentParameters(str(demo_model_path()), device="cpu"))
    tumour = np.isin(study.t2_labels, (TUMOUR_RIM, TUMOUR_CORE)).astype(np.uint8)
    corrected = arrays.add_segmentation_from_labels(context, tumour, Geometry.from_node(nodes["t2w"]),
                                                    {1: ("tumour", (0.2, 0.8, 0.2))}, "Corrected", nodes["t2w"])
    ai_id = arrays.segment_ids(outputs.segmentation)[0]
    table = arrays.table_columns(logic.compare(outputs.segmentation, ai_id, corrected,
                                               arrays.segment_ids(corrected)[0], nodes["t2w"]))
    metrics = dict(zip(table["metric"], table["value"]))
    assert metrics["dsc"] > 0.85, f"demo model DSC {metrics['dsc']:.3f} on the self-test study"
    assert outputs.summary["tumour_volume_ml"] > 0 and outputs.uncertainty is not None


def check_segment_volumes(context, workdir: str) -> None:
    study = small_study()
    nodes = study_to_scene(context, study)
    segmentation = nodes["segmentation"]
    segments_before = arrays.segment_ids(segmentation)
    table = NeuroblastomaSegLogic(context).segment_volumes_table(segmentation)
    columns = arrays.table_columns(table)
    volume_of = dict(zip(columns["segment"], columns["volume_ml"]))
    truth = study.volumes_ml()
    assert abs(volume_of["tumour rim"] + volume_of["tumour core"] - truth["tumour"]) < 1e-6 * truth["tumour"] + 1e-9
    assert arrays.segment_ids(segmentation) == segments_before, "the user's segmentation was changed"
    # The segmentation survives a save / load round trip through its storage node.
    path = io.save_node(segmentation, Path(workdir) / "ground_truth.seg.nrrd")
    reloaded = io.load_segmentation(context, path, "reloaded")
    assert len(arrays.segment_ids(reloaded)) == len(segments_before)
