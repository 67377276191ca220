"""Trained nnU-Net v2 model folders: validation, safe loading, device choice.

A model folder (as nnU-Net writes it under ``nnUNet_results``) holds ``dataset.json``,
``plans.json`` and ``fold_N/checkpoint_final.pth`` (or another checkpoint the user names, e.g.
``checkpoint_best.pth``). :func:`inspect_model` checks all of it before anything runs and says what
is wrong in words a user can act on. Both kinds of nnU-Net output are understood: label models
(softmax over the labels) and region-based models (dataset.json labels given as lists, one sigmoid
output per region, ``regions_class_order``); see :attr:`ModelFolder.segments`. A cascade stage
(``3d_cascade_fullres``) is inspected with its first stage (``previous_stage`` in plans.json), found
beside it as nnU-Net stores it: ``<Trainer>__<Plans>__<previous stage>`` in the same dataset folder.

Model files are untrusted input. Checkpoints are Python pickles, so a tampered file could run code
when loaded: they are loaded with ``torch.load(weights_only=True)``, which only rebuilds tensors and
plain containers, with an allow-list of the numpy types nnU-Net stores (scalars, dtypes); nnU-Net's
own loader uses ``weights_only=False``, this module never does. A damaged file is told apart from one
carrying code. ``plans.json`` and the checkpoint's trainer name would choose code in nnU-Net (the
network class and its building blocks are imported by name): every such name is checked against
the allow-lists of :mod:`~virtualbiopsy.segmentation.network_allowlist` before anything is imported,
and the network is built from the allow-listed classes. Zips are extracted with size, ratio and
path limits (:func:`open_model_archive`).
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from virtualbiopsy.archives import DEFAULT_MAX_TOTAL_BYTES, safe_extract
from virtualbiopsy.errors import DependencyError, FileFormatError, InputError
from virtualbiopsy.segmentation.network_allowlist import check_model_files

CHECKPOINT = "checkpoint_final.pth"
_CHECKPOINT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.pth")
_CONFIGURATION_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class ModelSegment:
    """One segment a model predicts: its dataset.json name, the values of nnU-Net's label map it covers
    (one label; or, for a region, every label the region is made of) and the output channel holding
    its probability (softmax channel = label index; sigmoid channel = region index)."""

    name: str
    values: tuple
    channel: int


@dataclass
class ModelFolder:
    """What a validated nnU-Net model folder contains."""

    path: Path
    dataset: dict
    plans: dict
    configuration: str
    folds: list
    checkpoints: dict = field(default_factory=dict)
    checkpoint_name: str = CHECKPOINT
    previous_stage: ModelFolder | None = None  # a cascade's first stage, run before it

    @property
    def channel_names(self) -> list[str]:
        names = self.dataset.get("channel_names") or self.dataset.get("modality") or {}
        return [names[key] for key in sorted(names, key=int)]

    @property
    def labels(self) -> dict[str, int]:
        return {name: int(value) if not isinstance(value, list) else value
                for name, value in self.dataset.get("labels", {}).items()}

    @property
    def is_region_based(self) -> bool:
        """nnU-Net's own rule (LabelManager): region-based when any label is a list of more than one value."""
        return is_region_based(self.dataset)

    @property
    def segments(self) -> list[ModelSegment]:
        """The model's foreground segments, the tumour first (a name with tumour / tumor / neuroblastoma,
        else the first label or region), then in dataset.json order."""
        return model_segments(self.dataset)

    def describe(self) -> str:
        kind = "regions" if self.is_region_based else "labels"
        stages = f" after {self.previous_stage.configuration}" if self.previous_stage is not None else ""
        checkpoint = "" if self.checkpoint_name == CHECKPOINT else f", {self.checkpoint_name}"
        return (f"nnU-Net model '{self.plans.get('dataset_name', self.path.name)}' ({self.configuration}{stages}, "
                f"folds {', '.join(map(str, self.folds))}{checkpoint}; inputs: {', '.join(self.channel_names)}; "
                f"{kind}: {', '.join(s.name for s in self.segments)})")


def is_region_based(dataset: dict) -> bool:
    return any(isinstance(v, (list, tuple)) and len(v) > 1 for v in dataset.get("labels", {}).values())


def _values(value) -> tuple:
    """A label's values: ``1`` -> (1,), ``[1, 2]`` -> (1, 2)."""
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),)


def _is_background(name: str, value) -> bool:
    return name == "background" or all(v == 0 for v in _values(value))


def model_segments(dataset: dict) -> list[ModelSegment]:
    """Segments of a dataset.json already checked by :func:`_check_dataset` (see :attr:`ModelFolder.segments`)."""
    labels = {n: v for n, v in dataset.get("labels", {}).items() if n != "ignore"}
    if is_region_based(dataset):  # channels: the regions in dataset.json order (nnU-Net's LabelManager)
        regions = [(n, v) for n, v in labels.items() if not _is_background(n, v)]
        segments = [ModelSegment(n, _values(v), index) for index, (n, v) in enumerate(regions)]
    else:  # softmax channels: the labels in value order, background (0) first
        values = sorted(_values(v)[0] for v in labels.values())
        segments = [ModelSegment(n, _values(v)[:1], values.index(_values(v)[0])) for n, v in labels.items()
                    if not _is_background(n, v)]
        segments.sort(key=lambda s: s.values)

    def tumour_rank(segment: ModelSegment) -> bool:
        return not any(word in segment.name.lower() for word in ("tumour", "tumor", "neuroblastoma"))

    return sorted(segments, key=tumour_rank)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileFormatError(f"The model folder '{path.parent}' has no {path.name} ({what}); is it an nnU-Net "
                              "v2 results folder (the one holding dataset.json, plans.json and fold_N/)?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise FileFormatError(f"{path.name} in '{path.parent}' is not valid JSON ({error}).") from error


def inspect_model(path: str | Path, folds=None, checkpoint_name: str = CHECKPOINT,
                  configuration: str | None = None, _stage: int = 0) -> ModelFolder:
    """Validate an nnU-Net v2 model folder; ``folds`` None means every fold present.

    Checks dataset.json and plans.json, the configuration the checkpoints were trained with (and that
    it is ``configuration`` when one is asked for), that every requested fold has its checkpoint
    (``checkpoint_name``, a file name such as ``checkpoint_best.pth``), and, for a cascade stage, its
    first stage beside it.
    """
    path = Path(path)
    checkpoint_name = check_checkpoint_name(checkpoint_name)
    if not path.is_dir():
        raise FileFormatError(f"No model folder at '{path}'.")
    dataset = _read_json(path / "dataset.json", "input channels and labels")
    plans = _read_json(path / "plans.json", "network and preprocessing plan")
    _check_dataset(dataset, path)
    present = sorted((p.name.removeprefix("fold_") for p in path.glob("fold_*") if (p / checkpoint_name).is_file()),
                     key=lambda f: (f == "all", int(f) if f.isdigit() else 0))
    wanted = [str(f) for f in folds] if folds is not None else present
    if not wanted:
        others = sorted({p.name for p in path.glob("fold_*/*.pth")})
        hint = (f" It has {', '.join(others)}: choose one as the checkpoint (--checkpoint {others[0]})." if others
                else " The model is not trained or the folder is incomplete.")
        raise FileFormatError(f"The model folder '{path}' has no fold_N/{checkpoint_name}.{hint}")
    missing = [f for f in wanted if f not in present]
    if missing:
        raise InputError(f"Fold(s) {', '.join(missing)} of the model in '{path}' are missing (no "
                         f"fold_N/{checkpoint_name}); available: {', '.join(present) or 'none'}.")
    checkpoints = {f: path / f"fold_{f}" / checkpoint_name for f in wanted}
    first = load_checkpoint(checkpoints[wanted[0]])
    init_args = first.get("init_args") if isinstance(first.get("init_args"), dict) else {}
    trained = init_args.get("configuration")
    configurations = plans.get("configurations") if isinstance(plans, dict) else None
    if not (isinstance(trained, str) and isinstance(configurations, dict) and trained in configurations):
        raise FileFormatError(f"The checkpoint of fold {wanted[0]} was trained with configuration "
                              f"{trained!r:.60}, which plans.json in '{path}' does not define.")
    if configuration is not None and configuration != trained:
        raise InputError(f"The model in '{path}' is the {trained} configuration, not {configuration}.")
    n_channels = len(_channel_keys(dataset))
    config = check_model_files(plans, dataset, trained, first, f"plans.json in '{path}'", n_channels)
    model = ModelFolder(path, dataset, plans, trained, [int(f) if f.isdigit() else f for f in wanted], checkpoints,
                        checkpoint_name)
    previous = config.get("previous_stage")
    if previous is not None:
        model.previous_stage = _inspect_previous_stage(model, previous, folds, _stage)
    return model


def check_checkpoint_name(name) -> str:
    """A checkpoint is named by its file name only (``checkpoint_final.pth``, ``checkpoint_best.pth``...)."""
    if not (isinstance(name, str) and _CHECKPOINT_NAME.fullmatch(name.strip())):
        raise InputError(f"The checkpoint must be a file name ending in .pth, e.g. checkpoint_best.pth (got "
                         f"{str(name)[:60]!r}); it is looked for in each fold_N/ folder.")
    return name.strip()


def _inspect_previous_stage(model: ModelFolder, previous, folds, stage: int) -> ModelFolder:
    """The first stage of a cascade: ``<Trainer>__<Plans>__<previous>`` beside ``model``'s folder, validated,
    with the same inputs and labels. Every fold of it is used unless the cascade's folds exist there."""
    where = f"plans.json in '{model.path}'"
    if not (isinstance(previous, str) and _CONFIGURATION_NAME.fullmatch(previous)) or stage >= 3:
        raise FileFormatError(f"{where}: configuration '{model.configuration}' names previous stage "
                              f"{str(previous)[:60]!r}, which is not a configuration name (or the chain of "
                              "stages is longer than 3).")
    trainer = model.path.name.split("__")[0]
    plans_name = model.plans.get("plans_name", "nnUNetPlans")
    expected = f"{trainer}__{plans_name}__{previous}"
    candidates = [p for p in model.path.parent.glob(f"*__{previous}")
                  if p.is_dir() and p != model.path and (p / "plans.json").is_file()]
    chosen = [p for p in candidates if p.name == expected] or candidates
    if len(chosen) != 1:
        found = f"; found {', '.join(p.name for p in chosen)}: keep only the one it was trained after" if chosen else ""
        raise InputError(f"The model in '{model.path}' is a cascade stage ({model.configuration}): it needs its first "
                         f"stage, {previous}, beside it as '{expected}' (nnU-Net's results folder, or the same zip)"
                         f"{found}.")
    first = chosen[0]
    present = {p.name.removeprefix("fold_") for p in first.glob("fold_*")}
    same_folds = folds if folds is not None and {str(f) for f in folds} <= present else None
    name = model.checkpoint_name if any(first.glob(f"fold_*/{model.checkpoint_name}")) else CHECKPOINT
    stage_model = inspect_model(first, same_folds, name, previous, stage + 1)
    if stage_model.channel_names != model.channel_names or stage_model.dataset.get("labels") != model.dataset.get(
            "labels"):
        raise InputError(f"The first stage '{first}' has other inputs or labels than the cascade stage "
                         f"'{model.path}' in its dataset.json; they must come from one training.")
    return stage_model


def model_folders(root: Path) -> list[Path]:
    """The nnU-Net model folders (dataset.json + plans.json) at or below ``root``."""
    return sorted({p.parent for p in Path(root).rglob("plans.json") if (p.parent / "dataset.json").is_file()})


def folder_configuration(folder: Path) -> str:
    """The configuration nnU-Net's folder name ``<Trainer>__<Plans>__<configuration>`` states ("" if none)."""
    parts = Path(folder).name.split("__")
    return parts[-1] if len(parts) >= 3 else ""


def pick_model_folder(candidates: list[Path], configuration: str | None, where: str, root: Path) -> Path:
    """One model folder out of several (a zip or dataset folder holding more than one): the one of
    ``configuration``, or, when none is asked for, the only one, or the last stage of the one cascade
    they form (its first stage is found beside it)."""
    names = {c: folder_configuration(c) for c in candidates}
    listing = ", ".join(f"{c.relative_to(root)}" for c in candidates)
    if configuration:
        matching = [c for c in candidates if names[c] == configuration]
        if len(matching) == 1:
            return matching[0]
        if not matching:
            raise InputError(f"{where} holds no model of configuration '{configuration}'; it holds: {listing}.")
        raise InputError(f"{where} holds {len(matching)} models of configuration '{configuration}' ({listing}); "
                         "give the model's own folder.")
    if len(candidates) == 1:
        return candidates[0]
    cascades = [c for c in candidates if "cascade" in names[c]]
    if len(cascades) == 1 and len({c.parent for c in candidates}) == 1 and len(candidates) == 2:
        return cascades[0]
    raise InputError(f"{where} holds {len(candidates)} model folders ({listing}); choose one with --configuration "
                     f"({', '.join(sorted({n for n in names.values() if n})) or 'a configuration name'}).")


def _channel_keys(dataset: dict) -> list:
    names = dataset.get("channel_names", dataset.get("modality"))
    return sorted(names, key=int) if isinstance(names, dict) else []


def _check_dataset(dataset, path: Path) -> None:
    """dataset.json must describe channels (``{"0": "T2", ...}``) and integer labels, as nnU-Net writes it."""
    where = f"dataset.json in '{path}'"
    if not isinstance(dataset, dict):
        raise FileFormatError(f"{where} is not a JSON object; is it an nnU-Net v2 dataset.json?")
    for key in ("channel_names", "labels"):
        if key not in dataset and not (key == "channel_names" and "modality" in dataset):
            raise FileFormatError(f"{where} has no '{key}'.")
    names = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(names, dict) or not names or not all(isinstance(k, str) and k.isdigit() and isinstance(v, str)
                                                           for k, v in names.items()):
        raise FileFormatError(f"{where}: channel_names must map channel numbers to names, e.g. {{\"0\": \"T2\"}} "
                              f"(found {str(names)[:60]}).")
    labels = dataset["labels"]

    def label_value(value) -> bool:
        whole = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        return whole or (isinstance(value, list) and bool(value) and all(label_value(v) for v in value))

    if not isinstance(labels, dict) or not labels or not all(label_value(v) for v in labels.values()):
        raise FileFormatError(f"{where}: labels must map names to label values >= 0 (or lists of them for regions), "
                              f"e.g. {{\"background\": 0, \"tumour\": 1}} (found {str(labels)[:60]}).")
    if labels.get("background") != 0:
        raise FileFormatError(f"{where}: labels must have \"background\": 0, as nnU-Net requires (found "
                              f"{str(labels.get('background'))[:30]}).")
    foreground = {n: v for n, v in labels.items() if n != "ignore" and not _is_background(n, v)}
    if not foreground:
        raise FileFormatError(f"{where} has no foreground label (only background): the model segments nothing.")
    if is_region_based(dataset):
        order = dataset.get("regions_class_order")
        if not (isinstance(order, list) and len(order) == len(foreground)
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in order)):
            raise FileFormatError(f"{where} is region-based (labels given as lists) but its regions_class_order "
                                  f"({str(order)[:40]}) is not one label value > 0 per region ({len(foreground)}: "
                                  f"{', '.join(foreground)}).")
    else:
        values = sorted(_values(v)[0] for n, v in labels.items() if n != "ignore")
        if values != list(range(len(values))):
            raise FileFormatError(f"{where}: label values must be 0, 1, ... without gaps or repeats, as nnU-Net "
                                  f"requires (found {values}).")


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


class _CorruptError(Exception):
    """The checkpoint's bytes are not a readable PyTorch file (the reason in words)."""


_PLAIN_MODULES = ("torch", "collections", "numpy", "_codecs")  # what weights-only checkpoints name


def _checkpoint_globals(path: Path) -> list[str]:
    """The ``module.name`` globals the checkpoint's pickle would import, read with :mod:`pickletools` (which only
    parses opcodes: nothing is imported or run). Raises :class:`_CorruptError` when the bytes are not a pickle.

    A PyTorch file is a zip holding ``<name>/data.pkl`` (the structure) and the tensor bytes; the legacy format
    is a series of pickles. Written by hand because torch reports both a damaged file and a forbidden global as
    a failed weights-only load, and the user must be told which it is.
    """
    import pickletools

    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
                if not names:
                    raise _CorruptError("a zip archive without the data.pkl of a PyTorch file")
                streams = [io.BytesIO(archive.read(names[0]))]
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise _CorruptError(f"a damaged zip archive ({error})") from error
    else:
        with open(path, "rb") as stream:
            head = stream.read(2)  # the whole (legacy, hundreds of MB) file is not read for its first bytes
        if not head:
            raise _CorruptError("an empty file")
        if head == b"PK":
            raise _CorruptError("a truncated or damaged zip archive (no central directory)")
        streams = [open(path, "rb")]  # noqa: SIM115 - closed below
    found, strings = [], []
    try:
        for index in range(1 if is_zip else 4):  # legacy: magic, protocol, info, object
            try:
                for opcode, arg, _ in pickletools.genops(streams[0]):
                    if isinstance(arg, str) and ("UNICODE" in opcode.name or "STRING" in opcode.name):
                        strings.append(str(arg))
                    elif opcode.name == "GLOBAL":
                        found.append(str(arg).replace(" ", "."))
                    elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.append(".".join(strings[-2:]))
            except ValueError as error:
                if index == 0:
                    raise _CorruptError(f"not a pickle ({error})") from error
                break
    finally:
        streams[0].close()
    return found


def load_checkpoint(path: str | Path) -> dict:
    """Load an nnU-Net checkpoint with ``weights_only=True`` (tensors, containers, numpy scalars only).

    Refuses, in different words, a file that is damaged or not a PyTorch file ("corrupt or unreadable
    checkpoint") and one whose pickle names Python objects other than weights ("not loaded": unpickling it
    could run code).
    """
    try:
        import torch
    except ImportError as error:
        raise DependencyError("PyTorch is needed to load nnU-Net models; install it (in Slicer: the PyTorch "
                              "extension).") from error
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"No checkpoint at '{path}'.")
    try:
        names = _checkpoint_globals(path)
    except _CorruptError as error:
        raise FileFormatError(f"'{path}' is a corrupt or unreadable checkpoint: {error}; "
                              "copy or export it again.") from None
    try:
        with torch.serialization.safe_globals(_numpy_allow_list()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "pickle protocol 4": the refusal below says what matters
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types; classified below
        text = str(error)
        named = re.findall(r"GLOBAL ([\w.]+)", text)
        foreign = [n for n in names if not n.startswith(_PLAIN_MODULES)]
        if named or foreign:
            raise FileFormatError(
                f"'{path}' contains Python objects that are not plain weights "
                f"({(named or foreign)[0]}), so it is not loaded (unpickling it could run code); use a checkpoint "
                "from a source you trust.") from error
        detail = text.strip().splitlines()[0][:160] if text.strip() else type(error).__name__
        raise FileFormatError(f"'{path}' is a corrupt or unreadable checkpoint "
                              f"({detail}); copy or export it again.") from error
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise FileFormatError(f"'{path}' is not an nnU-Net checkpoint (no 'network_weights').")
    return checkpoint


def open_model_archive(zip_path: str | Path, target: str | Path, sha256: str | None = None,
                       max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, configuration: str | None = None) -> Path:
    """Extract a model zip safely (refusing entries outside ``target``, more than ``max_total_bytes``
    uncompressed, or zip-bomb compression ratios) and return its model folder (see
    :func:`pick_model_folder` when it holds several)."""
    folder = safe_extract(zip_path, target, expected_sha256=sha256, max_total_bytes=max_total_bytes)
    candidates = model_folders(folder)
    if not candidates:
        raise FileFormatError(f"'{Path(zip_path).name}' holds no nnU-Net model folder (dataset.json + plans.json).")
    return pick_model_folder(candidates, configuration, f"'{Path(zip_path).name}'", folder)


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
