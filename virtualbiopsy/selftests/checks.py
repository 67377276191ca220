"""The per-module checks behind :func:`virtualbiopsy.selftests.run_module_checks`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
from virtualbiopsy.logic.outcome_predictor import OutcomePredictorLogic
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.phantom.tissues import TUMOUR_CORE, TUMOUR_RIM
from virtualbiopsy.sample_study import study_to_scene


@lru_cache(maxsize=2)
def small_study(seed: int = 7):
    """A coarse, quick study (about a second) for self-tests."""
    return generate_study(seed, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0))


def _expect_error(context, error_type, action, *words: str) -> str:
    """Run ``action``; it must raise ``error_type`` mentioning ``words`` and add no node."""
    before = context.node_ids()
    try:
        action()
    except error_type as error:
        message = str(error)
        missing = [w for w in words if w.lower() not in message.lower()]
        assert not missing, f"error message {message!r} does not mention {missing}"
        assert context.node_ids() == before, "a failed step left new nodes in the scene"
        return message
    raise AssertionError(f"{error_type.__name__} was not raised")


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


def check_outcome_predictor(context, workdir: str) -> None:
    logic = OutcomePredictorLogic(context)
    radiomics = arrays.add_table(context, {"case_id": ["a", "b", "c"], "glcm_contrast": [1.0, 2.0, 3.0]}, "radiomics")
    clinical = arrays.add_table(context, {"case_id": ["b", "c", "d"], "age_months": [14.0, 30.0, 60.0]}, "clinical")
    joined_node = logic.join_tables([radiomics, clinical])
    joined = arrays.table_columns(joined_node)
    assert joined["case_id"] == ["a", "b", "c", "d"]
    assert joined["age_months"][1:] == [14.0, 30.0, 60.0] and np.isnan(joined["age_months"][0])
    assert np.isnan(joined["glcm_contrast"][3]) and joined_node.GetAttribute("VirtualBiopsy.MissingCells") == "2"
    no_key = arrays.add_table(context, {"patient": ["a"]}, "no key")
    _expect_error(context, InputError, lambda: logic.join_tables([radiomics, no_key]), "case_id", "no key")
