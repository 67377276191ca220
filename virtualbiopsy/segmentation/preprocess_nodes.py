"""Pre-processing and registration of MRML volume nodes (the NeuroblastomaSeg module's first steps).

Each function reads its input nodes, computes with SimpleITK in memory
(:mod:`virtualbiopsy.mrml.sitk_bridge`) and adds NEW nodes; the input nodes are never modified.
What was done is stored on the new node as JSON in the attribute ``VirtualBiopsy.Preprocessing``
(steps, parameters, timings, registration quality). Bad inputs and cancels raise before anything
is added, so the scene is left as it was.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict

import numpy as np
import SimpleITK as sitk

from virtualbiopsy import attributes
from virtualbiopsy.errors import EmptyMaskError, InputError
from virtualbiopsy.mrml import arrays, sitk_bridge
from virtualbiopsy.mrml.geometry import Geometry, require_finite, require_same_geometry, require_scalar_3d
from virtualbiopsy.progress import as_task
from virtualbiopsy.segmentation.preprocessing import PreprocessingPipeline, run_pipeline
from virtualbiopsy.segmentation.registration import (
    RegistrationParameters,
    RegistrationQuality,
    register_images,
    transform_matrix_ras,
)

ATTRIBUTE = attributes.PREPROCESSING


def _checked_image(volume_node, role: str) -> sitk.Image:
    """The node as a SimpleITK image, refusing 2D, vector, empty and NaN/infinite volumes."""
    require_scalar_3d(volume_node, role)
    require_finite(arrays.array_from_volume(volume_node), volume_node.GetName())
    return sitk_bridge.image_from_volume(volume_node)


def mask_on_grid(mask_node, volume_node, segment_names: list[str] | None = None) -> sitk.Image:
    """A 0/1 SimpleITK mask on ``volume_node``'s grid from a segmentation or a label-map volume.

    Segmentation: the union of ``segment_names`` (default: every segment), resampled onto the
    volume's grid as Slicer exports label maps. Label map / scalar volume: its non-zero voxels,
    which must already lie on the volume's grid. Raises :class:`EmptyMaskError` when empty.
    """
    if mask_node.IsA("vtkMRMLSegmentationNode"):
        ids = arrays.segment_ids(mask_node) if not segment_names else [
            arrays.segment_id_by_name(mask_node, name) for name in segment_names]
        if not ids:
            raise EmptyMaskError(f"Segmentation '{mask_node.GetName()}' has no segments to use as a mask.")
        mask = np.zeros(Geometry.from_node(volume_node).shape, bool)
        for segment_id in ids:
            mask |= arrays.mask_from_segment(mask_node, segment_id, volume_node, allow_empty=True)
    elif mask_node.IsA("vtkMRMLScalarVolumeNode"):
        geometry = require_scalar_3d(mask_node, "mask")
        require_same_geometry(Geometry.from_node(volume_node), geometry, volume_node.GetName(), mask_node.GetName())
        mask = arrays.array_from_volume(mask_node) != 0
    else:
        raise InputError(f"'{mask_node.GetName()}' is neither a segmentation nor a label map; it cannot be a mask.")
    if not mask.any():
        raise EmptyMaskError(
            f"The mask '{mask_node.GetName()}' has no voxel inside '{volume_node.GetName()}'. Draw the region first, "
            "or check that it overlaps the image.")
    return sitk_bridge.image_from_array(mask.astype(np.uint8), Geometry.from_node(volume_node))


def _source(node) -> dict:
    return {"name": node.GetName(), "id": node.GetID()}


def preprocess_volume(context, volume_node, pipeline: PreprocessingPipeline, mask_node=None, name: str | None = None,
                      progress=None):
    """Add a NEW volume: ``volume_node`` after the steps of ``pipeline``; returns the new node.

    ``mask_node`` (segmentation: union of its segments, or label map) is used by N4 and
    normalisation; without it both use the Otsu body mask of the image.
    """
    task = as_task(progress)
    image = _checked_image(volume_node, "image to pre-process")
    mask = mask_on_grid(mask_node, volume_node) if mask_node is not None else None
    result, report = run_pipeline(image, mask, pipeline, task.sub(0.0, 0.95))
    report.update(operation="preprocess", source=_source(volume_node),
                  mask_node=_source(mask_node) if mask_node is not None else None, pipeline=pipeline.to_dict())
    with context.transaction():
        node = sitk_bridge.add_volume_from_image(context, result, name or f"{volume_node.GetName()} preprocessed")
        node.SetAttribute(ATTRIBUTE, json.dumps(report))
    task.update(1.0, "Pre-processed volume added")
    return node


def register_volume(context, fixed_volume, moving_volume, params: RegistrationParameters | None = None,
                    fixed_mask_segmentation=None, name: str | None = None,
                    progress=None) -> tuple[object, RegistrationQuality]:
    """Register ``moving_volume`` (DWI b0, DCE frame) onto ``fixed_volume`` (T2w).

    Adds a NEW volume: the moving image resampled on the fixed grid (linear, 0 outside), and
    returns it with the :class:`RegistrationQuality` (``params`` None: the default
    :class:`RegistrationParameters`). The attribute JSON holds the parameters,
    the quality and the 4x4 RAS matrix ``moving_from_fixed_ras`` (moving = M @ fixed point).
    ``fixed_mask_segmentation`` restricts the metric to its segments (e.g. the body or an organ).
    """
    task = as_task(progress)
    params = params or RegistrationParameters()
    fixed = _checked_image(fixed_volume, "fixed (reference) image")
    moving = _checked_image(moving_volume, "moving image")
    mask = mask_on_grid(fixed_mask_segmentation, fixed_volume) if fixed_mask_segmentation is not None else None
    began = time.perf_counter()
    result = register_images(fixed, moving, params, mask, task.sub(0.0, 0.95))
    report = {
        "operation": "register", "fixed": _source(fixed_volume), "moving": _source(moving_volume),
        "fixed_mask": _source(fixed_mask_segmentation) if fixed_mask_segmentation is not None else None,
        "parameters": asdict(params), "quality": result.quality.to_dict(),
        "moving_from_fixed_ras": transform_matrix_ras(result.transform).tolist(),
        "seconds": round(time.perf_counter() - began, 3), "software": {"SimpleITK": sitk.Version.VersionString()},
    }
    with context.transaction():
        node = sitk_bridge.add_volume_from_image(
            context, result.resampled, name or f"{moving_volume.GetName()} registered to {fixed_volume.GetName()}")
        node.SetAttribute(ATTRIBUTE, json.dumps(report))
    task.update(1.0, "Registered volume added")
    return node, result.quality
