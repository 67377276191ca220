"""The sample study on disk (documented layout, geometry and truth) and the demo's outputs."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from virtualbiopsy.cli.main import main
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.phantom.tissues import TISSUES, TUMOUR_CORE, TUMOUR_RIM
from virtualbiopsy.sample_study import FILES, geometry_of, load_study, write_study


@pytest.fixture(scope="module")
def study_folder(small_study, tmp_path_factory):
    study = small_study(3, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0))
    folder = tmp_path_factory.mktemp("study")
    write_study(study, folder)
    return folder


def test_study_folder_has_documented_files_and_reloads(small_study, study_folder):
    study = small_study(3, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0))
    assert sorted(p.name for p in study_folder.iterdir()) == sorted(FILES.values())
    context = MRMLContext.create()
    loaded = load_study(context, study_folder)
    assert Geometry.from_node(loaded.nodes["t2w"]).differences(geometry_of(study.t2_grid)) == []
    assert Geometry.from_node(loaded.nodes["adc_true"]).differences(geometry_of(study.dwi_grid)) == []
    np.testing.assert_array_equal(arrays.array_from_volume(loaded.nodes["t2w"]), study.t2w)
    assert loaded.b_values == list(study.b_values)
    assert loaded.dce_times == pytest.approx(list(study.dce_times))
    volumes, _ = io.sequence_volumes(loaded.nodes["dwi"])
    for volume, frame in zip(volumes, study.dwi):
        np.testing.assert_array_equal(arrays.array_from_volume(volume), frame)
    names = [row["segment"] for row in arrays.segment_volumes(loaded.nodes["segmentation"])]
    assert names == [t.name for t in TISSUES[1:]]


def test_truth_json_matches_maps_and_tissue_table(small_study, study_folder):
    study = small_study(3, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0))
    truth = json.loads((study_folder / "truth.json").read_text())
    assert truth["seed"] == 3
    assert truth["b_values_s_per_mm2"] == list(study.b_values)
    context = MRMLContext.create()
    loaded = load_study(context, study_folder)
    adc = arrays.array_from_volume(loaded.nodes["adc_true"])
    labels = arrays.array_from_volume(loaded.nodes["dwi_labels"])
    for label in (TUMOUR_RIM, TUMOUR_CORE):
        assert np.allclose(adc[labels == label], TISSUES[label].adc)
    iauc = arrays.array_from_volume(loaded.nodes["iauc60_true"])
    assert np.allclose(iauc[labels == TUMOUR_RIM], TISSUES[TUMOUR_RIM].iauc60, rtol=1e-6)


def test_loading_a_folder_that_is_not_a_study(context, tmp_path):
    from virtualbiopsy.errors import FileFormatError

    with pytest.raises(FileFormatError, match="truth.json"):
        load_study(context, tmp_path)


@pytest.mark.slow
def test_demo_writes_a_scene_that_reloads_with_the_same_volumes_and_segments(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out)]) == 0
    for name in ("report.html", "scene.mrb", "adc.nrrd", "tables/adc_by_tissue.csv", "figures/overview.png",
                 "figures/dce_curves.png", "study/truth.json"):
        assert (out / name).is_file(), name
    study = generate_study(0)
    context = MRMLContext.create()
    io.load_scene(context, out / "scene.mrb")
    t2w = context.scene.GetFirstNodeByName("T2w")
    np.testing.assert_array_equal(arrays.array_from_volume(t2w), study.t2w)
    segmentation = context.scene.GetFirstNodeByName("Ground truth")
    volumes = {row["segment"]: row["voxels"] for row in arrays.segment_volumes(segmentation)}
    for t in TISSUES[1:]:
        assert volumes[t.name] == np.count_nonzero(study.t2_labels == t.label), t.name
    adc = context.scene.GetFirstNodeByName("ADC")
    assert adc is not None and adc.GetAttribute("VirtualBiopsy.Units") == "mm2/s"
    assert context.scene.GetFirstNodeByName("DWI").GetNumberOfDataNodes() == len(study.b_values)
    rows = (out / "tables" / "adc_by_tissue.csv").read_text().splitlines()
    rim = next(r for r in rows if r.startswith("tumour rim")).split(",")
    assert abs(float(rim[5])) < 5.0, "tumour-rim ADC bias over 5 % on the demo study"
    html = (out / "report.html").read_text()
    assert "figures/overview.png" in html and "nothing here is for clinical decisions" in html

    # the headline DSC is reproducible from the files with the command line: the true tumour is the
    # union of the ground truth's rim and core segments (repeated --corrected-segment)
    def metrics(folder):
        rows = [line.split(",") for line in (folder / "metrics.csv").read_text().splitlines()[1:]]
        return {row[0]: float(row[1]) for row in rows}

    assert main(["compare", "--ai", str(out / "segmentation" / "segmentation.seg.nrrd"),
                 "--corrected", str(out / "study" / "ground_truth.seg.nrrd"), "--corrected-segment", "tumour rim",
                 "--corrected-segment", "tumour core", "--reference", str(out / "study" / "t2w.nrrd"),
                 "--out", str(tmp_path / "compare")]) == 0
    demo_metrics = metrics(out / "segmentation")
    assert metrics(tmp_path / "compare") == pytest.approx(demo_metrics, rel=1e-9)
    assert demo_metrics["dsc"] > 0.8

    # the study as DICOM, and the results as DICOM objects referencing it
    import highdicom

    t2_dicom = io.load_volume(context, out / "study" / "dicom" / "t2w")
    np.testing.assert_array_equal(arrays.array_from_volume(t2_dicom), study.t2w)
    assert sorted(p.name for p in (out / "dicom").iterdir()) == [
        "adc_pm.dcm", "measurements_sr.dcm", "segmentation_seg.dcm", "uncertainty_pm.dcm"]
    seg = highdicom.seg.segread(out / "dicom" / "segmentation_seg.dcm")
    source = pydicom.dcmread(next((out / "study" / "dicom" / "t2w").glob("*.dcm")))
    assert seg.StudyInstanceUID == source.StudyInstanceUID
    assert "DEMO" in seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName
    assert "DICOM:        4 objects" in capsys.readouterr().out
