"""MRML without Qt: the scene context, file IO through storage nodes, arrays and geometry.

Works on Slicer's own MRML classes, both inside 3D Slicer and headless on the ``slicer-core``
package, so the logic that uses it is tested on real nodes.
"""

from virtualbiopsy.mrml.context import MRMLContext

__all__ = ["MRMLContext"]
