"""Voxel-based radiomic feature maps: one feature computed in a small neighbourhood around every voxel
of a region, as an image (pyradiomics' voxel-based extraction), with progress and cancel.

Each voxel of the region gets the feature's value in the cube of ``2 * kernel_radius + 1`` voxels
around it (restricted to the region: pyradiomics' ``maskedKernel``), with the same discretisation
and settings as the region-level extraction. Voxels outside the region are 0.

pyradiomics reports voxel-based progress through its ``progressReporter`` hook; we plug a reporter
that forwards to our :class:`~virtualbiopsy.progress.Task` (so the map shows a progress bar and a
Cancel stops it between voxel batches). Cost grows with region size x kernel volume: about a
second per 1000 voxels for a GLCM feature with kernel radius 1 on one core.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from contextlib import contextmanager

import numpy as np
import SimpleITK as sitk

from virtualbiopsy.errors import InputError
from virtualbiopsy.progress import as_task
from virtualbiopsy.radiomics import extraction

_HOOK_LOCK = threading.Lock()  # pyradiomics' progress hook is process-wide
PROGRESS_STEPS = 40  # voxel batches, i.e. progress updates / cancel checks per map


def parse_feature(name: str) -> tuple[str, str, str]:
    """'original_glcm_Contrast' or 'glcm_Contrast' -> (image type name, feature class, feature).

    Image types: ``original``, ``log-sigma-<s>-mm-3D`` (e.g. ``log-sigma-2-0-mm-3D``), ``wavelet-<XYZ>``.
    """
    from radiomics import getFeatureClasses

    parts = name.strip().split("_")
    if len(parts) == 2:
        parts = ["original", *parts]
    if len(parts) != 3:
        raise InputError(f"'{name}' is not a pyradiomics feature name such as 'original_glcm_Contrast'.")
    image_type, feature_class, feature = parts
    classes = getFeatureClasses()
    if feature_class not in classes:
        raise InputError(f"Unknown feature class '{feature_class}' in '{name}'; classes: "
                         f"{', '.join(c for c in extraction.FEATURE_CLASSES)}.")
    if feature_class.startswith("shape"):
        raise InputError(f"'{name}' is a shape feature: it describes the whole region, so it has no voxel map. "
                         "Choose a first-order or texture feature.")
    names = classes[feature_class].getFeatureNames()
    if feature not in names or names[feature]:
        choices = ", ".join(n for n, deprecated in names.items() if not deprecated)
        raise InputError(f"'{feature}' is not a {feature_class} feature of pyradiomics; choose one of: {choices}.")
    return image_type, feature_class, feature


def _image_type_settings(image_type: str) -> dict:
    if image_type == "original":
        return {"Original": {}}
    if image_type.startswith("log-sigma-") and image_type.endswith("-mm-3D"):
        sigma = float(image_type[len("log-sigma-"):-len("-mm-3D")].replace("-", "."))
        return {"LoG": {"sigma": [sigma]}}
    if image_type.startswith("wavelet-"):
        return {"Wavelet": {}}
    raise InputError(f"Unknown image type '{image_type}': use original, log-sigma-<s>-mm-3D or wavelet-<XYZ>.")


@contextmanager
def _progress_hook(task):
    """Route pyradiomics' voxel-batch progress to ``task`` (and its cancel) while the block runs."""
    import radiomics

    class Reporter:
        def __init__(self, iterable=None, total=None, desc="", **_):
            self.total, self.done = float(total or 1), 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n=1):
            self.done += n
            task.update(self.done / self.total, f"Feature map: voxel batch {int(self.done)} of {int(self.total)}")

    with _HOOK_LOCK:
        previous, level = radiomics.progressReporter, radiomics.handler.level
        radiomics.progressReporter = Reporter
        radiomics.handler.setLevel(logging.INFO)  # the hook is only used at INFO; the logger stays at WARNING
        try:
            yield
        finally:
            radiomics.progressReporter = previous
            radiomics.handler.setLevel(level)


def on_grid(feature_image: sitk.Image, image: sitk.Image) -> sitk.Image:
    """Place the map (pyradiomics crops it to the region + kernel) on ``image``'s grid (the same voxels, possibly
    stored in another axis order): nearest neighbour between coinciding voxel centres, i.e. an exact copy."""
    same_voxels = (np.allclose(feature_image.GetSpacing(), image.GetSpacing(), atol=1e-6)  # up to axis flips
                   and np.allclose(np.abs(feature_image.GetDirection()), np.abs(image.GetDirection()), atol=1e-6))
    if not same_voxels:
        return feature_image  # resampled by the settings: keep pyradiomics' grid
    return sitk.Resample(feature_image, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, sitk.sitkFloat32)


def feature_map(
    image: sitk.Image,
    mask: sitk.Image,
    feature: str,
    parameters: extraction.ExtractionParameters | None = None,
    label: int = 1,
    kernel_radius: int = 1,
    progress=None,
    image_name: str = "image",
    mask_name: str = "mask",
) -> sitk.Image:
    """A float32 image of ``feature`` (e.g. ``original_glcm_Contrast``) computed around each voxel of the region.

    ``kernel_radius`` in voxels (1: 3 x 3 x 3 neighbourhood). Raises :class:`Cancelled` when
    cancelled through ``progress``; errors name the bad input as in region-level extraction.
    """
    task = as_task(progress)
    if int(kernel_radius) < 1:
        raise InputError(f"The kernel radius must be at least 1 voxel, got {kernel_radius!r}.")
    image_type, feature_class, feature_name = parse_feature(feature)
    parameters = parameters or extraction.ExtractionParameters()
    params = copy.deepcopy(parameters.pyradiomics_params())
    params["imageType"] = _image_type_settings(image_type)
    params["featureClass"] = {feature_class: [feature_name]}
    extractor = extraction.make_extractor(params)
    label_image = extraction.as_label_image(mask)
    voxels = extraction.check_inputs(image, label_image, label, image_name, mask_name,
                                     int(extractor.settings.get("minimumROIDimensions") or 1))
    extractor.settings.update(kernelRadius=int(kernel_radius), maskedKernel=True, initValue=0.0,
                              voxelBatch=max(1, math.ceil(voxels / PROGRESS_STEPS)))
    task.update(0.0, f"Computing the {feature} map over {voxels} voxels")
    with _progress_hook(task.sub(0.0, 0.95)):
        try:
            result = extractor.execute(image, label_image, label=int(label), voxelBased=True)
        except (ValueError, RuntimeError, IndexError) as error:
            raise InputError(f"pyradiomics could not compute the {feature} map in label {label} of "
                             f"'{mask_name}': {str(error).strip()}") from error
    key = f"{image_type}_{feature_class}_{feature_name}"
    if key not in result:
        raise InputError(f"pyradiomics returned no '{key}' map (it computed: {', '.join(result) or 'nothing'}).")
    task.update(1.0, "Feature map ready")
    return on_grid(result[key], image)
