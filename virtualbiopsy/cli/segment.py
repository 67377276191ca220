"""``virtualbiopsy segment``: nnU-Net tumour segmentation with uncertainty, one case or a manifest."""

from __future__ import annotations

import json
from pathlib import Path

from virtualbiopsy.cli.output import EXIT_SOME_CASES_FAILED, quiet_vtk
from virtualbiopsy.cli.preprocess import add_pipeline_arguments, pipeline_from_args
from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment the tumour with an nnU-Net v2 model, with a voxel-wise uncertainty map",
        description=(
            "Run a trained nnU-Net v2 model (a results folder with dataset.json, plans.json and fold_N/, nnU-Net's "
            "dataset results folder holding several (pick one with --configuration), or a .zip of either; 2d, 3d, "
            "ResEnc, region-based and cascade models: a cascade runs its first stage, found beside it, first) on "
            "one case (--image, once per model channel, in the model's channel order) or on every case "
            "of a manifest CSV (columns case_id, image[, image2, ...]; each case id becomes a folder in --out, so it "
            "must be unique and a plain name). Writes per case: segmentation.seg.nrrd "
            "(new segments; the tumour coded as a neoplasm), uncertainty.nrrd (normalised predictive entropy over "
            "the mirrored passes and folds, uint8 0-255 = 0-1), disagreement.nrrd (mutual information between "
            "those passes, same scale; with several folds also fold_disagreement.nrrd), agreement.seg.nrrd (mean "
            "tumour probability >= 10 % and >= 50 %) and summary.json (tumour volume in mL, uncertain fraction = "
            "share of the tumour's voxels with entropy >= --threshold, "
            "slices to review, the pre-processing applied). --n4 / --denoise pre-process every input image first "
            "(same grid; nnU-Net does its own resampling and normalisation). Any NRRD / NIfTI input. A manifest run "
            "writes cases.csv (status and error of each case), goes on past a case that fails and exits 3 if any "
            "did; run it again to resume: finished cases are reused, a case whose inputs changed is segmented again "
            "unless its segmentation was edited since (kept; --overwrite replaces everything). Research use only."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="nnU-Net v2 model folder or .zip")
    parser.add_argument("--sha256", help="expected SHA256 of a model .zip (refused if it differs)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, action="append", help="input image; repeat for each model channel")
    source.add_argument("--manifest", type=Path, help="CSV with columns case_id, image[, image2, ...]")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per manifest case)")
    parser.add_argument("--folds", type=str, default=None, help="folds to use, e.g. 0,1,2 (default: all present)")
    add_model_choice_arguments(parser)
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"), help="default: auto")
    parser.add_argument("--no-mirroring", action="store_true", help="one network pass per tile (faster, less robust)")
    parser.add_argument("--mirror-axes", type=_axes, default=None, metavar="A,B",
                        help="mirror only along these of the model's axes (0 = the network's first axis, usually "
                             "the slice axis), e.g. 1,2 for in-plane only: 4 passes instead of 8 (default: all the "
                             "model was trained with)")
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"),
                        help="bfloat16: autocast, faster on CPUs with AVX-512 BF16 / AMX and on GPUs; labels may "
                             "differ from float32 at a few boundary voxels (default float32, nnU-Net's results)")
    parser.add_argument("--tile-step", type=float, default=0.5,
                        help="sliding-window step as a fraction of the patch (nnU-Net's default 0.5; larger: "
                             "fewer tiles, faster, less overlap averaging)")
    parser.add_argument("--no-uncertainty", action="store_true", help="skip the uncertainty maps")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="normalised entropy from which a voxel counts as uncertain (default 0.5)")
    parser.add_argument("--dicom", action="store_true",
                        help="also write DICOM into OUT/dicom/ (per case with --manifest): the AI segmentation as a "
                             "DICOM SEG, the uncertainty as a Parametric Map and the tumour volume and uncertain "
                             "fraction as an SR Measurement Report (TID 1500), referencing the source series "
                             "(the first --image must be a DICOM folder or FOLDER#series)")
    add_pipeline_arguments(parser, grid_steps=False, mask=False)
    parser.set_defaults(run=run)


def add_model_choice_arguments(parser) -> None:
    """--configuration / --checkpoint: which model of a folder or zip holding several, which checkpoint."""
    parser.add_argument("--configuration", default=None,
                        help="nnU-Net configuration to run when the model folder or zip holds several (e.g. "
                             "3d_lowres and 3d_cascade_fullres; default: the only one, or the cascade's last "
                             "stage); a cascade stage runs its first stage, found beside it, first")
    parser.add_argument("--checkpoint", default="checkpoint_final.pth",
                        help="checkpoint file in each fold_N/ (default checkpoint_final.pth; e.g. checkpoint_best.pth)")


def _axes(text: str) -> tuple:
    import argparse

    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of axis numbers such as 1,2: {text!r}") from None


def _write_case(logic, context, volumes, parameters, pipeline, folder: Path, task, case_id: str, images,
                dicom: bool = False) -> dict:
    """Segment one case's loaded ``volumes`` and write its files into ``folder``; returns its summary."""
    from virtualbiopsy.mrml import io

    source = volumes[0]
    if dicom:
        from virtualbiopsy.dicom.export import require_dicom_source

        require_dicom_source(source)
    if pipeline is not None:
        steps = task.sub(0.0, 0.4)
        volumes = [logic.preprocess(v, pipeline, progress=steps.sub(i / len(volumes), (i + 1) / len(volumes)))
                   for i, v in enumerate(volumes)]
        task = task.sub(0.4, 1.0)
    outputs = logic.segment(volumes, parameters, task, name=case_id or None)
    io.save_node(outputs.segmentation, folder / "segmentation.seg.nrrd")
    if outputs.uncertainty is not None:
        io.save_node(outputs.uncertainty, folder / "uncertainty.nrrd")
        io.save_node(outputs.agreement, folder / "agreement.seg.nrrd")
        io.save_node(outputs.disagreement, folder / "disagreement.nrrd")
        if outputs.fold_disagreement is not None:
            io.save_node(outputs.fold_disagreement, folder / "fold_disagreement.nrrd")
    if dicom:
        from virtualbiopsy.dicom.results import export_ai_segmentation
        from virtualbiopsy.segmentation.model_source import is_demo_model

        written = export_ai_segmentation(outputs, source, folder / "dicom", is_demo_model(parameters.model_path))
        outputs.summary["dicom"] = [str(p.relative_to(folder)) for p in written]
    summary = {"case_id": case_id, "images": [str(p) for p in images],
               "preprocessing": pipeline.to_dict() if pipeline is not None else None, **outputs.summary}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _load_image(context, io, path: Path):
    """The image as a volume node named after its file (a DICOM series keeps its own name), so that every
    message about it names the file."""
    from virtualbiopsy.mrml.dicom_nodes import file_node_name

    return io.load_volume(context, path, name=file_node_name(path))


def _report(name: str, summary: dict, folder: Path) -> None:
    print(f"{name}: tumour {summary['tumour_volume_ml']:.1f} mL, "
          f"{100 * summary['uncertain_fraction']:.1f} % uncertain -> {folder}")
    for warning in summary.get("warnings") or []:
        print(f"warning: {name}: {warning}")


def parameters_from_args(args, model_folder):
    """The :class:`~virtualbiopsy.logic.neuroblastoma_seg.SegmentParameters` the options give (``model_folder``:
    the model folder, a zip extracted)."""
    from virtualbiopsy.logic.neuroblastoma_seg import SegmentParameters
    from virtualbiopsy.segmentation.model_source import parse_folds

    return SegmentParameters(str(model_folder), parse_folds(args.folds), args.device, not args.no_mirroring,
                             not args.no_uncertainty, args.threshold, args.checkpoint, args.configuration,
                             args.precision, args.mirror_axes, args.tile_step)


def run(args) -> int:
    from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
    from virtualbiopsy.mrml import MRMLContext, io
    from virtualbiopsy.segmentation import cohort
    from virtualbiopsy.segmentation.model_source import ModelArchives

    cases = cohort.read_manifest(args.manifest) if args.manifest is not None else None
    model = ModelArchives().folder(args.model, args.sha256, args.configuration)
    pipeline = pipeline_from_args(args)
    parameters = parameters_from_args(args, model)
    context = MRMLContext.create()
    logic = NeuroblastomaSegLogic(context)
    logic.load_model(parameters)  # a bad model is refused once, before any case or file
    args.out.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out / "vtk.log")
    if cases is None:
        volumes = [_load_image(context, io, path) for path in args.image]
        if args.dicom:
            from virtualbiopsy.dicom.export import require_dicom_source

            require_dicom_source(volumes[0])
        with ConsoleProgress("segment") as bar:
            summary = _write_case(logic, context, volumes, parameters, pipeline, args.out, Task(bar), "", args.image,
                                  args.dicom)
        _report(args.image[0].name, summary, args.out)
        return 0

    def segment_case(case, folder, task):
        try:
            volumes = [_load_image(context, io, path) for path in case.images]
            return _write_case(logic, context, volumes, parameters, pipeline, folder, task, case.case_id,
                               case.images, args.dicom)
        finally:
            context.scene.Clear(0)

    settings = {"model": cohort.model_stamp(model), "folds": parameters.folds, "mirroring": parameters.mirroring,
                "uncertainty": parameters.uncertainty, "threshold": parameters.uncertain_threshold,
                "preprocessing": pipeline.to_dict() if pipeline is not None else None, "dicom": args.dicom}
    with ConsoleProgress("segment") as bar:
        result = cohort.run_cohort(cases, args.out, settings, segment_case, Task(bar))
    for case in result.results:
        if case.status == "computed":
            _report(case.case_id, case.summary, args.out / case.case_id)
    print(f"{len(result.results)} case(s): {result.count('computed')} segmented, {result.count('reused')} reused "
          f"from an earlier run, {len(result.failed)} failed -> {result.table_path}")
    for case in result.failed[:10]:
        print(f"  {case.case_id}: {case.error}")
    return EXIT_SOME_CASES_FAILED if result.failed else 0
