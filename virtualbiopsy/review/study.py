"""One study opened for review: its images as scene nodes, by role, and what identifies it on disk.

A study comes as a folder (the sample-study layout, or image files named for their sequence:
``t2w``, ``dwi``, ``dce``, or one DICOM series), as a list of image files / DICOM references
(the first is the image the model segments), or as a Slicer scene bundle (``.mrb``). Everything
is read through MRML storage nodes; a study that cannot be read adds nothing to the scene.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from virtualbiopsy import attributes
from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.mrml import io

IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
ROLES = ("t2w", "dwi", "dce")


@dataclass
class Study:
    """The study's nodes: ``volumes`` in display order (the first is segmented), DWI / DCE sequences if any."""

    name: str
    volumes: list
    dwi: object | None = None
    dce: object | None = None
    inputs: list[Path] = field(default_factory=list)  # the files it was read from (for the autosave key)
    segmentations: list = field(default_factory=list)  # segmentations the scene bundle brought

    @property
    def primary(self):
        return self.volumes[0]

    @property
    def from_dicom(self) -> bool:
        return self.primary.GetAttribute(attributes.DICOM_INSTANCE_UIDS) is not None or bool(
            self.primary.GetAttribute(attributes.DICOM_FILES))

    def key(self) -> str:
        """A short fingerprint of the input files (path, size, modification time): the same study opened
        again has the same key, so its autosave can be offered back."""
        digest = hashlib.sha256()
        for path in sorted(self.inputs):
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for item in files:
                stat = item.stat()
                digest.update(json.dumps([str(item.resolve()), stat.st_size, stat.st_mtime_ns]).encode())
        return digest.hexdigest()[:16]


def _role(path: Path) -> str | None:
    stem = path.name.lower()
    for role in ROLES:
        if stem.startswith(role) or stem.startswith(role.rstrip("w")):
            return role
    return None


def _is_image(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and name.endswith(IMAGE_SUFFIXES) and not name.endswith(".seg.nrrd")


def _load_image(context, path: Path, study: Study, name: str | None = None) -> None:
    """Add one image: a sequence (``.seq.nrrd``) becomes the DWI or DCE by its name, anything else a volume."""
    role = _role(path)
    if path.name.lower().endswith(".seq.nrrd"):
        node = io.load_sequence(context, path, name or role.upper() if role else name)
        if role == "dce":
            study.dce = node
        else:
            study.dwi = node
        return
    study.volumes.append(io.load_volume(context, path, name))


def _sample_study(context, folder: Path) -> Study:
    from virtualbiopsy.sample_study import FILES

    study = Study(folder.name, [], inputs=[folder / FILES[r] for r in ("t2w", "dwi", "dce")])
    study.volumes.append(io.load_volume(context, folder / FILES["t2w"], "T2w"))
    study.dwi = io.load_sequence(context, folder / FILES["dwi"], "DWI")
    study.dce = io.load_sequence(context, folder / FILES["dce"], "DCE")
    return study


def open_study(context, folder: str | Path | None = None, images=(), scene: str | Path | None = None) -> Study:
    """Add a study to the scene (see the module docstring); nothing is added if it cannot be read."""
    given = [folder is not None, bool(images), scene is not None]
    if sum(given) != 1:
        raise InputError("Give one study: a study folder, images (--image), or a scene bundle (--scene).")
    with context.transaction():
        if scene is not None:
            return _scene_study(context, Path(scene))
        if images:
            study = Study(Path(str(images[0]).split("#")[0]).name.split(".")[0], [], inputs=[])
            for image in images:
                path = Path(str(image).split("#")[0])
                study.inputs.append(path)
                if path.is_file() and path.name.lower().endswith(".seq.nrrd"):
                    _load_image(context, path, study)
                else:
                    study.volumes.append(io.load_volume(context, image))
            return _checked(study)
        folder = Path(folder)
        if not folder.is_dir():
            raise FileFormatError(f"No study folder at '{folder}'.")
        if (folder / "truth.json").is_file() and (folder / "t2w.nrrd").is_file():
            return _sample_study(context, folder)
        files = sorted((p for p in folder.iterdir() if _is_image(p)),
                       key=lambda p: (ROLES.index(_role(p)) if _role(p) else len(ROLES), p.name))
        study = Study(folder.name, [], inputs=files or [folder])
        if not files:  # a DICOM folder of one series (a folder of several is refused by the reader, by name)
            study.volumes.append(io.load_volume(context, folder))
        for path in files:
            _load_image(context, path, study)
        return _checked(study)


def _checked(study: Study) -> Study:
    if not study.volumes:
        raise InputError(f"Study '{study.name}' has no 3D image to show and segment (only a DWI / DCE series); "
                         "add the T2-weighted image.")
    return study


def _scene_study(context, path: Path) -> Study:
    ids = io.load_scene(context, path)
    nodes = [context.scene.GetNodeByID(i) for i in ids]
    volumes = [n for n in nodes if n.IsA("vtkMRMLScalarVolumeNode") and not n.IsA("vtkMRMLLabelMapVolumeNode")
               and n.GetAttribute(attributes.QUANTITY) is None and not _in_sequence(context, n)]
    sequences = [n for n in nodes if n.IsA("vtkMRMLSequenceNode")]
    study = Study(path.name.split(".")[0], volumes, inputs=[path],
                  segmentations=[n for n in nodes if n.IsA("vtkMRMLSegmentationNode")])
    for sequence in sequences:
        if _role(Path(sequence.GetName())) == "dce":
            study.dce = sequence
        elif study.dwi is None:
            study.dwi = sequence
    return _checked(study)


def _in_sequence(context, node) -> bool:
    return any(sequence.GetNumberOfDataNodes() and node in [sequence.GetNthDataNode(i) for i in
                                                          range(sequence.GetNumberOfDataNodes())]
               for sequence in context.scene.GetNodesByClass("vtkMRMLSequenceNode"))
