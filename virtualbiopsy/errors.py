"""Typed errors whose messages a radiologist or imaging scientist can act on.

Logic never shows a dialog: it raises one of these and the caller (Slicer widget, command line,
web viewer) decides how to show it. Every message names the input and says what is wrong with
it in the user's terms (mm, voxels, b-values), not in library terms.
"""

from __future__ import annotations


class VirtualBiopsyError(Exception):
    """Base class of every error this library raises on purpose."""


class InputError(VirtualBiopsyError, ValueError):
    """An input (file, node, parameter) cannot be used as given."""


class FileFormatError(InputError):
    """A file is missing, unreadable, corrupt or of an unsupported format."""


class ImageDimensionError(InputError):
    """An image has the wrong number of dimensions or components (e.g. 2D where 3D is needed)."""


class GeometryMismatchError(InputError):
    """Two inputs that must share a voxel grid (image and mask, DWI volumes) do not."""


class EmptyMaskError(InputError):
    """A mask or segment contains no voxels."""


class InvalidValuesError(InputError):
    """An image contains values that cannot be used (NaN, infinity, non-positive signal)."""


class DependencyError(VirtualBiopsyError, RuntimeError):
    """A required Python package is missing or could not be installed."""


class UnsafeArchiveError(InputError):
    """An archive holds entries that would be written outside the target folder."""


class Cancelled(VirtualBiopsyError):  # noqa: N818 - a cancel is not an error to the user
    """The user cancelled a long-running step; nothing was added to the scene."""


class VirtualBiopsyWarning(UserWarning):
    """Something the user should know about an input that is still used (the CLI prints it on one line)."""


class DicomWarning(VirtualBiopsyWarning):
    """A DICOM series is read, with a reservation (not MR, times from a fallback tag, volumes without tags)."""
