"""``virtualbiopsy fcf``: Fit-Cluster-Fit habitats (ADC, and iAUC60 with a DCE series) of one tumour."""

from __future__ import annotations

import json
import re
from pathlib import Path

from virtualbiopsy.cli.output import quiet_vtk
from virtualbiopsy.errors import FileFormatError, ImageDimensionError, InputError
from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fcf",
        help="Fit-Cluster-Fit: tumour habitats from DWI (voxel fit, cluster, refit), with ADC confidence intervals",
        description=(
            "Fit the monoexponential ADC of every tumour voxel with its standard error, exclude the most uncertain "
            "fits, cluster the rest into habitats and refit each habitat's mean signal. --dwi takes one volume per "
            "b-value (any NRRD / NIfTI / MetaImage, in --bvalues order) or one 4D file (a .seq.nrrd sequence whose "
            "index values are the b-values, a NRRD with a list axis, or a 4D NIfTI). Writes to OUT: habitats.csv "
            "(habitat, voxels, volume_ml, adc, adc_ci_low, adc_ci_high, voxel_mean_adc, ...; ADC in mm²/s), "
            "adc.nrrd, adc_se.nrrd, adc_r2.nrrd, s0.nrrd, habitats.seg.nrrd, signal_vs_b.png, habitat_map.png and "
            "summary.json; with --dce also iauc60.nrrd and the habitats' iAUC60. Research use only."
        ),
    )
    parser.add_argument("--dwi", type=Path, nargs="+", required=True, help="DWI volumes, or one 4D file")
    parser.add_argument("--bvalues", help="b-values in s/mm², e.g. 0,50,400,800, or a .bval file "
                                          "(default for a .seq.nrrd: its index values)")
    add_mask_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    fit = parser.add_argument_group("voxel fit")
    fit.add_argument("--min-b", type=float, help="leave out b-values below this (s/mm²), e.g. 200 against perfusion")
    fit.add_argument("--max-b", type=float, help="leave out b-values above this (s/mm²)")
    fit.add_argument("--nonlinear", action="store_true", help="refine the log-linear fit by non-linear least squares")
    fit.add_argument("--noise-floor", action="store_true",
                     help="correct the Rician noise floor of the habitats' mean signals (fit the expected magnitude; "
                          "sigma from the data)")
    fit.add_argument("--voxel-noise-floor", action="store_true",
                     help="correct it in every voxel's fit too (maps and clustering; unstable at SNR below ~10)")
    fit.add_argument("--noise-sigma", type=float, help="noise sigma (signal units) instead of estimating it")
    fit.add_argument("--noise-method", default="auto", choices=("auto", "background", "residual"),
                     help="how to estimate sigma: background air, fit residuals, or auto (default)")
    cluster = parser.add_argument_group("exclusion and clustering")
    threshold = cluster.add_mutually_exclusive_group()
    threshold.add_argument("--threshold-percentile", type=float, default=90.0,
                           help="exclude voxels whose ADC SE is above this percentile (default 90)")
    threshold.add_argument("--threshold-se", type=float, help="exclude voxels whose ADC SE is above this (mm²/s)")
    cluster.add_argument("--method", default="gmm", choices=("gmm", "kmeans"), help="default: gmm (BIC chooses k)")
    cluster.add_argument("--k", type=int, help="number of habitats (default: chosen by BIC / silhouette)")
    cluster.add_argument("--k-max", type=int, default=4, help="largest k tried when choosing (default 4)")
    cluster.add_argument("--features", default="adc", help="fitted parameters to cluster on, comma separated: "
                                                           "adc, s0, and with --dce iauc60, wash_in, ttp (default adc)")
    cluster.add_argument("--min-habitat-voxels", type=int, default=20, help="smallest habitat when choosing k")
    cluster.add_argument("--erode", type=int, default=1,
                         help="voxels of the tumour's outer shell (partial volume) fitted but not clustered "
                              "(default 1; 0 for a small tumour)")
    cluster.add_argument("--ci", default="bootstrap", choices=("bootstrap", "t"), help="ADC confidence interval")
    cluster.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples (default 500)")
    cluster.add_argument("--confidence", type=float, default=0.95, help="confidence level (default 0.95)")
    cluster.add_argument("--seed", type=int, default=0, help="random seed of the clustering and bootstrap")
    dce = parser.add_argument_group("optional DCE series (same grid as the DWI)")
    dce.add_argument("--dce", type=Path, nargs="+", help="DCE frames, or one 4D file (.seq.nrrd indexed by time)")
    dce.add_argument("--times", help="DCE acquisition times in s (0,5,10,...; 40x5 = 40 frames every 5 s; or a file)")
    dce.add_argument("--window", type=float, default=60.0, help="iAUC window after arrival, s (default 60)")
    dce.add_argument("--arrival", default="region", help="bolus arrival: region (default), voxel, or a time in s")
    parser.set_defaults(run=run)


def add_mask_arguments(parser) -> None:
    parser.add_argument("--mask", type=Path, required=True,
                        help="tumour: a label map (on the series grid) or a .seg.nrrd (exported onto the series grid)")
    parser.add_argument("--label", type=int, help="label value of the tumour in the label map, or of a segment of the "
                                                  ".seg.nrrd (default: every non-zero label / the only segment)")
    parser.add_argument("--segment", action="append", help="segment name in the .seg.nrrd (repeat for a union)")


def read_values(text: str | None, parse) -> list[float] | None:
    """Numbers typed on the command line, or read from a file (e.g. dcm2niix's .bval)."""
    if text is None:
        return None
    path = Path(text)
    if path.is_file():
        numbers = [v for v in re.split(r"[\s,;]+", path.read_text().strip()) if v]
        return parse(",".join(numbers))
    return parse(text)


def load_series(context, paths: list[Path], what: str) -> tuple[object, list | None]:
    """Volume nodes of a series: several 3D files, or one 4D file. Returns (sequence node or list of volumes,
    index values of a sequence or None)."""
    from virtualbiopsy.mrml import io

    if len(paths) > 1:
        return [io.load_volume(context, p) for p in paths], None
    path = paths[0]
    if not path.is_file():
        raise FileFormatError(f"No file at '{path}'.")
    if path.name.lower().endswith((".seq.nrrd", ".seq.nhdr")):
        sequence = io.load_sequence(context, path)
        return sequence, io.sequence_volumes(sequence)[1]
    import SimpleITK as sitk

    from virtualbiopsy.mrml.sitk_bridge import add_volume_from_image

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise FileFormatError(f"Could not read '{path.name}': {error}".splitlines()[0]) from error
    if image.GetDimension() == 4:
        size = list(image.GetSize())
        frames = []
        for index in range(size[3]):
            frame = sitk.Extract(image, size[:3] + [0], [0, 0, 0, index])
            frames.append(add_volume_from_image(context, frame, f"{path.stem} {index + 1}"))
        return frames, None
    if image.GetNumberOfComponentsPerPixel() > 1:
        return [add_volume_from_image(context, sitk.VectorIndexSelectionCast(image, i), f"{path.stem} {i + 1}")
                for i in range(image.GetNumberOfComponentsPerPixel())], None
    raise ImageDimensionError(f"'{path.name}' is a single 3D volume; give one {what} volume per "
                              f"{'b-value' if what == 'DWI' else 'frame'}, or one 4D file.")


def load_mask(context, args):
    """(mask node, segments or None, label or None) from --mask / --segment / --label."""
    from virtualbiopsy.mrml import arrays, io

    if args.mask.name.lower().endswith((".seg.nrrd", ".seg.nhdr")):
        node = io.load_segmentation(context, args.mask)
        segments = list(args.segment or [])
        if args.label is not None:
            segmentation = node.GetSegmentation()
            segments += [s for s in arrays.segment_ids(node)
                         if segmentation.GetSegment(s).GetLabelValue() == args.label]
            if not segments:
                raise InputError(f"'{args.mask.name}' has no segment with label value {args.label}.")
        return node, segments or None, None
    if args.segment:
        raise InputError("--segment needs a .seg.nrrd mask; for a label map use --label.")
    return io.load_volume(context, args.mask, labelmap=True, require_finite_values=False), None, args.label


def parameters_from_args(args):
    from virtualbiopsy.habitats.pipeline import FitClusterFitParameters

    absolute = args.threshold_se is not None
    return FitClusterFitParameters(
        min_b=args.min_b, max_b=args.max_b, nonlinear=args.nonlinear, noise_floor=args.noise_floor,
        voxel_noise_floor=args.voxel_noise_floor, noise_sigma=args.noise_sigma, noise_method=args.noise_method,
        threshold_kind="absolute" if absolute else "percentile",
        threshold=args.threshold_se if absolute else args.threshold_percentile, method=args.method, k=args.k,
        k_max=args.k_max, features=tuple(f.strip() for f in args.features.split(",") if f.strip()),
        min_habitat_voxels=args.min_habitat_voxels, ci_method=args.ci, n_bootstrap=args.bootstrap,
        confidence=args.confidence, seed=args.seed, erode_voxels=args.erode)


def arrival_from_text(text: str):
    if text in ("region", "voxel"):
        return text
    try:
        return float(text)
    except ValueError as error:
        raise InputError(f"--arrival must be region, voxel or a time in s, not '{text}'.") from error


def run(args) -> int:
    from virtualbiopsy.diffusion import parse_b_values
    from virtualbiopsy.habitats import figures
    from virtualbiopsy.habitats.dce import parse_times
    from virtualbiopsy.habitats.pipeline import DceParameters
    from virtualbiopsy.logic.fit_cluster_fit import HABITAT_COLOURS, FitClusterFitLogic
    from virtualbiopsy.mrml import MRMLContext, arrays, io

    args.out.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out / "vtk.log")
    parameters = parameters_from_args(args)
    dce_parameters = DceParameters(args.window, arrival_from_text(args.arrival))
    if args.dce is None and args.times is not None:
        raise InputError("--times belongs to a DCE series; give it with --dce.")
    context = MRMLContext.create()
    logic = FitClusterFitLogic(context)
    with ConsoleProgress("fcf") as bar:
        task = Task(bar)
        task.update(0.0, "Loading")
        dwi, index_values = load_series(context, args.dwi, "DWI")
        b_values = read_values(args.bvalues, parse_b_values)
        if b_values is None and index_values is None:
            raise InputError("Give the b-values with --bvalues (s/mm², one per DWI volume), e.g. 0,50,400,800.")
        dce = times = None
        if args.dce:
            dce, dce_index = load_series(context, args.dce, "DCE")
            times = read_values(args.times, parse_times)
            if times is None and dce_index is None:
                raise InputError("Give the DCE acquisition times with --times (s), e.g. 40x5 or 0,5,10,...")
        mask, segments, label = load_mask(context, args)
        outputs = logic.fit_cluster_fit(dwi, b_values, mask, segments, label, parameters, dce, times, dce_parameters,
                                        progress=task.sub(0.05, 0.9))
        task.update(0.9, "Writing")
        io.write_csv(outputs.table, args.out / "habitats.csv")
        for node, file_name in ((outputs.adc, "adc.nrrd"), (outputs.adc_se, "adc_se.nrrd"), (outputs.r2, "adc_r2.nrrd"),
                                (outputs.s0, "s0.nrrd"), (outputs.habitats, "habitats.seg.nrrd")):
            io.save_node(node, args.out / file_name)
        for key, node in outputs.dce.items():
            io.save_node(node, args.out / f"{f'iauc{args.window:g}' if key == 'iauc' else key}.nrrd")
        result, table = outputs.result, arrays.table_columns(outputs.table)
        names = table["habitat"]
        volumes, b_all = logic.dwi_volumes(dwi, b_values)
        figures.signal_vs_b(args.out / "signal_vs_b.png", [float(v) for v in b_all], result.mean_signals,
                            result.habitat_s0, result.habitat_adc, names, HABITAT_COLOURS,
                            (table["adc_ci_low"], table["adc_ci_high"]), result.summary["noise_sigma"],
                            parameters.noise_floor, result.b_values)
        first = volumes[0]
        spacing = first.GetSpacing()
        figures.habitat_map(args.out / "habitat_map.png", arrays.array_from_volume(first), result.labels, names,
                            HABITAT_COLOURS, aspect=spacing[1] / spacing[0])
        (args.out / "summary.json").write_text(json.dumps(result.summary, indent=2, default=float))
    print(f"{result.k} habitat(s) in {result.summary['tumour_volume_ml']:.1f} mL of tumour "
          f"({result.exclusion.describe()}):")
    for i, name in enumerate(names):
        print(f"  {name}: {int(table['voxels'][i])} voxels, ADC {table['adc'][i] * 1e3:.3f} "
              f"[{table['adc_ci_low'][i] * 1e3:.3f}, {table['adc_ci_high'][i] * 1e3:.3f}] x10^-3 mm²/s "
              f"(voxel mean {table['voxel_mean_adc'][i] * 1e3:.3f})")
    print(f"-> {args.out}")
    return 0
