"""Analytic anatomy of a ~5-year-old child's abdomen in RAS millimetres, and its voxelisation.

RAS (Slicer's patient coordinates): +x towards the patient's Right, +y Anterior, +z Superior.
The patient's left kidney and the tumour are therefore at negative x, the liver at positive x.

Shapes (painted in this order, a later one overriding an earlier one):

1. body wall: elliptic cylinder along z, semi-axes 110 mm (x) x 84 mm (y), centre y = +3 mm;
   organs are clipped to the body interior 10 mm inside it (the wall is >= ~10 mm thick);
2. liver: ellipsoid, semi-axes 62 x 55 x 50 mm, centre (+38, +12, +30) mm (right, anterior, upper);
3. kidneys: ellipsoids, semi-axes 17 x 15 x 37 mm (length 74 mm), centres (-/+45, -42, +5/-5) mm
   (left slightly higher), long axis tilted 12 deg (lower pole lateral), hilum turned 30 deg medially;
4. spine: cylinder along z, radius 14 mm, centre (0, -48) mm;
5. tumour (rim): lobulated ellipsoid, mean radius r ~ U(22, 38) mm, semi-axes r * (a, b, c) with
   a, b, c ~ U(0.85, 1.15) (geometric mean 1), randomly rotated (+-25 deg), centre (-28, -5, +4) mm
   +- 4 mm: left suprarenal/paraspinal, antero-medial to the left kidney, overriding it where they
   overlap. Its surface radius is scaled by ``clip(1 + sum c_n Y_n(u), 0.75, 1.3)`` where Y_n
   are the 12 real spherical harmonics of degree 2 and 3 (max |Y_n| ~ 1) of the direction u in the
   ellipsoid's normalised frame and c_n ~ N(0, 0.05);
6. tumour core (necrosis): a lobulated ellipsoid with the tumour's axes scaled by a fraction
   U(0.35, 0.6), its centre offset by up to 0.15 normalised radii, c_n ~ N(0, 0.03), and clipped to
   the part of the tumour at least ``CORE_MARGIN_MM`` (6 mm) inside the tumour surface.

Seed-dependent (numpy ``Generator`` draws, in a fixed order): organ positions (+-5 mm, spine +-2 mm),
tumour size, axes, rotation, position and lobulation, core fraction, offset and lobulation.

Voxelisation: ``label_grid`` gives the label at each voxel *centre* (the ground-truth label map);
``tissue_fractions`` gives per-label partial-volume fractions by labelling ``supersample**3``
regular sub-samples per voxel and averaging. Signals are built from fractions, so boundary voxels
mix tissues the way a real acquisition does, while the truth stays a crisp label map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from virtualbiopsy.errors import InputError
from virtualbiopsy.phantom.grid import Grid
from virtualbiopsy.phantom.tissues import (
    BODY_WALL,
    LEFT_KIDNEY,
    LIVER,
    N_LABELS,
    RIGHT_KIDNEY,
    SPINE,
    TUMOUR_CORE,
    TUMOUR_RIM,
)

WALL_MM = 10.0
CORE_MARGIN_MM = 6.0
N_HARMONICS = 12
_MAX_POINTS_PER_CHUNK = 1_500_000


def rotation(rx_deg: float = 0.0, ry_deg: float = 0.0, rz_deg: float = 0.0) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx (angles in degrees about the RAS x, y, z axes)."""
    ax, ay, az = np.radians([rx_deg, ry_deg, rz_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def harmonics(ux, uy, uz):
    """The 12 real spherical harmonics of degree 2 and 3 of unit vectors (scaled to max |Y| ~ 1)."""
    x2, y2, z2 = ux * ux, uy * uy, uz * uz
    return (
        2 * ux * uy, 2 * uy * uz, 2 * uz * ux, x2 - y2, 0.5 * (3 * z2 - 1),
        ux * (x2 - 3 * y2), uy * (3 * x2 - y2), 2.6 * uz * (x2 - y2), 5.2 * ux * uy * uz,
        0.5 * uz * (5 * z2 - 3), 0.72 * ux * (5 * z2 - 1), 0.72 * uy * (5 * z2 - 1),
    )


@dataclass(frozen=True)
class EllipticCylinder:
    """Infinite elliptic cylinder along RAS z; ``centre`` (x, y) and ``semi_axes`` (a, b) in mm."""

    centre: tuple[float, float]
    semi_axes: tuple[float, float]

    def contains(self, x, y, z) -> np.ndarray:
        u = (x - np.float32(self.centre[0])) / np.float32(self.semi_axes[0])
        v = (y - np.float32(self.centre[1])) / np.float32(self.semi_axes[1])
        return u * u + v * v <= 1.0


@dataclass(frozen=True)
class Ellipsoid:
    """Ellipsoid: ``centre`` (RAS mm), ``semi_axes`` (mm) along the columns of ``rotation``."""

    centre: tuple[float, float, float]
    semi_axes: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...] = ((1, 0, 0), (0, 1, 0), (0, 0, 1))

    def normalised(self, x, y, z):
        """Point coordinates in the unit-sphere frame of the ellipsoid."""
        r = np.asarray(self.rotation, dtype=np.float32)
        d = (x - np.float32(self.centre[0]), y - np.float32(self.centre[1]), z - np.float32(self.centre[2]))
        axes = [np.float32(a) for a in self.semi_axes]
        return tuple((r[0, a] * d[0] + r[1, a] * d[1] + r[2, a] * d[2]) / axes[a] for a in range(3))

    def level(self, x, y, z) -> np.ndarray:
        """Shape function: <= 1 inside."""
        qx, qy, qz = self.normalised(x, y, z)
        return np.sqrt(qx * qx + qy * qy + qz * qz)

    @property
    def bounding_radius(self) -> float:
        return float(max(self.semi_axes))

    def contains(self, x, y, z) -> np.ndarray:
        """Points inside; only points within the bounding sphere are evaluated in full."""
        c = [np.float32(v) for v in self.centre]
        near = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= np.float32(self.bounding_radius**2)
        inside = np.zeros(np.shape(x), dtype=bool)
        if near.any():
            inside[near] = self.level(x[near], y[near], z[near]) <= 1.0
        return inside


@dataclass(frozen=True)
class LobulatedEllipsoid(Ellipsoid):
    """Ellipsoid whose surface radius is scaled by ``clip(1 + sum c_n Y_n(u), low, high)``."""

    coefficients: tuple[float, ...] = (0.0,) * N_HARMONICS
    low: float = 0.75
    high: float = 1.3

    def level(self, x, y, z) -> np.ndarray:
        """rho / f(u): <= 1 inside, where rho is the normalised radius and u its direction."""
        qx, qy, qz = self.normalised(x, y, z)
        rho = np.sqrt(qx * qx + qy * qy + qz * qz)
        safe = np.maximum(rho, np.float32(1e-6))
        factor = np.ones_like(rho)
        for c, y_n in zip(self.coefficients, harmonics(qx / safe, qy / safe, qz / safe)):
            factor += np.float32(c) * y_n
        return rho / np.clip(factor, self.low, self.high)

    @property
    def bounding_radius(self) -> float:
        return float(max(self.semi_axes)) * self.high


@dataclass(frozen=True)
class Anatomy:
    """All shapes of one phantom (RAS mm); build one with :meth:`random`."""

    body: EllipticCylinder
    liver: Ellipsoid
    left_kidney: Ellipsoid
    right_kidney: Ellipsoid
    spine: EllipticCylinder
    tumour: LobulatedEllipsoid
    core: LobulatedEllipsoid
    tumour_radius_mm: float
    core_fraction: float

    @classmethod
    def random(cls, rng: np.random.Generator) -> Anatomy:
        """Draw a phantom from ``rng`` (a fixed number of draws in a fixed order)."""
        def jitter(mm: float, n: int = 3) -> np.ndarray:
            return rng.uniform(-mm, mm, n)

        def tup(values) -> tuple:
            values = np.asarray(values, dtype=float)
            return tuple(tup(v) for v in values) if values.ndim > 1 else tuple(float(v) for v in values)

        body = EllipticCylinder((0.0, 3.0), (110.0, 84.0))
        def place(centre, mm: float, n: int = 3) -> tuple:
            return tup(np.array(centre) + jitter(mm, n))

        liver = Ellipsoid(place([38.0, 12.0, 30.0], 5), (62.0, 55.0, 50.0), tup(rotation(0, 0, -15)))
        kidney_axes = (17.0, 15.0, 37.0)
        left = Ellipsoid(place([-45.0, -42.0, 5.0], 5), kidney_axes, tup(rotation(0, 12, 30)))
        right = Ellipsoid(place([45.0, -42.0, -5.0], 5), kidney_axes, tup(rotation(0, -12, -30)))
        spine = EllipticCylinder(place([0.0, -48.0], 2, 2), (14.0, 14.0))

        radius = float(rng.uniform(22.0, 38.0))
        scales = rng.uniform(0.85, 1.15, 3)
        scales /= np.cbrt(np.prod(scales))
        turn = rotation(*rng.uniform(-25.0, 25.0, 3))
        centre = np.array([-28.0, -5.0, 4.0]) + jitter(4)
        tumour = LobulatedEllipsoid(
            tup(centre), tup(radius * scales), tup(turn), tup(rng.normal(0.0, 0.05, N_HARMONICS)), 0.75, 1.3
        )
        fraction = float(rng.uniform(0.35, 0.6))
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = direction * rng.uniform(0.0, 0.15) * radius * scales  # mm, in the tumour frame
        core = LobulatedEllipsoid(
            tup(centre + turn @ offset), tup(fraction * radius * scales), tup(turn),
            tup(rng.normal(0.0, 0.03, N_HARMONICS)), 0.8, 1.2,
        )
        return cls(body, liver, left, right, spine, tumour, core, radius, fraction)

    @property
    def core_level_limit(self) -> float:
        """Core voxels must have tumour level <= this (>= CORE_MARGIN_MM inside the surface).

        The tumour's level function has a gradient below ~1.5 / (smallest semi-axis) per mm.
        """
        return 1.0 - 1.5 * CORE_MARGIN_MM / min(self.tumour.semi_axes)

    def label_points(self, x, y, z) -> np.ndarray:
        """uint8 label of each RAS point (arrays of equal shape, mm)."""
        labels = np.zeros(np.shape(x), dtype=np.uint8)
        labels[self.body.contains(x, y, z)] = BODY_WALL
        inner = EllipticCylinder(self.body.centre, tuple(a - WALL_MM for a in self.body.semi_axes))
        inner_mask = inner.contains(x, y, z)
        organs = ((LIVER, self.liver), (LEFT_KIDNEY, self.left_kidney), (RIGHT_KIDNEY, self.right_kidney))
        for label, shape in organs:
            labels[inner_mask & shape.contains(x, y, z)] = label
        labels[inner_mask & self.spine.contains(x, y, z)] = SPINE
        tumour = self.tumour.contains(x, y, z)
        labels[tumour] = TUMOUR_RIM
        if tumour.any():
            sub = (x[tumour], y[tumour], z[tumour])
            core = np.zeros_like(tumour)
            core[tumour] = self.core.contains(*sub) & (self.tumour.level(*sub) <= self.core_level_limit)
            labels[core] = TUMOUR_CORE
        return labels

    def _chunks(self, grid: Grid, supersample: int):
        per_slice = grid.shape[1] * grid.shape[2] * supersample**3
        step = max(1, _MAX_POINTS_PER_CHUNK // per_slice)
        for k0 in range(0, grid.shape[0], step):
            k1 = min(grid.shape[0], k0 + step)
            points = grid.physical_points(supersample, (k0, k1))
            yield k0, k1, self.label_points(*points)

    def tissue_fractions(self, grid: Grid, supersample: int = 2) -> np.ndarray:
        """Partial-volume fraction of every label, float32 [N_LABELS, k, j, i] (sums to 1)."""
        s = int(supersample)
        if s < 1:
            raise InputError(f"Supersampling factor must be a positive integer, got {supersample!r}.")
        kk, jj, ii = grid.shape
        fractions = np.zeros((N_LABELS, kk, jj, ii), dtype=np.float32)
        for k0, k1, labels in self._chunks(grid, s):
            blocks = labels.reshape(k1 - k0, s, jj, s, ii, s)
            for label in range(N_LABELS):
                count = (blocks == label).sum(axis=(1, 3, 5), dtype=np.int32)
                fractions[label, k0:k1] = count / np.float32(s**3)
        return fractions

    def label_grid(self, grid: Grid, supersample: int = 1) -> np.ndarray:
        """uint8 label map [k, j, i]: the label at each voxel centre (``supersample = 1``).

        With ``supersample > 1`` the most frequent label among the sub-samples (ties: lowest label).
        """
        if int(supersample) == 1:
            return np.concatenate([labels for _, _, labels in self._chunks(grid, 1)], axis=0)
        return np.argmax(self.tissue_fractions(grid, supersample), axis=0).astype(np.uint8)

    def to_dict(self) -> dict:
        """JSON-serialisable parameters of every shape (RAS mm)."""
        out = {}
        for name in ("body", "liver", "left_kidney", "right_kidney", "spine", "tumour", "core"):
            shape = getattr(self, name)
            out[name] = {key: _jsonable(value) for key, value in vars(shape).items()}
        out["tumour_radius_mm"] = self.tumour_radius_mm
        out["core_fraction"] = self.core_fraction
        out["core_margin_mm"] = CORE_MARGIN_MM
        out["wall_mm"] = WALL_MM
        return out


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return float(value)
