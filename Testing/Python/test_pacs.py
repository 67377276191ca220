"""PACS exchange: option and input checks here; the round trips through a real Orthanc run in a private
network namespace (orthanc_roundtrip.py, started by the last test)."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from orthanc import orthanc_missing, run_in_private_network

from virtualbiopsy.cli.main import main
from virtualbiopsy.dicom import pacs
from virtualbiopsy.errors import InputError

BAD_OPTIONS = [
    (["find", "--url", "ftp://pacs/dicom-web"], "not an http(s) URL"),
    (["find", "--url", "http://user:pw@pacs:8042/dicom-web"], "must not carry a user or password"),
    (["find", "--ae", "pacs:104"], "not HOST:PORT:AE_TITLE"),
    (["find", "--ae", "pacs:99999:PACS"], "not HOST:PORT:AE_TITLE"),
    (["find", "--ae", "pacs:104:A_TITLE_FAR_TOO_LONG"], "not an AE title"),
    (["find", "--url", "http://127.0.0.1:9/dicom-web", "--timeout", "0"], "--timeout must be a positive"),
    (["find", "--url", "http://127.0.0.1:9/dicom-web", "--study", "../../etc"], "is not a DICOM study UID"),
    (["get", "--url", "http://127.0.0.1:9/dicom-web", "--study", "1.2", "--series", "1.2.x", "--out", "{tmp}/o"],
     "is not a DICOM series UID"),
    (["put", "--url", "http://127.0.0.1:9/dicom-web", "{tmp}/missing"], "No file or folder"),
    (["put", "--url", "http://127.0.0.1:9/dicom-web", "{tmp}/not.dcm"], "is not a DICOM file"),
    (["find", "--url", "http://127.0.0.1:9/dicom-web", "--timeout", "2"], "could not be reached"),
]


@pytest.mark.parametrize(("arguments", "message"), BAD_OPTIONS, ids=[m for _, m in BAD_OPTIONS])
def test_a_bad_pacs_option_or_an_unreachable_server_is_one_line_and_exit_2(arguments, message, tmp_path, capsys):
    (tmp_path / "not.dcm").write_text("hello")
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    assert main(["pacs", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1, error
    assert not (tmp_path / "o").exists()


def test_nothing_a_server_sends_chooses_where_a_file_is_written(tmp_path):
    dataset = pydicom.Dataset()
    dataset.StudyInstanceUID = "1.2.3"
    with pytest.warns(UserWarning, match="Invalid value for VR UI"):
        dataset.SOPInstanceUID = "../../outside"
    with pytest.raises(InputError, match="not a DICOM SOP instance UID"):
        pacs._save(dataset, tmp_path, "1.2.3", "1.2.3.4")
    dataset.SOPInstanceUID = "1.2.3.4.5"
    with pytest.raises(InputError, match="not a DICOM series UID"):
        pacs._save(dataset, tmp_path, "1.2.3", "/abs")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("dicomweb://pacs:8042/dicom-web/studies/1.2.3/series/4.5", ("http://pacs:8042/dicom-web", "1.2.3", "4.5")),
    ("dicomwebs://pacs.example.org/wado/rs/studies/1.2.3", ("https://pacs.example.org/wado/rs", "1.2.3", None)),
    (Path("dicomweb://pacs:8042/dicom-web/studies/1.2.3/series/4.5"), ("http://pacs:8042/dicom-web", "1.2.3", "4.5")),
    ("/data/t2w.nrrd", None),
])
def test_dicomweb_references_name_the_server_study_and_series(text, expected):
    reference = pacs.parse_web_reference(text)
    assert (None if reference is None else (reference.url, reference.study_uid, reference.series_uid)) == expected


def test_a_malformed_dicomweb_reference_is_refused(capsys, tmp_path):
    from virtualbiopsy.segmentation.demo_model import demo_model_path

    assert main(["segment", "--model", str(demo_model_path()), "--image", "dicomweb://pacs/studies/1.2.x",
                 "--out", str(tmp_path / "seg")]) == 2
    assert "is not a DICOMweb reference" in capsys.readouterr().err
    assert not (tmp_path / "seg").exists()


@pytest.mark.slow
def test_round_trips_through_a_real_orthanc_in_a_private_network():
    why = orthanc_missing()
    if why:
        pytest.skip(why)
    result = run_in_private_network(Path(__file__).with_name("orthanc_roundtrip.py"))
    print(result.stdout[-3000:])
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.split("\n")[-2]
