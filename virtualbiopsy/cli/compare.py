"""``virtualbiopsy compare``: agreement of an AI tumour mask with the radiologist-corrected mask.

Inputs are ``.seg.nrrd`` segmentations or label images (NRRD, NIfTI, MetaImage). In a label
image the tumour is every non-zero voxel (said so when several labels are merged), or the voxels
equal to ``--segment`` values. In a ``.seg.nrrd`` the tumour is the ``--segment`` segments (by
name) or the only segment. A repeated ``--segment`` (or ``--corrected-segment``) means the union
of those segments or labels, as in ``fcf`` and ``dce``.

Reference grid: ``--reference`` when given; otherwise the corrected mask's own grid, i.e. the
label image itself (loaded as a label-map volume) or, for a ``.seg.nrrd``, its reference image
geometry extended to cover its segments. The AI mask must lie on that grid (no resampling).
"""

from __future__ import annotations

import json
from pathlib import Path

from virtualbiopsy import attributes
from virtualbiopsy.cli.output import quiet_vtk

_SEGMENTATION_SUFFIXES = (".seg.nrrd", ".seg.nhdr")
_TUMOUR_COLOUR = (0.9, 0.2, 0.2)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare an AI tumour mask with the corrected mask (DSC, HD95, surface Dice, added path length, ...)",
        description=(
            "Compute the agreement between an AI segmentation and its radiologist-corrected version on one voxel "
            "grid: DSC, Jaccard, false-positive and false-negative rates (per corrected volume), HD95 and mean "
            "surface distance (mm), surface Dice at a tolerance (mm), added path length (mm) and volumes (mL). "
            "Writes OUT/metrics.csv (columns metric, value, unit, description) and prints the table. Masks are "
            ".seg.nrrd files or label images (NRRD/NIfTI; tumour = non-zero voxels unless --segment gives a label "
            "value; a repeated --segment / --corrected-segment means their union, e.g. a tumour drawn as rim and "
            "core). "
            "Both masks must be on the reference grid: --reference, else the corrected mask's own grid."
        ),
    )
    parser.add_argument("--ai", type=Path, required=True, help="AI segmentation (.seg.nrrd or label image)")
    parser.add_argument("--corrected", type=Path, required=True,
                        help="radiologist-corrected segmentation (.seg.nrrd or label image)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for metrics.csv (created if needed)")
    parser.add_argument("--segment", action="append", default=None,
                        help="segment name (.seg.nrrd) or label value (label image) of the tumour in the AI mask, "
                             "and in the corrected mask unless --corrected-segment is given; repeat for a union "
                             "(default: the only segment, or every non-zero label)")
    parser.add_argument("--corrected-segment", action="append", default=None,
                        help="segment name or label value of the tumour in the corrected mask; repeat for a union "
                             "(default: --segment)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="image whose voxel grid both masks are read on (default: the corrected mask's grid)")
    parser.add_argument("--tolerance-mm", type=float, default=1.0,
                        help="surface Dice tolerance in mm (default: 1.0)")
    parser.add_argument("--dicom", action="store_true",
                        help="also write OUT/dicom/corrected_seg.dcm (the corrected tumour as a DICOM SEG, algorithm "
                             "type SEMIAUTOMATIC: an AI result edited by a person) and corrected_sr.dcm (its volume, "
                             "and the DSC / HD95 against the AI mask); --reference must be the DICOM series")
    parser.set_defaults(run=run)


def _require_file(path: Path, role: str) -> Path:
    from virtualbiopsy.errors import FileFormatError

    if not Path(path).is_file():
        raise FileFormatError(f"The {role} file '{path}' does not exist.")
    return Path(path)


def _pick_segments(node, segments: list[str] | None, path: Path) -> list[str]:
    from virtualbiopsy.errors import InputError
    from virtualbiopsy.mrml import arrays

    if segments:
        return list(dict.fromkeys(arrays.segment_id_by_name(node, name) for name in segments))
    ids = arrays.segment_ids(node)
    if len(ids) != 1:
        names = [node.GetSegmentation().GetSegment(s).GetName() for s in ids]
        raise InputError(
            f"'{path.name}' holds {len(ids)} segments ({', '.join(names) or 'none'}); choose the tumour with "
            "--segment NAME (repeat it for a union; --corrected-segment NAME for the corrected file)."
        )
    return ids


def _label_values(path: Path, segments: list[str]) -> list[float]:
    from virtualbiopsy.errors import InputError

    values = []
    for segment in segments:
        try:
            values.append(float(segment))
        except ValueError:
            raise InputError(
                f"'{path.name}' is a label image: give --segment as a label value (e.g. 1), not '{segment}'."
            ) from None
    return values


def _load_mask(context, path: Path, role: str, segments: list[str] | None):
    """(segmentation node, segment IDs, label-map volume or None, a note on what was merged or '')."""
    import numpy as np

    from virtualbiopsy.mrml import arrays, io
    from virtualbiopsy.mrml.geometry import Geometry

    path = _require_file(path, role)
    name = path.name  # the nodes are named after their file, so that every message names the file
    if path.name.lower().endswith(_SEGMENTATION_SUFFIXES):
        node = io.load_segmentation(context, path, name)
        return node, _pick_segments(node, segments, path), None, ""
    labelmap = io.load_volume(context, path, name, labelmap=True, require_finite_values=False)
    labels = arrays.array_from_volume(labelmap)
    present = [float(v) for v in np.unique(labels) if v != 0]
    note = ""
    if not segments:
        mask = labels != 0
        if len(present) > 1:
            note = (f"the {role} '{path.name}' holds labels {', '.join(f'{v:g}' for v in present)}; all non-zero "
                    "voxels were merged into one tumour mask (give --segment to choose labels)")
    else:
        values = _label_values(path, segments)
        mask = np.isin(labels, values)
        absent = [v for v in values if v not in present]
        if absent:
            note = (f"label {', '.join(f'{v:g}' for v in absent)} does not occur in the {role} '{path.name}' "
                    f"(labels present: {', '.join(f'{v:g}' for v in present) or 'none'})")
    node = arrays.add_segmentation_from_labels(
        context, mask.astype(np.uint8), Geometry.from_node(labelmap), {1: ("tumour", _TUMOUR_COLOUR)}, name,
        reference_volume=labelmap)
    if not arrays.segment_ids(node):  # an empty mask gives no segment; keep an empty one to compare
        node.GetSegmentation().AddEmptySegment("tumour", "tumour")
    return node, arrays.segment_ids(node), labelmap, note


def _segmentation_grid(context, segmentation_node):
    """A label-map volume on the segmentation's own grid (reference geometry and its segments)."""
    import slicer

    from virtualbiopsy.errors import InputError

    labelmap = context.add_node("vtkMRMLLabelMapVolumeNode", f"{segmentation_node.GetName()} grid")
    mode = slicer.vtkSegmentation.EXTENT_UNION_OF_EFFECTIVE_SEGMENTS_AND_REFERENCE_GEOMETRY
    if not slicer.vtkSlicerSegmentationsModuleLogic.ExportAllSegmentsToLabelmapNode(segmentation_node, labelmap, mode):
        raise InputError(f"Could not derive a voxel grid from '{segmentation_node.GetName()}'; give --reference.")
    return labelmap


def run(args) -> int:
    from virtualbiopsy.mrml import MRMLContext, io
    from virtualbiopsy.segmentation.correction import compare_segments

    context = MRMLContext.create()
    ai_path = _require_file(args.ai, "AI mask")
    corrected_path = _require_file(args.corrected, "corrected mask")
    reference_path = _reference_path(args.reference, args.dicom)
    args.out.mkdir(parents=True, exist_ok=True)
    quiet_vtk(args.out / "vtk.log")
    corrected_segment = args.corrected_segment if args.corrected_segment is not None else args.segment
    ai, ai_ids, _, ai_note = _load_mask(context, ai_path, "AI mask", args.segment)
    corrected, corrected_ids, corrected_labels, corrected_note = _load_mask(context, corrected_path, "corrected mask",
                                                                            corrected_segment)
    if reference_path is not None:
        from virtualbiopsy.mrml.dicom_nodes import file_node_name

        reference = io.load_volume(context, reference_path, file_node_name(reference_path),
                                   require_finite_values=False)
        if args.dicom:
            from virtualbiopsy.dicom.export import require_dicom_source

            require_dicom_source(reference, "--dicom")
    elif corrected_labels is not None:
        reference = corrected_labels
    else:
        reference = _segmentation_grid(context, corrected)
    table = compare_segments(context, ai, ai_ids, corrected, corrected_ids, reference, args.tolerance_mm)
    path = io.write_csv(table, args.out / "metrics.csv")

    from virtualbiopsy.mrml.arrays import table_columns

    columns = table_columns(table)
    for note in (ai_note, corrected_note):
        if note:
            print(f"note: {note}")

    def segments(attribute: str) -> str:
        names = json.loads(table.GetAttribute(attribute))
        return " + ".join(f"'{n}'" for n in names)

    print(f"AI '{ai_path.name}' ({segments(attributes.AI_SEGMENTS)}) vs corrected '{corrected_path.name}' "
          f"({segments(attributes.CORRECTED_SEGMENTS)}), surface Dice tolerance {args.tolerance_mm:g} mm:")
    for metric, value, unit in zip(columns["metric"], columns["value"], columns["unit"]):
        print(f"  {metric:<27} {value:>12.4g} {unit}")
    print(f"Written: {path}")
    if args.dicom:
        for written in _write_dicom(context, corrected, corrected_ids, reference, columns, args.out / "dicom"):
            print(f"Written: {written}")
    return 0


def _reference_path(reference, dicom: bool):
    from virtualbiopsy.errors import InputError
    from virtualbiopsy.mrml.dicom_nodes import is_dicom_reference

    if reference is None:
        if dicom:
            raise InputError("--dicom needs --reference: the DICOM series the masks were drawn on (the SEG "
                             "references its instances).")
        return None
    if is_dicom_reference(reference):
        return reference
    if dicom:
        raise InputError(f"--dicom needs --reference to be a DICOM series; '{reference}' is not one.")
    return _require_file(reference, "reference image")


def _write_dicom(context, corrected, corrected_ids, reference, columns, folder: Path) -> list[Path]:
    """The corrected tumour as a SEMIAUTOMATIC SEG, and its volume and agreement as a TID 1500 report."""
    import numpy as np

    from virtualbiopsy.dicom import export
    from virtualbiopsy.dicom.report import Quantity, SegmentFinding, write_measurement_report
    from virtualbiopsy.mrml import arrays
    from virtualbiopsy.mrml.geometry import Geometry

    algorithm = export.Algorithm("SEMIAUTOMATIC", "AI segmentation corrected by a reader")
    masks = [arrays.mask_from_segment(corrected, i, reference, allow_empty=True) for i in corrected_ids]
    names = [corrected.GetSegmentation().GetSegment(i).GetName() for i in corrected_ids]
    name = names[0] if len(names) == 1 else "tumour (" + " + ".join(names) + ")"
    node = arrays.add_segmentation_from_labels(context, np.logical_or.reduce(masks).astype(np.uint8),
                                               Geometry.from_node(reference), {1: (name, _TUMOUR_COLOUR)},
                                               "corrected tumour", reference)
    seg = export.write_segmentation(node, reference, folder / "corrected_seg.dcm", algorithm,
                                    series_description="Corrected tumour segmentation", series_number=911)
    metric = dict(zip(columns["metric"], columns["value"], strict=True))
    quantities = [Quantity("volume_ml", float(metric["volume_corrected_ml"])),
                  Quantity("dice_percent", 100 * float(metric["dsc"])),
                  Quantity("hd95_mm", float(metric["hd95_mm"]))]
    report = write_measurement_report(seg, export.source_datasets(reference), [SegmentFinding(1, name, quantities)],
                                      folder / "corrected_sr.dcm", algorithm, "Corrected tumour measurements", 912)
    return [seg, report]
