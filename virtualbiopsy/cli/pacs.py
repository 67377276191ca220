"""``virtualbiopsy pacs find|get|put``: exchange studies and results with a PACS (DICOMweb or DIMSE)."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.progress import ConsoleProgress, Task


def _server_options(parser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="DICOMweb root, e.g. http://pacs:8042/dicom-web (QIDO-RS / WADO-RS / STOW-RS)")
    where.add_argument("--ae", metavar="HOST:PORT:AE_TITLE", help="DIMSE peer (C-FIND / C-GET / C-STORE)")
    parser.add_argument("--calling-ae", default="VIRTUALBIOPSY", help="our AE title for DIMSE (default VIRTUALBIOPSY)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default 30)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "pacs", help="find, get and put DICOM on a PACS (DICOMweb or DIMSE)",
        description=(
            "Exchange DICOM with a PACS over DICOMweb (--url) or DIMSE (--ae HOST:PORT:AE_TITLE). Credentials come "
            "from the environment, never the command line: VIRTUALBIOPSY_PACS_USER and VIRTUALBIOPSY_PACS_PASSWORD "
            "(HTTP basic), or VIRTUALBIOPSY_PACS_TOKEN (bearer). 'find' lists the series of the matching studies; "
            "'get' retrieves a study or one series into --out/<study UID>/<series UID>/; 'put' sends files or "
            "folders of DICOM (e.g. a command's OUT/dicom/). Any command that reads an image also takes "
            "dicomweb://HOST:PORT/PATH/studies/UID/series/UID (http; dicomwebs:// for https), retrieved into the "
            "cache folder first."
        ),
    )
    steps = parser.add_subparsers(dest="pacs_command", metavar="STEP", required=True)
    finding = steps.add_parser("find", help="list the series of the matching studies")
    _server_options(finding)
    finding.add_argument("--patient", help="patient ID")
    finding.add_argument("--study", help="study instance UID")
    finding.add_argument("--modality", help="only series of this modality (e.g. MR, SEG, SR)")
    finding.set_defaults(run=run_find)
    getting = steps.add_parser("get", help="retrieve a study or one of its series")
    _server_options(getting)
    getting.add_argument("--study", required=True, help="study instance UID")
    getting.add_argument("--series", help="series instance UID (default: every series of the study)")
    getting.add_argument("--out", type=Path, required=True, help="folder to write into (<study>/<series>/<SOP>.dcm)")
    getting.set_defaults(run=run_get)
    putting = steps.add_parser("put", help="send DICOM files or folders")
    _server_options(putting)
    putting.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="DICOM files or folders")
    putting.set_defaults(run=run_put)


def _pacs(args):
    from virtualbiopsy.dicom.pacs import Pacs

    return Pacs.from_options(args.url, args.ae, args.calling_ae, args.timeout)


def run_find(args) -> int:
    from virtualbiopsy.dicom import pacs

    server = _pacs(args)
    with ConsoleProgress("pacs find") as bar:
        records = pacs.find(server, args.patient, args.study, args.modality, Task(bar))
    if not records:
        print(f"No series found on {server.describe()}.")
        return 0
    study = None
    for record in records:
        if record.study_uid != study:
            study = record.study_uid
            print(f"Study {study}  patient {record.patient_id or '?'}  {record.study_date}  "
                  f"{record.study_description}")
        print(f"  {record.line()}")
    return 0


def run_get(args) -> int:
    from virtualbiopsy.dicom import pacs

    server = _pacs(args)
    with ConsoleProgress("pacs get") as bar:
        written = pacs.get(server, args.study, args.out, args.series, Task(bar))
    folders = sorted({p.parent for p in written})
    print(f"{len(written)} instance(s) of {len(folders)} series from {server.describe()} -> {args.out}")
    for folder in folders:
        print(f"  {folder}")
    return 0


def run_put(args) -> int:
    from virtualbiopsy.dicom import pacs

    server = _pacs(args)
    with ConsoleProgress("pacs put") as bar:
        count = pacs.put(server, args.paths, Task(bar))
    print(f"{count} instance(s) stored on {server.describe()}")
    return 0
