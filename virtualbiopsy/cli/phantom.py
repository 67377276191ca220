"""``virtualbiopsy phantom``: write one synthetic sample study (images, labels, true maps, truth.json)."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.cli.output import quiet_vtk
from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "phantom",
        help="write one synthetic paediatric abdominal MRI study with its ground truth",
        description=(
            "Write the seeded synthetic study to OUT: t2w.nrrd, dwi.seq.nrrd (index = b-value, s/mm²), "
            "dce.seq.nrrd (index = time, s), ground_truth.seg.nrrd, label maps, true ADC / S0 / iAUC60 maps "
            "and truth.json. With --dicom also OUT/dicom/: the T2w, DWI and DCE as classic MR DICOM series of one "
            "study (b-values in the tags of --b-value-convention; DCE with TemporalPositionIdentifier and "
            "AcquisitionTime, or with --dce-timing enhanced one multi-frame instance whose frames carry "
            "FrameAcquisitionDateTime and TemporalPositionIndex). The same seed always gives the same study; see "
            "virtualbiopsy/phantom/README.md."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--snr-t2", type=float, default=25.0, help="T2w SNR of the tumour rim (default: 25)")
    parser.add_argument("--snr-dwi", type=float, default=30.0, help="DWI SNR at b = 0 in the tumour rim (default: 30)")
    parser.add_argument("--snr-dce", type=float, default=40.0, help="DCE SNR before contrast, tumour rim (default: 40)")
    parser.add_argument("--b-values", default="0,50,400,800", help="DWI b-values in s/mm² (default: 0,50,400,800)")
    parser.add_argument("--dicom", action="store_true", help="also write the study as DICOM MR series in OUT/dicom/")
    parser.add_argument("--b-value-convention", default="standard",
                        choices=("standard", "siemens", "ge", "philips"),
                        help="where the DICOM DWI carries its b-values: the standard (0018,9087) or a vendor's "
                             "private tag (default: standard)")
    parser.add_argument("--dce-timing", default="classic", choices=("classic", "enhanced"),
                        help="the DICOM DCE as classic slices or one enhanced multi-frame instance (default: classic)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from virtualbiopsy.diffusion import check_b_values, parse_b_values
    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import write_study

    values = parse_b_values(args.b_values)
    b_values = tuple(check_b_values(values, len(values)))
    args.out.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out / "vtk.log")
    with ConsoleProgress("phantom") as bar:
        task = Task(bar)
        study = generate_study(args.seed, b_values=b_values, snr_t2=args.snr_t2, snr_dwi=args.snr_dwi,
                               snr_dce=args.snr_dce, progress=task.sub(0.0, 0.6))
        paths = write_study(study, args.out, progress=task.sub(0.6, 0.75 if args.dicom else 1.0))
        if args.dicom:
            from virtualbiopsy.dicom.phantom import write_study_dicom

            written = write_study_dicom(study, args.out / "dicom", args.b_value_convention, task.sub(0.75, 1.0),
                                        args.dce_timing)
            paths.update({f"dicom {role}": folder for role, folder in written["folders"].items()})
    volumes = study.volumes_ml()
    print(f"Study (seed {args.seed}) written to {args.out}: tumour {volumes['tumour']:.1f} mL "
          f"(rim {volumes['rim']:.1f}, core {volumes['core']:.1f}).")
    for role, path in paths.items():
        print(f"  {role:<13} {path.name}")
    return 0
