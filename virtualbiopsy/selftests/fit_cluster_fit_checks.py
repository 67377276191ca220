"""The FitClusterFit self-check: Fit-Cluster-Fit and DCE metrics on a seeded study, against its truth.

Run headless by the test suite and inside Slicer by the module's self-test
(:func:`virtualbiopsy.selftests.run_module_checks`); needs scikit-learn and matplotlib-free code only.
"""

from __future__ import annotations

from scipy import ndimage

from virtualbiopsy.errors import GeometryMismatchError, InputError
from virtualbiopsy.habitats.pipeline import FitClusterFitParameters
from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.phantom.tissues import TISSUES, TUMOUR_CORE, TUMOUR_RIM
from virtualbiopsy.sample_study import study_to_scene
from virtualbiopsy.selftests.common import expect_error

TUMOUR_SEGMENTS = ("tumour rim", "tumour core")



def check_fit_cluster_fit(context, workdir: str) -> None:
    """FCF habitats on the sample study (seed 7, 3 mm DWI grid): the most cellular habitat's ADC and iAUC60
    match the tumour rim's truth, the highest-ADC habitat the necrotic core's; bad inputs are refused
    and leave the scene unchanged."""
    study = generate_study(7, t2_spacing=(3.0, 3.0, 4.0))
    nodes = study_to_scene(context, study)
    logic = FitClusterFitLogic(context)
    rim, core = TISSUES[TUMOUR_RIM], TISSUES[TUMOUR_CORE]

    # the plain voxel ADC map still works on a sequence (b-values from its index)
    adc = arrays.array_from_volume(logic.fit_adc_map(nodes["dwi"]))
    interior = ndimage.binary_erosion(study.dwi_labels == TUMOUR_RIM)
    error = abs(float(adc[interior].mean()) - rim.adc) / rim.adc
    assert error < 0.05, f"voxel-wise tumour-rim ADC off by {100 * error:.1f} %"

    parameters = FitClusterFitParameters(n_bootstrap=100)
    outputs = logic.fit_cluster_fit(nodes["dwi"], mask=nodes["segmentation"], segments=list(TUMOUR_SEGMENTS),
                                    parameters=parameters, dce=nodes["dce"])
    table = arrays.table_columns(outputs.table)
    k = outputs.result.k
    assert 2 <= k <= parameters.k_max, f"{k} habitats on a tumour with a rim and a necrotic core"
    segmentation = outputs.habitats.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names[:k] == [f"habitat {h}" for h in range(1, k + 1)], names
    for column in ("habitat", "voxels", "volume_ml", "adc", "adc_ci_low", "adc_ci_high", "voxel_mean_adc", "iauc60"):
        assert column in table, f"results table lacks '{column}'"
    first, last = 0, k - 1  # habitats are ordered by ADC
    for i, truth, what in ((first, rim.adc, "rim"), (last, core.adc, "core")):
        error = abs(table["adc"][i] - truth) / truth
        assert error < 0.10, f"habitat {i + 1} ADC {table['adc'][i]:.3e} vs tumour {what} {truth:.3e}"
        assert table["adc_ci_low"][i] <= table["adc"][i] <= table["adc_ci_high"][i]
    error = abs(table["iauc60"][first] - rim.iauc60) / rim.iauc60
    assert error < 0.10, f"habitat 1 iAUC60 {table['iauc60'][first]:.2f} vs rim truth {rim.iauc60:.2f} s"
    assert abs(outputs.summary["dce_arrival_s"] - study.t0) < 2.0, "bolus arrival off by more than 2 s"

    dce = logic.dce_metrics(nodes["dce"], mask=nodes["segmentation"], segments=list(TUMOUR_SEGMENTS))
    iauc = arrays.array_from_volume(dce.iauc)
    error = abs(float(iauc[interior].mean()) - rim.iauc60) / rim.iauc60
    assert error < 0.05, f"voxel iAUC60 of the rim interior off by {100 * error:.1f} %"

    # bad inputs: clear errors, nothing added
    volumes, _ = io.sequence_volumes(nodes["dwi"])
    expect_error(context, InputError, lambda: logic.fit_cluster_fit(volumes, [0, 800], nodes["segmentation"],
                                                                     list(TUMOUR_SEGMENTS)), "b-values", "4 DWI")
    frames, times = io.sequence_volumes(nodes["dce"])
    shuffled = [float(t) for t in times]
    shuffled[3], shuffled[4] = shuffled[4], shuffled[3]
    expect_error(context, InputError, lambda: logic.dce_metrics(frames, shuffled, nodes["segmentation"],
                                                                 list(TUMOUR_SEGMENTS)), "increase")
    dwi_grid = Geometry.from_node(nodes["dwi_labels"])
    shifted = Geometry.from_spacing(dwi_grid.shape, dwi_grid.spacing, dwi_grid.origin + 1.5, dwi_grid.directions)
    moved = arrays.add_volume_from_array(context, study.dwi_labels, shifted, "shifted labels",
                                         "vtkMRMLLabelMapVolumeNode")  # half a voxel off the DWI grid
    expect_error(context, GeometryMismatchError, lambda: logic.fit_cluster_fit(nodes["dwi"], mask=moved,
                                                                                label=TUMOUR_RIM), "voxel grid")
