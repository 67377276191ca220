"""Fitted reductions and ComBat models as JSON (plain numbers and names; no pickle, nothing executable)."""

from __future__ import annotations

import json
from pathlib import Path

from virtualbiopsy.errors import FileFormatError


def model_from_dict(data: dict):
    """A :class:`FeatureReduction` or :class:`ComBatModel` from its ``to_dict()`` form (by its "kind")."""
    from virtualbiopsy.signature.combat import MODEL_KIND as COMBAT_KIND
    from virtualbiopsy.signature.combat import ComBatModel
    from virtualbiopsy.signature.reduction import MODEL_KIND as REDUCTION_KIND
    from virtualbiopsy.signature.reduction import FeatureReduction

    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == REDUCTION_KIND:
        return FeatureReduction.from_dict(data)
    if kind == COMBAT_KIND:
        return ComBatModel.from_dict(data)
    raise FileFormatError(f"Not a saved feature reduction or ComBat model (kind: {kind!r}).")


def model_to_json(model) -> str:
    return json.dumps(model.to_dict(), allow_nan=True)


def model_from_json(text: str):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise FileFormatError(f"The saved model is not valid JSON ({error}).") from error
    return model_from_dict(data)


def save_model(model, path: str | Path) -> Path:
    """Write a fitted :class:`FeatureReduction` or :class:`ComBatModel` to a JSON file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model_to_json(model))
    return path


def load_model(path: str | Path):
    """Read a model written by :func:`save_model` (the file says which kind it is)."""
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"No saved model at '{path}'.")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise FileFormatError(f"Could not read the saved model '{path}' ({error}).") from error
    try:
        return model_from_json(text)
    except FileFormatError as error:
        raise FileFormatError(f"'{path.name}': {error}") from None
