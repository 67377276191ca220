"""Shared fixtures: a real headless MRML scene (slicer-core) per test, the seeded phantom studies
(``small_study``, ``sample_study_folder``) and synthetic outcome cohorts (``outcome_cohort``, ``cohort_200``)
made once per test run, a two-habitat DWI scene (``dro_scene``), and ``scene_unchanged``: the check that a
refused or cancelled step left the scene as it was."""

from __future__ import annotations

import contextlib
import hashlib

import numpy as np
import pytest
import vtk

from virtualbiopsy.mrml import MRMLContext, arrays
from virtualbiopsy.mrml.geometry import Geometry


@pytest.fixture
def context() -> MRMLContext:
    return MRMLContext.create()


@pytest.fixture
def grid() -> Geometry:
    """A small oblique-free grid: 12 x 10 x 8 voxels of 1.5 x 1.5 x 4 mm."""
    return Geometry.from_spacing((8, 10, 12), (1.5, 1.5, 4.0), (-9.0, -7.5, -16.0))


@pytest.fixture
def image_and_mask(context, grid):
    """A random int16 image and a segmentation with one 'tumour' box on the same grid."""
    rng = np.random.default_rng(1)
    image = rng.integers(100, 1000, size=grid.shape).astype(np.int16)
    labels = np.zeros(grid.shape, np.uint8)
    labels[2:6, 3:7, 4:9] = 1
    volume = arrays.add_volume_from_array(context, image, grid, "image")
    segments = {1: ("tumour", (1, 0, 0))}
    segmentation = arrays.add_segmentation_from_labels(context, labels, grid, segments, "mask", volume)
    return volume, segmentation, image, labels


@pytest.fixture(scope="session")
def small_study():
    """``small_study(seed, **options)``: the phantom study ``generate_study(seed, **options)`` (a
    ``SampleStudy``; options such as ``t2_spacing=(3.0, 3.0, 4.0)`` for a coarser, faster grid), made once per
    test run and shared by every test that asks for the same seed and options, so tests read it, never change it."""
    made = {}

    def make(seed: int, **options):
        key = (seed, repr(sorted(options.items())))
        if key not in made:
            from virtualbiopsy.phantom import generate_study

            made[key] = generate_study(seed, **options)
        return made[key]

    return make


@pytest.fixture(scope="session")
def sample_study_folder(tmp_path_factory, small_study):
    """``sample_study_folder(seed)``: the default-grid sample study of ``seed`` written once per test run (its
    folder)."""
    made = {}

    def make(seed: int):
        if seed not in made:
            from virtualbiopsy.sample_study import write_study

            made[seed] = tmp_path_factory.mktemp("study") / f"case{seed}"
            write_study(small_study(seed), made[seed])
        return made[seed]

    return make


@pytest.fixture(scope="session")
def outcome_cohort():
    """``outcome_cohort(n_patients, seed, **options)``: the synthetic outcome cohort
    ``generate_cohort(n_patients=n_patients, seed=seed, **options)`` (features, survival and truth), made once
    per test run and shared, so tests read it, never change it (``cohort.table.copy()`` to edit)."""
    made = {}

    def make(n_patients: int, seed: int, **options):
        key = (n_patients, seed, repr(sorted(options.items())))
        if key not in made:
            from virtualbiopsy.prediction.cohort import generate_cohort

            made[key] = generate_cohort(n_patients=n_patients, seed=seed, **options)
        return made[key]

    return make


@pytest.fixture(scope="session")
def cohort_200(outcome_cohort):
    """The synthetic 200-patient outcome cohort (seed 0): signal enough for the nested-CV, clustering and Cox
    tests to recover the phenotype."""
    return outcome_cohort(200, seed=0)


@pytest.fixture
def off_grid_segmentation(tmp_path):
    """A ``.seg.nrrd`` with one 'tumour' box on a 2 x 2 x 5 mm grid that no sample study has."""
    from virtualbiopsy.mrml import io

    context = MRMLContext.create()
    other = Geometry.from_spacing((10, 20, 20), (2.0, 2.0, 5.0))
    labels = np.zeros(other.shape, np.uint8)
    labels[3:6, 5:10, 5:10] = 1
    node = arrays.add_segmentation_from_labels(context, labels, other, {1: ("tumour", (1, 0, 0))}, "other grid")
    return io.save_node(node, tmp_path / "other_grid.seg.nrrd")


def scene_state(context) -> dict:
    """What a user would see change in the scene: every node's class, name and attributes, and its content
    (a volume's voxels and geometry, a segmentation's segments and their voxel counts, a table's cells)."""
    scene, state = context.scene, {}
    for index in range(scene.GetNumberOfNodes()):
        node = scene.GetNthNode(index)
        attributes = {name: node.GetAttribute(name) for name in (node.GetAttributeNames() or ())}
        content = None
        if node.IsA("vtkMRMLScalarVolumeNode") and node.GetImageData() is not None:
            matrix = vtk.vtkMatrix4x4()
            node.GetIJKToRASMatrix(matrix)
            voxels = np.ascontiguousarray(arrays.array_from_volume(node))
            content = (hashlib.sha256(voxels.tobytes()).hexdigest(), voxels.shape,
                       tuple(matrix.GetElement(r, c) for r in range(4) for c in range(4)))
        elif node.IsA("vtkMRMLSegmentationNode") and node.GetSegmentation() is not None:
            content = tuple((row["segment_id"], row["segment"], row["voxels"])
                            for row in arrays.segment_volumes(node))
        elif node.IsA("vtkMRMLTableNode") and node.GetTable() is not None:
            content = repr(arrays.table_columns(node))
        state[node.GetID()] = (node.GetClassName(), node.GetName(), attributes, content)
    return state


@contextlib.contextmanager
def _scene_unchanged(context):
    before = scene_state(context)
    yield
    after = scene_state(context)
    added, removed = sorted(set(after) - set(before)), sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or changed), f"the scene changed: added {added}, removed {removed}, changed " \
        f"{[(k, before[k][1]) for k in changed]}"


@pytest.fixture
def scene_unchanged():
    """``with scene_unchanged(context), pytest.raises(...):``: the block may raise, but must leave every node
    of the scene as it was (none added or removed, none renamed, re-attributed or with other content)."""
    return _scene_unchanged


@pytest.fixture
def dro_scene(context):
    """A two-habitat DWI digital reference object in the scene (ADC 0.7e-3 and 2.0e-3 mm²/s, SNR 25, 2 x 2 x 4 mm
    voxels): ``(dro, volumes, tumour, geometry)``, one volume per b-value and the tumour as a segmentation."""
    from virtualbiopsy.habitats.dro import make_dro

    dro = make_dro((600, 600), adcs=(0.7e-3, 2.0e-3), s0s=(900, 1300), snr=25.0, seed=4)
    geometry = Geometry.from_spacing(dro.labels.shape, (2.0, 2.0, 4.0))
    volumes = [arrays.add_volume_from_array(context, frame.astype(np.float32), geometry, f"b{b:g}")
               for frame, b in zip(dro.signals, dro.b_values)]
    tumour = arrays.add_segmentation_from_labels(context, dro.mask.astype(np.uint8), geometry,
                                                 {1: ("tumour", (1, 0, 0))}, "tumour", volumes[0])
    return dro, volumes, tumour, geometry
