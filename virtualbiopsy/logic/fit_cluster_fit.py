"""Logic of the FitClusterFit module.

Now: the voxel-wise monoexponential ADC map from DWI volumes and their b-values. Uncertainty,
habitat clustering, signal averaging per habitat, refitting and DCE come with issue #5.
"""

from __future__ import annotations

import numpy as np

from virtualbiopsy.diffusion import check_b_values, fit_adc
from virtualbiopsy.errors import InputError, InvalidValuesError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry, require_finite, require_same_geometry, require_scalar_3d
from virtualbiopsy.mrml.io import sequence_volumes
from virtualbiopsy.progress import as_task


class FitClusterFitLogic:
    def __init__(self, context) -> None:
        self.context = context

    @staticmethod
    def dwi_volumes(dwi, b_values=None) -> tuple[list, list]:
        """DWI volume nodes and b-values from a list of volumes, or from a volume sequence whose
        index values are the b-values (used when ``b_values`` is None)."""
        if hasattr(dwi, "GetNumberOfDataNodes"):
            volumes, index_values = sequence_volumes(dwi)
            return volumes, list(index_values if b_values is None else b_values)
        if b_values is None:
            raise InputError("Enter the b-values (s/mm²), one per DWI volume, e.g. 0,50,400,800.")
        return list(dwi), list(b_values)

    def dwi_signals(self, dwi, b_values=None) -> tuple[np.ndarray, np.ndarray]:
        """Stack DWI volumes into ``signals[n_b, k, j, i]`` after checking b-values and geometry."""
        nodes, b_values = self.dwi_volumes(dwi, b_values)
        if not nodes:
            raise InputError("Select the DWI volumes (one per b-value).")
        b = check_b_values(b_values, len(nodes))
        reference = require_scalar_3d(nodes[0], "DWI volume")
        stack = []
        for node in nodes:
            require_same_geometry(reference, require_scalar_3d(node, "DWI volume"), nodes[0].GetName(), node.GetName())
            values = arrays.array_from_volume(node)
            require_finite(values, node.GetName())
            stack.append(values.astype(np.float32))
        signals = np.stack(stack)
        if not np.any(signals > 0):
            raise InvalidValuesError("Every DWI voxel is zero or negative; these are not magnitude DWI images.")
        return signals, b

    def fit_adc_map(self, dwi_volume_nodes, b_values=None, mask=None, progress=None, name: str = "ADC"):
        """Add a new volume ``ADC`` (mm²/s) fitted voxel-wise from the DWI volumes.

        ``dwi_volume_nodes`` is a list of volumes (then ``b_values`` is required) or a volume
        sequence whose index values are the b-values.

        ``mask`` (optional boolean array on the DWI grid) limits the fit; other voxels are 0.
        """
        task = as_task(progress)
        signals, b = self.dwi_signals(dwi_volume_nodes, b_values)
        adc, _ = fit_adc(signals, b, mask=mask, progress=task.sub(0.0, 0.95))
        reference = self.dwi_volumes(dwi_volume_nodes, b_values)[0][0]
        with self.context.transaction():
            node = arrays.add_volume_from_array(
                self.context, adc, Geometry.from_node(reference), name
            )
            node.SetAttribute("VirtualBiopsy.Units", "mm2/s")
            node.SetAttribute("VirtualBiopsy.BValues", ",".join(f"{v:g}" for v in b))
        task.update(1.0, "ADC map ready")
        return node
