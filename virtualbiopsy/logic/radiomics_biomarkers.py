"""Logic of the RadiomicsBiomarkers module.

Now: first-order intensity statistics of a volume inside each segment, on the image's own grid
(no resampling). pyradiomics extraction, IBSI checks, reduction and ComBat come with issue #4.
"""

from __future__ import annotations

import numpy as np

from virtualbiopsy.errors import EmptyMaskError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import require_finite, require_scalar_3d

STATISTICS = ("voxels", "volume_ml", "mean", "sd", "min", "p10", "median", "p90", "max")


def intensity_statistics(values: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """First-order statistics of the voxel values in a region (sd with n-1 degrees of freedom)."""
    values = np.asarray(values, dtype=np.float64)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {
        "voxels": float(values.size),
        "volume_ml": values.size * voxel_ml,
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "p10": float(p10),
        "median": float(median),
        "p90": float(p90),
        "max": float(values.max()),
    }


class RadiomicsBiomarkersLogic:
    def __init__(self, context) -> None:
        self.context = context

    def intensity_statistics_table(self, volume_node, segmentation_node, table_node=None):
        """Per segment: voxels, volume_ml, mean, sd, min, p10, median, p90, max of the volume.

        Refuses a 2D or multi-component volume, NaN voxels, a segmentation that is not on the
        image's voxel grid, and empty segments, naming each problem.
        """
        geometry = require_scalar_3d(volume_node, "image")
        image = arrays.array_from_volume(volume_node)
        require_finite(image, volume_node.GetName())
        arrays.require_segmentation_on_grid(segmentation_node, volume_node)
        names, rows = [], []
        for segment_id in arrays.segment_ids(segmentation_node):
            mask = arrays.mask_from_segment(segmentation_node, segment_id, volume_node)
            names.append(segmentation_node.GetSegmentation().GetSegment(segment_id).GetName())
            rows.append(intensity_statistics(image[mask], geometry.voxel_volume_ml))
        if not rows:
            raise EmptyMaskError(f"Segmentation '{segmentation_node.GetName()}' has no segments.")
        columns = {"segment": names} | {s: [row[s] for row in rows] for s in STATISTICS}
        with self.context.transaction():
            return arrays.add_table(
                self.context, columns, f"{volume_node.GetName()} statistics", table_node
            )
