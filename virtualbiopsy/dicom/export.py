"""Results as DICOM objects that reference their source series (highdicom): a Segmentation (SEG) of a
segmentation node and a Parametric Map of a quantitative volume (ADC, iAUC60, uncertainty).

The source is the DICOM series a volume node was read from (:mod:`virtualbiopsy.mrml.dicom_nodes`
records its files); the result must lie on that volume's grid. Patient and study attributes come
from the source (highdicom copies them); every object gets new UIDs, a new series in the same study,
and nothing identifying is added. Segments are coded with SNOMED CT from the segment's Slicer
terminology tag, else as a tumour (Morphologically abnormal structure / Neoplasm) when named like
one, else as a tissue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from virtualbiopsy import __version__, attributes
from virtualbiopsy.errors import InputError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.dicom_nodes import FILES_ATTRIBUTE
from virtualbiopsy.mrml.geometry import Geometry

MANUFACTURER = "Virtual Biopsy (open source, research use only)"
MODEL_NAME = "virtualbiopsy"
_TUMOUR_WORDS = ("tumour", "tumor", "neoplasm", "lesion", "rim", "core", "habitat", "necro")


@dataclass(frozen=True)
class Algorithm:
    """Who made a segmentation: AUTOMATIC (a model: name and version), SEMIAUTOMATIC (an AI result a person
    corrected) or MANUAL."""

    kind: str = "AUTOMATIC"
    name: str = "virtualbiopsy"
    version: str = __version__


def source_datasets(volume_node):
    """The DICOM instances (headers and pixels) a volume node was read from, in its slice order."""
    import pydicom

    files = [Path(p) for p in (volume_node.GetAttribute(FILES_ATTRIBUTE) or "").splitlines() if p]
    if not files:
        raise InputError(f"The volume '{volume_node.GetName()}' was not read from DICOM, so there is no source "
                         "series to reference; read the image from its DICOM folder to export DICOM results.")
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputError(f"The DICOM source of '{volume_node.GetName()}' is no longer there ('{missing[0]}').")
    return [pydicom.dcmread(f) for f in files]


def _code(text: str, default):
    """'SCT^108369006^Neoplasm' -> a pydicom Code, or ``default``."""
    from pydicom.sr.coding import Code

    parts = text.split("^")
    if len(parts) >= 3 and parts[0] and parts[1]:
        return Code(parts[1], parts[0], parts[2] or parts[1])
    return default


def _codes_of(segment):
    from pydicom.sr.codedict import codes

    tag = ""
    if hasattr(segment, "GetTag"):
        import vtk

        value = vtk.reference("")
        if segment.GetTag(segment.GetTerminologyEntryTagName(), value):
            tag = str(value)
    name = segment.GetName().lower()
    if any(word in name for word in _TUMOUR_WORDS):
        category, kind = codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    else:
        category, kind = codes.SCT.Tissue, codes.SCT.Tissue
    fields = tag.split("~")
    # Slicer gives every new segment the placeholder 'Tissue / Tissue': only a chosen entry overrides the name
    chosen = _code(fields[2], None) if len(fields) >= 3 else None
    if chosen is not None and chosen != codes.SCT.Tissue:
        category, kind = _code(fields[1], category), _code(fields[2], kind)
    return category, kind


def _code_string(text: str) -> str:
    """``text`` as a DICOM code string (CS: at most 16 of A-Z, 0-9, space, underscore): 'Wash-in' -> 'WASH_IN'."""
    import re

    return re.sub(r"[^A-Z0-9 _]", "_", text.upper())[:16] or "MAP"


def _same_grid(volume_node, datasets) -> Geometry:
    geometry = Geometry.from_node(volume_node)
    require_dicom_source(volume_node, "DICOM export")
    if len(datasets) != geometry.shape[0]:
        raise InputError(f"'{volume_node.GetName()}' has {geometry.shape[0]} slices but its DICOM source "
                         f"{len(datasets)}; it was changed after it was read.")
    return geometry


def write_segmentation(segmentation_node, reference_volume, path: str | Path, algorithm: Algorithm,
                       segment_ids=None, series_description: str | None = None, series_number: int = 901) -> Path:
    """A DICOM SEG (binary) of the segments on ``reference_volume``'s grid, referencing its DICOM source."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    datasets = source_datasets(reference_volume)
    _same_grid(reference_volume, datasets)
    ids = list(segment_ids or arrays.segment_ids(segmentation_node))
    if not ids:
        raise InputError(f"The segmentation '{segmentation_node.GetName()}' has no segment to export.")
    masks = np.stack([arrays.mask_from_segment(segmentation_node, s, reference_volume, allow_empty=True)
                      for s in ids], axis=-1).astype(np.uint8)
    if not masks.any():
        raise InputError(f"Every segment of '{segmentation_node.GetName()}' is empty on '{reference_volume.GetName()}'"
                         "; there is nothing to export.")
    identification = None
    if algorithm.kind in ("AUTOMATIC", "SEMIAUTOMATIC"):
        identification = hd.AlgorithmIdentificationSequence(
            name=algorithm.name[:64], family=codes.cid7162.ArtificialIntelligence, version=algorithm.version[:64])
    descriptions = []
    for number, segment_id in enumerate(ids, start=1):
        segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
        category, kind = _codes_of(segment)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=segment.GetName()[:64], segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=algorithm.kind, algorithm_identification=identification,
            tracking_uid=hd.UID(), tracking_id=segment.GetName()[:64]))
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=MODEL_NAME,
        software_versions=__version__, device_serial_number="0",
        series_description=(series_description or f"{segmentation_node.GetName()} ({algorithm.kind.lower()})")[:64],
        content_label="SEGMENTATION", content_description=f"{algorithm.name} {algorithm.version}"[:64],
        omit_empty_frames=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


#: units of the maps we write: (UCUM code, meaning, factor from the node's values to that unit)
UNITS = {
    "mm2/s": ("um2/s", "um2/s", 1e6),
    "s": ("s", "second", 1.0),
    "1/s": ("/s", "per second", 1.0),
    "1": ("1", "no units", 1.0),
}


def write_parametric_map(volume_node, source_volume, path: str | Path, label: str, explanation: str,
                         unit: str, series_number: int = 902, scale: float = 1.0) -> Path:
    """A DICOM Parametric Map (float32) of ``volume_node`` (on ``source_volume``'s grid) times ``scale``, with
    a real-world value mapping into ``unit`` (one of :data:`UNITS`: an ADC in mm²/s is written in um2/s)."""
    import highdicom as hd
    from pydicom.sr.coding import Code

    if unit not in UNITS:
        raise InputError(f"Unknown unit '{unit}' for a parametric map; one of {', '.join(UNITS)}.")
    datasets = source_datasets(source_volume)
    geometry = _same_grid(source_volume, datasets)
    if Geometry.from_node(volume_node).differences(geometry):
        raise InputError(f"'{volume_node.GetName()}' is not on the grid of its DICOM source "
                         f"'{source_volume.GetName()}'.")
    code, meaning, factor = UNITS[unit]
    values = arrays.array_from_volume(volume_node).astype(np.float32) * np.float32(factor * scale)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=label[:16], lut_explanation=explanation[:64], unit=Code(code, "UCUM", meaning),
        value_range=(low, high if high > low else low + 1.0), slope=1.0, intercept=0.0)
    pmap = hd.pm.ParametricMap(
        source_images=datasets, pixel_array=np.nan_to_num(values, nan=0.0), series_instance_uid=hd.UID(),
        series_number=series_number, sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME, software_versions=__version__, device_serial_number="0",
        contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
        voi_lut_transformations=[hd.VOILUTTransformation(  # LINEAR_EXACT: a float map's window may be < 1 wide
            window_center=(low + high) / 2, window_width=max(high - low, 1e-6), voi_lut_function="LINEAR_EXACT")],
        series_description=f"{label} map"[:64],
        content_label=_code_string(label), content_description=explanation[:64])
    _frame_anatomy(pmap, datasets[0])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pmap.save_as(path)
    return path


def _frame_anatomy(dataset, source) -> None:
    """Frame Anatomy (laterality 'U', the body part) that enhanced objects carry instead of Laterality."""
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes

    region = Dataset()
    code = codes.SCT.Abdomen if str(source.get("BodyPartExamined", "")).upper() == "ABDOMEN" else codes.SCT.EntireBody
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = code.value, code.scheme_designator, \
        code.meaning
    anatomy = Dataset()
    anatomy.FrameLaterality = "U"
    anatomy.AnatomicRegionSequence = [region]
    dataset.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = [anatomy]


def require_dicom_source(volume_node, option: str = "--dicom") -> None:
    """Refuse, before anything is computed, a DICOM export of results whose image was not read from DICOM."""
    from virtualbiopsy.mrml.dicom_nodes import FILES_ATTRIBUTE

    files = (volume_node.GetAttribute(FILES_ATTRIBUTE) or "").splitlines()
    if not files:
        raise InputError(f"{option} writes DICOM objects that reference the source series, but "
                         f"'{volume_node.GetName()}' was not read from DICOM; give the image as its DICOM folder "
                         "(or FOLDER#series).")
    slices = volume_node.GetImageData().GetDimensions()[2] if volume_node.GetImageData() is not None else 0
    if len(files) == 1 and slices > 1:
        raise InputError(f"{option}: '{volume_node.GetName()}' was read from one multi-frame instance (an enhanced "
                         "MR object or a Siemens mosaic); DICOM results referencing such a source are not written "
                         "yet. Give a classic (one file per slice) series of the same image.")


def ai_algorithm(segmentation_node, demo: bool) -> Algorithm:
    """The algorithm identification of an AI segmentation made by ``NeuroblastomaSegLogic.segment``
    (``demo``: made by the bundled DEMO model, which the name then says)."""
    described = segmentation_node.GetAttribute(attributes.MODEL) or "nnU-Net model"
    name = described.split("(")[0].strip().replace("nnU-Net model ", "nnU-Net ").replace("'", "")
    if demo:
        name = f"{name} DEMO, not for patients"
    return Algorithm("AUTOMATIC", name, f"virtualbiopsy {__version__}")
