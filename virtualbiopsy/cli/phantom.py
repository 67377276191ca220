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
            "and truth.json. The same seed always gives the same study; see virtualbiopsy/phantom/README.md."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--snr-t2", type=float, default=25.0, help="T2w SNR of the tumour rim (default: 25)")
    parser.add_argument("--snr-dwi", type=float, default=30.0, help="DWI SNR at b = 0 in the tumour rim (default: 30)")
    parser.add_argument("--snr-dce", type=float, default=40.0, help="DCE SNR before contrast, tumour rim (default: 40)")
    parser.add_argument("--b-values", default="0,50,400,800", help="DWI b-values in s/mm² (default: 0,50,400,800)")
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
        paths = write_study(study, args.out, progress=task.sub(0.6, 1.0))
    volumes = study.volumes_ml()
    print(f"Study (seed {args.seed}) written to {args.out}: tumour {volumes['tumour']:.1f} mL "
          f"(rim {volumes['rim']:.1f}, core {volumes['core']:.1f}).")
    for role, path in paths.items():
        print(f"  {role:<13} {path.name}")
    return 0
