"""Shared fixtures: a real headless MRML scene (slicer-core) per test, and a small study."""

from __future__ import annotations

import numpy as np
import pytest

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
def sample_study_folder(tmp_path_factory):
    """``sample_study_folder(seed)``: the sample study of ``seed`` written once per test run (its folder)."""
    made = {}

    def make(seed: int):
        if seed not in made:
            from virtualbiopsy.phantom import generate_study
            from virtualbiopsy.sample_study import write_study

            made[seed] = tmp_path_factory.mktemp("study") / f"case{seed}"
            write_study(generate_study(seed), made[seed])
        return made[seed]

    return make


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
