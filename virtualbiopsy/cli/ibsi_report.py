"""``virtualbiopsy ibsi-report``: IBSI digital-phantom compliance of the radiomics extraction (CSV + HTML)."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ibsi-report",
        help="check the radiomics extraction against the IBSI digital phantom's reference values",
        description=(
            "Run the IBSI chapter 1 digital phantom through the extraction (preset 'ibsi', 3D and 2.5D, averaged and "
            "merged texture matrices) and compare every feature pyradiomics computes with the IBSI consensus value "
            "and tolerance: one row per IBSI tag with the reference, our value, match / differs / not in pyradiomics "
            "and why (e.g. kurtosis: IBSI = pyradiomics - 3). Writes ibsi_compliance.csv and ibsi_compliance.html."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--phantom", type=Path, default=None,
                        help="folder with image.nii.gz, mask.nii.gz, reference_values.csv (default: the bundled one)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from virtualbiopsy.radiomics import ibsi

    with ConsoleProgress("ibsi-report") as bar:
        rows = ibsi.compliance_report(args.phantom, Task(bar))
    csv_path, html_path = ibsi.write_report(rows, args.out)
    print(ibsi.summary_line(ibsi.summary(rows)))
    print(f"-> {csv_path}\n-> {html_path}")
    return 0
