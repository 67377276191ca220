"""Correction loop of NeuroblastomaSeg: AI vs corrected agreement metrics, editing time, nnU-Net export, CLI."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from virtualbiopsy.errors import (
    Cancelled,
    EmptyMaskError,
    FileFormatError,
    GeometryMismatchError,
    ImageDimensionError,
    InputError,
)
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.progress import CancelToken, Task
from virtualbiopsy.sample_study import geometry_of
from virtualbiopsy.segmentation.correction import (
    EDITING_SECONDS_ATTRIBUTE,
    EditingTimer,
    RetrainingCase,
    compare_segments,
    export_for_retraining,
    read_editing_seconds,
    stamp_segmentation,
)
from virtualbiopsy.segmentation.metrics import (
    METRIC_DESCRIPTIONS,
    METRIC_NAMES,
    METRIC_UNITS,
    METRIC_WORDS,
    compare_masks,
    surface_distances,
)

TUMOUR = {1: ("tumour", (0.9, 0.2, 0.2))}


def sphere(shape, spacing, radius_mm, centre=None):
    """A ball of ``radius_mm`` on a [k, j, i] grid with voxel size (sx, sy, sz)."""
    sx, sy, sz = spacing
    centre = np.asarray(shape, float) / 2 if centre is None else np.asarray(centre, float)
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij", sparse=True)
    r2 = ((i - centre[2]) * sx) ** 2 + ((j - centre[1]) * sy) ** 2 + ((k - centre[0]) * sz) ** 2
    return r2 <= radius_mm**2


# -- metrics on arrays ------------------------------------------------------------------------

def test_metric_names_units_and_descriptions_agree():
    assert set(METRIC_NAMES) == set(METRIC_UNITS) == set(METRIC_DESCRIPTIONS) == set(METRIC_WORDS)
    assert len(METRIC_NAMES) == 12 and METRIC_NAMES[0] == "dsc"


def test_two_boxes_give_the_hand_computed_overlap_and_volumes():
    spacing = (1.0, 2.0, 3.0)  # one voxel = 6 mm³
    ai = np.zeros((10, 20, 20), bool)
    corrected = np.zeros_like(ai)
    ai[2:6, 4:12, 4:14] = True  # 4 x 8 x 10 = 320 voxels
    corrected[1:6, 4:12, 8:18] = True  # 5 x 8 x 10 = 400 voxels; overlap 4 x 8 x 6 = 192
    tp, fp, fn = 192, 128, 208
    m = compare_masks(ai, corrected, spacing)
    assert list(m) == list(METRIC_NAMES)
    assert m["dsc"] == pytest.approx(2 * tp / (2 * tp + fp + fn))  # 0.5333
    assert m["jaccard"] == pytest.approx(tp / (tp + fp + fn))
    assert m["fpr"] == pytest.approx(fp / (tp + fn)) == pytest.approx(0.32)  # divided by the corrected volume
    assert m["fnr"] == pytest.approx(fn / (tp + fn)) == pytest.approx(0.52)
    assert m["volume_ai_ml"] == pytest.approx(320 * 6 / 1000)
    assert m["volume_corrected_ml"] == pytest.approx(400 * 6 / 1000)
    assert m["volume_difference_ml"] == pytest.approx(-0.48)
    assert m["volume_difference_percent"] == pytest.approx(-20.0)


def test_identical_masks_agree_perfectly():
    mask = sphere((20, 40, 40), (1.0, 1.0, 2.5), 12.0)
    m = compare_masks(mask, mask.copy(), (1.0, 1.0, 2.5))
    assert m["dsc"] == 1 and m["jaccard"] == 1 and m["fpr"] == 0 and m["fnr"] == 0
    assert m["hd95_mm"] == 0 and m["msd_mm"] == 0 and m["surface_dsc"] == 1
    assert m["added_path_length_mm"] == 0 and m["volume_difference_ml"] == 0


@pytest.mark.parametrize("axis, spacing", [(0, (1.0, 1.0, 2.5)), (2, (1.5, 1.0, 2.0))])
def test_sphere_shifted_by_two_voxels(axis, spacing):
    """A surface point p of A has p + t on B's surface, so every distance is <= |t| = 2 voxels.
    On a continuous sphere (radius >> |t|) the distance is |t| |cos(theta)|, uniform on [0, |t|]
    over the surface: P95 = 0.95 |t|, mean = |t| / 2. The voxel surfaces may differ by a voxel."""
    a = sphere((40, 60, 60), spacing, 15.0)
    b = np.roll(a, 2, axis=axis)
    voxel = spacing[2 - axis]
    shift = 2 * voxel
    m = compare_masks(a, b, spacing)
    assert 0.95 * shift - voxel <= m["hd95_mm"] <= shift + 1e-9
    assert abs(m["msd_mm"] - shift / 2) <= voxel
    d_ab, d_ba = surface_distances(a, b, spacing)
    assert max(d_ab.max(), d_ba.max()) == pytest.approx(shift)
    assert 0 < m["dsc"] < 1 and m["fpr"] == pytest.approx(m["fnr"])  # same volume
    tolerances = [0.0, 0.5 * shift, shift, 2 * shift]
    surface_dice = [compare_masks(a, b, spacing, tolerance_mm=t)["surface_dsc"] for t in tolerances]
    assert surface_dice == sorted(surface_dice) and surface_dice[0] < surface_dice[1] < 1
    assert surface_dice[2] == surface_dice[3] == 1.0  # every distance <= |t|


def _sitk_image(mask, spacing):
    image = sitk.GetImageFromArray(np.pad(mask, 1).astype(np.uint8))
    image.SetSpacing(spacing)
    return image


def _sitk_directed_distances(from_mask, to_mask, spacing):
    """Independent surface distances: ITK face-connected contours and a Maurer distance map."""
    contour_from = sitk.LabelContour(_sitk_image(from_mask, spacing), fullyConnected=False)
    contour_to = sitk.LabelContour(_sitk_image(to_mask, spacing), fullyConnected=False)
    distance = sitk.SignedMaurerDistanceMap(contour_to, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    values = np.clip(sitk.GetArrayFromImage(distance), 0, None)  # contour voxels themselves: 0
    return values[sitk.GetArrayFromImage(contour_from) > 0], contour_from, contour_to


def test_surface_distances_match_simpleitk():
    spacing = (0.9, 1.2, 3.0)
    ai = sphere((24, 50, 50), spacing, 14.0)
    corrected = sphere((24, 50, 50), spacing, 17.0, centre=(13, 27, 24)) & ~sphere((24, 50, 50), spacing, 5.0)
    d_ai, d_corrected = surface_distances(ai, corrected, spacing)
    itk_ai, contour_ai, contour_corrected = _sitk_directed_distances(ai, corrected, spacing)
    itk_corrected, _, _ = _sitk_directed_distances(corrected, ai, spacing)
    np.testing.assert_allclose(np.sort(d_ai), np.sort(itk_ai), atol=1e-4)
    np.testing.assert_allclose(np.sort(d_corrected), np.sort(itk_corrected), atol=1e-4)
    m = compare_masks(ai, corrected, spacing)
    expected_hd95 = max(np.percentile(itk_ai, 95), np.percentile(itk_corrected, 95))
    assert m["hd95_mm"] == pytest.approx(expected_hd95, abs=1e-4)
    pooled = np.concatenate([itk_ai, itk_corrected])
    assert m["msd_mm"] == pytest.approx(pooled.mean(), abs=1e-4)
    hausdorff = sitk.HausdorffDistanceImageFilter()
    hausdorff.Execute(contour_ai, contour_corrected)
    assert max(d_ai.max(), d_corrected.max()) == pytest.approx(hausdorff.GetHausdorffDistance(), abs=1e-4)


def test_added_path_length_of_an_added_blob_is_its_perimeter():
    spacing = (1.5, 1.5, 4.0)
    ai = np.zeros((12, 60, 60), bool)
    ai[2:10, 5:20, 5:20] = True
    square = ai.copy()
    square[3:6, 30:36, 30:36] = True  # a separate 6 x 6 pixel square on 3 slices
    m = compare_masks(ai, square, spacing)
    # exactly the square's contour pixels: 4 (n - 1) per slice; its perimeter 4 n pixels differs by the corners
    assert m["added_path_length_mm"] == pytest.approx(3 * 4 * 5 * 1.5)
    disk = ai.copy()
    k, j, i = np.ogrid[:12, :60, :60]
    disk |= ((j - 40) ** 2 + (i - 40) ** 2 <= 10**2) & (k >= 4) & (k < 8)  # radius 10 pixels, 4 slices
    perimeter = 4 * 2 * math.pi * 10 * 1.5
    assert m["fnr"] > 0 and compare_masks(ai, disk, spacing)["added_path_length_mm"] == pytest.approx(
        perimeter, rel=0.15)  # contour-pixel counting: within 15 % of the circle's length
    # deleting voxels adds no contour where the AI contour is kept
    assert compare_masks(square, ai, spacing)["added_path_length_mm"] == 0


def test_empty_and_mismatched_masks():
    mask = np.zeros((6, 8, 8), bool)
    mask[2:4, 2:6, 2:6] = True
    empty = np.zeros_like(mask)
    with pytest.raises(EmptyMaskError, match="AI mask.*corrected mask"):
        compare_masks(empty, empty, (1, 1, 1))
    missed = compare_masks(empty, mask, (1, 1, 1))
    assert missed["dsc"] == 0 and missed["fnr"] == 1 and missed["fpr"] == 0 and missed["surface_dsc"] == 0
    assert math.isinf(missed["hd95_mm"]) and math.isinf(missed["msd_mm"])
    assert missed["volume_difference_percent"] == -100
    spurious = compare_masks(mask, empty, (1, 1, 1))
    assert spurious["dsc"] == 0 and math.isnan(spurious["fpr"]) and math.isnan(spurious["fnr"])
    assert math.isnan(spurious["volume_difference_percent"]) and spurious["added_path_length_mm"] == 0
    with pytest.raises(GeometryMismatchError, match="8 x 8 x 6 voxels"):
        compare_masks(mask, mask[:, :, :7], (1, 1, 1))
    with pytest.raises(ImageDimensionError):
        compare_masks(mask[0], mask[0], (1, 1, 1))
    with pytest.raises(InputError, match="voxel size"):
        compare_masks(mask, mask, (1, 0, 1))
    with pytest.raises(InputError, match="tolerance"):
        compare_masks(mask, mask, (1, 1, 1), tolerance_mm=-1)


# -- MRML: compare_segments -------------------------------------------------------------------

@pytest.fixture(scope="module")
def studies():
    return [generate_study(seed, t2_spacing=(3, 3, 4), dwi_spacing=(4, 4, 4)) for seed in (1, 2)]


def _tumour(study) -> np.ndarray:
    return np.isin(study.t2_labels, (6, 7))


def _t2_and_tumour(context, study, name="case"):
    geometry = geometry_of(study.t2_grid)
    t2 = arrays.add_volume_from_array(context, study.t2w, geometry, f"{name} T2w")
    segmentation = arrays.add_segmentation_from_labels(
        context, _tumour(study).astype(np.uint8), geometry, TUMOUR, f"{name} tumour", reference_volume=t2)
    return t2, segmentation


def _values(table) -> dict[str, float]:
    columns = arrays.table_columns(table)
    return dict(zip(columns["metric"], columns["value"]))


def _state(segmentation):
    return [(r["segment"], r["voxels"]) for r in arrays.segment_volumes(segmentation)]


def test_compare_segments_on_the_phantom(context, studies):
    study = studies[0]
    t2, corrected = _t2_and_tumour(context, study, "corrected")
    geometry = geometry_of(study.t2_grid)
    dilated = ndimage.binary_dilation(_tumour(study), iterations=1)
    ai = arrays.add_segmentation_from_labels(context, dilated.astype(np.uint8), geometry, TUMOUR, "AI", t2)
    before = (_state(ai), _state(corrected), context.node_ids())
    table = compare_segments(context, ai, arrays.segment_ids(ai)[0], corrected, arrays.segment_ids(corrected)[0],
                             t2, tolerance_mm=2.0)
    columns = arrays.table_columns(table)
    assert list(columns) == ["metric", "value", "unit", "description"]
    assert columns["metric"] == list(METRIC_NAMES)
    values = dict(zip(columns["metric"], columns["value"]))
    expected = compare_masks(dilated, _tumour(study), (3, 3, 4), tolerance_mm=2.0)
    assert values == pytest.approx(expected)
    assert 0 < values["dsc"] < 1 and values["fnr"] == 0 and values["fpr"] > 0 and values["volume_difference_ml"] > 0
    assert values["volume_corrected_ml"] == pytest.approx(_tumour(study).sum() * 36 / 1000)
    assert columns["unit"][METRIC_NAMES.index("hd95_mm")] == "mm" and "2 mm" in columns["description"][6]
    assert (_state(ai), _state(corrected)) == before[:2]  # inputs unchanged
    assert context.node_ids() - before[2] == {table.GetID()}


def test_compare_segments_refuses_empty_pairs_and_other_grids(context, studies, scene_unchanged):
    study = studies[0]
    t2, corrected = _t2_and_tumour(context, study)
    geometry = geometry_of(study.t2_grid)
    empty_ai = context.add_node("vtkMRMLSegmentationNode", "empty AI")
    empty_corrected = context.add_node("vtkMRMLSegmentationNode", "empty corrected")
    for node in (empty_ai, empty_corrected):
        node.GetSegmentation().AddEmptySegment("tumour", "tumour")
    with scene_unchanged(context), pytest.raises(EmptyMaskError, match="empty AI.*empty corrected"):
        compare_segments(context, empty_ai, "tumour", empty_corrected, "tumour", t2)
    # an empty AI segment against a real correction is a valid (worst-case) comparison
    values = _values(compare_segments(context, empty_ai, "tumour", corrected, arrays.segment_ids(corrected)[0], t2))
    assert values["dsc"] == 0 and values["fnr"] == 1 and math.isinf(values["hd95_mm"])
    # a correction drawn on a grid shifted by half a voxel is refused, not silently resampled
    shifted = Geometry(geometry.shape, geometry.ijk_to_ras + np.array([[0, 0, 0, 1.5]] + [[0, 0, 0, 0]] * 3))
    other = arrays.add_segmentation_from_labels(context, _tumour(study).astype(np.uint8), shifted, TUMOUR, "other")
    with scene_unchanged(context), pytest.raises(GeometryMismatchError, match="not on the voxel grid"):
        compare_segments(context, corrected, arrays.segment_ids(corrected)[0], other, arrays.segment_ids(other)[0], t2)
    with pytest.raises(InputError, match="no segment with ID 'nope'"):
        compare_segments(context, corrected, "nope", corrected, arrays.segment_ids(corrected)[0], t2)


# -- editing time -------------------------------------------------------------------------------

def test_editing_timer_with_an_injected_clock(context, tmp_path):
    now = [100.0]
    timer = EditingTimer(clock=lambda: now[0])
    with pytest.raises(InputError, match="not started"):
        timer.stop()
    timer.start()
    now[0] = 130.0
    assert timer.seconds == 30.0 and timer.running
    with pytest.raises(InputError, match="already running"):
        timer.start()
    assert timer.stop() == 30.0
    now[0] = 500.0  # time between sessions does not count
    timer.start()
    now[0] = 512.5
    assert timer.stop() == 42.5 and timer.seconds == 42.5 and not timer.running

    segmentation = context.add_node("vtkMRMLSegmentationNode", "corrected")
    assert read_editing_seconds(segmentation) is None
    stamp_segmentation(segmentation, timer.seconds)
    assert read_editing_seconds(segmentation) == 42.5
    with pytest.raises(InputError):
        stamp_segmentation(segmentation, -1)
    segmentation.SetAttribute(EDITING_SECONDS_ATTRIBUTE, "soon")
    with pytest.raises(InputError, match="unreadable editing time"):
        read_editing_seconds(segmentation)
    stamp_segmentation(segmentation, 42.5)
    # a .seg.nrrd file does not keep node attributes; a scene bundle does
    segmentation.CreateDefaultDisplayNodes()
    segmentation.GetSegmentation().AddEmptySegment("tumour", "tumour")
    io.save_node(segmentation, tmp_path / "corrected.seg.nrrd")
    assert read_editing_seconds(io.load_segmentation(context, tmp_path / "corrected.seg.nrrd")) is None
    io.save_scene(context, tmp_path / "scene.mrb")
    other = MRMLContext.create()
    io.load_scene(other, tmp_path / "scene.mrb")
    stamped = [other.scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
               for i in range(other.scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    assert [read_editing_seconds(n) for n in stamped if n.GetName() == "corrected"] == [42.5]


# -- export for retraining ----------------------------------------------------------------------

def _lps_geometry(node):
    """(spacing, origin, direction) of a node as SimpleITK (LPS) reports them."""
    geometry = Geometry.from_node(node)
    flip = np.diag([-1.0, -1.0, 1.0])
    return geometry.spacing, flip @ geometry.origin, (flip @ geometry.directions).ravel()


def test_export_for_retraining_writes_an_nnunet_dataset(context, studies, tmp_path):
    cases = []
    for index, study in enumerate(studies, start=1):
        t2, segmentation = _t2_and_tumour(context, study, f"nb{index:03d}")
        cases.append(RetrainingCase(f"nb{index:03d}", [t2], segmentation, arrays.segment_ids(segmentation)[0]))
    reports = []
    dataset = export_for_retraining(context, cases, tmp_path, progress=lambda f, m: reports.append(f))
    assert dataset == tmp_path / "Dataset501_Neuroblastoma" and reports[-1] == 1.0
    assert sorted(p.name for p in (dataset / "imagesTr").iterdir()) == ["nb001_0000.nii.gz", "nb002_0000.nii.gz"]
    assert sorted(p.name for p in (dataset / "labelsTr").iterdir()) == ["nb001.nii.gz", "nb002.nii.gz"]
    info = json.loads((dataset / "dataset.json").read_text())
    assert info["channel_names"] == {"0": "T2"} and info["labels"] == {"background": 0, "tumour": 1}
    assert info["numTraining"] == 2 and info["file_ending"] == ".nii.gz"
    for case, study in zip(cases, studies):
        image = sitk.ReadImage(str(dataset / "imagesTr" / f"{case.case_id}_0000.nii.gz"))
        label = sitk.ReadImage(str(dataset / "labelsTr" / f"{case.case_id}.nii.gz"))
        spacing, origin, direction = _lps_geometry(case.channel_volumes[0])
        for written in (image, label):
            np.testing.assert_allclose(written.GetSpacing(), spacing, atol=1e-5)
            np.testing.assert_allclose(written.GetOrigin(), origin, atol=1e-4)
            np.testing.assert_allclose(written.GetDirection(), direction, atol=1e-6)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(image), study.t2w)
        labels = sitk.GetArrayFromImage(label)
        assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
        np.testing.assert_array_equal(labels == 1, _tumour(study))
        assert case.channel_volumes[0].GetStorageNode() is None  # the user's node keeps no export file name

    # appending: a new case is added and numTraining recounted; a known case is refused unless overwrite
    third = RetrainingCase("nb003", cases[0].channel_volumes, cases[0].segmentation, cases[0].segment_id)
    export_for_retraining(context, [third], tmp_path)
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 3
    files_before = sorted(p.name for p in dataset.rglob("*"))
    with pytest.raises(InputError, match="'nb002' is already in"):
        export_for_retraining(context, [replace(third, case_id="nb002")], tmp_path)
    export_for_retraining(context, [replace(third, case_id="nb002")], tmp_path, overwrite=True)
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 3
    for unsafe in ("../escape", "a b", "a/b", "..", ""):
        with pytest.raises(InputError, match="file name"):
            export_for_retraining(context, [replace(third, case_id=unsafe)], tmp_path)
    with pytest.raises(InputError, match="1 image channels but the dataset has 2"):
        export_for_retraining(context, [third], tmp_path, dataset_id=502, channel_names=("T2", "ADC"))
    coarse = arrays.add_volume_from_array(
        context, np.zeros((8, 16, 20), np.int16), Geometry.from_spacing((8, 16, 20), (12, 12, 16)), "coarse")
    with pytest.raises(GeometryMismatchError):
        two_grids = replace(third, case_id="nb009", channel_volumes=[*third.channel_volumes, coarse])
        export_for_retraining(context, [two_grids], tmp_path, dataset_id=502, channel_names=("T2", "ADC"))
    cancel = CancelToken()
    cancel.cancel()
    with pytest.raises(Cancelled):
        export_for_retraining(context, [replace(third, case_id="nb004")], tmp_path, progress=Task(cancel=cancel))
    nothing = context.add_node("vtkMRMLSegmentationNode", "nothing")
    nothing.GetSegmentation().AddEmptySegment("tumour", "tumour")
    with pytest.raises(EmptyMaskError, match="no voxels"):
        export_for_retraining(context, [replace(third, case_id="nb005", segmentation=nothing, segment_id="tumour")],
                              tmp_path)
    assert sorted(p.name for p in dataset.rglob("*")) == files_before  # refused exports changed nothing
    assert not (tmp_path / "Dataset502_Neuroblastoma").exists()


class _SerialPool:
    """Stands in for multiprocessing's spawn pool: the same checks, in this process (a spawned
    worker re-imports torch and nnU-Net, ~10 s more)."""

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def starmap(self, function, arguments):
        return [function(*a) for a in arguments]


def test_exported_dataset_passes_nnunet_integrity_check(context, studies, tmp_path, monkeypatch):
    verify = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity")
    monkeypatch.setattr(verify, "multiprocessing",
                        SimpleNamespace(get_context=lambda method=None: SimpleNamespace(Pool=_SerialPool)))
    cases = []
    for index, study in enumerate(studies, start=1):
        t2, segmentation = _t2_and_tumour(context, study, f"nb{index:03d}")
        cases.append(RetrainingCase(f"nb{index:03d}", [t2], segmentation, arrays.segment_ids(segmentation)[0]))
    dataset = export_for_retraining(context, cases, tmp_path, dataset_id=7, dataset_name="NBcheck")
    verify.verify_dataset_integrity(str(dataset), num_processes=1)  # raises on any problem


# -- command line -------------------------------------------------------------------------------

def _run_compare(argv):
    from virtualbiopsy.cli import compare

    parser = argparse.ArgumentParser()
    compare.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compare", *argv])
    return compare.run(args)


def test_cli_compare_end_to_end(context, studies, tmp_path, capsys):
    study = studies[0]
    geometry = geometry_of(study.t2_grid)
    t2, corrected = _t2_and_tumour(context, study)
    dilated = ndimage.binary_dilation(_tumour(study))
    ai_labels = arrays.add_volume_from_array(context, dilated.astype(np.uint8) * 3, geometry, "AI",
                                             "vtkMRMLLabelMapVolumeNode")
    io.save_node(ai_labels, tmp_path / "ai.nii.gz")
    io.save_node(corrected, tmp_path / "corrected.seg.nrrd")
    io.save_node(t2, tmp_path / "t2w.nrrd")
    truth_labels = arrays.add_volume_from_array(context, study.t2_labels, geometry, "truth",
                                                "vtkMRMLLabelMapVolumeNode")
    io.save_node(truth_labels, tmp_path / "truth_labels.nrrd")
    expected = compare_masks(dilated, _tumour(study), (3, 3, 4), tolerance_mm=3.0)

    out = tmp_path / "out"
    assert _run_compare(["--ai", str(tmp_path / "ai.nii.gz"), "--corrected", str(tmp_path / "corrected.seg.nrrd"),
                         "--out", str(out), "--tolerance-mm", "3"]) == 0
    lines = (out / "metrics.csv").read_text().splitlines()
    assert lines[0] == "metric,value,unit,description" and len(lines) == 1 + len(METRIC_NAMES)
    values = {line.split(",")[0]: float(line.split(",")[1]) for line in lines[1:]}
    assert values == pytest.approx(expected, rel=1e-8)
    assert "hd95_mm" in capsys.readouterr().out

    # label images on both sides, the corrected one a multi-label map: --corrected-segment picks the core
    # (label 7) and --reference gives the grid
    assert _run_compare(["--ai", str(tmp_path / "ai.nii.gz"), "--corrected", str(tmp_path / "truth_labels.nrrd"),
                         "--segment", "3", "--corrected-segment", "7", "--reference", str(tmp_path / "t2w.nrrd"),
                         "--out", str(out)]) == 0
    rows = dict(line.split(",")[:2] for line in (out / "metrics.csv").read_text().splitlines()[1:])
    core = study.t2_labels == 7
    assert float(rows["fnr"]) == 0 and float(rows["volume_corrected_ml"]) == pytest.approx(core.sum() * 0.036)

    with pytest.raises(FileFormatError, match="AI mask file"):
        _run_compare(["--ai", str(tmp_path / "missing.nii.gz"), "--corrected", str(tmp_path / "corrected.seg.nrrd"),
                      "--out", str(out)])
    with pytest.raises(InputError, match="holds 7 segments"):
        io.save_node(arrays.add_segmentation_from_labels(
            context, study.t2_labels, geometry, {v: (f"t{v}", (1, 0, 0)) for v in range(1, 8)}, "all"),
            tmp_path / "all.seg.nrrd")
        _run_compare(["--ai", str(tmp_path / "all.seg.nrrd"), "--corrected", str(tmp_path / "corrected.seg.nrrd"),
                      "--out", str(out)])


def test_cli_compare_repeated_segments_mean_their_union_and_a_merged_label_map_is_reported(
        context, studies, tmp_path, capsys):
    study = studies[1]
    geometry = geometry_of(study.t2_grid)
    t2 = arrays.add_volume_from_array(context, study.t2w, geometry, "T2w")
    io.save_node(t2, tmp_path / "t2w.nrrd")
    tissues = {v: (name, (1, 0, 0)) for v, name in ((6, "tumour rim"), (7, "tumour core"), (2, "liver"))}
    keep = np.where(np.isin(study.t2_labels, (2, 6, 7)), study.t2_labels, 0)
    corrected = arrays.add_segmentation_from_labels(context, keep, geometry, tissues, "drawn", t2)
    io.save_node(corrected, tmp_path / "drawn.seg.nrrd")
    labels = arrays.add_volume_from_array(context, keep, geometry, "labels", "vtkMRMLLabelMapVolumeNode")
    io.save_node(labels, tmp_path / "labels.nrrd")
    ai_mask = ndimage.binary_erosion(_tumour(study))
    ai = arrays.add_volume_from_array(context, ai_mask.astype(np.uint8), geometry, "AI", "vtkMRMLLabelMapVolumeNode")
    io.save_node(ai, tmp_path / "ai.nii.gz")
    expected = compare_masks(ai_mask, _tumour(study), (3, 3, 4))

    def metrics(*argv):
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        assert _run_compare(["--ai", str(tmp_path / "ai.nii.gz"), "--reference", str(tmp_path / "t2w.nrrd"),
                             "--out", str(out), *argv]) == 0
        rows = [line.split(",") for line in (out / "metrics.csv").read_text().splitlines()[1:]]
        return {row[0]: float(row[1]) for row in rows}, capsys.readouterr().out

    # rim + core of a .seg.nrrd: the union is the tumour (the last --corrected-segment alone would be the core)
    union, printed = metrics("--corrected", str(tmp_path / "drawn.seg.nrrd"),
                             "--corrected-segment", "tumour rim", "--corrected-segment", "tumour core")
    assert union == pytest.approx(expected, rel=1e-8)
    assert "'tumour rim' + 'tumour core'" in printed
    core_only, _ = metrics("--corrected", str(tmp_path / "drawn.seg.nrrd"), "--corrected-segment", "tumour core")
    assert core_only["volume_corrected_ml"] < union["volume_corrected_ml"]
    # the same with label values of a label image
    by_label, printed = metrics("--corrected", str(tmp_path / "labels.nrrd"),
                                "--corrected-segment", "6", "--corrected-segment", "7")
    assert by_label == pytest.approx(expected, rel=1e-8) and "note:" not in printed
    # no --corrected-segment on a multi-label map: every label is merged, and that is said
    merged, printed = metrics("--corrected", str(tmp_path / "labels.nrrd"))
    assert merged["volume_corrected_ml"] == pytest.approx(np.count_nonzero(keep) * 0.036)
    assert "note: the corrected mask 'labels.nrrd' holds labels 2, 6, 7; all non-zero voxels were merged" in printed
    # a label value that is not in the map is said, not silently compared as empty
    _, printed = metrics("--corrected", str(tmp_path / "labels.nrrd"), "--corrected-segment", "6",
                         "--corrected-segment", "9")
    assert "label 9 does not occur in the corrected mask 'labels.nrrd' (labels present: 2, 6, 7)" in printed
    with pytest.raises(InputError, match="no segment named 'tumour centre'"):
        metrics("--corrected", str(tmp_path / "drawn.seg.nrrd"), "--corrected-segment", "tumour rim",
                "--corrected-segment", "tumour centre")


def test_compare_segments_takes_a_list_of_segments_as_their_union(context, studies):
    study = studies[0]
    geometry = geometry_of(study.t2_grid)
    t2 = arrays.add_volume_from_array(context, study.t2w, geometry, "T2w")
    tissues = {6: ("tumour rim", (1, 0, 0)), 7: ("tumour core", (0, 1, 0))}
    corrected = arrays.add_segmentation_from_labels(
        context, np.where(_tumour(study), study.t2_labels, 0), geometry, tissues, "drawn", t2)
    ai = arrays.add_segmentation_from_labels(context, _tumour(study).astype(np.uint8), geometry, TUMOUR, "AI", t2)
    ids = arrays.segment_ids(corrected)
    table = compare_segments(context, ai, arrays.segment_ids(ai)[0], corrected, ids, t2)
    assert _values(table)["dsc"] == pytest.approx(1.0)
    assert json.loads(table.GetAttribute("VirtualBiopsy.CorrectedSegments")) == ["tumour rim", "tumour core"]
    rim_only = _values(compare_segments(context, ai, arrays.segment_ids(ai)[0], corrected, ids[:1], t2))["dsc"]
    assert rim_only == pytest.approx(compare_masks(_tumour(study), study.t2_labels == 6, (3, 3, 4))["dsc"])
    assert rim_only < 0.99
