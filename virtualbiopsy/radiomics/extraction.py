"""pyradiomics feature extraction on SimpleITK images, with its settings and library versions recorded.

One function, :func:`extract_case`, computes the features of one region in one or several images:
the Slicer module (through :class:`~virtualbiopsy.logic.radiomics_biomarkers.RadiomicsBiomarkersLogic`,
which turns MRML nodes into SimpleITK images) and the cohort batch workers (which read files with
SimpleITK) both call it, so a case gives the same values either way. This module imports neither
``slicer`` nor VTK, which keeps the worker processes light.

Images reach pyradiomics exactly as given: never flipped, permuted or resampled, so that a file's features
equal pyradiomics run directly on that file (wavelet, resampling and mesh-based shape features depend on the
voxel storage order). The MRML path restores the file's order first (:func:`in_stored_order`).

Inputs are checked before pyradiomics sees them, so that a bad case fails with a message naming the
file and the problem (grid mismatch, empty mask, missing label value, one-voxel region, NaN voxels)
rather than with a pyradiomics traceback.

Columns keep pyradiomics' names (``original_glcm_Contrast``). With several images (sequences) each
name is prefixed by the sequence name and a colon (``t2w:original_glcm_Contrast``,
``adc:original_firstorder_Mean``), so that one case stays one row.

>>> params = load_params("ibsi")
>>> params["setting"]["binWidth"]
1
"""

from __future__ import annotations

import copy
import datetime
import json
import logging
import platform
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from virtualbiopsy.errors import (
    DependencyError,
    EmptyMaskError,
    FileFormatError,
    GeometryMismatchError,
    ImageDimensionError,
    InputError,
    InvalidValuesError,
)
from virtualbiopsy.input_checks import require_integer_labels, require_usable_image_file
from virtualbiopsy.progress import as_task

PRESETS_DIR = Path(__file__).resolve().parent / "presets"
PRESETS = {
    "study_mr": "the study's T2w MRI preset: fixed bin width 25, no resampling, 3D texture (IBSI 3D_avg)",
    "ibsi": "IBSI digital-phantom settings: bin width 1, no resampling, no intensity shift",
}
DEFAULT_PRESET = "study_mr"
FEATURE_CLASSES = ("shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
SEQUENCE_SEPARATOR = ":"
GEOMETRY_TOLERANCE_MM = 1e-3
# pyradiomics messages that are advice, not problems, and would repeat for every case.
_QUIET_MESSAGES = ("only 1 needs to be calculated", "is deprecated, use with caution", "Fixed bin Count enabled")


class _QuietFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _QUIET_MESSAGES)


def _radiomics():
    """Import pyradiomics (quietly: its logger set to WARNING), or explain how to install it."""
    try:
        import radiomics
        from radiomics import featureextractor
    except ImportError as error:  # pragma: no cover - the stack pins pyradiomics
        raise DependencyError(
            "pyradiomics is not installed; install the RadiomicsBiomarkers requirements "
            "(`virtualbiopsy deps`, or the module's first Apply in Slicer)."
        ) from error
    logging.getLogger("radiomics").setLevel(logging.WARNING)
    # filters act where records are made, so on every logger that makes them
    for name in ("radiomics", "radiomics.featureextractor", *(f"radiomics.{c}" for c in FEATURE_CLASSES)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietFilter) for f in logger.filters):
            logger.addFilter(_QuietFilter())
    return radiomics, featureextractor


# -- parameters ------------------------------------------------------------------------------


@dataclass
class ExtractionParameters:
    """What to extract: a preset or a pyradiomics parameter file, plus optional filtered images.

    ``log_sigmas_mm``: Laplacian-of-Gaussian image types, one per sigma in mm (e.g. ``(1.0, 3.0)``).
    ``wavelet``: the 8 wavelet decompositions (pyradiomics' default ``coif1``, one level).
    ``settings``: pyradiomics settings that override the preset's (e.g. ``{"binWidth": 10}``).
    """

    preset: str = DEFAULT_PRESET
    params_file: str | None = None
    log_sigmas_mm: tuple[float, ...] = ()
    wavelet: bool = False
    settings: dict = field(default_factory=dict)

    def pyradiomics_params(self) -> dict:
        """The pyradiomics parameter dictionary (``setting``, ``imageType``, ``featureClass``)."""
        params = load_params(self.preset, self.params_file)
        params.setdefault("setting", {}).update(copy.deepcopy(self.settings))
        image_types = params.setdefault("imageType", {"Original": {}})
        if self.log_sigmas_mm:
            sigmas = [float(s) for s in self.log_sigmas_mm]
            if min(sigmas) <= 0:
                raise InputError(f"LoG sigmas must be > 0 mm, got {sigmas}.")
            image_types["LoG"] = {"sigma": sigmas}
        if self.wavelet:
            image_types["Wavelet"] = {}
        return params

    def source(self) -> str:
        return str(self.params_file) if self.params_file else f"preset:{self.preset}"


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise InputError(f"Unknown radiomics preset '{name}'; choose one of: {', '.join(PRESETS)}.")
    return PRESETS_DIR / f"{name}.yaml"


def load_params(preset: str | None = DEFAULT_PRESET, params_file: str | Path | None = None) -> dict:
    """A pyradiomics parameter dictionary from a preset name or a YAML / JSON parameter file."""
    import yaml

    path = Path(params_file) if params_file else preset_path(preset or DEFAULT_PRESET)
    if not path.is_file():
        raise FileFormatError(f"No pyradiomics parameter file at '{path}'.")
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise FileFormatError(_yaml_message(path, error)) from error
    sections = {"setting", "imageType", "featureClass", "voxelSetting"}
    if not isinstance(params, dict) or not set(params) <= sections:
        found = (f"it has the section(s) {', '.join(map(repr, sorted(set(params) - sections, key=str)))}"
                 if isinstance(params, dict) else f"it holds a {type(params).__name__}, not sections")
        raise FileFormatError(
            f"'{path.name}' is not a pyradiomics parameter file: {found}; it may have only the sections setting, "
            "imageType, featureClass and voxelSetting (see https://pyradiomics.readthedocs.io/en/latest/"
            "customization.html)."
        )
    for section in ("setting", "imageType", "featureClass"):
        if params.get(section) is None:
            params.pop(section, None)
    return params


def _yaml_message(path: Path, error) -> str:
    """One line for a YAML error: where, and what; a tag that names Python code is refused as such."""
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = str(getattr(error, "problem", None) or error).split("\n")[0]
    if "tag:yaml.org,2002:python/" in problem:
        tag = problem.split("tag:yaml.org,2002:", 1)[1].rstrip("'")
        return (f"'{path.name}' uses the YAML tag '!!{tag}'{where}, which names Python code; a pyradiomics "
                "parameter file is plain YAML (mappings, lists, numbers, text): remove the tag. Nothing was run.")
    return f"'{path.name}' is not valid YAML{where}: {problem}."


def _pyradiomics_message(error: Exception) -> str:
    """pykwalify's SchemaError carries its findings in ``msg`` (a list, or text with a header): one line of them."""
    findings = getattr(error, "msg", None) or str(error)
    if isinstance(findings, (list, tuple)):
        findings = "; ".join(str(f) for f in findings)
    findings = str(findings).replace("Schema validation failed:", "")
    return " ".join(line.strip(" -") for line in findings.splitlines() if line.strip(" -")).rstrip(".") + "."


def make_extractor(params: dict):
    """A pyradiomics ``RadiomicsFeatureExtractor`` for a parameter dictionary (validated by pyradiomics)."""
    _, featureextractor = _radiomics()
    validator = logging.getLogger("pykwalify")  # it logs its findings to stderr before raising them
    level, validator.level = validator.level, logging.CRITICAL
    try:
        with warnings.catch_warnings():  # pykwalify loads pyradiomics' schema functions with load_module()
            warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
            extractor = featureextractor.RadiomicsFeatureExtractor(copy.deepcopy(params))
    except Exception as error:  # pykwalify's SchemaError and pyradiomics' ValueError
        raise InputError(f"pyradiomics refused the parameters: {_pyradiomics_message(error)}") from error
    finally:
        validator.setLevel(level)
    extractor.settings["additionalInfo"] = False  # diagnostics are recorded once, by provenance()
    return extractor


def library_versions() -> dict[str, str]:
    """Versions of everything that changes feature values (for traceability)."""
    import pywt

    from virtualbiopsy import __version__

    radiomics, _ = _radiomics()
    return {
        "pyradiomics": str(radiomics.__version__),
        "numpy": np.__version__,
        "SimpleITK": sitk.Version.VersionString(),
        "PyWavelets": pywt.__version__,
        "python": platform.python_version(),
        "virtualbiopsy": __version__,
    }


def provenance(parameters: ExtractionParameters, params: dict | None = None) -> dict[str, str]:
    """The settings, image types, feature classes and library versions behind a features table."""
    params = parameters.pyradiomics_params() if params is None else params
    extractor = make_extractor(params)
    record = {
        "parameters": parameters.source(),
        "settings": json.dumps(extractor.settings, sort_keys=True, default=str),
        "image_types": json.dumps(extractor.enabledImagetypes, sort_keys=True, default=str),
        "feature_classes": json.dumps(extractor.enabledFeatures, sort_keys=True, default=str),
        "column_names": "pyradiomics names; with several images prefixed by '<sequence>:'",
        "extracted_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    record.update({f"version_{name}": version for name, version in library_versions().items()})
    return record


# -- input checks ----------------------------------------------------------------------------


def _grid_differences(image: sitk.Image, mask: sitk.Image, tolerance_mm: float) -> list[str]:
    found = []
    if image.GetSize() != mask.GetSize():
        found.append(f"size {' x '.join(map(str, mask.GetSize()))} vs {' x '.join(map(str, image.GetSize()))} voxels")
    if not np.allclose(image.GetSpacing(), mask.GetSpacing(), atol=tolerance_mm):
        found.append(f"spacing {np.round(mask.GetSpacing(), 4).tolist()} vs {np.round(image.GetSpacing(), 4).tolist()}"
                     " mm")
    shift = float(np.linalg.norm(np.subtract(image.GetOrigin(), mask.GetOrigin())))
    if shift > tolerance_mm:
        found.append(f"origin {shift:.3g} mm apart")
    if not np.allclose(image.GetDirection(), mask.GetDirection(), atol=1e-4):
        found.append("different axis directions")
    return found


def check_inputs(image: sitk.Image, mask: sitk.Image, label: int = 1, image_name: str = "image",
                 mask_name: str = "mask", minimum_dimensions: int = 1) -> int:
    """Refuse what pyradiomics cannot use, naming the input and the problem; returns the ROI's voxel count.

    Checks: 3D scalar image, mask on the image's voxel grid, a non-empty mask that contains
    ``label``, a region of more than one voxel spanning at least ``minimum_dimensions`` axes,
    and finite image values inside the region.
    """
    for what, name, img in (("image", image_name, image), ("mask", mask_name, mask)):
        if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
            raise ImageDimensionError(
                f"The {what} '{name}' must be a 3D single-component image; it has {img.GetDimension()} dimensions "
                f"and {img.GetNumberOfComponentsPerPixel()} value(s) per voxel."
            )
    found = _grid_differences(image, mask, GEOMETRY_TOLERANCE_MM)
    if found:
        raise GeometryMismatchError(
            f"The mask '{mask_name}' is not on the voxel grid of the image '{image_name}': " + "; ".join(found)
            + ". Resample the mask onto the image first (nearest neighbour), e.g. Slicer's Segment Editor "
            "'Specify geometry' or Resample Image (BRAINS)."
        )
    labels = sitk.GetArrayViewFromImage(mask)
    if labels.dtype.kind == "f" and not np.all(np.isfinite(labels) & (labels == np.round(labels))):
        raise InputError(f"The mask '{mask_name}' holds non-integer values; a label map of integer labels is needed.")
    roi = labels == label
    voxels = int(np.count_nonzero(roi))
    if voxels == 0:
        present = np.unique(labels[labels != 0])
        if present.size == 0:
            raise EmptyMaskError(f"The mask '{mask_name}' is empty: no voxel carries a label (all are 0).")
        listed = ", ".join(f"{v:g}" for v in present[:20]) + (", ..." if present.size > 20 else "")
        raise EmptyMaskError(
            f"Label {label} does not occur in the mask '{mask_name}' (labels present: {listed}). "
            "Choose one of those labels."
        )
    if voxels == 1:
        raise InputError(
            f"The region (label {label} of '{mask_name}') is a single voxel; radiomic features need a region of "
            "several voxels (texture matrices and shape are undefined for one voxel)."
        )
    extent = sum(int(np.ptp(axis) > 0) for axis in np.nonzero(roi))
    if extent < minimum_dimensions:
        raise InputError(
            f"The region (label {label} of '{mask_name}', {voxels} voxels) extends along {extent} axis/axes; the "
            f"settings require at least {minimum_dimensions} (minimumROIDimensions)."
        )
    values = sitk.GetArrayViewFromImage(image)[roi]
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        bad = int(np.count_nonzero(~np.isfinite(values)))
        raise InvalidValuesError(
            f"The image '{image_name}' has {bad} NaN or infinite voxel(s) inside the region (label {label}); "
            "fix or mask them before extracting features."
        )
    return voxels


# -- extraction ------------------------------------------------------------------------------


def as_label_image(mask: sitk.Image) -> sitk.Image:
    """pyradiomics needs an integer label map."""
    if mask.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        return sitk.Cast(mask, sitk.sitkUInt32)
    return mask


@dataclass(frozen=True)
class StoredGrid:
    """The voxel grid of an image file as stored: size (i, j, k voxels), spacing (mm), origin (mm) and axis
    directions (LPS), read from the file's header only."""

    path: str
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]


def stored_grid(path: str | Path) -> StoredGrid | None:
    """The grid of a 3D image file as SimpleITK (and so pyradiomics) reads it; None if it cannot be read."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None
    if reader.GetDimension() != 3:
        return None
    return StoredGrid(str(path), tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                      tuple(reader.GetDirection()))


def in_stored_order(image: sitk.Image, stored: StoredGrid,
                    tolerance_mm: float = GEOMETRY_TOLERANCE_MM) -> tuple[sitk.Image, list[str]] | None:
    """``image`` with its voxels in the order of the file it came from, and the axes that were reversed.

    Slicer's volume reader makes every grid right-handed (``ForceRightHandedIJKCoordinateSystem``): a
    file stored with left-handed axes (e.g. pyradiomics' brain1, LPS directions diag(1, -1, 1)) is
    loaded with its slice axis reversed. pyradiomics' wavelet, resampling and mesh results depend on
    the voxel storage order (wavelet features changed up to 4.6x on brain1), so features equal
    pyradiomics run on the file only in the file's order. The flip is exact (voxels keep their
    physical positions); the stored spacing, origin and directions are then set exactly (the MRML
    round trip changes their last bits). Returns None when no set of axis flips maps the image onto
    the stored grid (the volume was resampled or moved since it was read, or the file changed).
    """
    if tuple(image.GetSize()) != tuple(stored.size):
        return None
    current = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    target = np.array(stored.direction, dtype=float).reshape(3, 3)
    flips = []
    for axis in range(3):
        if np.allclose(current[:, axis], target[:, axis], atol=1e-4):
            flips.append(False)
        elif np.allclose(current[:, axis], -target[:, axis], atol=1e-4):
            flips.append(True)
        else:
            return None
    flipped = sitk.Flip(image, flips) if any(flips) else sitk.Image(image)
    if (not np.allclose(flipped.GetSpacing(), stored.spacing, atol=tolerance_mm)
            or np.linalg.norm(np.subtract(flipped.GetOrigin(), stored.origin)) > tolerance_mm):
        return None
    flipped.SetSpacing(stored.spacing)
    flipped.SetOrigin(stored.origin)
    flipped.SetDirection(stored.direction)
    return flipped, ["ijk"[axis] for axis, flip in enumerate(flips) if flip]


def _normalise_images(images) -> dict[str, sitk.Image]:
    if isinstance(images, sitk.Image):
        return {"image": images}
    if not images:
        raise InputError("No image to extract features from.")
    return dict(images)


def extract_case(
    images: sitk.Image | Mapping[str, sitk.Image],
    mask: sitk.Image | Mapping[str, sitk.Image],
    parameters: ExtractionParameters | None = None,
    label: int = 1,
    mask_name: str = "mask",
    extractor=None,
    progress=None,
    image_names: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """pyradiomics features of the region ``mask == label`` in one or several images.

    ``images``: one image, or ``{sequence_name: image}`` (several sequences of one case, each on
    the mask's grid; or give ``mask`` as ``{sequence_name: mask}`` for one mask per grid).
    Returns ``{column: value}`` in pyradiomics' order, without diagnostics; columns are prefixed
    ``<sequence>:`` when there are several images. ``extractor`` (from :func:`make_extractor`)
    saves re-validating the parameters when many cases share them. ``image_names``: how error
    and progress messages name each image (e.g. its file name; default its key).
    """
    task = as_task(progress)
    images = _normalise_images(images)
    parameters = parameters or ExtractionParameters()
    if extractor is None:
        extractor = make_extractor(parameters.pyradiomics_params())
    minimum_dimensions = int(extractor.settings.get("minimumROIDimensions") or 1)
    masks = dict(mask) if isinstance(mask, Mapping) else {name: mask for name in images}
    prefix = len(images) > 1
    features: dict[str, float] = {}
    for index, (name, image) in enumerate(images.items()):
        shown = (image_names or {}).get(name, name)
        task.update(index / len(images), f"Extracting features of {shown}")
        if name not in masks:
            raise InputError(f"No mask given for the image '{shown}'.")
        label_image = as_label_image(masks[name])
        check_inputs(image, label_image, label, shown, mask_name, minimum_dimensions)
        try:
            result = extractor.execute(image, label_image, label=int(label))
        except (ValueError, RuntimeError, IndexError) as error:
            raise InputError(
                f"pyradiomics could not extract features of '{shown}' in label {label} of '{mask_name}': "
                f"{str(error).strip()}"
            ) from error
        for key, value in result.items():
            if key.startswith("diagnostics_"):
                continue
            features[f"{name}{SEQUENCE_SEPARATOR}{key}" if prefix else key] = float(np.asarray(value))
    task.update(1.0, "Features extracted")
    return features


def read_image(path: str | Path, what: str = "image") -> sitk.Image:
    """Read an image or mask file with SimpleITK, with a clear error for a missing or unreadable file."""
    from virtualbiopsy.mrml.dicom_nodes import is_dicom_reference

    if what == "image" and is_dicom_reference(path):
        return _read_dicom_image(path)
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"No {what} file at '{path}'.")
    require_usable_image_file(path, what)  # truncated data, NaN hidden by the NIfTI reader (issue 10, IO area)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise FileFormatError(f"Could not read the {what} '{path.name}': the file is corrupt or not an image "
                              f"format SimpleITK reads ({str(error).strip().splitlines()[-1]}).") from error
    if what == "mask":
        require_integer_labels(sitk.GetArrayViewFromImage(image), path.name)
    return image


def _read_dicom_image(reference) -> sitk.Image:
    """A 3D DICOM series (folder, FOLDER#series, dicomweb://) as the SimpleITK image pyradiomics gets: our
    reader (b-values, geometry checks, lone slices refused) rather than SimpleITK's, which takes any file."""
    from virtualbiopsy.dicom.series import require_volume
    from virtualbiopsy.mrml.dicom_nodes import read_dicom_series
    from virtualbiopsy.mrml.sitk_bridge import image_from_array

    series = read_dicom_series(reference)
    require_volume(series)
    return image_from_array(series.arrays[0], series.geometry)


def extract_files(
    images: Sequence[str | Path] | Mapping[str, str | Path],
    mask: str | Path,
    parameters: ExtractionParameters | None = None,
    label: int = 1,
    extractor=None,
) -> dict[str, float]:
    """:func:`extract_case` on image and mask files (read with SimpleITK; no MRML).

    Error messages name the image and mask files; the keys of ``images`` only prefix the columns.
    """
    if not isinstance(images, Mapping):
        images = list(images)
        names = [sequence_name(p) for p in images] if len(images) > 1 else ["image"]
        if len(set(names)) != len(names):
            names = [f"image{i + 1}" for i in range(len(images))]
        images = dict(zip(names, images))
    loaded = {name: read_image(path) for name, path in images.items()}
    return extract_case(loaded, read_image(mask, "mask"), parameters, label, Path(mask).name, extractor,
                        image_names={name: Path(path).name for name, path in images.items()})


def sequence_name(path: str | Path) -> str:
    """'case01_T2w.nii.gz' -> 'case01_T2w' (the file name without image suffixes)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".seg.nrrd", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem
