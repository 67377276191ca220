"""``virtualbiopsy view``: review and correct one study in a browser (trame-slicer), on the same library."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path

from virtualbiopsy.cli.segment import add_model_choice_arguments
from virtualbiopsy.errors import InputError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "view",
        help="review and correct one study in the browser: AI segmentation, uncertainty, correction, habitats",
        description=(
            "Serve one study to a web browser: axial / coronal / sagittal views, window/level presets, the segments "
            "(visibility, colour, opacity); run an nnU-Net model (the bundled DEMO model and each --model given) "
            "with its uncertainty overlay, agreement contours and the places to review; correct a copy of the AI "
            "segment (paint, erase, scissors, threshold, islands, smoothing, undo / redo; the AI result is never "
            "edited, the editing time is recorded); compare (DSC, HD95, ... and a difference overlay); save "
            "(corrected.seg.nrrd, DICOM SEG when the study is DICOM, metrics.csv, scene.mrb, nnU-Net export for "
            "retraining) and run Fit-Cluster-Fit and radiomics on the corrected tumour. Everything is written under "
            "--out; unsaved edits are autosaved there and offered back by the next view of the same study. "
            "Listens on 127.0.0.1 only unless --host is given; the printed URL carries a per-run secret without "
            "which no client can connect. One server serves one study. Research use only."
        ),
    )
    parser.add_argument("study", nargs="?", type=Path,
                        help="study folder (the sample-study layout, image files named t2w / dwi / dce, or one "
                             "DICOM series)")
    parser.add_argument("--image", action="append", default=[],
                        help="an image file or DICOM reference instead of a folder; repeat; the first is segmented")
    parser.add_argument("--scene", type=Path, help="a Slicer scene bundle (.mrb) instead of a folder")
    parser.add_argument("--demo", action="store_true", help="the bundled sample study (written to OUT/study)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for everything the page saves (default: out/view/<study name>)")
    parser.add_argument("--model", type=Path, action="append", default=[],
                        help="an nnU-Net v2 model folder or .zip the page may run (repeat); the DEMO model is "
                             "always offered")
    parser.add_argument("--sha256", help="expected SHA256 of a --model .zip")
    add_model_choice_arguments(parser)
    parser.add_argument("--outcome-model", type=Path, default=None,
                        help="a model folder written by 'predict train' on radiomics columns: the page predicts "
                             "this patient's outcome from the tumour's radiomics, with its SHAP waterfall")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument("--host", default=None,
                        help="address to listen on (default 127.0.0.1, this machine only); anything else lets "
                             "other machines reach the page (still only with the secret)")
    parser.add_argument("--3d", dest="three_d", action="store_true", help="add a 3D view (slow on a CPU)")
    parser.add_argument("--autosave-every", type=float, default=5.0, metavar="S",
                        help="seconds between autosaves of unsaved edits (default 5; 0 after every edit)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --demo study (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="use an --out that holds other files (they are kept; a save replaces only the files "
                             "the viewer writes, e.g. corrected.seg.nrrd)")
    parser.set_defaults(run=run)


def _source(args) -> dict:
    given = [args.study is not None, bool(args.image), args.scene is not None, args.demo]
    if sum(given) != 1:
        raise InputError("Give one study: a STUDY_DIR, --image IMG (repeat), --scene FILE.mrb or --demo.")
    if args.study is not None:
        return {"folder": args.study}
    if args.image:
        return {"images": list(args.image)}
    if args.scene is not None:
        return {"scene": args.scene}
    return {}


def _study_name(args) -> str:
    from virtualbiopsy.review.session import safe_name

    if args.demo:
        return f"demo-seed{args.seed}"
    path = args.study or args.scene or Path(str(args.image[0]).split("#")[0])
    return safe_name(Path(path).name.split(".")[0])


def _check_out(out: Path, create: bool, overwrite: bool = False) -> None:
    """A new or empty folder, or the folder of an earlier view (its saves and autosave are what resuming is);
    made (with its marker) only once the study has been read."""
    from virtualbiopsy.cli.output import MARKER, _check_creatable, _read_marker

    _check_creatable(out)

    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file, not a folder.")
    if out.is_dir() and any(out.iterdir()):
        marker = _read_marker(out)
        if not overwrite and (marker is None or marker.get("command") != "view"):
            raise InputError(f"--out '{out}' holds files of something else than 'virtualbiopsy view'; choose a new "
                             f"folder, or give --overwrite to use it (nothing was written).")
    if not create:
        return
    out.mkdir(parents=True, exist_ok=True)
    if not (out / MARKER).exists():  # another command's record (--overwrite) is left as it is
        import json

        (out / MARKER).write_text(json.dumps({"command": "view", "files": []}))


def run(args) -> int:
    from virtualbiopsy.cli.output import quiet_vtk
    from virtualbiopsy.review.session import model_choices

    source = _source(args)
    if args.port < 0 or args.port > 65535:
        raise InputError(f"--port must be 0-65535; got {args.port}.")
    if args.autosave_every < 0:
        raise InputError(f"--autosave-every must be >= 0 seconds; got {args.autosave_every:g}.")
    try:
        from virtualbiopsy_web.server import LOOPBACK, create, start
    except ImportError as error:
        from virtualbiopsy.errors import DependencyError

        raise DependencyError(f"The viewer needs {error.name} (make setup installs trame-slicer into .venv).") from None
    for model in args.model:
        if not model.exists():
            raise InputError(f"--model '{model}' does not exist.")
    if args.outcome_model is not None:
        from virtualbiopsy.prediction.model_card import load_model

        load_model(args.outcome_model)  # refused here, by name, rather than when the page asks
    out = args.out or Path("out") / "view" / _study_name(args)
    _check_out(out, create=False, overwrite=args.overwrite)
    if args.demo:
        from virtualbiopsy.phantom import generate_study
        from virtualbiopsy.sample_study import write_study

        folder = out / "study"
        if not (folder / "truth.json").is_file():
            print(f"Writing the sample study (seed {args.seed}) to {folder} ...", flush=True)
            write_study(generate_study(args.seed), folder)
        source = {"folder": folder}
    quiet_vtk(Path(tempfile.gettempdir()) / f"virtualbiopsy-view-{os.getpid()}-vtk.log")  # until --out exists
    host = args.host or LOOPBACK
    if args.host and args.host not in (LOOPBACK, "localhost", "::1"):
        print(f"virtualbiopsy: warning: listening on {host}: other machines can reach this page (they still need "
              "the secret in the URL); patient images may be served over an unencrypted connection.",
              file=sys.stderr)
    choices = model_choices(args.model, args.sha256, args.configuration, args.checkpoint)
    review = create(source, out, choices, host=host, port=args.port,
                    show_3d=args.three_d, outcome_model=args.outcome_model)
    review.app.autosave_every = args.autosave_every
    _check_out(out, create=True, overwrite=args.overwrite)
    quiet_vtk(out / "vtk.log")

    def ready(server):
        print(f"Virtual Biopsy review of '{server.app.session.study.name}' (one study per server)", flush=True)
        print(f"Open: {server.url}", flush=True)
        print(f"Saving under: {out.resolve()}   (Ctrl+C stops the server; unsaved edits are autosaved)", flush=True)

    def stop(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)  # a service manager's stop keeps the edits too
    try:
        start(review, on_ready=ready)
    except KeyboardInterrupt:
        pass
    finally:
        review.app.shutdown()
    print(f"Stopped. Saved files and the autosave of unsaved edits are under {out}.", flush=True)
    return 0
