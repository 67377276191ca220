"""DWI series with several volumes per b-value: b-value shells, diffusion directions and the trace.

A DWI series often holds more than one volume per b-value: the b = 0 volume repeated, a b-value
measured along 3 to 64+ gradient directions (the scanner's "trace" image is made from these), or a
b-value repeated to average noise away. A monoexponential fit through every volume as if all were
one direction is wrong for anisotropic tissue (on dipy's 64-direction brain data the voxel ADC then
lies ~19 % below the mean diffusivity, ~34 % where FA > 0.5), so the volumes are first grouped and
combined, one signal per b-value:

* **Shells.** b-values are grouped into shells: sorted, a b-value joins the current shell while it
  is less than 5 % above the shell's smallest b-value (:data:`SHELL_TOLERANCE`), so scanner
  b-values such as 995 / 1000 / 1005 s/mm² are one shell and b = 0 only groups with b = 0 (no
  positive b-value is within 5 % of 0; the low b-values of IVIM protocols, 0, 10, 20, ..., stay
  apart). A shell's b-value is the mean of its members.
* **b = 0 volumes** are averaged (arithmetic mean of the magnitudes, as scanners and dipy do with
  several b0s): they carry no direction, and averaging lowers their noise by √n.
* **Directional volumes** of one shell (directions from a ``.bvec`` file or a NRRD's DWMRI
  gradients) are combined by the **geometric mean** of their signals. For S_i = S0·exp(−b_i gᵢᵀDgᵢ)
  the geometric mean is S0·exp(−b̄·tr(D M)) with M = Σ b_i gᵢgᵢᵀ / Σ b_i, which is exactly
  S0·exp(−b̄·MD) (MD = tr(D)/3, the trace ADC) when M = I/3: three orthogonal directions or a
  uniform set. Otherwise it is approximate, and the error on the ADC is at most
  3·max|λ(M) − 1/3| of MD for any tensor (|tr(D (M − I/3))| ≤ ‖M − I/3‖·tr(D)): reported per shell
  as ``trace_error_bound``. Only the spread of the directions enters, and it does not change under
  a rotation or an axis flip, so the frame of the directions (FSL's voxel axes, a NRRD's
  measurement frame) needs no correction here.
* **Repeats without directions** of a non-zero b-value are refused unless the caller says they
  are repeats of one direction (``repeats_are_averages``): they might be different directions,
  whose arithmetic mean is not the trace. Said so, they are averaged (arithmetic mean).

Each combined signal is the mean of n volumes; its noise is about σ/√n (exactly for arithmetic
means, to first order for the geometric mean of signals of similar size), so the fit weighs it n
times (``DwiShells.averages``, the ``weights`` of :func:`virtualbiopsy.diffusion.fit_monoexp`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from virtualbiopsy.errors import FileFormatError, InputError

SHELL_TOLERANCE = 0.05
"""b-values less than 5 % above a shell's smallest b-value belong to that shell."""
UNIT_LENGTH_TOLERANCE = 0.01
"""A gradient direction must have length 1 within 1 % (0, or NaN as some tools write, only at b = 0)."""
VALUES_AGREE = (1.0, 0.01)
"""Stored and typed values agree when each pair differs by at most 1 unit (s/mm², s) or 1 %."""


def _numbers(values) -> str:
    values = [float(v) for v in values]
    text = ",".join(f"{v:g}" for v in values[:12])
    return text + (f",... ({len(values)} values)" if len(values) > 12 else "")


# -- reading b-values and directions -------------------------------------------------------------------


def read_numbers_file(path: str | Path, what: str = "b-values") -> list[float]:
    """Numbers in a text file separated by spaces, commas, semicolons or new lines (an FSL ``.bval``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise FileFormatError(f"Could not read the {what} file '{path.name}': {error}".splitlines()[0]) from error
    items = [v for v in re.split(r"[\s,;]+", text.strip()) if v]
    try:
        values = [float(v) for v in items]
    except ValueError:
        bad = next(v for v in items if not _is_number(v))
        raise InputError(f"The {what} file '{path.name}' holds '{bad[:30]}', which is not a number.") from None
    if not values:
        raise InputError(f"The {what} file '{path.name}' is empty.")
    return values


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_bvecs(path: str | Path, n_volumes: int) -> np.ndarray:
    """Gradient directions ``[n_volumes, 3]`` from an FSL ``.bvec`` file: 3 rows of N numbers (FSL's own
    layout) or N rows of 3 (a 3 x 3 file is read as FSL's 3 rows). NaN (written by some tools for b = 0)
    is read as 0."""
    path = Path(path)
    try:
        rows = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as error:
        raise FileFormatError(f"Could not read the gradient-direction file '{path}': "
                              f"{error.strerror or error}.") from error
    try:
        parsed = [[float(v) for v in re.split(r"[\s,;]+", row.strip()) if v] for row in rows]
    except ValueError:
        raise InputError(f"The gradient-direction file '{path.name}' holds text that is not numbers.") from None
    if len({len(row) for row in parsed}) > 1:
        raise InputError(f"The rows of the gradient-direction file '{path.name}' have different lengths "
                         f"({', '.join(str(len(row)) for row in parsed)} numbers).")
    table = np.array(parsed, dtype=float)
    if table.ndim != 2 or table.size == 0:
        raise InputError(f"The gradient-direction file '{path.name}' is not a table of numbers (3 rows of N "
                         "directions, or N rows of 3).")
    if table.shape == (3, n_volumes):
        vectors = table.T
    elif table.shape == (n_volumes, 3):
        vectors = table
    else:
        raise InputError(f"The gradient-direction file '{path.name}' is {table.shape[0]} x {table.shape[1]}; for "
                         f"{n_volumes} DWI volumes it must be 3 x {n_volumes} (FSL) or {n_volumes} x 3.")
    return np.nan_to_num(vectors, nan=0.0)


def nrrd_gradients(metadata: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(b-values, unit directions) of a NRRD DWI (``modality:=DWMRI``), or None if it has none.

    NA-MIC convention: ``DWMRI_b-value`` is the largest b-value and each ``DWMRI_gradient_NNNN`` is
    scaled so that b_i = b·|g_i|² (s/mm²); the direction is g_i/|g_i| (0 for b = 0).
    """
    keys = sorted(k for k in metadata if k.startswith("DWMRI_gradient_"))
    if "DWMRI_b-value" not in metadata or not keys:
        return None
    try:
        b_ref = float(metadata["DWMRI_b-value"])
        gradients = np.array([[float(v) for v in str(metadata[k]).split()] for k in keys], dtype=float)
    except ValueError:
        raise InputError("The NRRD's DWMRI_b-value / DWMRI_gradient entries are not numbers.") from None
    if gradients.ndim != 2 or gradients.shape[1] != 3:
        raise InputError("The NRRD's DWMRI_gradient entries are not 3 numbers each.")
    norms = np.linalg.norm(gradients, axis=1)
    directions = np.where(norms[:, None] > 0, gradients / np.where(norms > 0, norms, 1.0)[:, None], 0.0)
    return b_ref * norms ** 2, directions


def reconcile_values(stored, given, *, stored_from: str, given_from: str, what: str = "b-values",
                     unit: str = "s/mm²", override: bool = False, hint: str = "") -> tuple[list | None, dict | None]:
    """The values to use when a file stores them (``stored``) and the user typed some (``given``).

    Either alone is used as it is. When both are there and differ (in count, or a value by more
    than 1 unit and 1 %: :data:`VALUES_AGREE`), the stored ones win unless ``override``: without it
    the difference is refused naming both lists (``hint`` says how to choose); with it the typed
    values are used and a record {stored_from, stored, given} is returned for the summary.
    """
    if given is None or stored is None:
        return (list(stored) if given is None and stored is not None else given), None
    a, b = np.asarray(stored, float), np.asarray(given, float)
    same = a.size == b.size and bool(np.all(np.abs(a - b) <= np.maximum(VALUES_AGREE[0],
                                                                          VALUES_AGREE[1] * np.abs(a))))
    if same:
        return list(stored), None
    if not override:
        raise InputError(f"{stored_from} stores {what} {_numbers(a)} {unit}; {given_from} says {_numbers(b)}. "
                         + (hint or f"Leave the {what} out to use the stored ones, or override them explicitly."))
    return list(given), {"stored_in": stored_from, "stored": [float(v) for v in a], "given": [float(v) for v in b]}


# -- shells ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shell:
    """The volumes of one b-value and how they are combined into one signal."""

    b_value: float  # mean of the members' b-values (s/mm²)
    volumes: tuple[int, ...]  # indices of the input volumes (0-based)
    b_range: tuple[float, float]
    combination: str  # "single", "b0 mean", "trace", "repeats mean"
    directions: int = 0  # distinct gradient directions among the volumes (0: none given)
    trace_error_bound: float | None = None  # bound on |ADC - MD| / MD from the direction set ("trace" only)

    def describe(self) -> str:
        span = "" if self.b_range[0] == self.b_range[1] else f" ({self.b_range[0]:g}-{self.b_range[1]:g})"
        b = f"b = {self.b_value:.4g}{span}"
        n = len(self.volumes)
        if self.combination == "single":
            return f"{b}: 1 volume" + (" along one direction (a directional ADC, not the trace)"
                                       if self.directions == 1 else "")
        if self.combination == "b0 mean":
            return f"{b}: mean of {n} volumes"
        if self.combination == "repeats mean":
            return f"{b}: mean of {n} repeats of one direction"
        return (f"{b}: trace of {self.directions} directions ({n} volumes, geometric mean; within "
                f"{100 * self.trace_error_bound:.1f} % of the mean diffusivity for any tensor)")


@dataclass(frozen=True)
class DwiShells:
    """How the volumes of a DWI series become one signal per b-value (module doc)."""

    shells: tuple[Shell, ...]
    n_volumes: int
    warnings: tuple[str, ...] = field(default=())

    @property
    def b_values(self) -> np.ndarray:
        return np.array([s.b_value for s in self.shells], dtype=float)

    @property
    def averages(self) -> np.ndarray:
        """Volumes combined into each signal (its noise is ~σ/√n; the fit weighs it n times)."""
        return np.array([len(s.volumes) for s in self.shells], dtype=float)

    @property
    def combined(self) -> bool:
        return any(len(s.volumes) > 1 for s in self.shells)

    def volumes_of(self, shell_indices) -> list[int]:
        """The input volumes that make the given shells."""
        return sorted(v for i in shell_indices for v in self.shells[int(i)].volumes)

    def combine(self, signals: np.ndarray) -> np.ndarray:
        """``signals[n_volumes, ...]`` -> ``[n_shells, ...]`` (float64). A geometric mean over a voxel with
        a non-positive directional signal is 0 there (the voxel then has no signal at that b-value)."""
        signals = np.asarray(signals)
        if signals.shape[0] != self.n_volumes:
            raise InputError(f"{signals.shape[0]} DWI volumes for a b-value table of {self.n_volumes}.")
        out = np.empty((len(self.shells),) + signals.shape[1:], np.float64)
        for i, shell in enumerate(self.shells):
            members = signals[list(shell.volumes)].astype(np.float64)
            if len(shell.volumes) == 1:
                out[i] = members[0]
            elif shell.combination == "trace":
                positive = np.all(members > 0, axis=0)
                logs = np.log(np.where(members > 0, members, 1.0)).mean(axis=0)
                out[i] = np.where(positive, np.exp(logs), 0.0)
            else:
                out[i] = members.mean(axis=0)
        return out

    def describe(self) -> str:
        return "; ".join(s.describe() for s in self.shells)

    def to_dict(self) -> dict:
        return {
            "shells": [{"b_value": s.b_value, "b_min": s.b_range[0], "b_max": s.b_range[1],
                        "volumes": [v + 1 for v in s.volumes], "combination": s.combination,
                        "directions": s.directions, "trace_error_bound": s.trace_error_bound} for s in self.shells],
            "rule": (f"b-values less than {100 * SHELL_TOLERANCE:g} % above a shell's smallest are one shell; b = 0 "
                     "volumes and repeats averaged, directions combined by the geometric mean (trace)"),
            "description": self.describe(),
            "warnings": list(self.warnings),
        }


def group_shells(b_values) -> list[list[int]]:
    """Volume indices of each shell (:data:`SHELL_TOLERANCE`), shells by increasing b-value.

    >>> group_shells([0, 1000, 5, 995, 0, 1005])
    [[0, 4], [2], [3, 1, 5]]
    """
    b = np.asarray(b_values, dtype=float)
    order = np.argsort(b, kind="stable")
    groups: list[list[int]] = []
    low = None
    for index in order:
        value = b[index]
        if low is not None and (value == low or value < low * (1.0 + SHELL_TOLERANCE)):
            groups[-1].append(int(index))
        else:
            groups.append([int(index)])
            low = value
    return groups


def plan_shells(b_values, b_vectors=None, repeats_are_averages: bool = False) -> DwiShells:
    """Group a DWI series' volumes (b-values in s/mm², one per volume, checked beforehand with
    :func:`virtualbiopsy.diffusion.check_b_values`) into shells and say how each is combined.

    ``b_vectors[n, 3]``: gradient directions (unit length; zero or NaN only at b = 0), or None.
    Refuses non-unit directions, a shell that mixes volumes with and without a direction, repeated
    non-zero b-values without directions (unless ``repeats_are_averages``) and fewer than two shells.
    """
    b = np.asarray(b_values, dtype=float)
    vectors = None
    if b_vectors is not None:
        vectors = np.nan_to_num(np.asarray(b_vectors, dtype=float), nan=0.0)
        if vectors.shape != (b.size, 3):
            raise InputError(f"{vectors.shape[0] if vectors.ndim else 0} gradient directions for {b.size} DWI volumes; "
                             "give one direction (3 numbers) per volume.")
        norms = np.linalg.norm(vectors, axis=1)
        bad = np.flatnonzero((b > 0) & (norms > 0) & (np.abs(norms - 1.0) > UNIT_LENGTH_TOLERANCE))
        if bad.size:
            i = int(bad[0])
            raise InputError(f"The gradient direction of DWI volume {i + 1} (b = {b[i]:g} s/mm²) has length "
                             f"{norms[i]:.3g}; directions must be unit vectors (length 0 only for b = 0).")
    shells, warnings = [], []
    for members in group_shells(b):
        values = b[members]
        mean_b = float(values.mean())
        span = (float(values.min()), float(values.max()))
        if mean_b == 0:
            shells.append(Shell(0.0, tuple(members), span, "b0 mean" if len(members) > 1 else "single"))
            continue
        directed = np.zeros(len(members), bool) if vectors is None else np.linalg.norm(vectors[members], axis=1) > 0
        if directed.any() and not directed.all():
            undirected = [m + 1 for m, d in zip(members, directed) if not d]
            raise InputError(f"At b = {mean_b:.4g} s/mm² DWI volumes {_numbers(undirected)} have no gradient direction "
                             "(0 0 0) but the others of that b-value have one; give every volume's direction.")
        if directed.all():
            g = vectors[members]
            distinct = _distinct_directions(g)
            if len(members) == 1:
                shells.append(Shell(mean_b, tuple(members), span, "single", 1, 2.0))
                warnings.append(f"b = {mean_b:.4g} s/mm² has one direction: its ADC is directional, not the trace")
                continue
            m = (values[:, None, None] * g[:, :, None] * g[:, None, :]).sum(0) / values.sum()
            bound = float(3.0 * np.max(np.abs(np.linalg.eigvalsh(m) - 1.0 / 3.0)))
            shells.append(Shell(mean_b, tuple(members), span, "trace", distinct, bound))
            if bound > 0.1:
                warnings.append(f"the {distinct} directions at b = {mean_b:.4g} s/mm² are unevenly spread: the "
                                f"combined ADC may differ from the trace by up to {100 * bound:.0f} %")
            continue
        if len(members) == 1:
            shells.append(Shell(mean_b, tuple(members), span, "single"))
        elif repeats_are_averages:
            shells.append(Shell(mean_b, tuple(members), span, "repeats mean"))
        else:
            raise InputError(
                f"b = {_numbers(values)} s/mm² (one shell: within {100 * SHELL_TOLERANCE:g} %) is repeated in DWI "
                f"volumes {_numbers([m + 1 for m in members])} without gradient directions; give the directions "
                "(a .bvec file, --bvecs) to combine them into the trace, or say they are repeats of one direction "
                "(--repeats-are-averages) to average them.")
    if len(shells) < 2:
        raise InputError(f"The b-values {_numbers(b)} s/mm² form one shell (within {100 * SHELL_TOLERANCE:g} %); at "
                         "least two distinct b-values are needed to fit an ADC.")
    return DwiShells(tuple(shells), int(b.size), tuple(warnings))


def _distinct_directions(g: np.ndarray) -> int:
    """Directions that differ by more than ~1° (g and -g are one direction: the signal is the same)."""
    kept: list[np.ndarray] = []
    for vector in g / np.linalg.norm(g, axis=1, keepdims=True):
        if all(abs(float(vector @ other)) < 0.9998 for other in kept):
            kept.append(vector)
    return len(kept)
