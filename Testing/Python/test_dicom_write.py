"""Writing DICOM (issue 11): SEG and Parametric Maps reference their source series, pass dciodvfy without
errors and read back with highdicom to the same voxels and grid; ``segment --dicom`` and ``fcf --dicom``
write them from DICOM inputs and refuse when the input was not DICOM."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from refusals import CliCase, assert_cli_refuses
from test_dicom_read import _from_highdicom

from virtualbiopsy.cli.main import main
from virtualbiopsy.dicom import export
from virtualbiopsy.dicom.phantom import write_study_dicom
from virtualbiopsy.errors import InputError
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.sample_study import write_study
from virtualbiopsy.segmentation.demo_model import demo_model_path

DCE_TIMES = (0.0, 10.0, 20.0, 30.0, 40.0, 60.0)


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    study = generate_study(3, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0), dce_times=DCE_TIMES)
    write_study(study, folder)
    write_study_dicom(study, folder / "dicom")
    return folder, study


def dciodvfy_errors(path) -> list[str]:
    """dciodvfy's error lines for one file (its warnings are listed by the callers' assertion messages)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools: apt-get install dicom3tools)")
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def _volume_of_segment(seg, number: int, reference: Geometry) -> np.ndarray:
    """One segment of a SEG read back with highdicom, on ``reference``'s grid (empty frames are omitted)."""
    volume = seg.get_volume(segment_numbers=[number], combine_segments=False)
    array, geometry = _from_highdicom(volume.squeeze_channel() if volume.array.ndim == 4 else volume)
    full = np.zeros(reference.shape, np.uint8)
    offset = np.linalg.solve(reference.ijk_to_ras, geometry.ijk_to_ras[:, 3])[:3]
    i, j, k = (int(round(v)) for v in offset)
    np.testing.assert_allclose(geometry.ijk_to_ras[:3, :3], reference.ijk_to_ras[:3, :3], atol=1e-4)
    full[k:k + array.shape[0], j:j + array.shape[1], i:i + array.shape[2]] = array
    return full


def test_a_seg_of_the_ground_truth_reads_back_voxel_for_voxel_and_passes_dciodvfy(study_folder, tmp_path):
    import highdicom

    folder, _ = study_folder
    context = MRMLContext.create()
    t2 = io.load_volume(context, folder / "dicom" / "t2w")
    truth = io.load_segmentation(context, folder / "ground_truth.seg.nrrd")
    path = export.write_segmentation(truth, t2, tmp_path / "truth_seg.dcm", export.Algorithm("MANUAL"))
    seg = highdicom.seg.segread(path)
    source = pydicom.dcmread(sorted((folder / "dicom" / "t2w").glob("*.dcm"))[0])
    assert (seg.StudyInstanceUID, seg.PatientID, seg.FrameOfReferenceUID) == (
        source.StudyInstanceUID, source.PatientID, source.FrameOfReferenceUID)
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.Modality == "SEG"
    reference = Geometry.from_node(t2)
    names = {}
    for number, segment_id in enumerate(arrays.segment_ids(truth), start=1):
        expected = arrays.mask_from_segment(truth, segment_id, t2, allow_empty=True)
        description = seg.SegmentSequence[number - 1]
        names[description.SegmentLabel] = description.SegmentedPropertyTypeCodeSequence[0].CodeMeaning
        assert description.SegmentAlgorithmType == "MANUAL"
        np.testing.assert_array_equal(_volume_of_segment(seg, number, reference), expected.astype(np.uint8))
    assert names["tumour rim"] == names["tumour core"] == "Neoplasm" and names["liver"] == "Tissue"
    assert dciodvfy_errors(path) == []


def test_an_adc_parametric_map_reads_back_in_um2_per_s(study_folder, tmp_path):
    import highdicom

    folder, _ = study_folder
    context = MRMLContext.create()
    frames, b_values = io.load_frames(context, folder / "dicom" / "dwi")
    adc = io.load_volume(context, folder / "adc_true.nrrd")
    path = export.write_parametric_map(adc, frames[0], tmp_path / "adc_pm.dcm", "ADC", "true ADC", "mm2/s")
    dataset = pydicom.dcmread(path)
    mapping = dataset.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == "um2/s"
    pmap = highdicom.pm.ParametricMap.from_dataset(dataset)
    array, geometry = _from_highdicom(pmap.get_volume(apply_real_world_transform=True))
    assert not geometry.differences(Geometry.from_node(adc), tolerance_mm=1e-4)
    np.testing.assert_allclose(array * 1e-6, arrays.array_from_volume(adc), rtol=1e-6, atol=1e-12)
    assert dataset.ReferencedSeriesSequence[0].SeriesInstanceUID == frames[0].GetAttribute(
        "VirtualBiopsy.DicomSeriesUID")
    assert dciodvfy_errors(path) == []


@pytest.mark.slow
def test_segment_and_fcf_write_dicom_from_dicom_inputs(study_folder, tmp_path, capsys):
    import highdicom

    folder, _ = study_folder
    out = tmp_path / "seg"
    assert main(["segment", "--model", str(demo_model_path()), "--image", f"{folder / 'dicom'}#T2w", "--out",
                 str(out), "--no-mirroring", "--device", "cpu", "--dicom"]) == 0
    seg = highdicom.seg.segread(out / "dicom" / "segmentation_seg.dcm")
    description = seg.SegmentSequence[0]
    assert description.SegmentAlgorithmType == "AUTOMATIC"
    assert "DEMO" in description.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName
    context = MRMLContext.create()
    t2 = io.load_volume(context, folder / "dicom" / "t2w")
    nrrd = io.load_segmentation(context, out / "segmentation.seg.nrrd")
    expected = arrays.mask_from_segment(nrrd, arrays.segment_ids(nrrd)[0], t2)
    np.testing.assert_array_equal(_volume_of_segment(seg, 1, Geometry.from_node(t2)), expected.astype(np.uint8))

    fcf = tmp_path / "fcf"
    assert main(["fcf", "--dwi", str(folder / "dicom" / "dwi"), "--mask", str(folder / "dwi_labels.nrrd"),
                 "--label", "6", "--dce", str(folder / "dicom" / "dce"), "--window", "30", "--out", str(fcf),
                 "--dicom"]) == 0
    written = sorted(p.name for p in (fcf / "dicom").iterdir())
    assert written == ["adc_pm.dcm", "adc_se_pm.dcm", "habitats_seg.dcm", "iauc_pm.dcm", "measurements_sr.dcm"]
    pmap = highdicom.pm.ParametricMap.from_dataset(pydicom.dcmread(fcf / "dicom" / "adc_pm.dcm"))
    array, _ = _from_highdicom(pmap.get_volume(apply_real_world_transform=True))
    adc = io.load_volume(context, fcf / "adc.nrrd")
    np.testing.assert_allclose(array * 1e-6, arrays.array_from_volume(adc), rtol=1e-6, atol=1e-12)
    seg_summary = json.loads((out / "summary.json").read_text())
    [tumour] = _sr_groups(out / "dicom" / "measurements_sr.dcm", out / "dicom" / "segmentation_seg.dcm")
    assert tumour["Volume"] == (pytest.approx(seg_summary["tumour_volume_ml"]), "ml", None)
    assert tumour["Uncertain fraction of the segment"][0] == pytest.approx(100 * seg_summary["uncertain_fraction"])
    habitats = _sr_groups(fcf / "dicom" / "measurements_sr.dcm", fcf / "dicom" / "habitats_seg.dcm")
    table = list(csv.DictReader((fcf / "habitats.csv").open()))
    assert [group["label"] for group in habitats] == [row["habitat"] for row in table]
    for group, row in zip(habitats, table, strict=True):
        value, unit, (low, high) = group["Apparent Diffusion Coefficient"]
        assert unit == "um2/s" and value == pytest.approx(float(row["adc"]) * 1e6)
        assert (value - low, value + high) == pytest.approx((float(row["adc_ci_low"]) * 1e6,
                                                             float(row["adc_ci_high"]) * 1e6))
        assert group["Initial area under the enhancement curve"][0] == pytest.approx(float(row["iauc30"]))
    assert sum(group["Fraction of the tumour volume"][0] for group in habitats) == pytest.approx(100)
    for path in [out / "dicom" / "segmentation_seg.dcm", out / "dicom" / "uncertainty_pm.dcm",
                 out / "dicom" / "measurements_sr.dcm",
                 *(fcf / "dicom" / name for name in written)]:
        assert dciodvfy_errors(path) == [], path.name


def _sr_groups(sr_path, seg_path) -> list[dict]:
    """Each measurement group of a TID 1500 report read back with highdicom: its label, then per
    measurement (value, unit, (lower, upper) uncertainty or None); checks it references the SEG."""
    import highdicom

    report = highdicom.sr.srread(sr_path)
    seg = pydicom.dcmread(seg_path)
    groups = []
    for group in report.content.get_volumetric_roi_measurement_groups():
        reference = group.referenced_segment[0].ReferencedSOPSequence[0]
        assert reference.ReferencedSOPInstanceUID == seg.SOPInstanceUID
        label = seg.SegmentSequence[int(reference.ReferencedSegmentNumber) - 1].SegmentLabel
        entry = {"label": label}
        assert group.tracking_identifier == label
        for measurement in group.get_measurements():
            spread = {item.ConceptNameCodeSequence[0].CodeMeaning.split(",")[1].split()[2]:
                      float(item.MeasuredValueSequence[0].NumericValue)
                      for item in measurement[0].get("ContentSequence", []) if item.ValueType == "NUM"}
            entry[measurement.name.meaning] = (measurement.value, measurement.unit.value,
                                               (spread["lower"], spread["upper"]) if spread else None)
        groups.append(entry)
    return groups


def _not_dicom(command):
    def make(ws):
        study = generate_study(1, t2_spacing=(12.0, 12.0, 16.0), dwi_spacing=(12.0, 12.0, 16.0),
                               dce_times=(0.0, 20.0, 40.0, 60.0), b_values=(0, 500, 1000))
        write_study(study, ws / "study")
        if command == "segment":
            return ["segment", "--model", demo_model_path(), "--image", ws / "study" / "t2w.nrrd", "--out",
                    ws / "out", "--dicom", "--device", "cpu"]
        return ["fcf", "--dwi", ws / "study" / "dwi.seq.nrrd", "--mask", ws / "study" / "dwi_labels.nrrd",
                "--label", "6", "--out", ws / "out", "--dicom"]
    return make


REFUSED = [CliCase("segment-dicom-from-nrrd", _not_dicom("segment"), ("--dicom", "not read from DICOM")),
           CliCase("fcf-dicom-from-nrrd", _not_dicom("fcf"), ("--dicom", "not read from DICOM"))]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_dicom_output_from_a_non_dicom_input_is_refused_before_anything_runs(case, tmp_path, capsys):
    assert_cli_refuses(case, tmp_path, capsys)


def test_private_concept_codes_fit_a_short_code_value_so_every_reader_reads_them():
    from virtualbiopsy.dicom.report import PRIVATE_SCHEME, _concepts

    for concept, unit in _concepts().values():
        assert len(concept.value) <= 16 and len(unit.value) <= 16, concept
        assert concept.scheme_designator in ("SCT", "DCM", PRIVATE_SCHEME)


def test_compare_writes_the_corrected_tumour_as_a_semiautomatic_seg_with_its_agreement_report(study_folder, tmp_path):
    import highdicom

    folder, _ = study_folder
    context = MRMLContext.create()
    t2 = io.load_volume(context, folder / "dicom" / "t2w")
    truth = io.load_segmentation(context, folder / "ground_truth.seg.nrrd")
    tumour = np.logical_or.reduce([arrays.mask_from_segment(truth, arrays.segment_id_by_name(truth, name), t2)
                                   for name in ("tumour rim", "tumour core")])
    corrected = tumour.copy()
    corrected[: int(np.argwhere(tumour)[:, 0].mean())] = False  # the reader removed the lower half
    labels = arrays.add_volume_from_array(context, corrected.astype(np.uint8), Geometry.from_node(t2), "corrected")
    io.save_node(labels, tmp_path / "corrected.nrrd")
    out = tmp_path / "compare"
    assert main(["compare", "--ai", str(folder / "ground_truth.seg.nrrd"), "--segment", "tumour rim", "--segment",
                 "tumour core", "--corrected", str(tmp_path / "corrected.nrrd"), "--corrected-segment", "1",
                 "--reference", str(folder / "dicom" / "t2w"), "--out", str(out), "--dicom"]) == 0
    seg = highdicom.seg.segread(out / "dicom" / "corrected_seg.dcm")
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    np.testing.assert_array_equal(_volume_of_segment(seg, 1, Geometry.from_node(t2)), corrected.astype(np.uint8))
    metrics = {row["metric"]: float(row["value"]) for row in csv.DictReader((out / "metrics.csv").open())}
    [group] = _sr_groups(out / "dicom" / "corrected_sr.dcm", out / "dicom" / "corrected_seg.dcm")
    assert group["Dice similarity to the AI segmentation"][0] == pytest.approx(100 * metrics["dsc"])
    assert group["Volume"][0] == pytest.approx(metrics["volume_corrected_ml"])
    assert 40 < group["Dice similarity to the AI segmentation"][0] < 90
    for name in ("corrected_seg.dcm", "corrected_sr.dcm"):
        assert dciodvfy_errors(out / "dicom" / name) == [], name


def test_compare_dicom_without_a_dicom_reference_is_refused(study_folder, tmp_path, capsys):
    folder, _ = study_folder
    for extra, message in (([], "--dicom needs --reference"),
                           (["--reference", str(folder / "t2w.nrrd")], "--reference to be a DICOM series")):
        assert main(["compare", "--ai", str(folder / "ground_truth.seg.nrrd"), "--segment", "liver", "--corrected",
                     str(folder / "ground_truth.seg.nrrd"), "--out", str(tmp_path / "c"), "--dicom", *extra]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "c").exists()


def test_dce_writes_its_maps_as_parametric_maps_of_the_dicom_series(study_folder, tmp_path):
    import highdicom

    folder, _ = study_folder
    out = tmp_path / "dce"
    assert main(["dce", "--series", str(folder / "dicom" / "dce"), "--mask", str(folder / "dwi_labels.nrrd"),
                 "--label", "6", "--window", "30", "--out", str(out), "--dicom"]) == 0
    context = MRMLContext.create()
    for name, nrrd, unit in (("iauc30_pm.dcm", "iauc30.nrrd", "s"), ("time_to_peak_pm.dcm", "time_to_peak.nrrd", "s"),
                             ("wash_in_pm.dcm", "wash_in.nrrd", "/s")):
        dataset = pydicom.dcmread(out / "dicom" / name)
        mapping = dataset.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == unit
        array, _ = _from_highdicom(highdicom.pm.ParametricMap.from_dataset(dataset).get_volume(
            apply_real_world_transform=True))
        expected = arrays.array_from_volume(io.load_volume(context, out / nrrd, require_finite_values=False))
        np.testing.assert_allclose(array, expected, rtol=1e-6, atol=1e-9, equal_nan=True)
        assert dciodvfy_errors(out / "dicom" / name) == [], name


def test_radiomics_of_a_dicom_series_equals_radiomics_of_the_same_image_as_nrrd(study_folder, tmp_path):
    folder, _ = study_folder
    for name, image in (("nrrd", folder / "t2w.nrrd"), ("dicom", folder / "dicom" / "t2w")):
        assert main(["radiomics", "--image", str(image), "--mask", str(folder / "t2w_labels.nrrd"), "--label", "6",
                     "--case-id", "case", "--out", str(tmp_path / f"{name}.csv")]) == 0
    nrrd, dicom = ([row for row in csv.DictReader((tmp_path / f"{n}.csv").open())][0] for n in ("nrrd", "dicom"))
    assert nrrd.keys() == dicom.keys() and len(nrrd) > 50
    assert nrrd == dicom  # the same voxels on the same grid: every feature identical


def test_radiomics_refuses_a_lone_dicom_slice_instead_of_calling_it_3d(study_folder, tmp_path, capsys):
    folder, _ = study_folder
    one = sorted((folder / "dicom" / "t2w").glob("*.dcm"))[10]
    assert main(["radiomics", "--image", str(one), "--mask", str(folder / "t2w_labels.nrrd"), "--label", "6",
                 "--out", str(tmp_path / "r.csv")]) == 2
    assert "single 2D slice" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


def test_a_volume_loaded_by_slicers_dicom_module_exports_through_the_database_lookup(study_folder, tmp_path):
    """Slicer's DICOM module leaves only DICOM.instanceUIDs on a volume; the files come from its database."""
    from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic, SegmentParameters
    from virtualbiopsy.mrml.dicom_nodes import FILES_ATTRIBUTE

    folder, _ = study_folder
    database = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): str(p)
                for p in (folder / "dicom" / "t2w").glob("*.dcm")}
    context = MRMLContext.create()
    t2 = io.load_volume(context, folder / "dicom" / "t2w")
    t2.RemoveAttribute(FILES_ATTRIBUTE)  # as loaded by Slicer's DICOM module
    logic = NeuroblastomaSegLogic(context)
    outputs = logic.segment([t2], SegmentParameters(str(demo_model_path()), device="cpu", mirroring=False))
    nodes_before = context.scene.GetNumberOfNodes()
    written = logic.export_dicom(outputs, t2, tmp_path, True, database.get)
    assert sorted(p.name for p in written) == ["measurements_sr.dcm", "segmentation_seg.dcm", "uncertainty_pm.dcm"]
    assert context.scene.GetNumberOfNodes() == nodes_before
    seg = pydicom.dcmread(tmp_path / "segmentation_seg.dcm")
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced <= set(database) and referenced
    with pytest.raises(InputError, match="not in the DICOM database"):
        t2.RemoveAttribute(FILES_ATTRIBUTE)
        logic.export_dicom(outputs, t2, tmp_path / "again", True, lambda uid: None)
