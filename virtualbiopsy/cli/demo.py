"""``virtualbiopsy demo``: the whole pipeline on the sample study, with a progress bar."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.cli.output import quiet_vtk
from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run every pipeline step on the bundled synthetic sample study",
        description=(
            "Generate the synthetic sample study (seeded), load it into a Slicer scene, run every pipeline step "
            "that exists (segment volumes, T2w statistics per tissue, voxel-wise ADC fit, table join) and write "
            "to OUT: study/ (images, ground truth, truth.json; study/dicom/ the same images as DICOM MR series), "
            "tables/*.csv, figures/*.png, adc.nrrd, dicom/ (the AI segmentation as DICOM SEG + SR + uncertainty "
            "Parametric Map, the ADC map as a Parametric Map, referencing study/dicom/), report.html and scene.mrb "
            "(opens in 3D Slicer)."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample study (default: 0)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from virtualbiopsy.demo import run_demo

    args.out.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out / "vtk.log")
    with ConsoleProgress("demo") as bar:
        result = run_demo(args.out, seed=args.seed, progress=Task(bar))
    print(f"Report:       {result.report}")
    print(f"Slicer scene: {result.scene}")
    print(f"DICOM:        {len(result.dicom)} objects in {args.out / 'dicom'} (study as DICOM: "
          f"{args.out / 'study' / 'dicom'})")
    for kind, paths in (("table", result.tables), ("figure", result.figures)):
        for name, path in paths.items():
            print(f"  {kind:<6} {name:<16} {path}")
    return 0
