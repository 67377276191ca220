"""Logic of the NeuroblastomaSeg module.

Now: per-segment volumes of a segmentation (voxels, mL) as a table. The nnU-Net inference,
uncertainty overlay and correction loop come with issue #3 and will live beside this.
"""

from __future__ import annotations

from virtualbiopsy.mrml import arrays


class NeuroblastomaSegLogic:
    def __init__(self, context) -> None:
        self.context = context

    def segment_volumes_table(self, segmentation_node, table_node=None):
        """A table of every segment's voxel count and volume (mL) in ``segmentation_node``.

        Fills ``table_node`` if given, else adds a new table named after the segmentation.
        """
        rows = arrays.segment_volumes(segmentation_node)
        columns = {
            "segment": [r["segment"] for r in rows],
            "voxels": [r["voxels"] for r in rows],
            "volume_ml": [r["volume_ml"] for r in rows],
        }
        with self.context.transaction():
            return arrays.add_table(self.context, columns, f"{segmentation_node.GetName()} volumes", table_node)
