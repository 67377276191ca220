"""``virtualbiopsy preprocess``: N4, denoising, resampling, normalisation, or registration to a reference.

The pipeline options are shared with ``virtualbiopsy segment`` (N4 and denoising before the model).
"""

from __future__ import annotations

import json
from pathlib import Path

from virtualbiopsy.cli.output import quiet_vtk
from virtualbiopsy.errors import InputError
from virtualbiopsy.mrml.dicom_nodes import file_node_name
from virtualbiopsy.progress import ConsoleProgress, Task


def add_pipeline_arguments(parser, grid_steps: bool = True, mask: bool = True) -> None:
    """Options choosing the pre-processing steps; ``grid_steps`` adds those that change the
    voxel values' scale or grid (resampling, normalisation); ``mask``: the command has a --mask option
    (the help says where N4 and the normalisation look)."""
    group = parser.add_argument_group("pre-processing (each step optional, applied in this order)")
    group.add_argument("--n4", action="store_true",
                       help="N4 bias-field correction (inside --mask, else the Otsu body mask)" if mask else
                       "N4 bias-field correction (inside the Otsu body mask)")
    group.add_argument("--denoise", choices=("curvature_flow", "patch_based"),
                       help="edge-preserving denoising; patch_based (non-local means) is slow: minutes per volume")
    if grid_steps:
        group.add_argument("--spacing", help="resample to this voxel size in mm, e.g. 1,1,4 (x,y,z)")
        group.add_argument("--normalise", choices=("zscore", "percentile"),
                           help="z-score, or clip to the 0.5-99.5th percentiles and scale to [0, 1] "
                                f"(statistics inside {'--mask, else ' if mask else ''}the body mask)")


def pipeline_from_args(args):
    """The :class:`PreprocessingPipeline` the options ask for (None when they ask for nothing)."""
    from virtualbiopsy.segmentation.preprocessing import PreprocessingPipeline

    return PreprocessingPipeline.from_choices(args.n4, args.denoise, getattr(args, "spacing", None),
                                              getattr(args, "normalise", None))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="bias-field correction, denoising, resampling, normalisation, or registration to a reference",
        description=(
            "Pre-process one image (NRRD / NIfTI) with the chosen steps, in the order N4, denoising, resampling, "
            "normalisation, and write it to OUT with OUT.json beside it (each step's parameters, seconds and "
            "details). With --register-to REF, instead register the image (e.g. DWI b0, a DCE frame) rigidly or "
            "affinely onto REF (e.g. the T2w) by mutual information, write it resampled on REF's grid, and report "
            "the registration quality (normalised cross-correlation and mutual information before and after)."
        ),
    )
    parser.add_argument("--image", type=Path, required=True, help="image to pre-process or register")
    parser.add_argument("--out", type=Path, required=True, help="output image file (.nrrd, .nii.gz)")
    parser.add_argument("--frame", type=int, default=None, metavar="N",
                        help="for a 4D --image (a DWI or DCE series): use its volume N (0 = the first, FSL's "
                             "numbering); with --register-to the default is the b0 (the lowest b-value the file "
                             "or its .bval carries, else the first volume)")
    parser.add_argument("--mask", type=Path,
                        help="segmentation or label map on the image's grid (on REF's grid with --register-to)")
    add_pipeline_arguments(parser)
    group = parser.add_argument_group("registration")
    group.add_argument("--register-to", type=Path, metavar="REF", help="reference (fixed) image")
    group.add_argument("--transform", choices=("rigid", "affine"), default="rigid", help="default: rigid")
    parser.set_defaults(run=run)


def _load_image(context, path: Path, frame: int | None, registering: bool):
    """(the 3D volume node to work on, a note on which frame of a 4D series it is, or '')."""
    from virtualbiopsy.mrml import io

    count = io.series_length(path) if path.is_file() else 1
    is_sequence = path.name.lower().endswith((".seq.nrrd", ".seq.nhdr"))
    if count == 1 and not is_sequence:
        if frame not in (None, 0):
            raise InputError(f"--frame {frame}: '{path.name}' is a single 3D volume, not a 4D series.")
        return io.load_volume(context, path, file_node_name(path)), ""
    if frame is None and not registering:
        raise InputError(f"'{path.name}' is a 4D series of {count} volumes; choose the one to pre-process with "
                         "--frame N (0 = the first).")
    from virtualbiopsy.cli.fcf import stored_dwi_table
    from virtualbiopsy.mrml.arrays import scratch_nodes
    from virtualbiopsy.mrml.sitk_bridge import add_volume_from_image, image_from_volume

    with context.transaction(), scratch_nodes(context.scene) as keep:
        frames, index_values = io.load_frames(context, path)
        b_values, _, source, _ = stored_dwi_table([path])
        if b_values is None and index_values is not None:
            try:
                b_values, source = [float(v) for v in index_values], f"the index values of '{path.name}'"
            except ValueError:
                b_values = None
        if b_values is not None and len(b_values) != len(frames):
            b_values = None
        if frame is None:
            frame = min(range(len(frames)), key=lambda i: b_values[i]) if b_values is not None else 0
            why = (f"the b0: b = {b_values[frame]:g} s/mm² in {source}" if b_values is not None
                   else "the first; the file carries no b-values, give --frame N for another")
        else:
            why = f"b = {b_values[frame]:g} s/mm²" if b_values is not None and 0 <= frame < len(frames) else "--frame"
        if not 0 <= frame < len(frames):
            raise InputError(f"--frame {frame}: '{path.name}' has {len(frames)} volumes, numbered 0 to "
                             f"{len(frames) - 1}.")
        node = frames[frame]
        if node.GetScene() is not context.scene:  # a .seq.nrrd frame lives in its sequence's own scene
            node = add_volume_from_image(context, image_from_volume(node), _volume_name(frame, path))
        else:
            node.SetName(_volume_name(frame, path))
        keep.append(node)
    return node, f"volume {frame} of {len(frames)} ({why})"


def _volume_name(frame: int, path: Path) -> str:
    """'volume 2 of dwi.seq.nrrd (--frame 1)': counted from 1 as in every other message, with the option's index."""
    return f"volume {frame + 1} of {path.name} (--frame {frame})"


def _load_mask(context, path: Path | None):
    from virtualbiopsy.mrml import io

    if path is None:
        return None
    if path.name.lower().endswith(".seg.nrrd"):
        return io.load_segmentation(context, path, path.name)
    return io.load_volume(context, path, path.name, labelmap=True)


def run(args) -> int:
    from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
    from virtualbiopsy.mrml import MRMLContext, io
    from virtualbiopsy.segmentation.preprocess_nodes import ATTRIBUTE
    from virtualbiopsy.segmentation.registration import RegistrationParameters

    pipeline = pipeline_from_args(args)
    if args.register_to is None and pipeline is None:
        raise InputError("Choose at least one step (--n4, --denoise, --spacing, --normalise) or --register-to REF.")
    if args.register_to is not None and pipeline is not None:
        raise InputError("Register and pre-process in two runs: --register-to cannot be combined with other steps.")
    if not args.out.name.lower().endswith(io.VOLUME_SUFFIXES):
        raise InputError(f"--out '{args.out.name}': unsupported file type; give a volume file ending in "
                         f"{', '.join(io.VOLUME_SUFFIXES)}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out.parent / "vtk.log")
    context = MRMLContext.create()
    logic = NeuroblastomaSegLogic(context)
    image, frame_note = _load_image(context, args.image, args.frame, args.register_to is not None)
    mask = _load_mask(context, args.mask)
    with ConsoleProgress("preprocess") as bar:
        if args.register_to is not None:
            reference = io.load_volume(context, args.register_to, file_node_name(args.register_to))
            node, quality = logic.register(reference, image, RegistrationParameters(transform=args.transform), mask,
                                           progress=Task(bar))
        else:
            node = logic.preprocess(image, pipeline, mask, progress=Task(bar))
    io.save_node(node, args.out)
    report = json.loads(node.GetAttribute(ATTRIBUTE))
    if frame_note:
        report["input_frame"] = frame_note
    report_path = args.out.with_name(args.out.name.split(".")[0] + ".json")
    report_path.write_text(json.dumps(report, indent=2))
    source = f"{args.image.name} {frame_note}" if frame_note else args.image.name
    if args.register_to is not None:
        print(f"Registered ({args.transform}) {source} onto {args.register_to.name}: normalised "
              f"cross-correlation {quality.ncc_before:.3f} -> {quality.ncc_after:.3f}, mutual information "
              f"{quality.mi_before:.3f} -> {quality.mi_after:.3f} nats"
              + ("" if quality.improved else " (NOT improved: check the result)") + f" -> {args.out}")
    else:
        steps = ", ".join(step["step"] for step in report["steps"])
        print(f"{source}: {steps} -> {args.out} (report: {report_path.name})")
    return 0
