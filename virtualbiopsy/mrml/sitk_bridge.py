"""MRML volume nodes <-> SimpleITK images in memory (no temporary files).

Slicer stores a volume's grid as an IJK-to-RAS matrix; SimpleITK (ITK) images carry spacing,
origin and a direction matrix in LPS patient coordinates (+x Left, +y Posterior, +z Superior).
RAS and LPS differ by the sign of x and y, so the conversion flips the first two rows of the
IJK-to-RAS matrix: ``ijk_to_lps = diag(-1, -1, 1, 1) @ ijk_to_ras``. This is what Slicer does when
it writes a NRRD or NIfTI file that SimpleITK then reads, without the round trip through disk.

Voxels are always copied: changing the SimpleITK image never changes the node, and vice versa.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from virtualbiopsy.errors import ImageDimensionError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry, require_scalar_3d

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


def image_from_volume(volume_node) -> sitk.Image:
    """A SimpleITK copy of a scalar 3D volume node (voxels, spacing, origin, LPS directions).

    Raises :class:`~virtualbiopsy.errors.ImageDimensionError` for a 2D, vector or empty volume.
    """
    geometry = require_scalar_3d(volume_node, "volume")
    image = sitk.GetImageFromArray(np.array(arrays.array_from_volume(volume_node), copy=True))
    _set_geometry(image, geometry)
    return image


def _set_geometry(image: sitk.Image, geometry: Geometry) -> None:
    ijk_to_lps = RAS_TO_LPS @ geometry.ijk_to_ras
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(v) for v in ijk_to_lps[:3, 3]])
    image.SetDirection([float(v) for v in (ijk_to_lps[:3, :3] / spacing[np.newaxis, :]).ravel()])


def geometry_from_image(image: sitk.Image) -> Geometry:
    """The MRML :class:`Geometry` (IJK-to-RAS, shape ``(k, j, i)``) of a 3D SimpleITK image."""
    if image.GetDimension() != 3:
        raise ImageDimensionError(
            f"A 3D image is needed; this SimpleITK image has {image.GetDimension()} dimensions."
        )
    directions = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    ijk_to_lps = np.eye(4)
    ijk_to_lps[:3, :3] = directions * np.array(image.GetSpacing(), dtype=float)[np.newaxis, :]
    ijk_to_lps[:3, 3] = image.GetOrigin()
    size = image.GetSize()
    return Geometry((int(size[2]), int(size[1]), int(size[0])), RAS_TO_LPS @ ijk_to_lps)


def array_and_geometry(image: sitk.Image) -> tuple[np.ndarray, Geometry]:
    """A copy of the voxels ``[k, j, i]`` and the grid of a scalar 3D SimpleITK image."""
    geometry = geometry_from_image(image)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageDimensionError(
            f"A scalar image is needed; this SimpleITK image has {image.GetNumberOfComponentsPerPixel()} "
            "values per voxel."
        )
    return sitk.GetArrayFromImage(image), geometry


def image_from_array(array: np.ndarray, geometry: Geometry) -> sitk.Image:
    """A SimpleITK image holding a copy of ``array`` ``[k, j, i]`` on ``geometry``."""
    array = np.asarray(array)
    if array.ndim != 3 or tuple(array.shape) != tuple(geometry.shape):
        raise ImageDimensionError(f"Array of shape {array.shape} does not fit the grid {geometry.shape}.")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    image = sitk.GetImageFromArray(np.array(array, copy=True))
    _set_geometry(image, geometry)
    return image


def add_volume_from_image(context, image: sitk.Image, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """Add a NEW volume node holding a copy of a scalar 3D SimpleITK image, on exactly its grid; returns the node.

    The grid is kept as it is, also when left-handed, so that a node -> image -> node round trip
    (pre-processing, registration onto a fixed grid) lands on the node's own grid. Images read
    from files go through :func:`virtualbiopsy.mrml.io.load_frames` instead, which makes them
    right-handed as Slicer's readers do.
    """
    array, geometry = array_and_geometry(image)
    return arrays.add_volume_from_array(context, array, geometry, name, class_name)
