"""Checks made on input files and label arrays before any reader or analysis sees them (no Slicer, no VTK).

*Truncated voxel data.* ITK's NIfTI reader fills the missing end of a truncated ``.nii`` /
``.nii.gz`` with zeros without a word (radiomics then reports a mean of 0), and Slicer's
segmentation and sequence NRRD readers abort the whole process on a truncated gzip stream. So
:func:`require_complete` counts the voxel data of NIfTI, NRRD (``.nrrd``, ``.nhdr``, ``.seg.nrrd``,
``.seq.nrrd``; raw, gzip and bzip2 encodings) and MetaImage (``.mha``, ``.mhd``; raw or zlib)
files against the size their header gives, decompressing gzip / bzip2 / zlib streams in full
(streamed, about 0.3 s per 100 MB) so that a missing end-of-stream marker is seen too.

*Scene bundles.* :func:`require_bundle_paths_inside` refuses a ``.mrb`` whose scene names data
files outside the bundle (``../../elsewhere/file.nrrd``, an absolute path, a remote URI, or a
detached header whose data file lies outside): Slicer would read those files, and copy them into
any bundle the scene is saved to.

*Label maps.* :func:`require_integer_labels` refuses a mask holding 0.75 or 0.5 (a probability
map), which reading as labels would truncate to an "empty" mask.

This module imports neither Slicer nor VTK, so the radiomics batch workers can use it too. The
headers are parsed here by hand (a few fixed fields) because no dependency of the library
exposes the data offset and encoding: SimpleITK reads only sizes and types, and nibabel / pynrrd
are not dependencies.
"""

from __future__ import annotations

import bz2
import gzip
import math
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from virtualbiopsy.errors import FileFormatError, InvalidValuesError, UnsafeArchiveError

_CHUNK_BYTES = 1 << 22
_HEADER_LIMIT = 1 << 20  # a NRRD / MetaImage header longer than 1 MB is not an image header


@dataclass(frozen=True)
class VoxelLayout:
    """Where a file's voxels are: ``data_file`` from byte ``start``, decoded with ``codec``
    ('raw', 'gzip', 'bzip2', 'zlib'); the first ``header_bytes`` decoded bytes are not voxels.
    ``float_dtype`` (numpy dtype, NIfTI only) asks for NaN / infinite voxels to be counted."""

    data_file: Path
    start: int
    codec: str
    header_bytes: int
    expected_bytes: int
    float_dtype: str | None = None


def require_complete(path: str | Path) -> int:
    """Refuse an image file whose voxel data is shorter than its header says (truncated or corrupt).

    Returns the number of NaN / infinite voxels of a floating-point NIfTI file, which ITK's NIfTI
    reader (Slicer's and SimpleITK's) silently replaces by 0; the caller decides whether they are
    acceptable. Other formats keep NaN when read, and return 0 here. Formats other than NIfTI, NRRD
    and MetaImage, text encodings and multi-file layouts are left to their readers.
    """
    path = Path(path)
    layout = voxel_layout(path)
    if layout is None:
        return 0
    found, complete, non_finite = _decode(layout)
    found -= layout.header_bytes
    if not complete or found < layout.expected_bytes:
        shown = f"'{path.name}'" + (f" (data file '{layout.data_file.name}')" if layout.data_file != path else "")
        damaged = "" if complete else "; the compressed data stops before its end"
        raise FileFormatError(
            f"{shown} is truncated or corrupt (expected {layout.expected_bytes} bytes of voxel data, found "
            f"{max(found, 0)}{damaged}). Copy or export the file again."
        )
    return non_finite


def require_usable_image_file(path: str | Path, what: str = "image", allow_non_finite: bool = False) -> None:
    """:func:`require_complete`, and refuse NaN / infinite voxels hidden by the NIfTI reader (unless allowed).

    For code that reads image files with SimpleITK directly (the radiomics batch workers).
    """
    path = Path(path)
    non_finite = require_complete(path)
    if non_finite and what == "mask":
        raise InvalidValuesError(
            f"'{path.name}' is not an integer label map: {non_finite} voxels are NaN or infinite. Save the mask with "
            "whole-number labels (0 = background, 1, 2, ... = regions)."
        )
    if non_finite and not allow_non_finite:
        raise_non_finite(path.name, non_finite)


def raise_non_finite(name: str, count: int) -> None:
    raise InvalidValuesError(
        f"'{name}' contains {count} voxels that are NaN or infinite (the NIfTI reader would turn them into 0); "
        "fix or mask them before analysis."
    )


def voxel_layout(path: Path) -> VoxelLayout | None:
    """The layout of ``path``'s voxel data, or None when it cannot be known from the header."""
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return _nifti_layout(path, name.endswith(".gz"))
    if name.endswith((".nrrd", ".nhdr")):
        return _nrrd_layout(path)
    if name.endswith((".mha", ".mhd")):
        return _metaimage_layout(path)
    return None


def detached_data_files(path: Path) -> list[Path]:
    """Every separate file a detached header (``.nhdr``, ``.mhd``) names for its voxels, whatever its encoding.

    A ``LIST`` gives each file named after the header; a numbered pattern (``slice%03d.raw 1 40 1``)
    gives the folder the pattern points into. Read from the header's data-file field alone, so a
    header whose layout :func:`voxel_layout` cannot work out (text encoding, skipped lines, an
    unknown type) is still seen pointing elsewhere.
    """
    name = path.name.lower()
    if not path.is_file():
        return []
    if name.endswith((".nrrd", ".nhdr")):
        parsed, separator = _text_header(path, b"NRRD", lambda line: not line.strip()), ":"
    elif name.endswith((".mha", ".mhd")):
        parsed, separator = _text_header(path, b"", _is_metaimage_data_field), "="
    else:
        return []
    if parsed is None:
        return []
    lines, data_start = parsed
    values = [line.split(separator, 1)[1].strip() for line in lines
              if separator in line and not line.startswith("#") and ":=" not in line
              and line.split(separator, 1)[0].strip().lower().replace(" ", "") in ("datafile", "elementdatafile")]
    if not values or values[-1].upper() == "LOCAL":
        return []
    value = values[-1]
    if value.upper().startswith("LIST"):
        if data_start is None:
            return []
        with open(path, "rb") as stream:
            stream.seek(data_start)
            names = stream.read(_HEADER_LIMIT).decode("latin-1").splitlines()
        return [_beside(path, entry.strip()) for entry in names if entry.strip()]
    if "%" in value:
        return [_beside(path, value.split()[0]).parent]
    return [_beside(path, value)]


def _is_metaimage_data_field(line: str) -> bool:
    return line.split("=", 1)[0].strip().lower() == "elementdatafile"


class _NonFiniteCounter:
    """Counts NaN / infinite values in a stream of decoded bytes (header skipped, values split across chunks)."""

    def __init__(self, dtype: str | None, skip: int, length: int):
        self.dtype, self.skip, self.left, self.pending, self.count = (
            np.dtype(dtype) if dtype else None, skip, length, b"", 0)

    def feed(self, block: bytes) -> None:
        if self.dtype is None or self.left <= 0:
            return
        if self.skip:
            cut = min(self.skip, len(block))
            block, self.skip = block[cut:], self.skip - cut
        block = self.pending + block[: self.left]
        usable = len(block) - len(block) % self.dtype.itemsize
        self.pending, self.left = block[usable:], self.left - usable
        values = np.frombuffer(block[:usable], self.dtype)
        self.count += int(values.size - np.count_nonzero(np.isfinite(values)))


def _decode(layout: VoxelLayout) -> tuple[int, bool, int]:
    """(bytes the data stream decodes to, whether every compressed stream ended with its end marker and
    checksum, NaN / infinite voxels when ``float_dtype`` is set)."""
    if not layout.data_file.is_file():
        raise FileFormatError(f"The voxel data file '{layout.data_file}' does not exist.")
    counter = _NonFiniteCounter(layout.float_dtype, layout.header_bytes, layout.expected_bytes)
    if layout.codec == "raw" and counter.dtype is None:
        return max(layout.data_file.stat().st_size - layout.start, 0), True, 0
    new_decoder = {"gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),  # gzip: checks the CRC-32 and length
                   "zlib": zlib.decompressobj, "bzip2": bz2.BZ2Decompressor, "raw": None}[layout.codec]
    decoder, total, finished = new_decoder() if new_decoder else None, 0, False
    with open(layout.data_file, "rb") as raw:
        raw.seek(layout.start)
        try:
            while chunk := raw.read(_CHUNK_BYTES):
                if decoder is None:
                    total += len(chunk)
                    counter.feed(chunk)
                    continue
                while chunk:
                    if finished:  # bytes after an end marker: another gzip member, or padding that is ignored
                        if layout.codec != "gzip" or not chunk.strip(b"\0"):
                            return total, True, counter.count
                        decoder, finished = new_decoder(), False
                    block = decoder.decompress(chunk)
                    total += len(block)
                    counter.feed(block)
                    finished = decoder.eof
                    chunk = decoder.unused_data if finished else b""
        except (OSError, EOFError, zlib.error):
            return total, False, counter.count
    return total, finished or decoder is None, counter.count


def _nifti_layout(path: Path, compressed: bool) -> VoxelLayout | None:
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as stream:
            head = stream.read(540)
    except (EOFError, OSError, zlib.error) as error:
        raise FileFormatError(f"'{path.name}' is truncated or corrupt: its header cannot be read ({error}).") from error
    if len(head) < 348:
        raise FileFormatError(f"'{path.name}' is truncated or corrupt: {len(head)} bytes, shorter than a NIfTI header.")
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348:  # NIfTI-1: dim int16[8] at 40, datatype, bitpix int16 at 70, 72, vox_offset float32 at 108
            dims = struct.unpack(order + "8h", head[40:56])
            datatype, bitpix = struct.unpack(order + "2h", head[70:74])
            offset, single = struct.unpack(order + "f", head[108:112])[0], head[344:347] == b"n+1"
            break
        if size == 540 and len(head) >= 540:  # NIfTI-2: datatype, bitpix int16 at 12, 14, dim int64[8] at 16,
            dims = struct.unpack(order + "8q", head[16:80])
            datatype, bitpix = struct.unpack(order + "2h", head[12:16])
            offset, single = struct.unpack(order + "q", head[168:176])[0], head[4:7] == b"n+2"  # vox_offset at 168
            break
    else:
        return None  # not a NIfTI header: the reader will refuse it
    if not single or not 1 <= dims[0] <= 7 or bitpix <= 0 or bitpix % 8:
        return None  # header/image pairs and unusual types are left to the reader
    sizes = dims[1:dims[0] + 1]
    if any(n <= 0 for n in sizes):
        return None
    float_dtype = {16: "f4", 64: "f8"}.get(datatype)  # NIfTI DT_FLOAT32, DT_FLOAT64
    return VoxelLayout(path, 0, "gzip" if compressed else "raw", int(max(offset, 348)),
                       math.prod(sizes) * bitpix // 8, order + float_dtype if float_dtype else None)


_NRRD_TYPE_BYTES = {"char": 1, "int8": 1, "uint8": 1, "uchar": 1, "short": 2, "int16": 2, "uint16": 2, "ushort": 2,
                    "int": 4, "int32": 4, "uint32": 4, "uint": 4, "long long": 8, "longlong": 8, "int64": 8,
                    "uint64": 8, "ulonglong": 8, "float": 4, "double": 8}
_NRRD_CODECS = {"raw": "raw", "gzip": "gzip", "gz": "gzip", "bzip2": "bzip2", "bz2": "bzip2"}


def _text_header(path: Path, first: bytes, end_of_header) -> tuple[list[str], int | None] | None:
    """(header lines, byte offset where the data starts) of a text header that starts with ``first``.

    The offset is None when the file ends before the end of the header (a truncated file, or a
    detached header, which may end at the end of the file).
    """
    with open(path, "rb") as stream:
        head = stream.read(_HEADER_LIMIT)
    if not head.startswith(first):
        return None
    lines, position = [], 0
    while position < len(head):
        newline = head.find(b"\n", position)
        line = head[position:newline if newline >= 0 else len(head)].decode("latin-1").rstrip("\r")
        if end_of_header(line):
            return lines + [line], newline + 1 if newline >= 0 else None
        lines.append(line)
        if newline < 0:
            break
        position = newline + 1
    return (lines, None) if len(head) < _HEADER_LIMIT else None


def _header_cut(path: Path) -> FileFormatError:
    return FileFormatError(f"'{path.name}' is truncated or corrupt: the file ends inside its header, before any voxel "
                           "data. Copy or export the file again.")


def _nrrd_layout(path: Path) -> VoxelLayout | None:
    parsed = _text_header(path, b"NRRD", lambda line: not line.strip())
    if parsed is None:
        return None
    lines, data_start = parsed
    fields = {}
    for line in lines[1:]:
        if ":" in line and not line.startswith("#") and ":=" not in line:
            key, value = line.split(":", 1)
            fields[key.strip().lower().replace(" ", "")] = value.strip()
    kind = re.sub(r"\s+", " ", fields.get("type", "").lower())
    kind = re.sub(r"^(signed|unsigned) | int$|_t$", "", kind)
    item = _NRRD_TYPE_BYTES.get(kind)
    codec = _NRRD_CODECS.get(fields.get("encoding", "").lower())
    try:
        sizes = [int(v) for v in fields.get("sizes", "").split()]
        skips = int(fields.get("lineskip", "0")) or int(fields.get("byteskip", "0"))
    except ValueError:
        return None
    if item is None or codec is None or not sizes or skips:
        return None  # text encodings, block types and skipped headers are left to the reader
    data_file, start = path, data_start
    detached = fields.get("datafile")
    if detached is not None:
        if detached.upper().startswith("LIST") or "%" in detached or len(detached.split()) > 1:
            return None  # multi-file data
        data_file, start = _beside(path, detached), 0
    elif data_start is None:
        raise _header_cut(path)
    return VoxelLayout(data_file, start, codec, 0, math.prod(sizes) * item)


_META_TYPE_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
                    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4,
                    "MET_DOUBLE": 8}


def _metaimage_layout(path: Path) -> VoxelLayout | None:
    parsed = _text_header(path, b"", _is_metaimage_data_field)
    if parsed is None:
        return None
    lines, data_start = parsed
    fields = {k.strip().lower(): v.strip() for k, v in (line.split("=", 1) for line in lines if "=" in line)}
    if "ndims" not in fields and "objecttype" not in fields:
        return None  # not a MetaImage header
    if data_start is None and "elementdatafile" not in fields:
        raise _header_cut(path)
    try:
        sizes = [int(v) for v in fields.get("dimsize", "").split()]
        channels = int(fields.get("elementnumberofchannels", "1"))
    except ValueError:
        return None
    item = _META_TYPE_BYTES.get(fields.get("elementtype", "").upper())
    source = fields.get("elementdatafile", "")
    if item is None or not sizes or "headersize" in fields or source.upper().startswith("LIST") or "%" in source:
        return None
    codec = "zlib" if fields.get("compresseddata", "false").lower() == "true" else "raw"
    if source.upper() == "LOCAL" and data_start is None:
        raise _header_cut(path)
    data_file, start = (path, data_start) if source.upper() == "LOCAL" else (_beside(path, source), 0)
    return VoxelLayout(data_file, start, codec, 0, math.prod(sizes) * channels * item)


def _beside(header: Path, name: str) -> Path:
    candidate = Path(name)
    return candidate if candidate.is_absolute() else header.parent / candidate


def require_integer_labels(array: np.ndarray, name: str) -> None:
    """Refuse a label map (mask) holding non-integer values (0.75, 0.5, NaN): it is not a label map.

    Reading such a file as labels would truncate 0.75 to 0 and report the mask as empty. Float
    files whose values are all whole numbers (0.0 / 1.0, as some tools save masks) are accepted.
    """
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array) | (array != np.round(array))
    count = int(np.count_nonzero(bad))
    if count:
        values = np.unique(array[bad])
        shown = ", ".join(f"{v:g}" for v in values[:5]) + (f" and {len(values) - 5} more" if len(values) > 5 else "")
        raise InvalidValuesError(
            f"'{name}' is not an integer label map: {count} voxels hold non-integer values ({shown}). Save the mask "
            "with whole-number labels (0 = background, 1, 2, ... = regions); threshold a probability map first."
        )


# -- scene bundles -------------------------------------------------------------------------------


def scene_file_references(scene_file: Path) -> list[tuple[str, str]]:
    """(node, file name) for every file the storage nodes of a ``.mrml`` scene name (fileName, fileListMember*, uri)."""
    try:
        root = ElementTree.parse(scene_file).getroot()  # expat refuses external entities and entity bombs
    except ElementTree.ParseError as error:
        raise FileFormatError(f"The scene file '{scene_file.name}' is not valid MRML XML ({error}).") from error
    owners = {}  # storage node id -> name of the node whose data it holds ("references" = "storage:ID1 ID2;...")
    for element in root.iter():
        for role in element.get("references", "").split(";"):
            if role.startswith("storage:"):
                owners.update({i: element.get("name", "") for i in role[len("storage:"):].split()})
    found = []
    for element in root.iter():
        own_id = element.get("id", element.tag)
        owner = owners.get(own_id)
        node = f"'{owner}' (storage node {own_id})" if owner else f"'{element.get('name', own_id)}'"
        for key, value in element.attrib.items():
            lowered = key.lower()
            if value.strip() and (lowered in ("filename", "uri") or lowered.startswith("filelistmember")):
                found.append((node, value.strip()))
    return found


def require_bundle_paths_inside(scene_file: Path, folder: Path, bundle_name: str) -> list[Path]:
    """Refuse a bundle whose scene names a file outside ``folder`` (its extracted contents).

    Paths are resolved as Slicer resolves them: relative to the scene file's folder. Returns the
    referenced files that exist, for :func:`require_complete`.
    """
    folder = folder.resolve()
    existing = []
    for node, name in scene_file_references(scene_file):
        outside = "://" in name or Path(name).is_absolute() or re.match(r"^[A-Za-z]:", name)
        target = (scene_file.parent / name).resolve()
        if not outside and not target.is_relative_to(folder):
            outside = True
        escaping = [] if outside else [d for d in detached_data_files(target) if not d.resolve().is_relative_to(folder)]
        if escaping:
            name, outside = f"{name} -> {escaping[0]}", True
        if outside:
            raise UnsafeArchiveError(
                f"'{bundle_name}' was not loaded: its node {node} names the file '{name}', outside the bundle. "
                "A scene bundle may only use the files it contains; do not use this file."
            )
        if target.is_file():
            existing.append(target)
    return existing
