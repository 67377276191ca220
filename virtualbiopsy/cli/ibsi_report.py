"""``virtualbiopsy ibsi-report``: IBSI compliance of the radiomics extraction (digital phantom, CT phantom A-E,
IBSI 2 filter response maps), as CSV tables and one HTML report."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.progress import ConsoleProgress, Task

SECTIONS = ("ct", "filters")  # besides the digital phantom, which always runs


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ibsi-report",
        help="check the radiomics extraction against IBSI reference values (phantoms and filter maps)",
        description=(
            "Compare the radiomics extraction (pyradiomics) with the IBSI's published reference values. "
            "digital: the IBSI 1 digital phantom (bundled; preset 'ibsi', 3D and 2.5D, averaged and merged texture "
            "matrices), one row per IBSI tag with reference, our value, match / differs / not in pyradiomics and why "
            "(e.g. kurtosis: IBSI = pyradiomics - 3). ct: the IBSI 1 CT phantom in configurations A-E (2D/3D, "
            "interpolation, re-segmentation, bin size / number), each with the closest pyradiomics settings, "
            "match counts per configuration and the reason for each difference. filters: the IBSI 2 filter "
            "response maps, computed with pyradiomics' LoG and wavelet filters and compared voxel by voxel "
            "(match within 1 % of the reference's range, or the difference and its reason). The CT phantom and "
            "the filter maps are read from --reference. Writes ibsi_compliance.csv, ibsi_ct_phantom.csv, "
            "ibsi_filters.csv and ibsi_compliance.html into --out."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--phantom", type=Path, default=None,
                        help="folder with image.nii.gz, mask.nii.gz, reference_values.csv (default: the bundled one)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="folder holding ibsi1_ct_phantom/ and ibsi2_filters/ (default: $VIRTUALBIOPSY_REFERENCE_"
                             "DATA, else ../shared/reference beside the repository; without it the ct and filters "
                             "sections are left out, with a note)")
    parser.add_argument("--sections", default=None,
                        help="comma list of the sections to run besides the digital phantom (always run): ct, filters, "
                             "or none (default: ct,filters)")
    parser.set_defaults(run=run)


def _sections(text: str) -> list[str]:
    from virtualbiopsy.errors import InputError

    chosen = [s.strip() for s in text.split(",") if s.strip()]
    if chosen == ["none"]:
        return []
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown or not chosen:
        raise InputError(f"--sections {text!r}: choose from {', '.join(SECTIONS)} (comma separated), or none.")
    return chosen


def run(args) -> int:
    from virtualbiopsy.radiomics import ibsi, ibsi_ct, ibsi_filters, ibsi_page

    sections = list(SECTIONS) if args.sections is None else _sections(args.sections)
    explicit = args.reference is not None or args.sections is not None  # asked for: missing data is an error
    reference = args.reference or ibsi_ct.default_reference_dir()
    notes, wanted = [], list(sections)
    if wanted and reference is None:
        if explicit:
            from virtualbiopsy.errors import InputError

            raise InputError(f"The {' and '.join(wanted)} section(s) need the IBSI reference data: give --reference "
                             "DIR (the folder holding ibsi1_ct_phantom/ and ibsi2_filters/).")
        notes.append("The CT phantom and filter sections were not run: no IBSI reference data found (give --reference "
                     f"or set ${ibsi_ct.REFERENCE_ENV}).")
        wanted = []
    # validate every input before any work or output
    ibsi.phantom_paths(args.phantom)
    if "ct" in wanted:
        ibsi_ct.ct_paths(reference)
    if "filters" in wanted:
        ibsi_filters.filter_paths(reference)
    with ConsoleProgress("ibsi-report") as bar:
        task = Task(bar)
        rows = ibsi.compliance_report(args.phantom, task.sub(0.0, 0.05))
        ct = ibsi_ct.ct_report(reference, progress=task.sub(0.05, 0.6)) if "ct" in wanted else None
        filters = ibsi_filters.filter_report(reference, task.sub(0.6, 1.0)) if "filters" in wanted else None
    csv_path, html_path = ibsi_page.write_report(rows, args.out, ct, filters, notes)
    print(ibsi.summary_line(ibsi.summary(rows)))
    if ct is not None:
        print(ibsi_ct.summary_line(ibsi_ct.summary(ct[0])))
    if filters is not None:
        print(ibsi_filters.summary_line(ibsi_filters.summary(filters)))
    for note in notes:
        print(note)
    written = [csv_path] + [args.out / name for name, done in (("ibsi_ct_phantom.csv", ct), ("ibsi_filters.csv",
                                                                                              filters)) if done]
    print("\n".join(f"-> {path}" for path in [*written, html_path]))
    return 0
