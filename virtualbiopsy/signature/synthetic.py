"""A seeded synthetic cohort feature table with known structure, for tests, self-checks and demos.

Three latent factors (A, B, C; standard normal per case, made exactly uncorrelated in the
sample) each drive four features ``original_{a,b,c}{1..4}`` = factor + 0.5 noise, on different
scales and offsets (so within a group |r| is about 0.8 and between groups about 0). On top:

- ``original_a1_dup``: ``original_a1`` + 0.3 x factor A / 10: a near-duplicate of a1 (r about 0.99):
  correlation pruning must drop one of the two (the one with the higher mean |r| with the
  others; usually the duplicate, which carries more of factor A);
- ``original_constant`` (7 for every case) and ``original_near_constant`` (1 except one case):
  the low-variance filter must drop both;
- ``original_shape_MeshVolume`` = 50 exp(0.8 C) mL-ish: group C features are volume surrogates;
- ``label`` = 1 where A + 0.5 noise > 0: group A is label-related, B and C are not;
- ``case_id`` and a text ``diagnostics_Versions_PyRadiomics`` column (not features);
- optional batches (``batch`` column): every feature of batch b gets ``shift[b]`` feature SDs
  added and its deviation from the mean multiplied by ``scale[b]``; optional covariate ``age``
  (years, unevenly spread over batches) adding ``age_effect`` x (age - 8) SDs to group B.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

GROUPS = {"A": [f"original_a{k}" for k in range(1, 5)], "B": [f"original_b{k}" for k in range(1, 5)],
          "C": [f"original_c{k}" for k in range(1, 5)]}


def synthetic_cohort(n_cases: int = 60, seed: int = 0, batch_shifts: Sequence[float] = (),
                     batch_scales: Sequence[float] = (), age_effect: float = 0.0) -> tuple[pd.DataFrame, dict]:
    """(table, truth); ``batch_shifts``/``batch_scales`` (one per batch) add a ``batch`` column."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n_cases, 3))
    latent -= latent.mean(axis=0)  # exactly uncorrelated, unit-variance factors in this sample
    latent = latent @ np.linalg.inv(np.linalg.cholesky(np.cov(latent, rowvar=False))).T
    n_batches = len(batch_shifts)
    batch = np.arange(n_cases) % n_batches if n_batches else np.zeros(n_cases, int)
    # age differs between batches (batch b is about 2b years older), so batch and biology overlap
    age = np.round(rng.uniform(1.0, 12.0, n_cases) + 2.0 * batch, 2)
    columns: dict[str, object] = {"case_id": [f"case{i:03d}" for i in range(n_cases)]}
    label = (latent[:, 0] + 0.5 * rng.normal(size=n_cases) > 0).astype(int)
    columns["label"] = label
    columns["diagnostics_Versions_PyRadiomics"] = ["3.1.0"] * n_cases
    features: dict[str, np.ndarray] = {}
    for g, names in enumerate(GROUPS.values()):
        for k, name in enumerate(names):
            features[name] = (latent[:, g] + 0.5 * rng.normal(size=n_cases)) * 10.0 ** (k - 1) + 5.0 * k
    features["original_a1_dup"] = features["original_a1"] + 0.3 * latent[:, 0] * 10.0 ** -1
    features["original_constant"] = np.full(n_cases, 7.0)
    near = np.ones(n_cases)
    near[n_cases // 2] = 100.0
    features["original_near_constant"] = near
    features["original_shape_MeshVolume"] = 50.0 * np.exp(0.8 * latent[:, 2])
    if age_effect:
        for name in GROUPS["B"]:
            features[name] = features[name] + age_effect * (age - 8.0) * features[name].std(ddof=1)
    truth = {"latent": latent, "label": label, "age": age, "groups": GROUPS, "batch_shifts": list(batch_shifts),
             "batch_scales": list(batch_scales) or [1.0] * n_batches,
             "clean": {k: v.copy() for k, v in features.items()}}
    if n_batches:
        scales = list(batch_scales) or [1.0] * n_batches
        for name, values in features.items():
            if name in ("original_constant", "original_near_constant"):
                continue
            sd, mean = values.std(ddof=1), values.mean()
            shift = np.asarray(batch_shifts, float)[batch] * sd
            features[name] = mean + (values - mean) * np.asarray(scales, float)[batch] + shift
        columns["batch"] = [f"site{b + 1}" for b in batch]
        columns["age"] = age
    columns |= features
    return pd.DataFrame(columns), truth
