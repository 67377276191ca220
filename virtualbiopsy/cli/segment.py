"""``virtualbiopsy segment``: nnU-Net tumour segmentation with uncertainty, one case or a manifest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from virtualbiopsy.cli.output import quiet_vtk
from virtualbiopsy.cli.preprocess import add_pipeline_arguments, pipeline_from_args
from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment the tumour with an nnU-Net v2 model, with a voxel-wise uncertainty map",
        description=(
            "Run a trained nnU-Net v2 model (a results folder with dataset.json, plans.json and fold_N/, or a .zip "
            "of one) on one case (--image, once per model channel, in the model's channel order) or on every case "
            "of a manifest CSV (columns case_id, image[, image2, ...]). Writes per case: segmentation.seg.nrrd "
            "(new segments; the tumour coded as a neoplasm), uncertainty.nrrd (normalised predictive entropy over "
            "the mirrored passes and folds, uint8 0-255 = 0-1), disagreement.nrrd (mutual information between "
            "those passes, same scale; with several folds also fold_disagreement.nrrd), agreement.seg.nrrd (mean "
            "tumour probability >= 10 %% and >= 50 %%) and summary.json (tumour volume in mL, uncertain fraction, "
            "slices to review, the pre-processing applied). --n4 / --denoise pre-process every input image first "
            "(same grid; nnU-Net does its own resampling and normalisation). Any NRRD / NIfTI input. Research use only."
        ),
    )
    parser.add_argument("--model", type=Path, required=True, help="nnU-Net v2 model folder or .zip")
    parser.add_argument("--sha256", help="expected SHA256 of a model .zip (refused if it differs)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", type=Path, action="append", help="input image; repeat for each model channel")
    source.add_argument("--manifest", type=Path, help="CSV with columns case_id, image[, image2, ...]")
    parser.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per manifest case)")
    parser.add_argument("--folds", type=str, default=None, help="folds to use, e.g. 0,1,2 (default: all present)")
    parser.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"), help="default: auto")
    parser.add_argument("--no-mirroring", action="store_true", help="one network pass per tile (faster, less robust)")
    parser.add_argument("--no-uncertainty", action="store_true", help="skip the uncertainty maps")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="normalised entropy from which a voxel counts as uncertain (default 0.5)")
    add_pipeline_arguments(parser, grid_steps=False)
    parser.set_defaults(run=run)


def _cases(args) -> list[tuple[str, list[Path]]]:
    if args.image:
        return [("", list(args.image))]
    if not args.manifest.is_file():
        raise FileFormatError(f"No manifest at '{args.manifest}'.")
    with open(args.manifest, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows or "case_id" not in rows[0]:
        raise InputError(f"The manifest '{args.manifest.name}' needs a header with case_id and image columns.")
    columns = [c for c in rows[0] if c != "case_id" and c.lower().startswith("image")]
    base = args.manifest.parent
    return [(row["case_id"], [base / row[c] if not Path(row[c]).is_absolute() else Path(row[c]) for c in columns])
            for row in rows]


def run(args) -> int:
    from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic, SegmentParameters
    from virtualbiopsy.mrml import MRMLContext, io
    from virtualbiopsy.segmentation.model_source import ModelArchives, parse_folds

    args.out.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out / "vtk.log")
    model = ModelArchives().folder(args.model, args.sha256)
    folds = parse_folds(args.folds)
    pipeline = pipeline_from_args(args)
    parameters = SegmentParameters(str(model), folds, args.device, not args.no_mirroring, not args.no_uncertainty,
                                   args.threshold)
    context = MRMLContext.create()
    logic = NeuroblastomaSegLogic(context)
    cases = _cases(args)
    with ConsoleProgress("segment") as bar:
        task = Task(bar)
        for index, (case_id, images) in enumerate(cases):
            case_task = task.sub(index / len(cases), (index + 1) / len(cases))
            volumes = [io.load_volume(context, path) for path in images]
            if pipeline is not None:
                steps = case_task.sub(0.0, 0.4)
                volumes = [logic.preprocess(v, pipeline, progress=steps.sub(i / len(volumes), (i + 1) / len(volumes)))
                           for i, v in enumerate(volumes)]
                case_task = case_task.sub(0.4, 1.0)
            outputs = logic.segment(volumes, parameters, case_task, name=case_id or None)
            folder = args.out / case_id if case_id else args.out
            io.save_node(outputs.segmentation, folder / "segmentation.seg.nrrd")
            if outputs.uncertainty is not None:
                io.save_node(outputs.uncertainty, folder / "uncertainty.nrrd")
                io.save_node(outputs.agreement, folder / "agreement.seg.nrrd")
                io.save_node(outputs.disagreement, folder / "disagreement.nrrd")
                if outputs.fold_disagreement is not None:
                    io.save_node(outputs.fold_disagreement, folder / "fold_disagreement.nrrd")
            summary = {"case_id": case_id, "images": [str(p) for p in images],
                       "preprocessing": pipeline.to_dict() if pipeline is not None else None, **outputs.summary}
            (folder / "summary.json").write_text(json.dumps(summary, indent=2))
            print(f"{case_id or images[0].name}: tumour {summary['tumour_volume_ml']:.1f} mL, "
                  f"{100 * summary['uncertain_fraction']:.1f} % uncertain -> {folder}")
            for warning in summary.get("warnings") or []:
                print(f"warning: {case_id + ': ' if case_id else ''}{warning}")
            context.scene.Clear(0)
    return 0
