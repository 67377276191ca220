"""``virtualbiopsy fcf``: Fit-Cluster-Fit habitats (ADC, and iAUC60 with a DCE series) of one tumour."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from virtualbiopsy.cli.output import quiet_vtk
from virtualbiopsy.errors import FileFormatError, ImageDimensionError, InputError
from virtualbiopsy.progress import ConsoleProgress, Task

OVERRIDE_HINT = "Leave {option} out to use the stored ones, or give {flag} to use yours."
# Other spellings of --b-values, still accepted (hidden from the help).
B_VALUES_ALIASES = ("--bvalues", "--b_values", "--bvals", "--bval")  # --bval: dcm2niix's file extension


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "fcf",
        help="Fit-Cluster-Fit: tumour habitats from DWI (voxel fit, cluster, refit), with ADC confidence intervals",
        description=(
            "Fit the monoexponential ADC of every tumour voxel with its standard error, exclude the most uncertain "
            "fits, cluster the rest into habitats and refit each habitat's mean signal. --dwi takes one volume per "
            "b-value (any NRRD / NIfTI / MetaImage, in --b-values order) or one 4D file (a .seq.nrrd sequence whose "
            "index values are the b-values, a NRRD with a list axis, or a 4D NIfTI). Writes to OUT: habitats.csv "
            "(habitat, voxels, volume_ml, adc, adc_ci_low, adc_ci_high, voxel_mean_adc, ...; ADC in mm²/s), "
            "adc.nrrd, adc_se.nrrd, adc_r2.nrrd, s0.nrrd, habitats.seg.nrrd, signal_vs_b.png, habitat_map.png and "
            "summary.json; with --dce also iauc60.nrrd and the habitats' iAUC60. Several volumes of one b-value "
            "(b-values within 5 %) are combined before fitting: b = 0 volumes averaged, gradient directions (--bvecs) "
            "into the trace by the geometric mean, repeats of one direction averaged with --repeats-are-averages. "
            "Research use only."
        ),
    )
    parser.add_argument("--dwi", type=Path, nargs="+", required=True, help="DWI volumes, or one 4D file")
    parser.add_argument("--b-values", dest="bvalues", metavar="B_VALUES",
                        help="b-values in s/mm², e.g. 0,50,400,800, or a .bval file (default: what the DWI file "
                             "stores: a .seq.nrrd's index values, a NRRD DWI's DWMRI gradients, a .bval beside a "
                             "NIfTI)")
    parser.add_argument(*B_VALUES_ALIASES, dest="bvalues", help=argparse.SUPPRESS)
    parser.add_argument("--bvecs", type=Path, help="gradient directions, FSL .bvec (3 rows of N, or N rows of 3; "
                                                   "0 for b = 0; default: a NRRD DWI's gradients, a .bvec beside a "
                                                   "NIfTI)")
    parser.add_argument("--repeats-are-averages", action="store_true",
                        help="repeated non-zero b-values without directions are repeats of one direction: average "
                             "them (without this they are refused)")
    parser.add_argument("--override-b-values", dest="override_bvalues", action="store_true",
                        help="use --b-values / --bvecs even where the DWI file stores different ones (recorded in "
                             "summary.json)")
    parser.add_argument("--override-bvalues", "--override_b_values", dest="override_bvalues", action="store_true",
                        help=argparse.SUPPRESS)
    add_mask_arguments(parser)
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--dicom", action="store_true",
                        help="also write DICOM into OUT/dicom/: ADC and its SE (and iAUC with --dce) as Parametric "
                             "Maps, the habitats as a DICOM SEG and each habitat's ADC (95 %% CI), share and iAUC "
                             "as an SR Measurement Report (TID 1500), referencing the DWI series (--dwi must be a "
                             "DICOM folder or FOLDER#series)")
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
    dce.add_argument("--override-times", action="store_true",
                     help="use --times even where the DCE sequence stores different ones (recorded in summary.json)")
    parser.set_defaults(run=run)


def add_mask_arguments(parser) -> None:
    parser.add_argument("--mask", type=Path, required=True,
                        help="tumour: a label map (on the series grid) or a .seg.nrrd (exported onto the series grid)")
    parser.add_argument("--label", type=int, help="label value of the tumour in the label map, or of a segment of the "
                                                  ".seg.nrrd (default: every non-zero label / the only segment)")
    parser.add_argument("--segment", action="append", help="segment name in the .seg.nrrd (repeat for a union)")


def read_values(text: str | None, parse, option: str = "--b-values", example: str = "0,50,400,800") -> list | None:
    """Numbers typed on the command line, or read from a file (e.g. dcm2niix's .bval).

    The text is read as numbers first (a long list is no file name), and only then as a path."""
    from virtualbiopsy.diffusion_shells import read_numbers_file

    if text is None:
        return None
    try:
        return parse(text)
    except InputError:
        pass
    try:
        is_file = Path(text).is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        is_file = False
    if not is_file:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise InputError(f"{option} '{shown}' is neither numbers separated by commas (e.g. {example}) nor an "
                         "existing file.")
    return parse(",".join(repr(v) for v in read_numbers_file(Path(text), option.lstrip("-"))))


def _is_number_list(text: str, parse) -> bool:
    try:
        parse(text)
    except InputError:
        return False
    return True


def stored_dwi_table(paths: list[Path]) -> tuple[list | None, object, str, str]:
    """(b-values, directions [n, 3] or None, where each comes from) that a DWI file carries: a NRRD DWI's
    DWMRI keys, or the .bval / .bvec beside a NIfTI (dcm2niix's layout). A .seq.nrrd's index values
    come with the sequence (:func:`load_series`)."""
    import numpy as np
    import SimpleITK as sitk

    from virtualbiopsy.diffusion_shells import nrrd_gradients, read_bvecs, read_numbers_file

    if len(paths) != 1:
        return None, None, "", ""
    path = paths[0]
    name = path.name.lower()
    if name.endswith((".nrrd", ".nhdr")) and not name.endswith((".seq.nrrd", ".seq.nhdr")):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return None, None, "", ""  # unreadable: load_series says so
        table = nrrd_gradients({key: reader.GetMetaData(key) for key in reader.GetMetaDataKeys()})
        if table is None:
            return None, None, "", ""
        source = f"The DWI file '{path.name}' (its DWMRI gradients)"
        return [float(v) for v in table[0]], table[1], source, source
    if name.endswith((".nii", ".nii.gz")):
        stem = path.name[: -len(".nii.gz")] if name.endswith(".nii.gz") else path.name[: -len(".nii")]
        bval, bvec = path.with_name(stem + ".bval"), path.with_name(stem + ".bvec")
        if bval.is_file():
            values = read_numbers_file(bval, "b-values")
            vectors = np.asarray(read_bvecs(bvec, len(values))) if bvec.is_file() else None
            return values, vectors, f"'{bval.name}' beside the DWI file", f"'{bvec.name}' beside the DWI file"
    return None, None, "", ""


def dwi_table(args, series, index_values, n_volumes: int) -> dict:
    """The b-values and directions to use, and where they came from: --b-values / --bvecs against what the
    DWI file stores (refused where they differ unless --override-b-values)."""
    import numpy as np

    from virtualbiopsy.diffusion import parse_b_values
    from virtualbiopsy.diffusion_shells import read_bvecs, reconcile_values

    given = read_values(args.bvalues, parse_b_values)
    stored, stored_vectors, source, vector_source = stored_dwi_table(args.dwi)
    if index_values is not None:
        try:
            stored, source = [float(v) for v in index_values], stored_from(args.dwi[0], "DWI", "b-value")
        except ValueError:
            stored = None
    if given is None and stored is None:
        from virtualbiopsy.mrml.dicom_nodes import is_dicom_reference

        where = ""
        if len(args.dwi) == 1 and is_dicom_reference(args.dwi[0]):
            where = f"The DICOM series '{args.dwi[0]}' carries no b-value tag (standard or vendor's). "
        raise InputError(f"{where}Give the b-values with --b-values (s/mm², one per DWI volume"
                         f"{', in InstanceNumber order' if where else ''}), e.g. 0,50,400,800.")
    given_from = "--b-values"
    if given is not None and not _is_number_list(args.bvalues, parse_b_values):
        given_from = f"--b-values '{Path(args.bvalues).name}'"
    hint = OVERRIDE_HINT.format(option="--b-values", flag="--override-b-values")
    b_values, override = reconcile_values(stored, given, stored_from=source, given_from=given_from,
                                          override=args.override_bvalues, hint=hint)
    origin = given_from if given is not None and (override or stored is None) else source
    if len(b_values) != n_volumes:
        raise InputError(f"{origin} gives {len(b_values)} b-values for the {n_volumes} DWI volumes; give one b-value "
                         "(s/mm²) per volume, in order.")
    vectors = read_bvecs(args.bvecs, n_volumes) if args.bvecs is not None else None
    if vectors is not None and stored_vectors is not None and not np.allclose(vectors, stored_vectors, atol=1e-3):
        if not args.override_bvalues:
            raise InputError(f"{vector_source} stores other gradient directions than '{args.bvecs.name}'. Leave "
                             "--bvecs out to use the stored ones, or give --override-b-values to use yours.")
        vectors_override = {"stored_in": vector_source, "given": str(args.bvecs)}
    else:
        vectors_override = None
    if vectors is None:
        vectors = stored_vectors
    return {"b_values": b_values, "b_vectors": vectors, "override": override, "vectors_override": vectors_override,
            "b_values_from": origin, "b_vectors_from": None if vectors is None else (
                str(args.bvecs) if args.bvecs is not None else vector_source)}


def stored_from(path: Path, what: str, tags: str) -> str:
    """Where a series' own b-values / times come from, for messages: a .seq.nrrd's index values or DICOM tags."""
    from virtualbiopsy.mrml.dicom_nodes import is_dicom_reference

    if is_dicom_reference(path):
        return f"The DICOM {what} series '{path}' (its {tags} tags)"
    return f"The {what} file '{Path(path).name}' (its index values)"


def load_series(context, paths: list[Path], what: str) -> tuple[object, list | None]:
    """Volume nodes of a series: several 3D files, or one 4D file. Returns (sequence node or list of volumes,
    index values of a sequence or None)."""
    from virtualbiopsy.mrml import io

    if len(paths) > 1:
        return [io.load_volume(context, p, name=p.name) for p in paths], None
    path = paths[0]
    from virtualbiopsy.mrml.dicom_nodes import is_dicom_reference

    if is_dicom_reference(path):  # b-values (DWI) or frame times (DCE) from the series' own tags
        return io.load_frames(context, path)
    if not path.is_file():
        raise FileFormatError(f"No file at '{path}'.")
    if path.name.lower().endswith((".seq.nrrd", ".seq.nhdr")):
        sequence = io.load_sequence(context, path, name=path.name)
        volumes, index_values = io.sequence_volumes(sequence)
        name_by_file(volumes, path)
        return sequence, index_values
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        is_series = reader.GetDimension() == 4 or reader.GetNumberOfComponents() > 1
    except RuntimeError as error:
        raise FileFormatError(f"Could not read '{path.name}': {error}".splitlines()[0]) from error
    if is_series:  # the library's one reading path for 3D and 4D (same axis order as Slicer's 3D reader)
        return name_by_file(io.load_frames(context, path)[0], path), None
    raise ImageDimensionError(f"'{path.name}' is a single 3D volume; give one {what} volume per "
                              f"{'b-value' if what == 'DWI' else 'frame'}, or one 4D file.")


def name_by_file(volumes: list, path: Path) -> list:
    """Name the volume nodes of one 4D file 'volume N of FILE' (1-based), so that messages name the file."""
    for index, node in enumerate(volumes):
        node.SetName(f"volume {index + 1} of {Path(path).name}")
    return volumes


def load_mask(context, args):
    """(mask node, segments or None, label or None) from --mask / --segment / --label."""
    from virtualbiopsy.mrml import arrays, io

    if args.mask.name.lower().endswith((".seg.nrrd", ".seg.nhdr")):
        node = io.load_segmentation(context, args.mask, name=args.mask.name)
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
    return (io.load_volume(context, args.mask, name=args.mask.name, labelmap=True, require_finite_values=False),
            None, args.label)


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
        confidence=args.confidence, seed=args.seed, erode_voxels=args.erode,
        repeats_are_averages=args.repeats_are_averages)


def arrival_from_text(text: str):
    if text in ("region", "voxel"):
        return text
    try:
        return float(text)
    except ValueError as error:
        raise InputError(f"--arrival must be region, voxel or a time in s, not '{text}'.") from error


def series_times(text, override: bool, index_values, path: Path, option: str = "--times") -> tuple[list, dict | None]:
    """DCE acquisition times (s) from ``option`` against a sequence's stored ones (refused where they differ
    unless ``override``): (times, override record or None)."""
    from virtualbiopsy.diffusion_shells import reconcile_values
    from virtualbiopsy.habitats.dce import parse_times

    given = read_values(text, parse_times, option, "0,5,10,... or 40x5")
    stored = None
    if index_values is not None:
        try:
            stored = [float(v) for v in index_values]
        except ValueError:
            stored = None
    if given is None and stored is None:
        raise InputError(f"Give the DCE acquisition times with {option} (s), e.g. 40x5 or 0,5,10,...")
    return reconcile_values(stored, given, stored_from=stored_from(path, "DCE", "timing"),
                            given_from=option, what="times", unit="s", override=override,
                            hint=OVERRIDE_HINT.format(option=option, flag="--override-times"))


def print_dwi_combination(summary: dict) -> None:
    shells = summary.get("dwi_shells", {})
    if any(len(s["volumes"]) > 1 or s["directions"] for s in shells.get("shells", [])):
        print(f"DWI: {summary['dwi_volumes']} volumes -> {len(shells['shells'])} b-values: {shells['description']}")
    for warning in summary.get("warnings", []):
        print(f"Note: {warning}")
    override = summary.get("b_values_override")
    if override:
        print(f"b-values overridden: {override['stored_in']} stores {override['stored']}; used {override['given']}")
    override = summary.get("b_vectors_override")
    if override:
        print(f"Gradient directions overridden: {override['stored_in']} stores others; used {override['given']}")


def _write_dicom(outputs, source, args) -> list[str]:
    from virtualbiopsy.dicom.results import export_habitats

    return [str(p.relative_to(args.out)) for p in export_habitats(outputs, source, args.out / "dicom", args.window)]


def run(args) -> int:
    from virtualbiopsy.habitats import figures
    from virtualbiopsy.habitats.pipeline import DceParameters
    from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
    from virtualbiopsy.mrml import MRMLContext, arrays, io

    # Every input is read and checked before --out is created or the progress bar starts, so a refusal
    # is one line and leaves nothing behind.
    parameters = parameters_from_args(args)
    parameters.validate(args.dce is not None)
    dce_parameters = DceParameters(args.window, arrival_from_text(args.arrival))
    if args.dce is None and args.times is not None:
        raise InputError("--times belongs to a DCE series; give it with --dce.")
    quiet_vtk(Path(os.devnull))
    context = MRMLContext.create()
    logic = FitClusterFitLogic(context)
    dwi, index_values = load_series(context, args.dwi, "DWI")
    n_volumes = dwi.GetNumberOfDataNodes() if hasattr(dwi, "GetNumberOfDataNodes") else len(dwi)
    table = dwi_table(args, dwi, index_values, n_volumes)
    dce = times = times_override = None
    if args.dce:
        dce, dce_index = load_series(context, args.dce, "DCE")
        times, times_override = series_times(args.times, args.override_times, dce_index, args.dce[0])
    if args.dicom:
        from virtualbiopsy.dicom.export import require_dicom_source

        require_dicom_source(dwi[0] if isinstance(dwi, list) else io.sequence_volumes(dwi)[0][0], "--dicom")
    mask, segments, label = load_mask(context, args)
    inputs = dict(b_vectors=table["b_vectors"], override_b_values=True, override_dce_times=True)
    logic.check_fit_cluster_fit_inputs(dwi, table["b_values"], mask, segments, label, parameters, dce, times,
                                       **inputs)

    args.out.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out / "vtk.log")
    with ConsoleProgress("fcf") as bar:
        task = Task(bar)
        outputs = logic.fit_cluster_fit(dwi, table["b_values"], mask, segments, label, parameters, dce, times,
                                        dce_parameters, progress=task.sub(0.0, 0.9), **inputs)
        task.update(0.9, "Writing")
        result, columns = outputs.result, arrays.table_columns(outputs.table)
        summary = result.summary
        summary.pop("b_values_override", None)
        summary.pop("dce_times_override", None)
        summary["b_values_from"], summary["b_vectors_from"] = table["b_values_from"], table["b_vectors_from"]
        if table["override"] is not None:
            summary["b_values_override"] = table["override"]
        if table["vectors_override"] is not None:
            summary["b_vectors_override"] = table["vectors_override"]
        if times_override is not None:
            summary["dce_times_override"] = times_override
        io.write_csv(outputs.table, args.out / "habitats.csv")
        for node, file_name in ((outputs.adc, "adc.nrrd"), (outputs.adc_se, "adc_se.nrrd"), (outputs.r2, "adc_r2.nrrd"),
                                (outputs.s0, "s0.nrrd"), (outputs.habitats, "habitats.seg.nrrd")):
            io.save_node(node, args.out / file_name)
        for key, node in outputs.dce.items():
            io.save_node(node, args.out / f"{f'iauc{args.window:g}' if key == 'iauc' else key}.nrrd")
        names = columns["habitat"]
        figures.signal_vs_b(args.out / "signal_vs_b.png", [float(v) for v in result.shells.b_values],
                            result.mean_signals, result.habitat_s0, result.habitat_adc, columns,
                            summary["noise_sigma"], parameters.noise_floor, result.b_values, parameters.confidence)
        first = logic.dwi_volumes(dwi, table["b_values"], True)[0][0]
        spacing = first.GetSpacing()
        figures.habitat_map(args.out / "habitat_map.png", arrays.array_from_volume(first), result.labels, columns,
                            aspect=spacing[1] / spacing[0], confidence=parameters.confidence)
        if args.dicom:
            summary["dicom"] = _write_dicom(outputs, first if isinstance(dwi, list) else dwi[0], args)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    print_dwi_combination(summary)
    print(f"{result.k} habitat(s) in {summary['tumour_volume_ml']:.1f} mL of tumour "
          f"({result.exclusion.describe()}):")
    for i, name in enumerate(names):
        print(f"  {name}: {int(columns['voxels'][i])} voxels, ADC {columns['adc'][i] * 1e3:.3f} "
              f"[{columns['adc_ci_low'][i] * 1e3:.3f}, {columns['adc_ci_high'][i] * 1e3:.3f}] ×10⁻³ mm²/s "
              f"(voxel mean {columns['voxel_mean_adc'][i] * 1e3:.3f})")
    print(f"-> {args.out}")
    return 0
