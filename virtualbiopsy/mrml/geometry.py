"""Voxel-grid geometry of volumes and the checks that protect every computation.

A :class:`Geometry` is the voxel grid of a volume: its size and its IJK-to-RAS matrix (spacing,
origin and directions in mm, Slicer's RAS patient coordinates). Arrays are indexed ``[k, j, i]``
(slice, row, column) like Slicer's ``arrayFromVolume``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vtk

from virtualbiopsy.errors import GeometryMismatchError, ImageDimensionError, InvalidValuesError

DEFAULT_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class Geometry:
    """A voxel grid: ``shape`` in numpy order (k, j, i) and the 4x4 IJK-to-RAS matrix (mm)."""

    shape: tuple[int, int, int]
    ijk_to_ras: np.ndarray

    @classmethod
    def from_spacing(cls, shape, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), directions=None) -> Geometry:
        """Build from spacing (i, j, k) in mm, origin (RAS mm of voxel 0,0,0) and 3x3 directions."""
        matrix = np.eye(4)
        directions = np.eye(3) if directions is None else np.asarray(directions, dtype=float)
        matrix[:3, :3] = directions * np.asarray(spacing, dtype=float)[np.newaxis, :]
        matrix[:3, 3] = origin
        return cls(tuple(int(n) for n in shape), matrix)

    @classmethod
    def from_node(cls, volume_node) -> Geometry:
        image = volume_node.GetImageData()
        if image is None:
            raise ImageDimensionError(f"Volume '{volume_node.GetName()}' has no image data.")
        dims = image.GetDimensions()
        matrix = vtk.vtkMatrix4x4()
        volume_node.GetIJKToRASMatrix(matrix)
        return cls((dims[2], dims[1], dims[0]), _numpy_matrix(matrix))

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        return self.ijk_to_ras[:3, 3].copy()

    @property
    def directions(self) -> np.ndarray:
        return self.ijk_to_ras[:3, :3] / self.spacing[np.newaxis, :]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (1 mL = 1000 mm³)."""
        return float(abs(np.linalg.det(self.ijk_to_ras[:3, :3]))) / 1000.0

    def apply_to(self, volume_node) -> None:
        """Set this grid's spacing, origin and directions on a volume node."""
        volume_node.SetIJKToRASMatrix(_vtk_matrix(self.ijk_to_ras))

    def differences(self, other: Geometry, tolerance_mm: float = DEFAULT_TOLERANCE_MM) -> list[str]:
        """Human-readable differences to ``other`` (empty when the grids match)."""
        found = []
        if self.shape != other.shape:
            found.append(f"size {_size(self.shape)} vs {_size(other.shape)} voxels")
        if not np.allclose(self.spacing, other.spacing, atol=tolerance_mm):
            found.append(f"spacing {_mm(self.spacing)} vs {_mm(other.spacing)} mm")
        shift = float(np.linalg.norm(self.origin - other.origin))
        if shift > tolerance_mm:
            found.append(f"origin {shift:.3g} mm apart")
        if not np.allclose(self.directions, other.directions, atol=1e-4):
            found.append("different axis directions (orientation)")
        return found

    def describe(self) -> str:
        return f"{_size(self.shape)} voxels of {_mm(self.spacing)} mm"


def _size(shape_kji) -> str:
    return " x ".join(str(n) for n in reversed(shape_kji))


def _mm(values) -> str:
    return " x ".join(f"{v:.4g}" for v in values)


def _numpy_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def require_scalar_3d(volume_node, role: str = "image") -> Geometry:
    """Check that a volume node is a single-component 3D image; return its geometry.

    2D images (one slice) and colour or vector images are refused with a message naming them.
    """
    name = volume_node.GetName() if volume_node is not None else None
    if volume_node is None or volume_node.GetImageData() is None:
        raise ImageDimensionError(f"The {role} '{name}' has no image data (was it loaded?).")
    geometry = Geometry.from_node(volume_node)
    if min(geometry.shape) < 2:
        raise ImageDimensionError(
            f"The {role} '{name}' is 2D ({_size(geometry.shape)} voxels); a 3D volume with at least "
            "two voxels along each axis is needed."
        )
    components = volume_node.GetImageData().GetNumberOfScalarComponents()
    if components != 1:
        raise ImageDimensionError(
            f"The {role} '{name}' has {components} values per voxel (a colour, vector or multi-frame "
            "image); a single-component scalar volume is needed. Split it into separate volumes first."
        )
    return geometry


def require_same_geometry(
    reference: Geometry, other: Geometry, reference_name: str, other_name: str,
    tolerance_mm: float = DEFAULT_TOLERANCE_MM,
) -> None:
    """Refuse two grids that differ (size, spacing, origin or directions) beyond ``tolerance_mm``."""
    found = reference.differences(other, tolerance_mm)
    if found:
        raise GeometryMismatchError(
            f"'{other_name}' is not on the voxel grid of '{reference_name}': " + "; ".join(found)
            + f". Resample '{other_name}' onto '{reference_name}' first (in Slicer: Resample Image "
            "(BRAINS) or the Segment Editor's 'Specify geometry')."
        )


def require_finite(array: np.ndarray, name: str) -> None:
    """Refuse arrays holding NaN or infinite values, saying how many voxels are affected."""
    bad = int(np.count_nonzero(~np.isfinite(array))) if array.dtype.kind == "f" else 0
    if bad:
        raise InvalidValuesError(
            f"'{name}' contains {bad} voxels that are NaN or infinite ({100.0 * bad / array.size:.2g} % "
            "of the image); fix or mask them before analysis."
        )
