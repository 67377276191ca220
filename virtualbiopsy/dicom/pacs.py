"""Exchange with a PACS: find, get and put DICOM over DICOMweb (dicomweb-client: QIDO-RS, WADO-RS,
STOW-RS) or DIMSE (pynetdicom: C-FIND, C-GET, C-STORE).

Credentials come from the environment only, never the command line (which every user of the machine
sees in the process list): ``VIRTUALBIOPSY_PACS_USER`` and ``VIRTUALBIOPSY_PACS_PASSWORD`` (HTTP basic)
or ``VIRTUALBIOPSY_PACS_TOKEN`` (a bearer token). Retrieved instances are written as
``FOLDER/<study UID>/<series UID>/<SOP instance UID>.dcm``, each UID checked to be a DICOM UID first,
so nothing a server sends chooses a path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from virtualbiopsy.errors import InputError, VirtualBiopsyError
from virtualbiopsy.progress import Task, as_task

USER_ENV, PASSWORD_ENV, TOKEN_ENV = "VIRTUALBIOPSY_PACS_USER", "VIRTUALBIOPSY_PACS_PASSWORD", "VIRTUALBIOPSY_PACS_TOKEN"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class PacsError(VirtualBiopsyError):
    """The PACS refused, failed or did not answer (its message names the server and what happened)."""


def check_uid(uid: str, what: str = "UID") -> str:
    """``uid`` if it is a DICOM UID (digits and dots, at most 64 characters), else an error."""
    uid = str(uid).strip()
    if not _UID.match(uid) or len(uid) > 64:
        raise InputError(f"'{uid[:80]}' is not a DICOM {what} (digits separated by dots, at most 64 characters).")
    return uid


@dataclass(frozen=True)
class Pacs:
    """Where the PACS is: a DICOMweb root URL, or a DIMSE ``HOST:PORT:AE_TITLE``."""

    url: str | None = None
    host: str | None = None
    port: int = 104
    called_ae: str = "ANY-SCP"
    calling_ae: str = "VIRTUALBIOPSY"
    timeout_s: float = 30.0

    @classmethod
    def from_options(cls, url: str | None = None, ae: str | None = None, calling_ae: str = "VIRTUALBIOPSY",
                     timeout_s: float = 30.0) -> Pacs:
        if (url is None) == (ae is None):
            raise InputError("Give the PACS as --url (DICOMweb root, e.g. http://host:8042/dicom-web) or --ae "
                             "HOST:PORT:AE_TITLE (DIMSE), one of the two.")
        if not timeout_s > 0:
            raise InputError(f"--timeout must be a positive number of seconds, not {timeout_s:g}.")
        _check_ae_title(calling_ae, "--calling-ae")
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InputError(f"--url '{url}' is not an http(s) URL of a DICOMweb service.")
            if parts.username or parts.password:
                raise InputError(f"--url must not carry a user or password; set {USER_ENV} and {PASSWORD_ENV} "
                                 "in the environment instead.")
            return cls(url=url.rstrip("/"), calling_ae=calling_ae, timeout_s=timeout_s)
        fields = ae.rsplit(":", 2)
        if len(fields) != 3 or not fields[0] or not fields[1].isdigit() or not 0 < int(fields[1]) < 65536:
            raise InputError(f"--ae '{ae}' is not HOST:PORT:AE_TITLE (e.g. pacs.hospital.org:104:PACS).")
        _check_ae_title(fields[2], "the called AE title")
        return cls(host=fields[0], port=int(fields[1]), called_ae=fields[2], calling_ae=calling_ae,
                   timeout_s=timeout_s)

    def describe(self) -> str:
        return self.url if self.url else f"{self.called_ae}@{self.host}:{self.port}"


def _check_ae_title(title: str, what: str) -> None:
    if not title or len(title) > 16 or not title.isascii() or "\\" in title or not title.strip():
        raise InputError(f"{what} '{title}' is not an AE title (1-16 ASCII characters, no backslash).")


@dataclass(frozen=True)
class SeriesRecord:
    """One series a PACS holds."""

    study_uid: str
    series_uid: str
    patient_id: str = ""
    study_date: str = ""
    study_description: str = ""
    modality: str = ""
    series_number: str = ""
    series_description: str = ""
    instances: int | None = None

    def line(self) -> str:
        count = "?" if self.instances is None else str(self.instances)
        return (f"{self.series_number:>4} {self.modality:<4} {self.series_description[:40]:<40} {count:>5} instances"
                f"  series {self.series_uid}")


# -- DICOMweb -------------------------------------------------------------------------------------


def _client(pacs: Pacs):
    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    if os.environ.get(TOKEN_ENV):
        session.headers["Authorization"] = f"Bearer {os.environ[TOKEN_ENV]}"
    elif os.environ.get(USER_ENV):
        session.auth = (os.environ[USER_ENV], os.environ.get(PASSWORD_ENV, ""))
    return DICOMwebClient(pacs.url, session=session, timeout=pacs.timeout_s)


class _WebErrors:
    """Turns what requests / dicomweb-client raise into one-line :class:`PacsError` messages."""

    def __init__(self, pacs: Pacs, doing: str) -> None:
        self.pacs, self.doing = pacs, doing

    def __enter__(self):
        return self

    def __exit__(self, kind, error, _traceback) -> bool:
        if error is None or isinstance(error, VirtualBiopsyError):
            return False
        import requests

        where = self.pacs.describe()
        if isinstance(error, requests.exceptions.HTTPError) and error.response is not None:
            status = error.response.status_code
            if status in (401, 403):
                raise PacsError(f"The PACS at {where} refused the login (HTTP {status}) while {self.doing}; set "
                                f"{USER_ENV} / {PASSWORD_ENV} (or {TOKEN_ENV}) in the environment.") from None
            raise PacsError(f"The PACS at {where} answered HTTP {status} ({error.response.reason}) while "
                            f"{self.doing}.") from None
        if isinstance(error, requests.exceptions.Timeout):
            raise PacsError(f"The PACS at {where} did not answer within {self.pacs.timeout_s:g} s while "
                            f"{self.doing} (--timeout).") from None
        if isinstance(error, requests.exceptions.RequestException):
            raise PacsError(f"The PACS at {where} could not be reached while {self.doing}: "
                            f"{type(error).__name__}.") from None
        return False


def _value(record: dict, keyword: str) -> str:
    """A value of a DICOM JSON record (QIDO-RS answer), '' when absent."""
    from pydicom.datadict import tag_for_keyword

    item = record.get(f"{tag_for_keyword(keyword):08X}", {})
    values = item.get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):  # person name
        value = value.get("Alphabetic", "")
    return str(value)


def _web_find(pacs: Pacs, filters: dict, task: Task) -> list[SeriesRecord]:
    client = _client(pacs)
    records = []
    with _WebErrors(pacs, "searching for studies"):
        study_filters = {key: value for key, value in filters.items() if key != "Modality"}  # a series attribute
        studies = client.search_for_studies(search_filters=study_filters, get_remaining=True)
        for study in task.steps(studies, "Searching for series"):
            study_uid = check_uid(_value(study, "StudyInstanceUID"), "study UID")
            series_filters = {"Modality": filters["Modality"]} if "Modality" in filters else None
            for series in client.search_for_series(study_instance_uid=study_uid, search_filters=series_filters,
                                                   get_remaining=True):
                count = _value(series, "NumberOfSeriesRelatedInstances")
                records.append(SeriesRecord(
                    study_uid, check_uid(_value(series, "SeriesInstanceUID"), "series UID"),
                    _value(study, "PatientID"), _value(study, "StudyDate"), _value(study, "StudyDescription"),
                    _value(series, "Modality"), _value(series, "SeriesNumber"), _value(series, "SeriesDescription"),
                    int(count) if count.isdigit() else None))
    return records


def _web_get(pacs: Pacs, study_uid: str, series_uids: Sequence[str], folder: Path, task: Task) -> list[Path]:
    client = _client(pacs)
    written = []
    with _WebErrors(pacs, f"retrieving study {study_uid}"):
        for index, series_uid in enumerate(series_uids):
            part = task.sub(index / len(series_uids), (index + 1) / len(series_uids))
            for number, dataset in enumerate(client.iter_series(study_uid, series_uid), start=1):
                part.check()
                part.update(min(0.99, number / (number + 20)), f"Series {index + 1} of {len(series_uids)}: "
                            f"{number} instance(s)")
                written.append(_save(dataset, folder, study_uid, series_uid))
    return written


def _web_put(pacs: Pacs, datasets: Sequence, task: Task) -> None:
    client = _client(pacs)
    with _WebErrors(pacs, "storing instances"):
        for start in task.steps(range(0, len(datasets), 20), "Storing", total=(len(datasets) + 19) // 20):
            answer = client.store_instances(datasets[start:start + 20])
            failed = answer.get("FailedSOPSequence") or []
            if failed:
                reason = getattr(failed[0], "FailureReason", "?")
                raise PacsError(f"The PACS at {pacs.describe()} refused {len(failed)} instance(s) "
                                f"(failure reason {reason}).")


# -- DIMSE ----------------------------------------------------------------------------------------


def _associate(pacs: Pacs, contexts, storage_roles: Sequence[str] = ()):
    from pynetdicom import AE, build_role

    ae = AE(ae_title=pacs.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = pacs.timeout_s
    ae.connection_timeout = pacs.timeout_s
    for context in contexts:
        ae.add_requested_context(context)
    return ae, [build_role(uid, scp_role=True) for uid in storage_roles]


def _open(pacs: Pacs, ae, roles=(), handlers=()):
    association = ae.associate(pacs.host, pacs.port, ae_title=pacs.called_ae, ext_neg=list(roles) or None,
                               evt_handlers=list(handlers) or None)
    if not association.is_established:
        if association.is_rejected:
            raise PacsError(f"The PACS {pacs.describe()} rejected the association (calling AE "
                            f"'{pacs.calling_ae}': is it registered there?).")
        raise PacsError(f"The PACS {pacs.describe()} could not be reached or did not answer within "
                        f"{pacs.timeout_s:g} s (--timeout).")
    return association


def _dimse_find(pacs: Pacs, filters: dict, task: Task) -> list[SeriesRecord]:
    """Study-level C-FIND, then a series-level one per study (the hierarchical query every SCP answers)."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Find

    ae, _ = _associate(pacs, [Find])
    association = _open(pacs, ae)
    study_keys = ("StudyInstanceUID", "PatientID", "StudyDate", "StudyDescription")
    series_keys = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
                   "NumberOfSeriesRelatedInstances")
    records = []
    try:
        studies = _c_find(pacs, association, "STUDY", {k: filters.get(k, "") for k in study_keys}, task)
        for study in task.steps(studies, "Searching for series"):
            study_uid = check_uid(study["StudyInstanceUID"], "study UID")
            query = {k: filters.get(k, "") for k in series_keys} | {"StudyInstanceUID": study_uid}
            for series in _c_find(pacs, association, "SERIES", query, task):
                count = series["NumberOfSeriesRelatedInstances"]
                records.append(SeriesRecord(study_uid, check_uid(series["SeriesInstanceUID"], "series UID"),
                                            study["PatientID"], study["StudyDate"], study["StudyDescription"],
                                            series["Modality"], series["SeriesNumber"], series["SeriesDescription"],
                                            int(count) if count.isdigit() else None))
    finally:
        association.release()
    return records


def _c_find(pacs: Pacs, association, level: str, keys: dict, task: Task) -> list[dict]:
    from pydicom import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Find

    query = Dataset()
    query.QueryRetrieveLevel = level
    for key, value in keys.items():
        setattr(query, key, value)
    found = []
    for status, identifier in association.send_c_find(query, Find):
        task.check()
        if status is None or "Status" not in status:
            raise PacsError(f"The PACS {pacs.describe()} did not answer the search within {pacs.timeout_s:g} s.")
        if status.Status in (0xFF00, 0xFF01) and identifier is not None:
            found.append({key: str(identifier.get(key, "") or "") for key in keys})
        elif status.Status not in (0x0000, 0xFF00, 0xFF01):
            raise PacsError(f"The PACS {pacs.describe()} failed the search (status 0x{status.Status:04X}).")
    return found


#: storage classes a C-GET accepts (the images this project reads and the objects it writes)
def _storage_classes() -> list[str]:
    from pynetdicom import sop_class

    names = ("MRImageStorage", "EnhancedMRImageStorage", "SegmentationStorage", "ParametricMapStorage",
             "Comprehensive3DSRStorage", "CTImageStorage", "SecondaryCaptureImageStorage",
             "EnhancedSRStorage", "ComprehensiveSRStorage")
    return [getattr(sop_class, name) for name in names]


def _dimse_get(pacs: Pacs, study_uid: str, series_uids: Sequence[str], folder: Path, task: Task) -> list[Path]:
    from pydicom import Dataset
    from pynetdicom import evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as Get

    written: list[Path] = []
    storage = _storage_classes()

    def on_store(event):
        dataset = event.dataset
        dataset.file_meta = event.file_meta
        try:
            written.append(_save(dataset, folder, study_uid, str(dataset.SeriesInstanceUID)))
        except InputError:
            return 0xC211  # refused: identifiers are not UIDs
        return 0x0000

    ae, roles = _associate(pacs, [Get, *storage[:127]], storage)
    association = _open(pacs, ae, roles, [(evt.EVT_C_STORE, on_store)])
    try:
        for index, series_uid in enumerate(series_uids):
            query = Dataset()
            query.QueryRetrieveLevel = "SERIES"
            query.StudyInstanceUID, query.SeriesInstanceUID = study_uid, series_uid
            part = task.sub(index / len(series_uids), (index + 1) / len(series_uids))
            for status, _identifier in association.send_c_get(query, Get):
                part.check()
                if status is None:
                    raise PacsError(f"The PACS {pacs.describe()} did not answer the retrieve within "
                                    f"{pacs.timeout_s:g} s.")
                remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
                done = int(status.get("NumberOfCompletedSuboperations", 0) or 0)
                if remaining + done:
                    part.update(done / (remaining + done), f"Series {index + 1} of {len(series_uids)}")
                if status.Status not in (0x0000, 0xFF00, 0xFF01, 0xB000):
                    raise PacsError(f"The PACS {pacs.describe()} failed the retrieve (status 0x{status.Status:04X}).")
    finally:
        association.release()
    return written


def _dimse_put(pacs: Pacs, datasets: Sequence, task: Task) -> None:
    classes = sorted({str(d.SOPClassUID) for d in datasets})
    ae, _ = _associate(pacs, classes)
    association = _open(pacs, ae)
    try:
        for dataset in task.steps(datasets, "Storing"):
            status = association.send_c_store(dataset)
            if status is None or "Status" not in status:
                raise PacsError(f"The PACS {pacs.describe()} did not answer a C-STORE within {pacs.timeout_s:g} s.")
            if status.Status not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise PacsError(f"The PACS {pacs.describe()} refused '{dataset.SOPInstanceUID}' "
                                f"(status 0x{status.Status:04X}).")
    finally:
        association.release()


# -- what the commands use ------------------------------------------------------------------------


def find(pacs: Pacs, patient_id: str | None = None, study_uid: str | None = None, modality: str | None = None,
         progress=None) -> list[SeriesRecord]:
    """Every series of the studies that match (all given filters), study by study."""
    filters = {}
    if patient_id:
        filters["PatientID"] = patient_id
    if study_uid:
        filters["StudyInstanceUID"] = check_uid(study_uid, "study UID")
    if modality:
        filters["Modality"] = modality
    task = as_task(progress)
    records = (_web_find if pacs.url else _dimse_find)(pacs, filters, task)
    if modality:
        records = [r for r in records if r.modality.upper() == modality.upper()]
    return sorted(records, key=lambda r: (r.study_uid, int(r.series_number) if r.series_number.isdigit() else 0))


def get(pacs: Pacs, study_uid: str, folder: str | Path, series_uid: str | None = None,
        progress=None) -> list[Path]:
    """Retrieve one series (or every series of the study) into ``folder``; the files written."""
    study_uid = check_uid(study_uid, "study UID")
    task = as_task(progress)
    if series_uid:
        series = [check_uid(series_uid, "series UID")]
    else:
        series = [r.series_uid for r in find(pacs, study_uid=study_uid, progress=task.sub(0.0, 0.05))]
    if not series:
        raise PacsError(f"The PACS {pacs.describe()} has no series in study {study_uid}.")
    written = (_web_get if pacs.url else _dimse_get)(pacs, study_uid, series, Path(folder), task.sub(0.05, 1.0))
    if not written:
        raise PacsError(f"The PACS {pacs.describe()} returned no instance for study {study_uid}"
                        + (f" series {series_uid}." if series_uid else "."))
    return written


def dicom_files(paths: Iterable[str | Path]) -> list[Path]:
    """The DICOM files among ``paths`` (folders searched recursively), each checked to be DICOM."""
    from pydicom.misc import is_dicom

    files = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and is_dicom(p))
        elif path.is_file():
            if not is_dicom(path):
                raise InputError(f"'{path}' is not a DICOM file (no DICM preamble).")
            files.append(path)
        else:
            raise InputError(f"No file or folder at '{path}'.")
    if not files:
        raise InputError("No DICOM file to send in " + ", ".join(f"'{p}'" for p in paths) + ".")
    return files


def put(pacs: Pacs, paths: Iterable[str | Path], progress=None) -> int:
    """Send every DICOM file of ``paths`` (files or folders); the number sent. Every file is read first,
    so a damaged one stops the sending before anything is stored."""
    import pydicom

    datasets = []
    for path in dicom_files(paths):
        try:
            datasets.append(pydicom.dcmread(path))
        except Exception as error:  # noqa: BLE001 - pydicom raises many kinds for damaged files
            raise InputError(f"'{path}' cannot be read as DICOM ({type(error).__name__}); nothing was sent.") from None
    (_web_put if pacs.url else _dimse_put)(pacs, datasets, as_task(progress))
    return len(datasets)


def _save(dataset, folder: Path, study_uid: str, series_uid: str) -> Path:
    instance = check_uid(str(dataset.SOPInstanceUID), "SOP instance UID")
    if str(dataset.StudyInstanceUID) != study_uid:
        raise PacsError(f"The PACS sent instance {instance} of another study ({dataset.StudyInstanceUID}).")
    target = folder / study_uid / check_uid(series_uid, "series UID") / f"{instance}.dcm"
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(target, enforce_file_format=True)
    return target


# -- dicomweb:// image references -----------------------------------------------------------------

_WEB_REFERENCE = re.compile(r"^dicomweb(s?):/+([^/].*?)/studies/([0-9.]+)(?:/series/([0-9.]+))?/?$")


@dataclass(frozen=True)
class WebReference:
    """``dicomweb://HOST:PORT/PATH/studies/UID[/series/UID]`` (``dicomwebs://`` for https)."""

    url: str
    study_uid: str
    series_uid: str | None = None


def parse_web_reference(text: str | Path) -> WebReference | None:
    """The reference ``text`` names, None if it is not a dicomweb:// one (a ``Path`` may have folded '//')."""
    text = str(text)
    if not text.startswith(("dicomweb:", "dicomwebs:")):
        return None
    match = _WEB_REFERENCE.match(text)
    if match is None:
        raise InputError(f"'{text}' is not a DICOMweb reference: dicomweb://HOST:PORT/PATH/studies/UID"
                         "[/series/UID] (dicomwebs:// for https).")
    secure, where, study, series = match.groups()
    return WebReference(f"{'https' if secure else 'http'}://{where}", check_uid(study, "study UID"),
                        check_uid(series, "series UID") if series else None)


def cache_folder() -> Path:
    """Where retrieved series are kept (``VIRTUALBIOPSY_CACHE`` or ~/.cache/virtualbiopsy)."""
    root = os.environ.get("VIRTUALBIOPSY_CACHE") or Path.home() / ".cache" / "virtualbiopsy"
    return Path(root) / "dicomweb"


def retrieve_cached(reference: WebReference, progress=None) -> Path:
    """The local folder of a dicomweb:// reference, retrieved once (complete or not at all) into the cache."""
    import shutil
    import tempfile

    target = cache_folder() / reference.study_uid / (reference.series_uid or "all")
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".retrieving-", dir=target.parent))
    try:
        get(Pacs.from_options(url=reference.url), reference.study_uid, staging, reference.series_uid, progress)
        (staging / ".complete").write_text(f"{reference.url}\n")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
