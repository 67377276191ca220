"""A voxel grid in physical space (RAS millimetres), without MRML.

Conventions (the same as Slicer's ``arrayFromVolume``):

* ``shape`` is the numpy shape ``(k, j, i)`` = (slices, rows, columns);
* ``spacing`` is ``(sx, sy, sz)`` in mm along the ``i``, ``j`` and ``k`` axes;
* ``origin`` is the RAS position (mm) of the centre of voxel ``(i=0, j=0, k=0)``;
* ``directions`` are the RAS direction cosines: a 3x3 matrix whose *columns* are the unit
  vectors of the ``i``, ``j`` and ``k`` axes (identity by default).

RAS is Slicer's patient coordinate system: +x towards the patient's Right, +y Anterior,
+z Superior. A voxel centre at index (i, j, k) lies at ``origin + D @ (spacing * (i, j, k))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from virtualbiopsy.errors import InputError

_IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def _triple(values, what: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be three numbers, got {values!r}.") from None
    if len(out) != 3 or not all(np.isfinite(out)):
        raise InputError(f"{what} must be three finite numbers, got {values!r}.")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class Grid:
    """A 3D voxel grid: numpy shape (k, j, i), spacing (mm), origin and directions in RAS."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    directions: tuple[tuple[float, float, float], ...] = field(default=_IDENTITY)

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"A grid shape must be three positive voxel counts (k, j, i): {self.shape!r}.")
        spacing = _triple(self.spacing, "Voxel spacing (mm)")
        if min(spacing) <= 0:
            raise InputError(f"Voxel spacing must be positive (mm), got {self.spacing!r}.")
        matrix = np.asarray(self.directions, dtype=float)
        if matrix.shape != (3, 3) or not np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-6):
            raise InputError("Grid directions must be a 3x3 matrix of orthonormal direction cosines.")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", _triple(self.origin, "Grid origin (RAS mm)"))
        object.__setattr__(self, "directions", tuple(tuple(float(v) for v in row) for row in matrix))

    # -- construction -------------------------------------------------------------------
    @classmethod
    def centred(cls, shape, spacing, centre=(0.0, 0.0, 0.0), directions=_IDENTITY) -> Grid:
        """A grid of ``shape`` (k, j, i) and ``spacing`` (mm) whose centre is at ``centre`` (RAS mm)."""
        spacing = _triple(spacing, "Voxel spacing (mm)")
        counts = np.array([shape[2], shape[1], shape[0]], dtype=float)  # along i, j, k
        half_extent = np.asarray(directions, dtype=float) @ (np.array(spacing) * (counts - 1) / 2.0)
        origin = np.array(_triple(centre, "Grid centre (RAS mm)")) - half_extent
        return cls(tuple(shape), spacing, tuple(origin), directions)

    @classmethod
    def from_field_of_view(cls, field_of_view_mm, spacing, centre=(0.0, 0.0, 0.0)) -> Grid:
        """A centred grid covering ``field_of_view_mm`` (x, y, z) with ``spacing`` (mm).

        Each axis has ``round(fov / spacing)`` voxels (at least one).
        """
        fov = _triple(field_of_view_mm, "Field of view (mm)")
        spacing = _triple(spacing, "Voxel spacing (mm)")
        if min(fov) <= 0 or min(spacing) <= 0:
            raise InputError(f"Field of view {fov} and spacing {spacing} must be positive (mm).")
        counts = [max(1, int(round(f / s))) for f, s in zip(fov, spacing)]
        return cls.centred((counts[2], counts[1], counts[0]), spacing, centre)

    # -- geometry -------------------------------------------------------------------------
    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 RAS direction cosines; columns are the i, j, k axes."""
        return np.array(self.directions, dtype=float)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def centre(self) -> tuple[float, float, float]:
        """RAS (mm) of the geometric centre of the grid."""
        counts = np.array([self.shape[2], self.shape[1], self.shape[0]], dtype=float)
        centre = np.array(self.origin) + self.direction_matrix @ (np.array(self.spacing) * (counts - 1) / 2)
        return tuple(float(v) for v in centre)

    def ijk_to_ras(self) -> np.ndarray:
        """The 4x4 homogeneous matrix mapping (i, j, k, 1) to (x, y, z, 1) in RAS mm."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction_matrix * np.array(self.spacing)[None, :]
        matrix[:3, 3] = self.origin
        return matrix

    def physical_points(self, supersample: int = 1, k_range: tuple[int, int] | None = None, dtype=np.float32):
        """RAS coordinates (mm) of voxel centres, or of ``supersample**3`` sub-samples per voxel.

        Returns three arrays ``X, Y, Z``. With ``supersample = s`` and ``k_range = (k0, k1)`` (all
        slices by default) they have shape ``((k1 - k0) * s, J * s, I * s)``; sub-sample ``m`` of
        voxel ``n`` along an axis sits at continuous index ``n + (m + 0.5) / s - 0.5``, i.e. on a
        regular sub-grid that does not include the voxel centre when ``s`` is even.
        """
        s = int(supersample)
        if s < 1:
            raise InputError(f"Supersampling factor must be a positive integer, got {supersample!r}.")
        k0, k1 = (0, self.shape[0]) if k_range is None else (int(k_range[0]), int(k_range[1]))
        offsets = (np.arange(s) + 0.5) / s - 0.5

        def axis(start: int, stop: int) -> np.ndarray:
            return (np.arange(start, stop)[:, None] + offsets[None, :]).ravel()

        ci = axis(0, self.shape[2])[None, None, :]
        cj = axis(0, self.shape[1])[None, :, None]
        ck = axis(k0, k1)[:, None, None]
        step = self.direction_matrix * np.array(self.spacing)[None, :]
        out = []
        for row in range(3):
            coord = self.origin[row] + step[row, 0] * ci + step[row, 1] * cj + step[row, 2] * ck
            out.append(np.broadcast_to(coord, (ck.shape[0], cj.shape[1], ci.shape[2])).astype(dtype))
        return tuple(out)

    ras_coordinates = physical_points

    def to_dict(self) -> dict:
        """JSON-serialisable description (shape in numpy order (k, j, i), mm, RAS)."""
        return {
            "shape_kji": list(self.shape),
            "spacing_mm": list(self.spacing),
            "origin_ras_mm": list(self.origin),
            "directions": [list(row) for row in self.directions],
            "centre_ras_mm": list(self.centre),
        }
