"""Round trips through a real Orthanc PACS (DICOMweb and DIMSE). Run by test_pacs.py inside a private
network namespace (see orthanc.py); skipped when collected anywhere else."""

from __future__ import annotations

import os
import socket

import numpy as np
import pydicom
import pytest
from orthanc import IN_NAMESPACE, OrthancServer, free_port

from virtualbiopsy.cli.main import main
from virtualbiopsy.dicom import export
from virtualbiopsy.dicom.phantom import write_study_dicom
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.segmentation.demo_model import demo_model_path

pytestmark = pytest.mark.skipif(os.environ.get(IN_NAMESPACE) != "1",
                                reason="runs inside a private network namespace, started by test_pacs.py")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    with OrthancServer(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("study")
    phantom = generate_study(4, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0),
                             dce_times=(0.0, 10.0, 20.0, 30.0))
    written = write_study_dicom(phantom, folder / "dicom")
    return folder, written


@pytest.fixture
def logged_in(orthanc, monkeypatch, tmp_path):
    for name, value in orthanc.credentials().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VIRTUALBIOPSY_CACHE", str(tmp_path / "cache"))
    return orthanc


def _uids(folder) -> dict[str, bytes]:
    """SOP instance UID -> pixel data of every DICOM file below ``folder``."""
    found = {}
    for path in sorted(p for p in folder.rglob("*.dcm")):
        dataset = pydicom.dcmread(path)
        found[str(dataset.SOPInstanceUID)] = dataset.PixelData if "PixelData" in dataset else b""
    return found


def _series_of(capsys) -> dict[str, str]:
    """description -> series UID from 'pacs find' output."""
    lines = capsys.readouterr().out.splitlines()
    found = {}
    for line in lines:
        if "series " in line and "instances" in line:
            head, uid = line.rsplit("series ", 1)
            found[" ".join(head.split()[2:-2])] = uid.strip()
    return found


def test_dicomweb_put_find_get_segment_from_the_pacs_and_store_the_results_in_the_same_study(
        logged_in, study, tmp_path, capsys):
    folder, written = study
    local = _uids(folder / "dicom")
    assert main(["pacs", "put", "--url", logged_in.url, str(folder / "dicom")]) == 0
    assert f"{len(local)} instance(s) stored" in capsys.readouterr().out
    study_uid = pydicom.dcmread(next((folder / "dicom" / "t2w").glob("*.dcm"))).StudyInstanceUID

    patient = pydicom.dcmread(next((folder / "dicom" / "t2w").glob("*.dcm"))).PatientID
    assert main(["pacs", "find", "--url", logged_in.url, "--patient", patient]) == 0
    series = _series_of(capsys)
    assert sorted(series) == ["DCE (phantom)", "DWI (phantom)", "T2w TSE (phantom)"], series
    assert main(["pacs", "find", "--url", logged_in.url, "--patient", "someone else"]) == 0
    assert "No series found" in capsys.readouterr().out

    t2_uid = series["T2w TSE (phantom)"]
    assert main(["pacs", "get", "--url", logged_in.url, "--study", study_uid, "--series", t2_uid,
                 "--out", str(tmp_path / "got")]) == 0
    got = _uids(tmp_path / "got")
    assert got == _uids(folder / "dicom" / "t2w")  # the same instances, pixel data byte for byte

    reference = f"dicomweb://127.0.0.1:{logged_in.http_port}/dicom-web/studies/{study_uid}/series/{t2_uid}"
    assert main(["segment", "--model", str(demo_model_path()), "--image", reference, "--out", str(tmp_path / "seg"),
                 "--no-mirroring", "--device", "cpu", "--dicom"]) == 0
    results = tmp_path / "seg" / "dicom"
    assert main(["pacs", "put", "--url", logged_in.url, str(results)]) == 0
    capsys.readouterr()
    assert main(["pacs", "find", "--url", logged_in.url, "--study", study_uid]) == 0
    after = _series_of(capsys)
    new = set(after) - set(series)  # the SEG, the Parametric Map and the SR: three new series of the same study
    assert new == {"AI tumour segmentation", "Uncertainty map", "AI tumour measurements"}, after
    capsys.readouterr()
    assert main(["pacs", "find", "--url", logged_in.url, "--study", study_uid, "--modality", "SR"]) == 0
    [sr_uid] = _series_of(capsys).values()
    assert main(["pacs", "get", "--url", logged_in.url, "--study", study_uid, "--series", sr_uid,
                 "--out", str(tmp_path / "sr")]) == 0
    [sr] = list((tmp_path / "sr").rglob("*.dcm"))
    assert pydicom.dcmread(sr).SOPInstanceUID == pydicom.dcmread(results / "measurements_sr.dcm").SOPInstanceUID


def test_dimse_find_get_and_store_agree_with_dicomweb(logged_in, study, tmp_path, capsys):
    folder, _ = study
    assert main(["pacs", "put", "--ae", logged_in.ae, str(folder / "dicom" / "dwi")]) == 0  # again: stored once
    study_uid = pydicom.dcmread(next((folder / "dicom" / "dwi").glob("*.dcm"))).StudyInstanceUID
    capsys.readouterr()
    assert main(["pacs", "find", "--ae", logged_in.ae, "--study", study_uid]) == 0
    over_dimse = _series_of(capsys)
    assert main(["pacs", "find", "--url", logged_in.url, "--study", study_uid]) == 0
    assert _series_of(capsys) == over_dimse
    assert main(["pacs", "get", "--ae", logged_in.ae, "--study", study_uid, "--series", over_dimse["DWI (phantom)"],
                 "--out", str(tmp_path / "got")]) == 0
    assert _uids(tmp_path / "got") == _uids(folder / "dicom" / "dwi")

    context = MRMLContext.create()
    t2 = io.load_volume(context, folder / "dicom" / "t2w")
    values = arrays.array_from_volume(t2)
    labels = (values > np.percentile(values, 90)).astype(np.uint8)
    segmentation = arrays.add_segmentation_from_labels(context, labels, Geometry.from_node(t2),
                                                       {1: ("bright", (1, 0, 0))}, "manual", t2)
    seg = export.write_segmentation(segmentation, t2, tmp_path / "manual_seg.dcm", export.Algorithm("MANUAL"))
    assert main(["pacs", "put", "--ae", logged_in.ae, str(seg)]) == 0
    capsys.readouterr()
    assert main(["pacs", "find", "--url", logged_in.url, "--study", study_uid, "--modality", "SEG"]) == 0
    assert "manual (manual)" in _series_of(capsys)


def test_a_wrong_password_an_unknown_study_and_a_silent_server_each_get_one_line(orthanc, study, tmp_path,
                                                                                  monkeypatch, capsys):
    monkeypatch.setenv("VIRTUALBIOPSY_PACS_USER", orthanc.user)
    monkeypatch.setenv("VIRTUALBIOPSY_PACS_PASSWORD", "wrong")
    assert main(["pacs", "find", "--url", orthanc.url]) == 2
    assert "refused the login (HTTP 401)" in capsys.readouterr().err

    monkeypatch.setenv("VIRTUALBIOPSY_PACS_PASSWORD", orthanc.password)
    assert main(["pacs", "get", "--url", orthanc.url, "--study", "1.2.3.4", "--out", str(tmp_path / "none")]) == 2
    assert "no series in study 1.2.3.4" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()
    assert main(["pacs", "get", "--ae", orthanc.ae, "--study", "1.2.3.4", "--out", str(tmp_path / "none")]) == 2
    assert "no series in study 1.2.3.4" in capsys.readouterr().err

    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        port = free_port()
        silent.bind(("127.0.0.1", port))
        silent.listen(8)
        assert main(["pacs", "find", "--url", f"http://127.0.0.1:{port}/dicom-web", "--timeout", "1"]) == 2
        assert "did not answer within 1 s" in capsys.readouterr().err
        assert main(["pacs", "find", "--ae", f"127.0.0.1:{port}:SILENT", "--timeout", "1"]) == 2
        assert "did not answer within 1 s" in capsys.readouterr().err
