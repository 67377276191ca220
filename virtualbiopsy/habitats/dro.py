"""Digital reference objects (DROs) with known habitat ADCs, for tests and the validation script.

A DRO is a small DWI series: habitats of homogeneous tissue (one ADC each, S0 with a mild
multiplicative texture that does not change the decay), surrounded by air, with Rician magnitude
noise of σ = ``s0_reference / snr`` added independently to every voxel and b-value (float32,
not rounded). The object is a ball in a cube of air: the voxels nearest the centre form the last
habitat (like a necrotic core), the next ones a shell of the habitat before, and so on out to
habitat 1 (a rim), with ``air_margin`` voxels of air on every side for the background noise
estimator. The clustering does not use space; the layout matters for the figures and for the
boundary erosion, which then removes only the outer surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_B_VALUES = (0.0, 50.0, 400.0, 800.0)
DEFAULT_ADCS = (0.6e-3, 1.1e-3, 2.2e-3)  # cellular tumour, intermediate, necrosis/cyst (mm²/s)
DEFAULT_S0 = (1000.0, 1000.0, 1300.0)


@dataclass
class DigitalReferenceObject:
    signals: np.ndarray  # float32 [n_b, n, n, n]
    b_values: np.ndarray  # s/mm²
    labels: np.ndarray  # uint8 [n, n, n]: 0 air, 1..H habitats
    adc: np.ndarray  # true ADC per habitat (mm²/s), index 0 = habitat 1
    s0: np.ndarray
    sigma: float
    snr: float

    @property
    def mask(self) -> np.ndarray:
        return self.labels > 0

    def true_adc_map(self) -> np.ndarray:
        table = np.concatenate([[0.0], self.adc])
        return table[self.labels]


def make_dro(habitat_voxels=(500, 500, 500), adcs=DEFAULT_ADCS, s0s=DEFAULT_S0, snr: float = 20.0,
             b_values=DEFAULT_B_VALUES, seed: int = 0, s0_texture: float = 0.05, air_margin: int = 8,
             s0_reference: float = 1000.0) -> DigitalReferenceObject:
    """A DRO with ``len(habitat_voxels)`` habitats; SNR = ``s0_reference``/σ (b = 0 signal of an S0 = 1000 habitat)."""
    rng = np.random.default_rng(seed)
    sizes = [int(n) for n in habitat_voxels]
    adcs, s0s = np.asarray(adcs, float)[: len(sizes)], np.asarray(s0s, float)[: len(sizes)]
    b = np.asarray(b_values, float)
    tissue = sum(sizes)
    radius = (3.0 * tissue / (4.0 * np.pi)) ** (1.0 / 3.0)
    side = int(np.ceil(2 * radius)) + 2 + 2 * air_margin
    centre = (side - 1) / 2.0
    k, j, i = np.meshgrid(*(np.arange(side),) * 3, indexing="ij")
    distance = np.sqrt((k - centre) ** 2 + (j - centre) ** 2 + (i - centre) ** 2).ravel()
    order = np.argsort(distance, kind="stable")
    flat_labels = np.zeros(side ** 3, np.uint8)
    start = 0
    for h in range(len(sizes), 0, -1):  # the last habitat at the centre
        flat_labels[order[start: start + sizes[h - 1]]] = h
        start += sizes[h - 1]
    total = flat_labels.size
    labels = flat_labels.reshape(side, side, side)
    s0_map = np.concatenate([[0.0], s0s])[flat_labels] * np.clip(1 + s0_texture * rng.standard_normal(total), 0.5, None)
    adc_map = np.concatenate([[0.0], adcs])[flat_labels]
    clean = s0_map[None, :] * np.exp(-b[:, None] * adc_map[None, :])
    sigma = s0_reference / snr if np.isfinite(snr) else 0.0
    real = clean + sigma * rng.standard_normal(clean.shape)
    imag = sigma * rng.standard_normal(clean.shape)
    signals = np.hypot(real, imag).astype(np.float32).reshape(b.size, side, side, side)
    return DigitalReferenceObject(signals, b, labels, adcs, s0s, float(sigma), float(snr))


def match_habitats(found: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """Each found habitat (label >= 1, < 255) -> the true habitat most of its voxels belong to."""
    out = {}
    for h in np.unique(found):
        if h == 0 or h >= 255:
            continue
        values, counts = np.unique(truth[found == h], return_counts=True)
        out[int(h)] = int(values[np.argmax(counts)])
    return out
