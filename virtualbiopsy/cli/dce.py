"""``virtualbiopsy dce``: DCE-MRI enhancement metrics of a tumour (iAUC60, time to peak, wash-in slope)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from virtualbiopsy.cli.fcf import add_mask_arguments, arrival_from_text, load_mask, load_series, series_times
from virtualbiopsy.cli.output import quiet_vtk
from virtualbiopsy.errors import InputError
from virtualbiopsy.progress import ConsoleProgress, Task


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "dce",
        help="DCE-MRI: bolus arrival, iAUC60, time to peak and wash-in slope of a tumour (voxel maps and curves)",
        description=(
            "Detect the bolus arrival on the tumour's mean curve (linear-quadratic model), then compute per voxel and "
            "for the mean curve of the tumour (and of each segment of --habitats) the initial area under the relative-"
            "enhancement curve over 60 s after arrival (iAUC60, in s), the time to peak (s) and the wash-in slope "
            "(1/s). --series takes one volume per frame (in --times order) or one 4D file (a .seq.nrrd indexed by "
            "time in s, a NRRD with a list axis, or a 4D NIfTI). Writes to OUT: dce.csv (region, voxels, volume_ml, "
            "arrival_s, iauc60, voxel_mean_iauc60, ttp_s, wash_in_per_s, peak_enhancement), iauc60.nrrd, "
            "time_to_peak.nrrd, wash_in.nrrd, curves.png and summary.json. Research use only."
        ),
    )
    parser.add_argument("--series", type=Path, nargs="+", required=True, help="DCE frames, or one 4D file")
    parser.add_argument("--times", help="acquisition times in s: 0,5,10,... or FRAMESxINTERVAL (40x5) or a file "
                                        "(default for a .seq.nrrd: its index values)")
    add_mask_arguments(parser)
    parser.add_argument("--habitats", type=Path, help="a habitats.seg.nrrd (from fcf): one table row per segment")
    parser.add_argument("--window", type=float, default=60.0, help="iAUC window after arrival, s (default 60)")
    parser.add_argument("--arrival", default="region",
                        help="bolus arrival: region (once, on the tumour's mean curve; default), voxel, or a time (s)")
    parser.add_argument("--override-times", action="store_true",
                        help="use --times even where the sequence stores different ones (recorded in summary.json)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if needed)")
    parser.add_argument("--dicom", action="store_true",
                        help="also write OUT/dicom/: iAUC, time to peak and wash-in as DICOM Parametric Maps "
                             "referencing the first frame of the series (--series must be a DICOM folder or "
                             "FOLDER#series)")
    parser.set_defaults(run=run)


def run(args) -> int:
    from virtualbiopsy.habitats import figures
    from virtualbiopsy.habitats.pipeline import DceParameters
    from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic
    from virtualbiopsy.mrml import MRMLContext, arrays, io

    # Inputs are read and checked before --out is created or the progress bar starts (one-line refusals).
    parameters = DceParameters(args.window, arrival_from_text(args.arrival))
    quiet_vtk(Path(os.devnull))
    context = MRMLContext.create()
    logic = FitClusterFitLogic(context)
    series, index_values = load_series(context, args.series, "DCE")
    times, override = series_times(args.times, args.override_times, index_values, args.series[0])
    mask, segments, label = load_mask(context, args)
    habitats = io.load_segmentation(context, args.habitats, args.habitats.name) if args.habitats else None
    reference = logic.dce_signals(series, times, True)[2]
    logic.tumour_mask(mask, reference, segments, label)
    first_frame = series[0] if isinstance(series, list) else None
    if args.dicom:
        from virtualbiopsy.dicom.export import require_dicom_source

        if first_frame is None:
            raise InputError(f"--dicom needs a DICOM series; '{args.series[0]}' was not read from DICOM.")
        require_dicom_source(first_frame, "--dicom")

    args.out.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out / "vtk.log")
    with ConsoleProgress("dce") as bar:
        task = Task(bar)
        outputs = logic.dce_metrics(series, times, mask, segments, label, parameters, habitats,
                                    progress=task.sub(0.0, 0.9), override_times=True)
        outputs.summary.pop("times_override", None)
        if override is not None:
            outputs.summary["times_override"] = override
        task.update(0.9, "Writing")
        window = f"{args.window:g}"
        io.write_csv(outputs.table, args.out / "dce.csv")
        for node, file_name in ((outputs.iauc, f"iauc{window}.nrrd"), (outputs.time_to_peak, "time_to_peak.nrrd"),
                                (outputs.wash_in, "wash_in.nrrd"), (outputs.arrival, "arrival.nrrd")):
            if node is not None:
                io.save_node(node, args.out / file_name)
        figures.enhancement_curves(args.out / "curves.png", outputs.times, outputs.mean_curves,
                                   outputs.summary["arrival_s"], args.window)
        if args.dicom:
            outputs.summary["dicom"] = _write_dicom(outputs, first_frame, args)
        (args.out / "summary.json").write_text(json.dumps(outputs.summary, indent=2))
    table = arrays.table_columns(outputs.table)
    print(f"Bolus arrival {outputs.summary['arrival_s']:.1f} s ({outputs.summary['arrival_mode']}):")
    for i, region in enumerate(table["region"]):
        print(f"  {region}: {int(table['voxels'][i])} voxels, iAUC{window} {table[f'iauc{window}'][i]:.2f} s "
              f"(voxel mean {table[f'voxel_mean_iauc{window}'][i]:.2f}), time to peak {table['ttp_s'][i]:.0f} s")
    print(f"-> {args.out}")
    return 0


def _write_dicom(outputs, source, args) -> list[str]:
    """The DCE maps as Parametric Maps referencing the series' first frame."""
    from virtualbiopsy.dicom import export

    folder, window = args.out / "dicom", f"{args.window:g}"
    maps = ((outputs.iauc, f"iauc{window}_pm.dcm", f"iAUC{window}", "initial area under the curve", "s"),
            (outputs.time_to_peak, "time_to_peak_pm.dcm", "TTP", "time to peak enhancement", "s"),
            (outputs.wash_in, "wash_in_pm.dcm", "Wash-in", "wash-in rate of the relative enhancement", "1/s"))
    written = [export.write_parametric_map(node, source, folder / name, label, explanation, unit, 906 + i)
               for i, (node, name, label, explanation, unit) in enumerate(maps)]
    return [str(p.relative_to(args.out)) for p in written]
