"""The bundled sample study on disk and in the scene.

:func:`write_study` stores a :class:`~virtualbiopsy.phantom.SampleStudy` through MRML storage
nodes, as Slicer would save it; :func:`load_study` adds a study folder to a scene.

Folder layout (all NRRD, RAS geometry, gzip-compressed)::

    t2w.nrrd              T2-weighted volume (int16, fine grid)
    ground_truth.seg.nrrd true tissues as segments (on the T2w grid)
    t2w_labels.nrrd       the same as a label map (label values: phantom README)
    bias_field.nrrd       the multiplicative bias field applied to the T2w
    dwi.seq.nrrd          DWI volume sequence, index = b-value (s/mm²)
    dce.seq.nrrd          DCE volume sequence, index = acquisition time (s)
    dwi_labels.nrrd       true tissues on the DWI/DCE grid
    adc_true.nrrd, s0_true.nrrd, iauc60_true.nrrd   true parameter maps (DWI/DCE grid)
    truth.json            every true value, the grids, b-values, times, seed and version
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import slicer

from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom.tissues import TISSUES
from virtualbiopsy.progress import as_task

FILES = {
    "t2w": "t2w.nrrd",
    "segmentation": "ground_truth.seg.nrrd",
    "t2w_labels": "t2w_labels.nrrd",
    "bias_field": "bias_field.nrrd",
    "dwi": "dwi.seq.nrrd",
    "dce": "dce.seq.nrrd",
    "dwi_labels": "dwi_labels.nrrd",
    "adc_true": "adc_true.nrrd",
    "s0_true": "s0_true.nrrd",
    "iauc60_true": "iauc60_true.nrrd",
    "truth": "truth.json",
}

# Node names in the scene, by role.
NODE_NAMES = {
    "t2w": "T2w", "segmentation": "Ground truth", "t2w_labels": "T2w labels", "bias_field": "Bias field",
    "dwi": "DWI", "dce": "DCE", "dwi_labels": "DWI labels", "adc_true": "ADC truth", "s0_true": "S0 truth",
    "iauc60_true": "iAUC60 truth",
}

# Segment name and colour (0..1) of each tissue label, background excluded.
TISSUE_SEGMENTS = {t.label: (t.name, tuple(c / 255.0 for c in t.colour)) for t in TISSUES if t.label > 0}


def geometry_of(grid) -> Geometry:
    """The MRML :class:`Geometry` of a phantom grid (same IJK-to-RAS matrix)."""
    return Geometry(tuple(int(n) for n in grid.shape), np.asarray(grid.ijk_to_ras(), dtype=float))


def _add_sequence(context, frames: np.ndarray, geometry: Geometry, index_values, name: str,
                  index_name: str, index_unit: str):
    sequence = context.add_node("vtkMRMLSequenceNode", name)
    sequence.SetIndexName(index_name)
    sequence.SetIndexUnit(index_unit)
    sequence.SetIndexType(sequence.NumericIndex)
    for frame, value in zip(frames, index_values):
        volume = slicer.vtkMRMLScalarVolumeNode()
        geometry.apply_to(volume)
        arrays.update_volume_from_array(volume, frame)
        sequence.SetDataNodeAtValue(volume, f"{value:g}")
    return sequence


def study_to_scene(context, study) -> dict:
    """Add every image of a study to the scene as new nodes; returns them by role (see FILES)."""
    t2, dwi = geometry_of(study.t2_grid), geometry_of(study.dwi_grid)
    nodes = {}
    with context.transaction():
        names = NODE_NAMES
        nodes["t2w"] = arrays.add_volume_from_array(context, study.t2w, t2, names["t2w"])
        nodes["segmentation"] = arrays.add_segmentation_from_labels(
            context, study.t2_labels, t2, TISSUE_SEGMENTS, names["segmentation"], reference_volume=nodes["t2w"])
        nodes["t2w_labels"] = arrays.add_volume_from_array(
            context, study.t2_labels, t2, names["t2w_labels"], "vtkMRMLLabelMapVolumeNode")
        nodes["bias_field"] = arrays.add_volume_from_array(context, study.bias_field, t2, names["bias_field"])
        nodes["dwi"] = _add_sequence(context, study.dwi, dwi, study.b_values, names["dwi"], "b-value", "s/mm2")
        nodes["dce"] = _add_sequence(context, study.dce, dwi, study.dce_times, names["dce"], "time", "s")
        nodes["dwi_labels"] = arrays.add_volume_from_array(
            context, study.dwi_labels, dwi, names["dwi_labels"], "vtkMRMLLabelMapVolumeNode")
        for role in ("adc_true", "s0_true", "iauc60_true"):
            nodes[role] = arrays.add_volume_from_array(context, getattr(study, role), dwi, names[role])
    return nodes


def write_study(study, folder: str | Path, progress=None) -> dict[str, Path]:
    """Write a study to ``folder`` (layout in the module docstring); returns the paths by role."""
    from virtualbiopsy.mrml.context import MRMLContext

    task = as_task(progress)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    context = MRMLContext.create()
    nodes = study_to_scene(context, study)
    paths = {}
    for role, node in task.steps(list(nodes.items()), "Writing the sample study"):
        paths[role] = io.save_node(node, folder / FILES[role])
    truth = study.truth()
    truth["files"] = FILES
    paths["truth"] = folder / FILES["truth"]
    paths["truth"].write_text(json.dumps(truth, indent=2))
    return paths


@dataclass
class LoadedStudy:
    """A study folder's nodes in a scene, with its truth."""

    nodes: dict
    truth: dict

    @property
    def b_values(self) -> list[float]:
        return [float(v) for v in io.sequence_volumes(self.nodes["dwi"])[1]]

    @property
    def dce_times(self) -> list[float]:
        return [float(v) for v in io.sequence_volumes(self.nodes["dce"])[1]]


def load_study(context, folder: str | Path, progress=None) -> LoadedStudy:
    """Add a study folder (written by :func:`write_study`) to the scene as new nodes."""
    task = as_task(progress)
    folder = Path(folder)
    truth_path = folder / FILES["truth"]
    if not truth_path.is_file():
        from virtualbiopsy.errors import FileFormatError

        raise FileFormatError(f"'{folder}' is not a sample-study folder: it has no {FILES['truth']}.")
    truth = json.loads(truth_path.read_text())
    nodes = {}
    with context.transaction():
        for role, file_name in task.steps([(r, f) for r, f in FILES.items() if r != "truth"], "Loading study"):
            path, name = folder / file_name, NODE_NAMES[role]
            if role == "segmentation":
                nodes[role] = io.load_segmentation(context, path, name)
            elif role in ("dwi", "dce"):
                nodes[role] = io.load_sequence(context, path, name)
            else:
                nodes[role] = io.load_volume(context, path, name, labelmap=role.endswith("labels"))
    return LoadedStudy(nodes, truth)
