"""Where the bundled DEMO nnU-Net model lives (trained on the synthetic phantom; not clinical).

The model ships in ``Resources/Models/NeuroblastomaDemo`` beside the ``virtualbiopsy`` package,
both in the source tree and in Slicer's scripted-modules folder (CMake installs it there).
``VIRTUALBIOPSY_DEMO_MODEL`` overrides the location. ``scripts/train_demo_model.py`` rebuilds it.
"""

from __future__ import annotations

import os
from pathlib import Path

from virtualbiopsy.errors import FileFormatError

DEMO_MODEL_NAME = "NeuroblastomaDemo"
DEMO_MODEL_NOTICE = ("DEMO model trained only on synthetic phantom studies: it shows how the module works and "
                     "must not be used on patient images.")


def demo_model_path() -> Path:
    """The bundled demo model folder; a clear error if it is not installed."""
    override = os.environ.get("VIRTUALBIOPSY_DEMO_MODEL")
    candidates = [Path(override)] if override else []
    candidates.append(Path(__file__).resolve().parents[2] / "Resources" / "Models" / DEMO_MODEL_NAME)
    for candidate in candidates:
        if (candidate / "dataset.json").is_file():
            return candidate
    raise FileFormatError(
        "The bundled demo segmentation model was not found (looked in: "
        + ", ".join(str(c) for c in candidates)
        + "). Reinstall the extension, set VIRTUALBIOPSY_DEMO_MODEL, or run scripts/train_demo_model.py."
    )
