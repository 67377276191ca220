"""What the radiologist needs from an uncertainty map: how much of the tumour is uncertain,
where to look first, and compact storage of the map.

Definitions (all on the segmentation's voxel grid):

- *uncertain voxel*: normalised predictive entropy >= ``threshold`` (default 0.5; for two
  classes that is a tumour probability between about 0.11 and 0.89);
- *uncertain fraction*: the share of the predicted tumour's voxels that are uncertain, in [0, 1]
  — 0.2 means "a fifth of the tumour's volume is in doubt";
- *uncertain volume*: the volume of the uncertain voxels in the predicted tumour or within
  ``margin_voxels`` of it (the boundary band where corrections happen, including doubt about
  tissue the model left out), in mL — so it can exceed the uncertain fraction x tumour volume;
- *slices to review*: axial slices (k) ranked by their summed entropy;
- *regions*: 26-connected clusters of uncertain voxels, largest first, with centroid (RAS mm);
- *agreement contours*: the mean tumour probability over all passes at 10 % and 50 %.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass
class UncertainRegion:
    voxels: int
    volume_ml: float
    centroid_ras: tuple[float, float, float]
    slices: tuple[int, int]  # first and last axial slice index (k)
    mean_entropy: float


@dataclass
class UncertaintySummary:
    tumour_volume_ml: float
    uncertain_volume_ml: float
    uncertain_fraction: float
    threshold: float
    slices_to_review: list[int]
    regions: list[UncertainRegion]

    def to_dict(self) -> dict:
        return asdict(self)


def summarise(tumour: np.ndarray, entropy: np.ndarray, ijk_to_ras: np.ndarray, threshold: float = 0.5,
              margin_voxels: int = 1, n_slices: int = 5, n_regions: int = 5) -> UncertaintySummary:
    """Summarise a normalised entropy map [k, j, i] around the predicted ``tumour`` mask."""
    tumour = np.asarray(tumour, bool)
    entropy = np.asarray(entropy, np.float32)
    voxel_ml = abs(float(np.linalg.det(ijk_to_ras[:3, :3]))) / 1000.0
    band = ndimage.binary_dilation(tumour, iterations=margin_voxels) if margin_voxels > 0 else tumour
    doubtful = entropy >= threshold
    uncertain = doubtful & band
    tumour_voxels = int(tumour.sum())
    per_slice = entropy.reshape(entropy.shape[0], -1).sum(axis=1)
    ranked = [int(k) for k in np.argsort(per_slice)[::-1] if per_slice[k] > 0][:n_slices]
    regions = []
    labelled, count = ndimage.label(entropy >= threshold, structure=np.ones((3, 3, 3), bool))
    if count:
        sizes = ndimage.sum_labels(np.ones_like(entropy), labelled, index=np.arange(1, count + 1))
        for label in np.argsort(sizes)[::-1][:n_regions] + 1:
            where = np.argwhere(labelled == label)
            centre = where.mean(axis=0)[::-1]  # (i, j, k)
            ras = ijk_to_ras[:3, :3] @ centre + ijk_to_ras[:3, 3]
            regions.append(UncertainRegion(
                voxels=int(len(where)), volume_ml=len(where) * voxel_ml,
                centroid_ras=tuple(round(float(v), 2) for v in ras),
                slices=(int(where[:, 0].min()), int(where[:, 0].max())),
                mean_entropy=float(entropy[labelled == label].mean())))
    return UncertaintySummary(
        tumour_volume_ml=tumour_voxels * voxel_ml,
        uncertain_volume_ml=int(uncertain.sum()) * voxel_ml,
        uncertain_fraction=float((doubtful & tumour).sum()) / tumour_voxels if tumour_voxels else 0.0,
        threshold=threshold, slices_to_review=ranked, regions=regions)


def agreement_masks(tumour_probability: np.ndarray, levels=(0.1, 0.5)) -> dict[float, np.ndarray]:
    """Masks where the mean tumour probability over all passes reaches each level."""
    p = np.asarray(tumour_probability, np.float32)
    return {level: p >= level for level in levels}


UINT8_SCALE = 255.0


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Store a [0, 1] map compactly as uint8 (value / 255 restores it to within 0.002)."""
    return np.round(np.clip(np.asarray(values, np.float32), 0.0, 1.0) * UINT8_SCALE).astype(np.uint8)
