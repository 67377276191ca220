"""``virtualbiopsy dicom list``: the studies and series of a DICOM folder, and what each would be read as."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "dicom", help="list the studies and series of a DICOM folder",
        description=(
            "DICOM tools. 'list' prints each study and series of a folder (searched recursively) or of some files: "
            "number, modality, description, files, slices, size, spacing, and the b-values (with the tag they come "
            "from) or time points found. Any command that takes an image also takes a DICOM folder, or one series "
            "of it as FOLDER#NUMBER, FOLDER#SERIES_UID or FOLDER#DESCRIPTION."
        ),
    )
    steps = parser.add_subparsers(dest="dicom_command", metavar="STEP", required=True)
    listing = steps.add_parser("list", help="print the studies and series found")
    listing.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="DICOM folder(s) or file(s)")
    listing.set_defaults(run=run_list)


def run_list(args) -> int:
    from virtualbiopsy.dicom.series import find_series

    with ConsoleProgress("dicom list") as bar:
        found = find_series(args.paths, Task(bar))
    studies: dict[str, list] = {}
    for info in found:
        studies.setdefault(info.study_uid, []).append(info)
    for study_uid, series in studies.items():
        print(f"Study {study_uid} ({len(series)} series)")
        print(f"  {'#':>4}  mod description{' ' * 30} files / slices, size (columns x rows x slices), spacing")
        for info in series:
            print(f"  {info.summary()}")
            print(f"        UID {info.series_uid}")
    return 0
