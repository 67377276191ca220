"""The RadiomicsBiomarkers module's self-test checks (run inside Slicer and by pytest, headless).

On a small seeded sample study: intensity statistics and pyradiomics features of the tumour
segments against the phantom's truth, two sequences at once, a voxel-based feature map, the same
values through the cohort batch (files, worker code path), the IBSI phantom's match count, and a
bad input (a mask on another grid) refused with the scene left unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.errors import GeometryMismatchError
from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom.tissues import TISSUES, TUMOUR_CORE, TUMOUR_RIM
from virtualbiopsy.sample_study import study_to_scene
from virtualbiopsy.selftests.common import expect_error

IBSI_MATCHING_FLOOR = 267  # IBSI phantom reference values matched (see Testing/Python/test_ibsi_report.py)



def check_radiomics_biomarkers(context, workdir: str) -> None:
    from virtualbiopsy.radiomics import batch
    from virtualbiopsy.selftests.common import small_study

    study = small_study()
    nodes = study_to_scene(context, study)
    t2w, segmentation = nodes["t2w"], nodes["segmentation"]
    logic = RadiomicsBiomarkersLogic(context)
    geometry = Geometry.from_node(t2w)

    # Intensity statistics: voxel counts are the truth's.
    stats = arrays.table_columns(logic.intensity_statistics_table(t2w, segmentation))
    row = {name: i for i, name in enumerate(stats["segment"])}
    for label in (TUMOUR_RIM, TUMOUR_CORE):
        assert stats["voxels"][row[TISSUES[label].name]] == np.count_nonzero(study.t2_labels == label)

    # pyradiomics features of the two tumour segments (study preset).
    ids = [arrays.segment_id_by_name(segmentation, TISSUES[label].name) for label in (TUMOUR_RIM, TUMOUR_CORE)]
    table = logic.extract_features(t2w, segmentation, ids)
    features = arrays.table_columns(table)
    assert features["segment"] == ["tumour rim", "tumour core"]
    for index, label in enumerate((TUMOUR_RIM, TUMOUR_CORE)):
        truth = study.t2_labels == label
        voxel_mm3 = geometry.voxel_volume_ml * 1000.0
        assert abs(features["original_shape_VoxelVolume"][index] - truth.sum() * voxel_mm3) < 1e-6 * voxel_mm3
        assert abs(features["original_firstorder_Mean"][index] - study.t2w[truth].mean()) < 1e-6 * study.t2w.max()
    median = features["original_firstorder_Median"]
    assert median[1] > median[0], "the necrotic core should be T2-bright"
    assert '"binWidth": 25' in table.GetAttribute(attributes.RADIOMICS_SETTINGS)
    assert "pyradiomics" in table.GetAttribute(attributes.RADIOMICS_VERSIONS)

    # Two sequences on one grid: one row, columns prefixed by the volume names.
    both = arrays.table_columns(logic.extract_features([t2w, nodes["bias_field"]], segmentation, ids[:1]))
    assert "T2w:original_glcm_Contrast" in both and "Bias field:original_firstorder_Mean" in both
    assert both["T2w:original_glcm_Contrast"][0] == features["original_glcm_Contrast"][0]

    # The cohort batch (files read by SimpleITK, the workers' code) gives the same values.
    folder = Path(workdir) / "radiomics_batch"
    image_path = io.save_node(t2w, folder / "t2w.nrrd")
    labels_path = io.save_node(nodes["t2w_labels"], folder / "labels.nrrd")
    case = batch.Case("rim", {"image": str(image_path)}, str(labels_path), str(TUMOUR_RIM))
    result = batch.run_batch([case], folder / "out")
    assert result.rows[0]["error"] == "", result.rows[0]["error"]
    for name in ("original_shape_MeshVolume", "original_firstorder_Mean", "original_glcm_Contrast",
                 "original_glszm_ZoneEntropy"):
        assert abs(result.rows[0][name] - features[name][0]) <= 1e-9 * abs(features[name][0]), name

    # A voxel-based map: a new volume on the image's grid, zero outside the segment.
    feature_map = logic.feature_map(t2w, segmentation, ids[1], "firstorder_Mean")
    values = arrays.array_from_volume(feature_map)
    core = arrays.mask_from_segment(segmentation, ids[1], t2w)
    assert np.count_nonzero(values[~core]) == 0 and np.all(np.isfinite(values[core])) and values[core].min() > 0

    # The IBSI digital phantom still matches.
    report = logic.ibsi_report()
    assert int(report.GetAttribute(attributes.IBSI_MATCHING)) >= IBSI_MATCHING_FLOOR

    # A mask on the DWI grid is not on the T2w grid: refused, scene unchanged.
    dwi_segmentation = arrays.add_segmentation_from_labels(
        context, study.dwi_labels, Geometry.from_node(nodes["dwi_labels"]), {TUMOUR_RIM: ("tumour rim", (1, 0, 0))},
        "DWI-grid mask")
    expect_error(context, GeometryMismatchError, lambda: logic.extract_features(t2w, dwi_segmentation), "voxel grid")
