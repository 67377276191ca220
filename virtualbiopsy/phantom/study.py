"""``generate_study``: a seeded synthetic paediatric abdominal MRI study with its ground truth.

The study holds a T2-weighted volume on a fine grid and a multi-b DWI and a DCE series on a
coarser grid (same field of view and centre), stored as int16 like a scanner's magnitude images
(rounded, clipped to [0, 32767]), plus crisp ground-truth label maps and parameter maps.

Random numbers: one ``numpy.random.default_rng(seed)`` generator, drawn from in this fixed order:
anatomy, bolus arrival jitter, bias field, T2w tumour texture, T2w noise, DWI noise (b-values in
order), DCE noise (frames in order). The same seed and arguments give bit-identical arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from virtualbiopsy.errors import InputError
from virtualbiopsy.phantom import signals
from virtualbiopsy.phantom.anatomy import Anatomy
from virtualbiopsy.phantom.grid import Grid
from virtualbiopsy.phantom.tissues import (
    IAUC_WINDOW_S,
    TISSUES,
    TUMOUR_CORE,
    TUMOUR_LABELS,
    TUMOUR_RIM,
)
from virtualbiopsy.progress import ProgressCallback, Task, as_task

GENERATOR_VERSION = "1.0.0"
T0_NOMINAL_S = 30.0
T0_JITTER_S = 2.0
DEFAULT_DCE_DT_S = 5.0
DEFAULT_DCE_FRAMES = 40


@dataclass
class SampleStudy:
    """One synthetic study. Arrays are indexed [k, j, i] (Slicer's ``arrayFromVolume``)."""

    seed: int
    t2_grid: Grid
    dwi_grid: Grid  # also the DCE grid
    t2w: np.ndarray  # int16 [k, j, i]
    t2_labels: np.ndarray  # uint8 [k, j, i], label at each voxel centre
    bias_field: np.ndarray  # float32 [k, j, i] on the T2 grid (multiplies the T2w signal)
    dwi: np.ndarray  # int16 [n_b, k, j, i]
    b_values: tuple[float, ...]  # s/mm^2
    dce: np.ndarray  # int16 [n_t, k, j, i]
    dce_times: tuple[float, ...]  # s
    dwi_labels: np.ndarray  # uint8 [k, j, i] on the DWI/DCE grid
    adc_true: np.ndarray  # float32 mm^2/s, from the centre label
    s0_true: np.ndarray  # float32, b = 0 signal of the centre label
    iauc60_true: np.ndarray  # float32 s, iAUC over [t0, t0 + 60 s] of the centre label
    t0: float  # bolus arrival time, s
    snr_t2: float
    snr_dwi: float
    snr_dce: float
    noise_sigma: dict  # Rician sigma per series ("t2w", "dwi", "dce"), scanner units
    anatomy: Anatomy
    bias: signals.BiasField
    supersample: int = 2
    tumour_volume_pv_ml: float = 0.0  # tumour volume from T2 partial-volume fractions, mL

    def volumes_ml(self) -> dict:
        """Tumour, rim and core volumes (mL) from the T2 label map (voxel count x voxel volume)."""
        ml = self.t2_grid.voxel_volume_mm3 / 1000.0
        rim = int(np.count_nonzero(self.t2_labels == TUMOUR_RIM))
        core = int(np.count_nonzero(self.t2_labels == TUMOUR_CORE))
        return {"tumour": (rim + core) * ml, "rim": rim * ml, "core": core * ml}

    def tumour_centroid_ras(self) -> list[float]:
        """RAS (mm) centroid of the tumour voxels of the T2 label map."""
        k, j, i = np.nonzero(np.isin(self.t2_labels, TUMOUR_LABELS))
        ijk = np.array([i.mean(), j.mean(), k.mean(), 1.0])
        return [float(v) for v in (self.t2_grid.ijk_to_ras() @ ijk)[:3]]

    def truth(self) -> dict:
        """JSON-serialisable ground truth and generation parameters."""
        volumes = self.volumes_ml()
        return {
            "generator": "virtualbiopsy.phantom",
            "generator_version": GENERATOR_VERSION,
            "seed": self.seed,
            "coordinate_system": "RAS (+x patient Right, +y Anterior, +z Superior), mm",
            "t2_grid": self.t2_grid.to_dict(),
            "dwi_grid": self.dwi_grid.to_dict(),
            "dce_grid": self.dwi_grid.to_dict(),
            "b_values_s_per_mm2": list(self.b_values),
            "dce_times_s": list(self.dce_times),
            "t0_s": self.t0,
            "iauc_window_s": IAUC_WINDOW_S,
            "snr": {"t2w": _finite(self.snr_t2), "dwi": _finite(self.snr_dwi), "dce": _finite(self.snr_dce)},
            "noise_sigma": dict(self.noise_sigma),
            "supersample": self.supersample,
            "storage": "int16, rounded and clipped to [0, 32767]",
            "tissues": [t.to_dict() for t in TISSUES],
            "tumour_volume_ml": volumes["tumour"],
            "rim_volume_ml": volumes["rim"],
            "core_volume_ml": volumes["core"],
            "tumour_volume_partial_volume_ml": self.tumour_volume_pv_ml,
            "tumour_centre_ras_mm": list(self.anatomy.tumour.centre),
            "tumour_centroid_ras_mm": self.tumour_centroid_ras(),
            "anatomy": self.anatomy.to_dict(),
            "bias_field": self.bias.to_dict(),
            "texture": {"sd": signals.TEXTURE_SD, "sigma_mm": signals.TEXTURE_SIGMA_MM},
        }


def _finite(value: float) -> float | None:
    """``value``, or None for infinity (no noise), so that the truth is strict JSON."""
    return float(value) if math.isfinite(value) else None


def _sigma(reference: float, snr: float, what: str) -> float:
    if not snr > 0:
        raise InputError(f"The {what} signal-to-noise ratio must be > 0 (inf for no noise), got {snr!r}.")
    return 0.0 if math.isinf(snr) else float(reference) / float(snr)


def _label_map(values: Sequence[float], labels: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)[labels]


def generate_study(
    seed: int = 0,
    *,
    t2_spacing=(1.5, 1.5, 4.0),
    dwi_spacing=(3.0, 3.0, 4.0),
    field_of_view_mm=(240.0, 192.0, 128.0),
    b_values=(0, 50, 400, 800),
    dce_times=None,
    snr_t2: float = 25,
    snr_dwi: float = 30,
    snr_dce: float = 40,
    supersample: int = 2,
    progress: Task | ProgressCallback | None = None,
) -> SampleStudy:
    """Generate the synthetic study for ``seed`` (a non-negative int).

    Spacings are (x, y, z) = (i, j, k) in mm, the field of view (x, y, z) in mm, b-values in s/mm^2,
    DCE times in s (default 0, 5, ..., 195 s). ``snr_*`` = reference-tissue signal / Rician sigma,
    with the tumour rim as reference (T2w, S0, S_pre); ``inf`` gives noise-free images.
    ``supersample`` = sub-samples per voxel and axis for the partial-volume fractions.
    """
    task = as_task(progress)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"The phantom seed must be a non-negative integer, got {seed!r}.")
    seed = int(seed)
    b_values = tuple(float(b) for b in b_values)
    if not b_values or min(b_values) < 0:
        raise InputError(f"b-values must be a non-empty list of values >= 0 s/mm², got {b_values!r}.")
    if dce_times is None:
        dce_times = tuple(DEFAULT_DCE_DT_S * n for n in range(DEFAULT_DCE_FRAMES))
    dce_times = tuple(float(t) for t in dce_times)
    if not dce_times or np.any(np.diff(dce_times) <= 0):
        raise InputError("DCE frame times must be a non-empty, strictly increasing list of seconds.")
    if int(supersample) < 1:
        raise InputError(f"Supersampling factor must be a positive integer, got {supersample!r}.")
    supersample = int(supersample)
    rim = TISSUES[TUMOUR_RIM]
    sigma = {
        "t2w": _sigma(rim.t2w, snr_t2, "T2w"),
        "dwi": _sigma(rim.s0, snr_dwi, "DWI"),
        "dce": _sigma(rim.s_pre, snr_dce, "DCE"),
    }
    t2_grid = Grid.from_field_of_view(field_of_view_mm, t2_spacing)
    dwi_grid = Grid.from_field_of_view(field_of_view_mm, dwi_spacing)

    rng = np.random.default_rng(seed)
    anatomy = Anatomy.random(rng)
    t0 = T0_NOMINAL_S + float(rng.uniform(-T0_JITTER_S, T0_JITTER_S))
    bias = signals.BiasField.random(rng)

    task.update(0.02, "Drawing the anatomy on the T2 grid")
    fractions = anatomy.tissue_fractions(t2_grid, supersample)
    tumour_voxels = float(fractions[list(TUMOUR_LABELS)].sum(dtype=np.float64))
    tumour_pv_ml = tumour_voxels * t2_grid.voxel_volume_mm3 / 1000.0
    t2_labels = anatomy.label_grid(t2_grid)
    task.update(0.45, "Simulating the T2-weighted image")
    bias_field = bias.evaluate(t2_grid)
    texture = signals.tumour_texture(t2_grid, rng)
    t2 = signals.t2w_signal(fractions, texture, bias_field)
    del fractions, texture
    t2w = signals.to_int16(signals.add_rician_noise(t2, sigma["t2w"], rng))
    del t2

    task.update(0.6, "Drawing the anatomy on the DWI/DCE grid")
    fractions = anatomy.tissue_fractions(dwi_grid, supersample)
    dwi_labels = anatomy.label_grid(dwi_grid)
    task.update(0.7, "Simulating the diffusion-weighted images")
    dwi = np.empty((len(b_values),) + dwi_grid.shape, dtype=np.int16)
    for n, b in enumerate(b_values):
        frame = signals.dwi_signal(fractions, [b])[0]
        dwi[n] = signals.to_int16(signals.add_rician_noise(frame, sigma["dwi"], rng))
    task.update(0.8, "Simulating the dynamic contrast-enhanced series")
    dce = np.empty((len(dce_times),) + dwi_grid.shape, dtype=np.int16)
    for n, t in enumerate(dce_times):
        frame = signals.dce_signal(fractions, [t], t0)[0]
        dce[n] = signals.to_int16(signals.add_rician_noise(frame, sigma["dce"], rng))
    task.update(1.0, "Sample study ready")

    return SampleStudy(
        seed=seed,
        t2_grid=t2_grid,
        dwi_grid=dwi_grid,
        t2w=t2w,
        t2_labels=t2_labels,
        bias_field=bias_field,
        dwi=dwi,
        b_values=b_values,
        dce=dce,
        dce_times=dce_times,
        dwi_labels=dwi_labels,
        adc_true=_label_map([t.adc for t in TISSUES], dwi_labels),
        s0_true=_label_map([t.s0 for t in TISSUES], dwi_labels),
        iauc60_true=_label_map([t.iauc60 for t in TISSUES], dwi_labels),
        t0=t0,
        snr_t2=float(snr_t2),
        snr_dwi=float(snr_dwi),
        snr_dce=float(snr_dce),
        noise_sigma=sigma,
        anatomy=anatomy,
        bias=bias,
        supersample=supersample,
        tumour_volume_pv_ml=tumour_pv_ml,
    )
