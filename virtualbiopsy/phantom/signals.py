"""Signal models of the phantom: T2w, DWI, DCE, bias field, tumour texture and Rician noise.

Every model mixes tissue *signals* by partial-volume fraction (``fractions`` is float32
[N_LABELS, k, j, i] from :meth:`Anatomy.tissue_fractions`):

* T2w:  S = sum_t f_t * T2w_t, with the tumour terms (rim + core) multiplied by a texture
  ``1 + sd * n`` (n = Gaussian-smoothed white noise scaled to unit standard deviation, sd 5 %,
  smoothing sigma 3 mm), then multiplied by the bias field.
* DWI:  S(b) = sum_t f_t * S0_t * ((1 - f_t) exp(-b ADC_t) + f_t exp(-b D*_t))  (IVIM fraction
  f_t = 0 by default, i.e. mono-exponential; b in s/mm^2, ADC in mm^2/s). Partial volume mixes
  signals, not ADCs, so a boundary voxel's fitted ADC is not the fraction-weighted mean ADC.
* DCE:  S(t) = sum_t f_t * S_pre_t * (1 + E_t(t)),  E(t) = A (1 - e^{-s/tau_in}) e^{-s/tau_out},
  s = t - t0 >= 0 (E = 0 before t0).
* Bias field (T2w only): exp(g1 * (u . r) / L + g2 * ((v . r)^2 / L^2 - 1/3)) with r the RAS
  position (mm), L = 100 mm, u, v random orthogonal unit vectors, g1 = ln 1.2 (about +-20 % across
  the body), g2 ~ U(-0.08, 0.08). The field is 1 at RAS (0, 0, 0) up to the g2 offset.
* Rician noise: |S + N(0, sigma) + i N(0, sigma)|, independent per voxel, b-value and frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from virtualbiopsy.phantom.grid import Grid
from virtualbiopsy.phantom.tissues import TISSUES, TUMOUR_LABELS, Tissue

BIAS_LENGTH_MM = 100.0
TEXTURE_SD = 0.05
TEXTURE_SIGMA_MM = 3.0


# -- bias field and texture ------------------------------------------------------------------
@dataclass(frozen=True)
class BiasField:
    """Smooth multiplicative field exp(g1 (u.r)/L + g2 ((v.r)^2/L^2 - 1/3)), r in RAS mm."""

    u: tuple[float, float, float]
    v: tuple[float, float, float]
    g1: float = math.log(1.2)
    g2: float = 0.0
    length_mm: float = BIAS_LENGTH_MM

    @classmethod
    def random(cls, rng: np.random.Generator) -> BiasField:
        """Seeded orientation (u, v) and curvature g2: four draws from ``rng``."""
        u = rng.normal(size=3)
        u /= np.linalg.norm(u)
        v = np.cross(u, rng.normal(size=3))
        v /= np.linalg.norm(v)
        g2 = float(rng.uniform(-0.08, 0.08))
        return cls(tuple(float(a) for a in u), tuple(float(a) for a in v), math.log(1.2), g2)

    def evaluate(self, grid: Grid) -> np.ndarray:
        """float32 [k, j, i] field at the voxel centres of ``grid``."""
        x, y, z = grid.physical_points()
        lu = (self.u[0] * x + self.u[1] * y + self.u[2] * z) / np.float32(self.length_mm)
        lv = (self.v[0] * x + self.v[1] * y + self.v[2] * z) / np.float32(self.length_mm)
        return np.exp(self.g1 * lu + self.g2 * (lv * lv - np.float32(1 / 3))).astype(np.float32)

    def to_dict(self) -> dict:
        return {"u": list(self.u), "v": list(self.v), "g1": self.g1, "g2": self.g2,
                "length_mm": self.length_mm}


def tumour_texture(grid: Grid, rng: np.random.Generator, sd: float = TEXTURE_SD,
                   sigma_mm: float = TEXTURE_SIGMA_MM) -> np.ndarray:
    """Multiplicative texture 1 + sd * n (float32 [k, j, i], clipped to >= 0.5).

    n is white noise smoothed by a Gaussian of ``sigma_mm`` (mm) and rescaled to unit standard
    deviation over the grid. Draws ``prod(grid.shape)`` normals from ``rng``.
    """
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    if sd == 0:
        return np.ones(grid.shape, dtype=np.float32)
    sigma_vox = [sigma_mm / grid.spacing[2], sigma_mm / grid.spacing[1], sigma_mm / grid.spacing[0]]
    smooth = ndimage.gaussian_filter(noise, sigma_vox, mode="wrap")
    smooth /= max(float(smooth.std()), 1e-12)
    return np.maximum(1.0 + np.float32(sd) * smooth, np.float32(0.5)).astype(np.float32)


# -- noise-free signal models ------------------------------------------------------------------
def _mix(weights: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """sum over labels of weights[..., label] * fractions[label] -> float32 [..., k, j, i]."""
    n = fractions.shape[0]
    flat = fractions.reshape(n, -1)
    out = np.asarray(weights, dtype=np.float32).reshape(-1, n) @ flat
    return out.reshape(np.shape(weights)[:-1] + fractions.shape[1:])


def t2w_signal(fractions: np.ndarray, texture: np.ndarray | None = None, bias: np.ndarray | None = None,
               tissues: Sequence[Tissue] = TISSUES) -> np.ndarray:
    """Noise-free T2-weighted signal, float32 [k, j, i] (arbitrary units)."""
    values = np.array([t.t2w for t in tissues], dtype=np.float32)
    tumour = np.zeros(len(tissues), dtype=bool)
    tumour[list(TUMOUR_LABELS)] = True
    signal = _mix(np.where(tumour, 0, values), fractions)
    tumour_signal = _mix(np.where(tumour, values, 0), fractions)
    signal += tumour_signal if texture is None else tumour_signal * texture
    if bias is not None:
        signal *= bias
    return signal


def dwi_weights(b_values: Sequence[float], tissues: Sequence[Tissue] = TISSUES) -> np.ndarray:
    """Signal of each tissue at each b-value, float64 [n_b, N_LABELS]."""
    b = np.asarray(b_values, dtype=float)[:, None]
    s0 = np.array([t.s0 for t in tissues])
    adc = np.array([t.adc for t in tissues])
    f = np.array([t.ivim_f for t in tissues])
    dstar = np.array([t.ivim_dstar for t in tissues])
    return s0 * ((1 - f) * np.exp(-b * adc) + f * np.exp(-b * dstar))


def dwi_signal(fractions: np.ndarray, b_values: Sequence[float],
               tissues: Sequence[Tissue] = TISSUES) -> np.ndarray:
    """Noise-free DWI signal, float32 [n_b, k, j, i]."""
    return _mix(dwi_weights(b_values, tissues), fractions)


def dce_enhancement(times, t0: float, amplitude, tau_in, tau_out) -> np.ndarray:
    """Relative enhancement E(t) (dimensionless); times and t0 in s. Broadcasts its arguments."""
    s = np.asarray(times, dtype=float) - t0
    after = np.maximum(s, 0.0)
    e = amplitude * -np.expm1(-after / np.asarray(tau_in)) * np.exp(-after / np.asarray(tau_out))
    return np.where(s >= 0, e, 0.0)


def dce_weights(times: Sequence[float], t0: float, tissues: Sequence[Tissue] = TISSUES) -> np.ndarray:
    """Signal of each tissue at each time, float64 [n_t, N_LABELS]."""
    t = np.asarray(times, dtype=float)[:, None]
    amplitude = np.array([x.amplitude for x in tissues])
    tau_in = np.array([x.tau_in for x in tissues])
    tau_out = np.array([x.tau_out for x in tissues])
    s_pre = np.array([x.s_pre for x in tissues])
    return s_pre * (1.0 + dce_enhancement(t, t0, amplitude, tau_in, tau_out))


def dce_signal(fractions: np.ndarray, times: Sequence[float], t0: float,
               tissues: Sequence[Tissue] = TISSUES) -> np.ndarray:
    """Noise-free DCE signal, float32 [n_t, k, j, i]."""
    return _mix(dce_weights(times, t0, tissues), fractions)


# -- noise and storage ---------------------------------------------------------------------------
def add_rician_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """|S + N(0, sigma) + i N(0, sigma)|, float32, same shape as ``signal``.

    Always draws ``2 * signal.size`` normals (real parts first), even when ``sigma`` is 0, so the
    random stream does not depend on the noise level.
    """
    real = rng.standard_normal(signal.shape, dtype=np.float32)
    imag = rng.standard_normal(signal.shape, dtype=np.float32)
    sigma = np.float32(sigma)
    real *= sigma
    real += signal
    imag *= sigma
    return np.hypot(real, imag, out=real)


def to_int16(signal: np.ndarray) -> np.ndarray:
    """Round to the nearest integer and clip to [0, 32767], like a scanner's magnitude image."""
    return np.clip(np.rint(signal), 0, np.iinfo(np.int16).max).astype(np.int16)
