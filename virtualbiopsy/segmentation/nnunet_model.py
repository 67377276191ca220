"""Trained nnU-Net v2 model folders: validation, safe loading, device choice.

A model folder (as nnU-Net writes it under ``nnUNet_results``) holds ``dataset.json``,
``plans.json`` and ``fold_N/checkpoint_final.pth``. :func:`inspect_model` checks all of it
before anything runs and says what is wrong in words a user can act on.

Checkpoints are Python pickles, so a tampered file could run code when loaded. They are loaded
with ``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers, with an
allow-list of the numpy types nnU-Net stores (scalars, dtypes). nnU-Net's own loader uses
``weights_only=False``; this module never does. Residual risk: the network *architecture* is
built from ``plans.json`` by importing the class it names (``pydoc.locate``), so a crafted plans
file can name any importable class; only use model folders from sources you trust, and give a
SHA256 for downloaded zips (:func:`open_model_archive`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from virtualbiopsy.archives import safe_extract
from virtualbiopsy.errors import DependencyError, FileFormatError, InputError

CHECKPOINT = "checkpoint_final.pth"


@dataclass
class ModelFolder:
    """What a validated nnU-Net model folder contains."""

    path: Path
    dataset: dict
    plans: dict
    configuration: str
    folds: list
    checkpoints: dict = field(default_factory=dict)

    @property
    def channel_names(self) -> list[str]:
        names = self.dataset.get("channel_names") or self.dataset.get("modality") or {}
        return [names[key] for key in sorted(names, key=int)]

    @property
    def labels(self) -> dict[str, int]:
        return {name: int(value) if not isinstance(value, list) else value
                for name, value in self.dataset.get("labels", {}).items()}

    def describe(self) -> str:
        return (f"nnU-Net model '{self.plans.get('dataset_name', self.path.name)}' ({self.configuration}, folds "
                f"{', '.join(map(str, self.folds))}; inputs: {', '.join(self.channel_names)}; labels: "
                f"{', '.join(k for k in self.labels if k != 'background')})")


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileFormatError(f"The model folder '{path.parent}' has no {path.name} ({what}); is it an nnU-Net "
                              "v2 results folder (the one holding dataset.json, plans.json and fold_N/)?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FileFormatError(f"{path.name} in '{path.parent}' is not valid JSON ({error}).") from error


def inspect_model(path: str | Path, folds=None, checkpoint_name: str = CHECKPOINT) -> ModelFolder:
    """Validate an nnU-Net v2 model folder; ``folds`` None means every fold present.

    Checks dataset.json and plans.json, the configuration the checkpoints were trained with,
    and that every requested fold has its checkpoint.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileFormatError(f"No model folder at '{path}'.")
    dataset = _read_json(path / "dataset.json", "input channels and labels")
    plans = _read_json(path / "plans.json", "network and preprocessing plan")
    for key in ("channel_names", "labels"):
        if key not in dataset and not (key == "channel_names" and "modality" in dataset):
            raise FileFormatError(f"dataset.json in '{path}' has no '{key}'.")
    present = sorted((p.name.removeprefix("fold_") for p in path.glob("fold_*") if (p / checkpoint_name).is_file()),
                     key=lambda f: (f == "all", int(f) if f.isdigit() else 0))
    wanted = [str(f) for f in folds] if folds is not None else present
    if not wanted:
        raise FileFormatError(f"The model folder '{path}' has no fold_N/{checkpoint_name}: the model is not trained "
                              "or the folder is incomplete.")
    missing = [f for f in wanted if f not in present]
    if missing:
        raise InputError(f"Fold(s) {', '.join(missing)} of the model in '{path}' are missing (no "
                         f"fold_N/{checkpoint_name}); available: {', '.join(present) or 'none'}.")
    checkpoints = {f: path / f"fold_{f}" / checkpoint_name for f in wanted}
    first = load_checkpoint(checkpoints[wanted[0]])
    configuration = first.get("init_args", {}).get("configuration")
    if configuration not in plans.get("configurations", {}):
        raise FileFormatError(f"The checkpoint of fold {wanted[0]} was trained with configuration "
                              f"'{configuration}', which plans.json in '{path}' does not define.")
    return ModelFolder(path, dataset, plans, configuration, [int(f) if f.isdigit() else f for f in wanted],
                       checkpoints)


def check_channels(model: ModelFolder, n_inputs: int, input_names: list[str] | None = None) -> None:
    """Refuse a number of input images that differs from the model's channels, naming them."""
    expected = model.channel_names
    if n_inputs != len(expected):
        given = f" ({', '.join(input_names)})" if input_names else ""
        raise InputError(
            f"The model expects {len(expected)} input image(s), in this order: {', '.join(expected)}; "
            f"{n_inputs} were given{given}."
        )


def _numpy_allow_list() -> list:
    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    allowed = [np.dtype, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    allowed += [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return allowed


def load_checkpoint(path: str | Path) -> dict:
    """Load an nnU-Net checkpoint with ``weights_only=True`` (tensors, containers, numpy scalars only)."""
    try:
        import torch
    except ImportError as error:
        raise DependencyError("PyTorch is needed to load nnU-Net models; install it (in Slicer: the PyTorch "
                              "extension).") from error
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_allow_list()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise FileFormatError(f"No checkpoint at '{path}'.") from error
    except Exception as error:  # corrupt zip, truncated pickle, disallowed global
        unsafe = "weights only" in str(error).lower() or "unsupported global" in str(error).lower()
        reason = ("it contains Python objects that are not plain weights, so it is not loaded (a checkpoint "
                  "could run code when unpickled)") if unsafe else "the file is corrupt or not a PyTorch checkpoint"
        raise FileFormatError(f"Could not load '{path.parent.name}/{path.name}': {reason}. Detail: "
                              f"{str(error).splitlines()[0][:200]}") from error
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise FileFormatError(f"'{path}' is not an nnU-Net checkpoint (no 'network_weights').")
    return checkpoint


def open_model_archive(zip_path: str | Path, target: str | Path, sha256: str | None = None) -> Path:
    """Extract a model zip safely (refusing entries outside ``target``) and return its model folder."""
    folder = safe_extract(zip_path, target, expected_sha256=sha256)
    candidates = sorted({p.parent for p in folder.rglob("plans.json") if (p.parent / "dataset.json").is_file()})
    if not candidates:
        raise FileFormatError(f"'{Path(zip_path).name}' holds no nnU-Net model folder (dataset.json + plans.json).")
    if len(candidates) > 1:
        raise InputError(f"'{Path(zip_path).name}' holds {len(candidates)} model folders; pick one: "
                         + ", ".join(str(c.relative_to(folder)) for c in candidates))
    return candidates[0]


def choose_device(preference: str = "auto"):
    """``"auto"``: CUDA, else Apple MPS, else CPU; or exactly ``"cuda"``, ``"mps"``, ``"cpu"``."""
    import torch

    preference = preference.lower()
    if preference not in ("auto", "cuda", "mps", "cpu"):
        raise InputError(f"Unknown device '{preference}'; use auto, cuda, mps or cpu.")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if preference == "cuda" and not cuda:
        raise InputError("CUDA was requested but no CUDA GPU is usable by this PyTorch; choose auto or cpu.")
    if preference == "mps" and not mps:
        raise InputError("Apple MPS was requested but is not available; choose auto or cpu.")
    if preference == "auto":
        preference = "cuda" if cuda else "mps" if mps else "cpu"
    return torch.device(preference)
