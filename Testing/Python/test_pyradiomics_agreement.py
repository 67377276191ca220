"""Our radiomics equal pyradiomics run directly on the file as stored: pyradiomics' own test images (brain1,
brain2, breast1 from its 3.0.1 source distribution on PyPI), default settings, wavelets, resampling and LoG,
through the file (batch) path and through MRML nodes.

The data (34 MB) is fetched once into ~/.cache/virtualbiopsy-testdata (or $VIRTUALBIOPSY_TESTDATA) with
``pip download``; only its ``data/`` folder is extracted. Offline, the tests skip and say why.

Agreement metric: ``|ours - pyradiomics| / max(|pyradiomics|, 1e-6)`` must be <= 1e-6 for every feature;
the floor of 1e-6 keeps features that are 0 up to rounding (e.g. a ClusterShade of 1e-15) from turning
last-bit noise into a large relative difference (they then need an absolute agreement of 1e-12).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.radiomics import extraction
from virtualbiopsy.radiomics.extraction import ExtractionParameters

PYRADIOMICS_VERSION = "3.0.1"
CASES = ("brain1", "brain2", "breast1")
RELATIVE_TOLERANCE = 1e-6
ABSOLUTE_FLOOR = 1e-6  # denominator floor of the relative difference (see the module docstring)
CONFIGURATIONS = {
    "default": ExtractionParameters(),
    "wavelet": ExtractionParameters(wavelet=True),
    "resampled_2mm_bspline": ExtractionParameters(
        settings={"resampledPixelSpacing": [2, 2, 2], "interpolator": "sitkBSpline"}),
    "log_sigma_1_3": ExtractionParameters(log_sigmas_mm=(1.0, 3.0)),
}


def cache_dir() -> Path:
    return Path(os.environ.get("VIRTUALBIOPSY_TESTDATA", Path.home() / ".cache" / "virtualbiopsy-testdata"))


def _data_complete(folder: Path) -> bool:
    return all((folder / f"{case}_{kind}.nrrd").is_file() for case in CASES for kind in ("image", "label"))


@pytest.fixture(scope="module")
def pyradiomics_data() -> Path:
    """The ``data/`` folder of pyradiomics' sdist (downloaded and extracted once; skip when offline)."""
    root = cache_dir() / f"pyradiomics-{PYRADIOMICS_VERSION}"
    folder = root / "data"
    if _data_complete(folder):
        return folder
    sdist_dir = cache_dir() / "sdist"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
               "--disable-pip-version-check", "-q", f"pyradiomics=={PYRADIOMICS_VERSION}", "-d", str(sdist_dir)]
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as error:
        pytest.skip(f"pyradiomics' test images could not be fetched from PyPI (offline?): "
                    f"`{' '.join(command[2:])}` failed ({type(error).__name__})")
    prefix = f"pyradiomics-{PYRADIOMICS_VERSION}/data/"
    with tarfile.open(sdist_dir / f"pyradiomics-{PYRADIOMICS_VERSION}.tar.gz") as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix) and (m.isfile() or m.isdir())]
        for member in members:
            member.name = member.name[len(f"pyradiomics-{PYRADIOMICS_VERSION}/"):]
        archive.extractall(root, members=members, filter="data")
    assert _data_complete(folder), f"the sdist's data/ folder lacks images: {sorted(os.listdir(folder))}"
    return folder


def relative_difference(ours: float, reference: float) -> float:
    return abs(ours - reference) / max(abs(reference), ABSOLUTE_FLOOR)


def pyradiomics_on_files(folder: Path, case: str, parameters: ExtractionParameters) -> dict[str, float]:
    """pyradiomics itself, given the file paths (it reads them with SimpleITK) and the same parameters."""
    extractor = extraction.make_extractor(parameters.pyradiomics_params())
    result = extractor.execute(str(folder / f"{case}_image.nrrd"), str(folder / f"{case}_label.nrrd"), label=1)
    return {k: float(np.asarray(v)) for k, v in result.items() if not k.startswith("diagnostics_")}


def worst_difference(ours: dict[str, float], reference: dict[str, float]) -> tuple[float, str]:
    assert set(reference) <= set(ours), f"features missing: {sorted(set(reference) - set(ours))[:5]}"
    return max((relative_difference(ours[name], value), name) for name, value in reference.items())


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
@pytest.mark.parametrize("case", CASES)
def test_file_path_features_equal_pyradiomics_on_the_file(pyradiomics_data, case, configuration):
    parameters = CONFIGURATIONS[configuration]
    reference = pyradiomics_on_files(pyradiomics_data, case, parameters)
    ours = extraction.extract_files([pyradiomics_data / f"{case}_image.nrrd"], pyradiomics_data / f"{case}_label.nrrd",
                                    parameters)
    difference, name = worst_difference(ours, reference)
    assert difference <= RELATIVE_TOLERANCE, f"{case} {configuration}: {name} differs by {difference:.3g}"
    if configuration == "wavelet":
        assert sum(k.startswith("wavelet-") for k in reference) == 8 * 93


@pytest.mark.parametrize("configuration", ["wavelet", "resampled_2mm_bspline"])
@pytest.mark.parametrize("case", CASES)
def test_mrml_path_features_equal_pyradiomics_on_the_file(pyradiomics_data, context, case, configuration):
    """Loaded into MRML nodes (Slicer's reader reverses the slices of the left-handed brain files), extracted
    through the module logic: still pyradiomics' values on the file as stored."""
    volume = io.load_volume(context, pyradiomics_data / f"{case}_image.nrrd")
    segmentation = io.load_segmentation(context, pyradiomics_data / f"{case}_label.nrrd")
    parameters = CONFIGURATIONS[configuration]
    logic = RadiomicsBiomarkersLogic(context)
    table = logic.extract_features(volume, segmentation, parameters=parameters)
    ours = {k: v[0] for k, v in arrays.table_columns(table).items() if k not in ("segment", "segment_id", "images")}
    difference, name = worst_difference(ours, pyradiomics_on_files(pyradiomics_data, case, parameters))
    assert difference <= RELATIVE_TOLERANCE, f"{case} {configuration} via MRML: {name} differs by {difference:.3g}"
    left_handed = np.linalg.det(np.reshape(sitk.ReadImage(str(pyradiomics_data / f"{case}_image.nrrd")).GetDirection(),
                                           (3, 3))) < 0
    assert ("reversed axis k" in logic.voxel_order(volume)) == left_handed == case.startswith("brain")


def test_the_comparison_sees_a_change_of_voxel_order(pyradiomics_data):
    """What the old canonical flip did (brain1 reversed along j, same physical voxels) changes the wavelet features
    by far more than the tolerance: the agreement tests above can fail."""
    parameters = CONFIGURATIONS["wavelet"]
    image = sitk.ReadImage(str(pyradiomics_data / "brain1_image.nrrd"))
    mask = sitk.ReadImage(str(pyradiomics_data / "brain1_label.nrrd"))
    flipped = extraction.extract_case(sitk.Flip(image, [False, True, False]), sitk.Flip(mask, [False, True, False]),
                                      parameters)
    difference, name = worst_difference(flipped, pyradiomics_on_files(pyradiomics_data, "brain1", parameters))
    assert difference > 0.5 and name.startswith("wavelet-"), (difference, name)
