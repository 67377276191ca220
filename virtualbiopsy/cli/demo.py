"""``virtualbiopsy demo``: the whole pipeline on the sample study, with a progress bar."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.cli.output import quiet_vtk
from virtualbiopsy.progress import ConsoleProgress, Task

# What the demo writes into OUT, in the order it runs (virtualbiopsy.demo.run_demo); shown by --help.
OUTPUTS = (
    ("study/", "the synthetic sample study: T2w, DWI (b = 0, 50, 400, 800 s/mm²), DCE series and the ground "
               "truth (NRRD, truth.json); study/dicom/ the same images as DICOM MR series"),
    ("segmentation/", "the bundled demo nnU-Net model on the T2w, with its uncertainty (entropy map, agreement "
                      "contours at tumour probability 10 % and 50 %, slices to review) and its metrics against "
                      "the true tumour"),
    ("radiomics/", "pyradiomics features of the tumour rim and core on the T2w, and the IBSI check of the "
                   "extraction on the IBSI digital phantom (radiomics/ibsi/ibsi_compliance.html)"),
    ("adc.nrrd", "the voxel-wise monoexponential ADC fit of the DWI in mm²/s (per tissue, against the truth, "
                 "in tables/adc_by_tissue.csv)"),
    ("fit_cluster_fit/", "Fit-Cluster-Fit habitats of the tumour from the DWI and the DCE series: each habitat's "
                         "ADC with its 95 % CI and iAUC60, habitat map, signal against b"),
    ("dicom/", "the AI segmentation as DICOM SEG + SR + uncertainty Parametric Map and the ADC map as a "
               "Parametric Map, referencing study/dicom/"),
    ("outcome/", "outcome models on a synthetic cohort: model comparison, a logistic model explained by SHAP, "
                 "Kaplan-Meier curves by image-signature cluster, Cox risk groups, and a Grad-CAM map of the demo "
                 "CNN on the T2w"),
    ("tables/, figures/", "segment volumes, T2w statistics, ADC and tissue summary tables; the study overview, "
                          "ADC, DCE and segmentation-uncertainty figures"),
    ("report.html", "every step's figures and tables on one page"),
    ("scene.mrb", "the whole scene, to open in 3D Slicer"),
)


def description() -> str:
    """The demo's --help text: what it does, then each output with what it holds (wrapped to 79 columns)."""
    import textwrap

    width, column = 79, 20
    unit, unbroken = "×10⁻³ mm²/s", "×10⁻³\u00a0mm²/s"  # a unit is never split over two lines

    def wrap(text: str, size: int) -> list[str]:
        return [line.replace(unbroken, unit) for line in
                textwrap.wrap(text.replace(unit, unbroken), size, break_on_hyphens=False)]

    lines = wrap(
        "Run the whole pipeline on the bundled synthetic sample study (seeded; no patient data; under a minute "
        "on two CPU cores): study, nnU-Net segmentation with uncertainty, radiomics with the IBSI check, ADC fit, "
        "Fit-Cluster-Fit habitats with DCE, DICOM export, outcome models with SHAP, Kaplan-Meier and Grad-CAM, "
        "report.html and scene.mrb. It writes into OUT:", width)
    lines.append("")
    for name, text in OUTPUTS:
        wrapped = wrap(text, width - column)
        lines.append(f"  {name:<{column - 2}}{wrapped[0]}" if len(name) < column - 2 else f"  {name}")
        lines += [" " * column + line for line in (wrapped[1:] if len(name) < column - 2 else wrapped)]
    lines += ["", "Research use only, not for clinical decisions."]
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    import argparse

    parser = subparsers.add_parser(
        "demo",
        help="run every pipeline step on the bundled synthetic sample study (segmentation, radiomics + IBSI, "
             "ADC, habitats, DICOM, outcome models, report, Slicer scene)",
        description=description(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
