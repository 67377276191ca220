"""Where a segmentation model comes from: a results folder, a file inside one, or a ``.zip`` of one.

Shared by the command line and the module widget so both accept the same paths and folds.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
from pathlib import Path

from virtualbiopsy.archives import DEFAULT_MAX_TOTAL_BYTES
from virtualbiopsy.errors import DependencyError, FileFormatError, InputError, VirtualBiopsyError
from virtualbiopsy.segmentation.demo_model import DEMO_MODEL_NOTICE, demo_model_path
from virtualbiopsy.segmentation.nnunet_model import model_folders, open_model_archive, pick_model_folder


def parse_folds(text: str | None) -> tuple | None:
    """``"0, 1"`` -> ``(0, 1)``; ``"all"`` stays a name; empty -> None (every fold present).

    >>> parse_folds("0, 1"), parse_folds(""), parse_folds("all")
    ((0, 1), None, ('all',))
    """
    parts = [p.strip() for p in (text or "").split(",") if p.strip()]
    return tuple(int(p) if p.isdigit() else p for p in parts) or None


def is_demo_model(folder: str | Path) -> bool:
    """Whether ``folder`` is the bundled DEMO model (so results must carry its notice)."""
    try:
        return Path(folder).resolve() == demo_model_path().resolve()
    except FileFormatError:
        return False


def default_model_path() -> str:
    """The bundled DEMO model's folder as text, or "" when it is not installed."""
    try:
        return str(demo_model_path().resolve())
    except FileFormatError:
        return ""


def describe_model(model) -> str:
    """The model's description, with the DEMO notice when it is the bundled demo model."""
    return model.describe() + ("\n" + DEMO_MODEL_NOTICE if is_demo_model(model.path) else "")


class ModelArchives:
    """Resolves what a user gave as the model to its folder, extracting each ``.zip`` only once.

    A zip is extracted safely (entries escaping the target, more than ``max_total_bytes`` unpacked
    (default 4 GiB) and zip-bomb compression ratios are refused before anything is written, the
    SHA-256 checked when given) into a temporary folder removed when the process ends; it is
    extracted again when the file changes or another checksum is given.
    """

    def __init__(self, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> None:
        if not max_total_bytes > 0:
            raise InputError(f"The limit on a model zip's unpacked size must be positive (got {max_total_bytes}).")
        self.max_total_bytes = int(max_total_bytes)
        self._extracted: dict[tuple, Path] = {}

    def folder(self, path: str | Path, sha256: str | None = None, configuration: str | None = None) -> Path:
        """The model folder of ``path``: a model folder, its dataset.json / plans.json, a .zip, or a folder
        holding several models (nnU-Net's ``DatasetNNN_Name`` results folder), of which ``configuration``
        picks one (needed when there are several, unless they are one cascade: then its last stage)."""
        text = str(path).strip()
        configuration = (configuration or "").strip() or None
        if not text:
            raise InputError("Choose the nnU-Net model: its results folder (dataset.json, plans.json, fold_N/) "
                             "or a .zip of one.")
        path = Path(text)
        if path.is_file() and path.name in ("dataset.json", "plans.json"):
            return path.parent
        if path.suffix.lower() != ".zip":
            if path.is_dir() and not (path / "plans.json").is_file():
                candidates = [c for c in model_folders(path) if len(c.relative_to(path).parts) <= 2]
                if candidates:
                    return pick_model_folder(candidates, configuration, f"'{path}'", path)
            return path
        if not path.is_file():
            raise FileFormatError(f"No model archive at '{path}'.")
        key = (str(path.resolve()), path.stat().st_mtime_ns, sha256 or None, configuration)
        if key not in self._extracted:
            target = tempfile.mkdtemp(prefix="virtualbiopsy-model-")
            atexit.register(shutil.rmtree, target, ignore_errors=True)
            try:
                self._extracted[key] = open_model_archive(path, target, sha256 or None, self.max_total_bytes,
                                                          configuration)
            except BaseException:
                shutil.rmtree(target, ignore_errors=True)
                raise
        return self._extracted[key]

    def describe(self, path: str | Path, configuration: str | None = None,
                 checkpoint: str | None = None) -> tuple[object | None, str, bool]:
        """``(model or None, message, is_problem)`` for what the user typed as the model, for a
        status line updated while they type: its description, or what is wrong with it."""
        from virtualbiopsy.segmentation.nnunet_model import CHECKPOINT, inspect_model

        text = str(path).strip()
        if text.lower().endswith(".zip") and Path(text).is_file():
            return None, f"Model archive '{Path(text).name}': checked and extracted when the model is run.", False
        try:
            model = inspect_model(self.folder(text, configuration=configuration), None,
                                  (checkpoint or "").strip() or CHECKPOINT, (configuration or "").strip() or None)
        except DependencyError:
            return None, "The model is described once PyTorch is installed.", False
        except Exception as error:  # any failure is a message here, not a crash of the panel
            if not isinstance(error, VirtualBiopsyError):
                logging.getLogger(__name__).exception("Inspecting the model failed")
            return None, str(error), True
        return model, describe_model(model), False
