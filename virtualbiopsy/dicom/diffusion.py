"""The b-value and gradient direction a DICOM instance (or one frame of an enhanced one) carries.

Where each vendor puts them (first found wins; the source is returned so results can say it):

- the standard Diffusion b-value (0018,9087) and Diffusion Gradient Orientation (0018,9089), at
  the top level, in the MR Diffusion Sequence (0018,9117) or its Gradient Direction Sequence
  (0018,9076) - per frame in an enhanced MR object;
- Siemens: (0019,100C) b-value and (0019,100E) direction under the creator 'SIEMENS MR HEADER',
  else the CSA image header's B_value / DiffusionGradientDirection (read with nibabel);
- GE: (0043,1039) under 'GEMS_PARM_01', its first value modulo 10^9 (some software versions add
  10^9); directions (0019,10BB-BD) under 'GEMS_ACQU_01';
- Philips: (2001,1003) under 'Philips Imaging DD 001'; directions (2005,10B0-B2) under
  'Philips MR Imaging DD 005'.
"""

from __future__ import annotations

import numpy as np

_SIEMENS, _GE_PARM, _GE_ACQU = "SIEMENS MR HEADER", "GEMS_PARM_01", "GEMS_ACQU_01"
_PHILIPS_B, _PHILIPS_DIR = "Philips Imaging DD 001", "Philips MR Imaging DD 005"


def _private(ds, group: int, offset: int, creator: str):
    try:
        return ds.get_private_item(group, offset, creator).value
    except KeyError:
        return None


def _number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) or hasattr(value, "__getitem__") and not isinstance(value, (str, bytes)):
        try:
            value = value[0]
        except (IndexError, TypeError):
            return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _unit(vector) -> np.ndarray | None:
    try:
        array = np.asarray([float(v) for v in vector], dtype=float)
    except (TypeError, ValueError):
        return None
    if array.shape != (3,):
        return None
    norm = float(np.linalg.norm(array))
    return array / norm if norm > 1e-6 else None


def _standard(item) -> tuple[float | None, np.ndarray | None]:
    b = _number(item.get("DiffusionBValue")) if "DiffusionBValue" in item else None
    direction = None
    if "DiffusionGradientOrientation" in item:
        direction = _unit(item.DiffusionGradientOrientation)
    elif "DiffusionGradientDirectionSequence" in item and len(item.DiffusionGradientDirectionSequence):
        inner = item.DiffusionGradientDirectionSequence[0]
        if "DiffusionGradientOrientation" in inner:
            direction = _unit(inner.DiffusionGradientOrientation)
    return b, direction


def diffusion_of(ds, frame_group=None) -> tuple[float | None, np.ndarray | None, str]:
    """(b-value s/mm² or None, unit gradient direction or None, where they came from) of one instance;
    ``frame_group`` is an enhanced object's per-frame functional group item for one frame."""
    for item, where in ((frame_group, "per-frame MR Diffusion Sequence (0018,9117)"), (ds, "")):
        if item is None:
            continue
        if "MRDiffusionSequence" in item and len(item.MRDiffusionSequence):
            b, direction = _standard(item.MRDiffusionSequence[0])
            if b is not None:
                return b, direction, where or "MR Diffusion Sequence (0018,9117)"
    b, direction = _standard(ds)
    if b is not None:
        return b, direction, "Diffusion b-value (0018,9087)"
    b = _number(_private(ds, 0x0019, 0x0C, _SIEMENS))
    if b is not None:
        return b, _unit(_private(ds, 0x0019, 0x0E, _SIEMENS) or ()), "Siemens (0019,100C)"
    b = _number(_private(ds, 0x0043, 0x39, _GE_PARM))
    if b is not None:
        vector = [_number(_private(ds, 0x0019, offset, _GE_ACQU)) for offset in (0xBB, 0xBC, 0xBD)]
        direction = _unit(vector) if None not in vector else None
        return float(b % 1_000_000_000), direction, "GE (0043,1039)"
    b = _number(_private(ds, 0x2001, 0x03, _PHILIPS_B))
    if b is not None:
        vector = [_number(_private(ds, 0x2005, offset, _PHILIPS_DIR)) for offset in (0xB0, 0xB1, 0xB2)]
        direction = _unit(vector) if None not in vector else None
        return b, direction, "Philips (2001,1003)"
    if str(ds.get("Manufacturer", "")).upper().startswith("SIEMENS") and (0x0029, 0x1010) in ds:
        try:
            from nibabel.nicom import csareader

            header = csareader.get_csa_header(ds)
            b = _number(csareader.get_b_value(header)) if header else None
            vector = csareader.get_g_vector(header) if header and b else None
        except Exception:  # noqa: BLE001 - a damaged CSA header is not a b-value
            b, vector = None, None
        if b is not None:
            return b, (_unit(vector) if vector is not None else None), "Siemens CSA header (B_value)"
    return None, None, ""
