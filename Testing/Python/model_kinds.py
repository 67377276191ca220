"""The tiny trained nnU-Net models of every kind, built once by ``scripts/train_model_kinds.py`` and cached.

``model_kinds()`` returns ``{kind: ModelKind}`` for the kinds 2d, two_channel, regions_two, regions_one,
two_folds, resenc, lowres and cascade: each with its model folder and zip, the unseen test cases (images per
channel, phantom truth) and nnU-Net's own prediction of them (label map and probabilities).

The build (about 4-5 minutes on two CPU cores) is cached in
``$VIRTUALBIOPSY_CACHE/model-kinds/<key>/`` (default ``~/.cache/virtualbiopsy/model-kinds/<key>/``), where the
key hashes the training script, the trainer and the nnunetv2 version, so a change to any of them builds anew.
Concurrent callers (pytest-xdist workers, two test runs) are safe: one builds under a file lock, the others
wait and then read the same folder; a failed or interrupted build leaves nothing in the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "train_model_kinds.py"
TRAINER = ROOT / "virtualbiopsy" / "segmentation" / "nnunet_trainers" / "nnUNetTrainerVBKinds.py"
KINDS = ("2d", "two_channel", "regions_two", "regions_one", "two_folds", "resenc", "lowres", "cascade")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TestCase:
    """One unseen phantom case: its images (nnU-Net's ``<case>_0000.nii.gz``, ``_0001`` ...) and truth."""

    __test__ = False  # not a pytest test class

    name: str
    seed: int
    images: tuple[Path, ...]  # every channel the cases have (T2, DWI b800)
    truth: Path  # 0 background, 1 tumour rim, 2 necrotic core


@dataclass(frozen=True)
class ModelKind:
    """One trained model kind and nnU-Net's own predictions of the test cases."""

    name: str
    folder: Path  # the nnU-Net results folder <Trainer>__<Plans>__<configuration> (the cascade's stage 2)
    zip: Path  # DatasetNNN_Name/<folder>/... (the cascade's zip also holds its lowres folder)
    configuration: str
    folds: tuple
    trainer_name: str
    channels: tuple[str, ...]
    labels: dict  # dataset.json labels
    region_based: bool
    segments: dict  # segment (dataset.json label) name -> the values of nnU-Net's label map it covers
    cases: dict  # case name -> TestCase
    reference_labels: dict  # case name -> nnU-Net's label map (.nii.gz)
    reference_probabilities: dict  # case name -> nnU-Net's probabilities (.npz, key "probabilities")
    dice_to_truth: dict  # case name -> Dice of nnU-Net's tumour (label > 0) to the truth

    def images(self, case: str) -> list[Path]:
        """The case's images this model takes, in its channel order."""
        return list(self.cases[case].images[:len(self.channels)])


def cache_key() -> str:
    digest = hashlib.sha256()
    for path in (SCRIPT, TRAINER):
        digest.update(path.read_bytes())
    digest.update(version("nnunetv2").encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("VIRTUALBIOPSY_CACHE") or Path.home() / ".cache" / "virtualbiopsy"
    return Path(base) / "model-kinds"


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no lock (a single test process builds)
            yield
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(target: Path) -> None:
    partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    started = time.time()
    message = f"model kinds: building the tiny nnU-Net models into {target} (a few minutes, once per key)"
    log.warning(message)
    print(message, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="vb-model-kinds-") as work:
        result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(partial), "--work", str(Path(work) / "w")],
                                cwd=ROOT, capture_output=True, text=True,
                                preexec_fn=(lambda: os.nice(10)) if hasattr(os, "nice") else None)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise RuntimeError(f"{SCRIPT.name} failed (exit {result.returncode}):\n{result.stdout[-3000:]}\n"
                           f"{result.stderr[-3000:]}")
    (partial / "build.log").write_text(result.stdout)
    partial.rename(target)
    message = f"model kinds: built in {time.time() - started:.0f} s -> {target}"
    log.warning(message)
    print(message, file=sys.stderr, flush=True)


@lru_cache(maxsize=1)
def model_kinds_folder() -> Path:
    """The cache folder holding every kind (built here if it is not there yet)."""
    target = cache_root() / cache_key()
    if not (target / "manifest.json").is_file():
        with _locked(cache_root() / f"{target.name}.lock"):
            if not (target / "manifest.json").is_file():
                shutil.rmtree(target, ignore_errors=True)
                _build(target)
    return target


def model_kinds() -> dict[str, ModelKind]:
    """Every model kind, built once and then read from the cache (see the module docstring)."""
    root = model_kinds_folder()
    manifest = json.loads((root / "manifest.json").read_text())
    cases = {name: TestCase(name, entry["seed"], tuple(root / p for p in entry["images"]), root / entry["truth"])
             for name, entry in manifest["cases"].items()}
    kinds = {}
    for name, entry in manifest["kinds"].items():
        kinds[name] = ModelKind(
            name=name, folder=root / entry["folder"], zip=root / entry["zip"], configuration=entry["configuration"],
            folds=tuple(entry["folds"]), trainer_name=entry["trainer_name"], channels=tuple(entry["channels"]),
            labels=entry["labels"], region_based=entry["region_based"],
            segments={n: tuple(v) for n, v in entry["segments_in_label_map"].items()}, cases=cases,
            reference_labels={c: root / r["labels"] for c, r in entry["reference"].items()},
            reference_probabilities={c: root / r["probabilities"] for c, r in entry["reference"].items()},
            dice_to_truth=entry["dice_to_truth"])
    return kinds


def build_seconds() -> float:
    """How long the cached build took (the script's own measure)."""
    return float(json.loads((model_kinds_folder() / "manifest.json").read_text())["total_seconds"])
