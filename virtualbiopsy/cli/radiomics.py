"""``virtualbiopsy radiomics``: pyradiomics features of one case, or of a cohort manifest (parallel, resumable)."""

from __future__ import annotations

from pathlib import Path

from virtualbiopsy.cli.output import EXIT_SOME_CASES_FAILED
from virtualbiopsy.errors import InputError
from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    from virtualbiopsy.radiomics.extraction import DEFAULT_PRESET, PRESETS

    presets = "; ".join(f"{name}: {text}" for name, text in PRESETS.items())
    parser = subparsers.add_parser(
        "radiomics",
        help="extract pyradiomics features of one case or of a cohort manifest",
        description=(
            "Extract pyradiomics features (shape, first order, GLCM, GLRLM, GLSZM, GLDM, NGTDM; optionally on LoG "
            "and wavelet images) of the region label N of a mask. One case: --image (repeat it, or give NAME=PATH, "
            "for several sequences on the mask's grid; columns are then prefixed 'NAME:') and --mask, written to "
            "--out FILE.csv. A cohort: --manifest CSV (columns case_id, image or image_<sequence>, mask, optional "
            "label, and any batch/site/clinical columns, copied into the table) and --out FOLDER: features.csv with "
            "an 'error' column for cases that failed; finished cases are kept in FOLDER/cases and not recomputed "
            "by a later run; the run exits 3 when any case failed. The settings and library versions are written "
            "beside the table (*_settings.csv). "
            f"Presets: {presets}. Research use only."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", action="append",
                        help="image file or DICOM series (folder, FOLDER#series, dicomweb://...), or NAME=PATH; "
                        "repeat for several sequences")
    source.add_argument("--manifest", type=Path, help="cohort CSV: case_id, image (or image_<seq>), mask[, label, ...]")
    parser.add_argument("--mask", type=Path, help="label map / mask on the image's grid (one case)")
    parser.add_argument("--label", type=int, default=1, help="label value of the region (default 1)")
    parser.add_argument("--case-id", default=None, help="case identifier for the one-case table (default: image name)")
    parameters = parser.add_mutually_exclusive_group()
    parameters.add_argument("--preset", default=DEFAULT_PRESET,  # checked in parameters_from_args: one-line error
                            help=f"settings preset: {', '.join(sorted(PRESETS))} (default {DEFAULT_PRESET})")
    parameters.add_argument("--params", type=Path, help="a pyradiomics parameter file (YAML/JSON) instead of a preset")
    parser.add_argument("--bin-width", type=float, default=None, help="override the preset's fixed bin width")
    parser.add_argument("--log-sigma", default="", help="add LoG images with these sigmas in mm, e.g. 1,2,3")
    parser.add_argument("--wavelet", action="store_true", help="add the 8 wavelet (coif1) decompositions")
    parser.add_argument("--workers", type=int, default=1, help="worker processes for a manifest (default 1)")
    parser.add_argument("--out", type=Path, required=True, help="features CSV (one case) or output folder (manifest)")
    parser.set_defaults(run=run)


def parameters_from_args(args):
    from virtualbiopsy.radiomics.extraction import ExtractionParameters, preset_path

    if args.params is None:
        preset_path(args.preset)  # an unknown name is an InputError naming the presets
    try:
        sigmas = tuple(float(s) for s in args.log_sigma.split(",") if s.strip())
    except ValueError as error:
        raise InputError(f"--log-sigma needs comma-separated numbers in mm, got '{args.log_sigma}'.") from error
    settings = {} if args.bin_width is None else {"binWidth": float(args.bin_width)}
    if args.bin_width is not None and args.bin_width <= 0:
        raise InputError(f"--bin-width must be > 0, got {args.bin_width}.")
    return ExtractionParameters(preset=args.preset, params_file=str(args.params) if args.params else None,
                                log_sigmas_mm=sigmas, wavelet=args.wavelet, settings=settings)


def _images(values: list[str]) -> dict[str, str]:
    """``{name: path}`` from the --image values; the names only prefix columns, messages name the files."""
    from virtualbiopsy.radiomics.extraction import sequence_name

    named = {}
    for value in values:
        name, _, path = value.partition("=") if "=" in value and not Path(value).exists() else ("", "", value)
        named[name or (sequence_name(path) if len(values) > 1 else "image")] = path
    if len(named) != len(values):
        raise InputError("Give each --image a distinct NAME=PATH (two images have the same name).")
    return named


def run(args) -> int:
    from virtualbiopsy.radiomics import batch, extraction

    parameters = parameters_from_args(args)
    if args.manifest is not None:
        if args.workers < 1:
            raise InputError(f"--workers must be at least 1, got {args.workers}.")
        with ConsoleProgress("radiomics") as bar:
            result = batch.run_batch(args.manifest, args.out, parameters, args.workers, Task(bar))
        print(result.summary_line())
        for row in [r for r in result.rows if r["error"]][:10]:
            print(f"  {row['case_id']}: {row['error']}")
        return EXIT_SOME_CASES_FAILED if result.failed else 0
    if args.mask is None:
        raise InputError("Give the region's --mask (label map) with --image.")
    if args.out.suffix.lower() != ".csv":
        raise InputError(f"--out must be a .csv file for one case, not '{args.out}'.")
    images = _images(args.image)
    features = extraction.extract_files(images, args.mask, parameters, args.label)
    case_id = args.case_id or extraction.sequence_name(next(iter(images.values())))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    batch.write_table([{"case_id": case_id, "label": str(args.label), "error": ""} | features], args.out)
    settings = batch.write_settings(extraction.provenance(parameters),
                                    args.out.with_name(args.out.stem + "_settings.csv"))
    print(f"{len(features)} features of label {args.label} in {', '.join(images)} -> {args.out} "
          f"(settings: {settings.name})")
    return 0
