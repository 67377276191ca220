"""The sample study written as classic single-frame MR DICOM series (``virtualbiopsy phantom --dicom``).

One study, one frame of reference, three series: T2w, DWI (every b-value, its value in the tags of
the chosen vendor convention, :data:`B_VALUE_CONVENTIONS`) and DCE (TemporalPositionIdentifier and
AcquisitionTime per time point; TriggerTime is for gated series). The voxels are the study's own (int16), so every
DICOM reader path can be checked against the NRRD files of the same study and its truth.
Nothing identifying: a fixed phantom patient name and id, UIDs generated anew.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from virtualbiopsy.errors import InputError
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.progress import as_task

#: how a DWI series carries its b-values: the standard attribute, or one vendor's private tag
B_VALUE_CONVENTIONS = ("standard", "siemens", "ge", "philips")
_RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _uid() -> str:
    from pydicom.uid import generate_uid

    return generate_uid()


def _base_dataset(study: dict, series: dict, geometry: Geometry, k: int, instance: int):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = _uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Phantom^VirtualBiopsy"
    ds.PatientID = study["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study["study_uid"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study["date"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study["time"]
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Virtual Biopsy sample study (synthetic phantom)"
    ds.Manufacturer = series.get("manufacturer", "VirtualBiopsy phantom")
    ds.Modality = "MR"
    ds.SeriesInstanceUID = series["series_uid"]
    ds.SeriesNumber = series["number"]
    ds.SeriesDescription = series["description"]
    ds.FrameOfReferenceUID = study["frame_of_reference_uid"]
    ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = instance
    ds.ImageType = ["ORIGINAL", "PRIMARY", "DIFFUSION" if series.get("image_type") == "DIFFUSION" else "OTHER"]
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "2D"
    ds.RepetitionTime, ds.EchoTime, ds.EchoTrainLength = series.get("tr_te", (4000.0, 90.0)) + (1,)
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "ABDOMEN"
    lps = _RAS_TO_LPS @ geometry.ijk_to_ras
    spacing = geometry.spacing
    ds.ImageOrientationPatient = [round(float(v), 8) for v in
                                  (*(lps[:3, 0] / spacing[0]), *(lps[:3, 1] / spacing[1]))]
    ds.ImagePositionPatient = [round(float(v), 6) for v in (lps @ np.array([0.0, 0.0, k, 1.0]))[:3]]
    ds.PixelSpacing = [round(float(spacing[1]), 6), round(float(spacing[0]), 6)]  # row spacing (j), column (i)
    ds.SliceThickness = round(float(spacing[2]), 6)
    ds.SpacingBetweenSlices = round(float(spacing[2]), 6)
    ds.SliceLocation = round(float(ds.ImagePositionPatient[2]), 6)
    ds.Rows, ds.Columns = geometry.shape[1], geometry.shape[2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    return ds


def _b_value_tags(ds, b_value: float, convention: str) -> None:
    b = float(b_value)
    if convention == "standard":
        ds.DiffusionBValue = b
        ds.DiffusionDirectionality = "ISOTROPIC" if b > 0 else "NONE"
    elif convention == "siemens":
        block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
        block.add_new(0x0C, "IS", str(int(round(b))))
    elif convention == "ge":  # GE's (0043,1039): the b-value, plus 10^9 on some software versions
        block = ds.private_block(0x0043, "GEMS_PARM_01", create=True)
        block.add_new(0x39, "IS", [str(int(round(b)) + 1_000_000_000), "0", "0", "0"])
    elif convention == "philips":
        block = ds.private_block(0x2001, "Philips Imaging DD 001", create=True)
        block.add_new(0x03, "FL", b)
    else:
        raise InputError(f"Unknown b-value convention '{convention}'; choose one of {', '.join(B_VALUE_CONVENTIONS)}.")


def _write_volume(folder: Path, array: np.ndarray, geometry: Geometry, study: dict, series: dict,
                  first_instance: int, extra=None) -> int:
    """One file per slice of ``array`` [k, j, i]; returns the next instance number."""
    instance = first_instance
    for k in range(array.shape[0]):
        ds = _base_dataset(study, series, geometry, k, instance)
        if extra is not None:
            extra(ds)
        ds.PixelData = np.ascontiguousarray(array[k].astype("<i2")).tobytes()
        ds.save_as(folder / f"{series['number']:03d}_{instance:05d}.dcm", enforce_file_format=True)
        instance += 1
    return instance


def write_study_dicom(study, folder: str | Path, b_value_convention: str = "standard", progress=None,
                      dce_timing: str = "classic") -> dict:
    """Write ``study`` (a :class:`~virtualbiopsy.phantom.SampleStudy`) as three MR series under ``folder``
    (``t2w/``, ``dwi/``, ``dce/``); returns {role: folder} and the UIDs. ``dce_timing`` 'classic': one
    instance per slice and time (TemporalPositionIdentifier + AcquisitionTime); 'enhanced': the same slices
    as one multi-frame Legacy Converted Enhanced MR instance whose frames carry FrameAcquisitionDateTime and
    TemporalPositionIndex."""
    from virtualbiopsy.sample_study import geometry_of

    if dce_timing not in ("classic", "enhanced"):
        raise InputError(f"Unknown DCE timing '{dce_timing}'; choose classic or enhanced.")
    if b_value_convention not in B_VALUE_CONVENTIONS:
        raise InputError(f"Unknown b-value convention '{b_value_convention}'; choose one of "
                         f"{', '.join(B_VALUE_CONVENTIONS)}.")
    task = as_task(progress)
    folder = Path(folder)
    now = datetime.datetime(2026, 1, 1, 9, 0, 0)
    info = {"patient_id": f"VB-PHANTOM-{study.seed}", "study_uid": _uid(), "frame_of_reference_uid": _uid(),
            "date": now.strftime("%Y%m%d"), "time": now.strftime("%H%M%S")}
    manufacturer = {"standard": "VirtualBiopsy phantom", "siemens": "SIEMENS", "ge": "GE MEDICAL SYSTEMS",
                    "philips": "Philips Medical Systems"}[b_value_convention]
    t2, dwi = geometry_of(study.t2_grid), geometry_of(study.dwi_grid)
    paths = {}
    for role in ("t2w", "dwi", "dce"):
        (folder / role).mkdir(parents=True, exist_ok=True)
        paths[role] = folder / role
    task.update(0.0, "Writing the T2w series")
    t2_series = {"series_uid": _uid(), "number": 1, "description": "T2w TSE (phantom)", "image_type": "T2"}
    _write_volume(paths["t2w"], study.t2w, t2, info, t2_series, 1)
    dwi_series = {"series_uid": _uid(), "number": 2, "description": "DWI (phantom)", "image_type": "DIFFUSION",
                  "manufacturer": manufacturer}
    instance = 1
    for index, b_value in enumerate(study.b_values):
        task.update(0.1 + 0.4 * index / len(study.b_values), f"Writing DWI b = {b_value:g}")
        instance = _write_volume(paths["dwi"], study.dwi[index], dwi, info, dwi_series, instance,
                                 lambda ds, b=b_value: _b_value_tags(ds, b, b_value_convention))
    dce_series = {"series_uid": _uid(), "number": 3, "description": "DCE (phantom)", "image_type": "DYNAMIC"}
    instance = 1
    for index, seconds in enumerate(study.dce_times):
        task.update(0.5 + 0.5 * index / len(study.dce_times), f"Writing DCE t = {seconds:g} s")

        def timing(ds, position=index + 1, t=float(seconds)):
            ds.TemporalPositionIdentifier = position
            ds.NumberOfTemporalPositions = len(study.dce_times)
            ds.AcquisitionTime = (now + datetime.timedelta(seconds=t)).strftime("%H%M%S.%f")

        instance = _write_volume(paths["dce"], study.dce[index], dwi, info, dce_series, instance, timing)
    if dce_timing == "enhanced":
        _enhance(paths["dce"], now)
    task.update(1.0, "DICOM study written")
    return {"folders": paths, "study_uid": info["study_uid"],
            "series_uids": {"t2w": t2_series["series_uid"], "dwi": dwi_series["series_uid"],
                            "dce": dce_series["series_uid"]}}


def _enhance(folder: Path, start: datetime.datetime) -> None:
    """Replace the classic DCE slices in ``folder`` by one Legacy Converted Enhanced MR instance (highdicom),
    each frame's FrameContentSequence given the timing of its slice (FrameAcquisitionDateTime,
    TemporalPositionIndex: what a scanner's enhanced DCE carries; the converter leaves them out)."""
    import highdicom as hd
    import pydicom

    files = sorted(folder.glob("*.dcm"))
    slices = [pydicom.dcmread(f) for f in files]
    slices.sort(key=lambda ds: int(ds.InstanceNumber))
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(
        slices, series_instance_uid=str(slices[0].SeriesInstanceUID), series_number=int(slices[0].SeriesNumber),
        sop_instance_uid=_uid(), instance_number=1)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in slices}
    for group in enhanced.PerFrameFunctionalGroupsSequence:
        source = by_uid[str(group.ConversionSourceAttributesSequence[0].ReferencedSOPInstanceUID)]
        seconds_of_day = datetime.datetime.strptime(str(source.AcquisitionTime), "%H%M%S.%f")
        moment = datetime.datetime.combine(start.date(), seconds_of_day.time())
        content = group.FrameContentSequence[0]
        content.FrameAcquisitionDateTime = moment.strftime("%Y%m%d%H%M%S.%f")
        content.TemporalPositionIndex = int(source.TemporalPositionIdentifier)
        unassigned = group.get("UnassignedPerFrameConvertedAttributesSequence")
        if unassigned:  # the classic tags stay only where the enhanced ones are, not twice
            for keyword in ("TemporalPositionIdentifier", "AcquisitionTime"):
                if keyword in unassigned[0]:
                    delattr(unassigned[0], keyword)
    for path in files:
        path.unlink()
    enhanced.save_as(folder / "dce_enhanced.dcm")
