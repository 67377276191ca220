"""DWI signals shared by the Fit-Cluster-Fit tests: the sample protocol's b-values and Rician magnitude noise."""

from __future__ import annotations

import numpy as np

B = np.array([0.0, 50.0, 400.0, 800.0])  # s/mm²


def rician(clean, sigma, rng):
    """The magnitude of ``clean`` plus complex Gaussian noise of ``sigma`` per channel (what an MR scanner reports)."""
    return np.hypot(clean + rng.normal(0, sigma, clean.shape), rng.normal(0, sigma, clean.shape))
