"""DICOM SR Measurement Reports (TID 1500, highdicom.sr): the numbers of a result, each group
referencing one segment of a DICOM SEG written beside it.

Standard codes where DICOM / SNOMED CT have them (volume, ADC, mean); concepts they lack (the
uncertain fraction of an AI segmentation, iAUC) use the private coding scheme ``99VBIOPSY``, named in
the report. A confidence interval is written as the measurement's lower / upper uncertainty
(TID 300 Measurement Properties: value - low, high - value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from virtualbiopsy import __version__
from virtualbiopsy.dicom.export import MANUFACTURER, MODEL_NAME, Algorithm
from virtualbiopsy.errors import InputError

PRIVATE_SCHEME = "99VBIOPSY"  # its code values stay <= 16 characters: longer ones become LongCodeValue, which
# highdicom 0.28 (and other readers) cannot read back


def _concepts() -> dict:
    """name -> (concept code, UCUM unit code)."""
    from pydicom.sr.coding import Code

    ml = Code("ml", "UCUM", "milliliter")
    percent = Code("%", "UCUM", "percent")
    um2_s = Code("um2/s", "UCUM", "um2/s")
    return {
        "volume_ml": (Code("118565006", "SCT", "Volume"), ml),
        "uncertain_percent": (Code("UNCERTAIN-FRAC", PRIVATE_SCHEME, "Uncertain fraction of the segment"),
                              percent),
        "adc_um2_s": (Code("113041", "DCM", "Apparent Diffusion Coefficient"), um2_s),
        "voxel_mean_adc_um2_s": (Code("VOXEL-MEAN-ADC", PRIVATE_SCHEME, "Mean of voxel-wise ADC"), um2_s),
        "iauc_s": (Code("IAUC", PRIVATE_SCHEME, "Initial area under the enhancement curve"), Code("s", "UCUM", "s")),
        "fraction_percent": (Code("HABITAT-FRACTION", PRIVATE_SCHEME, "Fraction of the tumour volume"), percent),
        "dice_percent": (Code("DSC-VS-AI", PRIVATE_SCHEME, "Dice similarity to the AI segmentation"), percent),
        "hd95_mm": (Code("HD95-VS-AI", PRIVATE_SCHEME, "95th percentile Hausdorff distance to the AI segmentation"),
                    Code("mm", "UCUM", "millimeter")),
    }


@dataclass(frozen=True)
class Quantity:
    """One number of a segment: ``name`` is a key of the concept table (its unit is in the name)."""

    name: str
    value: float
    ci: tuple[float, float] | None = None


@dataclass
class SegmentFinding:
    """The measurements of one segment (``segment_number`` in the SEG)."""

    segment_number: int
    label: str
    quantities: list[Quantity] = field(default_factory=list)


def write_measurement_report(seg_path: str | Path, source_datasets: Sequence, findings: Sequence[SegmentFinding],
                             path: str | Path, algorithm: Algorithm, series_description: str | None = None,
                             series_number: int = 950) -> Path:
    """A Comprehensive 3D SR (TID 1500) with one volumetric group per finding, referencing the SEG at
    ``seg_path`` (which must reference ``source_datasets``)."""
    import highdicom as hd
    import numpy as np
    import pydicom
    from pydicom.sr.codedict import codes

    concepts = _concepts()
    seg = hd.seg.segread(seg_path)
    numbers = {int(item.SegmentNumber) for item in seg.SegmentSequence}
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=f"{algorithm.name}"[:64], manufacturer_name=MANUFACTURER, model_name=MODEL_NAME))
    algorithm_id = hd.sr.AlgorithmIdentification(name=algorithm.name[:64], version=algorithm.version[:64])
    groups = []
    for finding in findings:
        if finding.segment_number not in numbers:
            raise InputError(f"The SEG '{Path(seg_path).name}' has no segment {finding.segment_number} "
                             f"({finding.label}) to report on.")
        measurements = []
        for quantity in finding.quantities:
            if quantity.name not in concepts:
                raise InputError(f"No DICOM concept for the measurement '{quantity.name}'.")
            if not np.isfinite(quantity.value):
                continue  # a missing number is left out, never written as NaN
            concept, unit = concepts[quantity.name]
            properties = None
            if quantity.ci is not None and all(np.isfinite(quantity.ci)):
                low, high = quantity.ci
                properties = hd.sr.MeasurementProperties(
                    lower_measurement_uncertainty=float(quantity.value - low),
                    upper_measurement_uncertainty=float(high - quantity.value))
            measurements.append(hd.sr.Measurement(name=concept, value=float(quantity.value), unit=unit,
                                                  algorithm_id=algorithm_id, properties=properties))
        groups.append(hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=finding.label[:64]),
            # built here: highdicom's from_segmentation fails on a one-segment SEG (id shared, not per frame)
            referenced_segment=hd.sr.ReferencedSegment(
                seg.SOPClassUID, seg.SOPInstanceUID, finding.segment_number,
                source_series=hd.sr.SourceSeriesForSegmentation(seg.ReferencedSeriesSequence[0].SeriesInstanceUID)),
            finding_type=codes.SCT.Neoplasm, algorithm_id=algorithm_id, measurements=measurements))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=hd.sr.CodedConcept("113091000", "SCT", "Magnetic resonance imaging"),
        imaging_measurements=groups, title=codes.DCM.ImagingMeasurementReport)
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg, *source_datasets], content=report, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        software_versions=__version__, series_description=(series_description or f"{algorithm.name} measurements")[:64])
    scheme = pydicom.Dataset()
    scheme.CodingSchemeDesignator = PRIVATE_SCHEME
    scheme.CodingSchemeName = "Virtual Biopsy concepts without a standard code"
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(path)
    return path
