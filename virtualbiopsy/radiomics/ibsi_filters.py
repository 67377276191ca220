"""IBSI chapter 2 filter response maps: pyradiomics' LoG and wavelet image filters, voxel by voxel.

IBSI 2 (phase 1) published reference response maps of convolutional filters on 64 x 64 x 64 digital
phantoms of 2 mm voxels. For every test id whose filter pyradiomics offers (LoG; wavelets: Daubechies 2,
Coiflet 1, Haar), :func:`filter_report` computes the response with pyradiomics' own image filters
(``imageoperations.getLoGImage`` / ``getWaveletImage``, as its extractor applies them) and compares it with
the reference over the whole phantom. A map matches when max |pyradiomics - reference| <= 1 % of the
reference's range (max - min). Also reported: the RMS difference relative to the reference's RMS, the
largest difference away from the border (``interior``, to tell boundary handling from the rest) and,
where it explains a difference, a diagnostic: the same filter under IBSI's convention (LoG scale,
rotation pooling over the 24 right-angle rotations, a trous level 2 with mirror padding).

The test parameters come from the IBSI 2 reference manual (as set in the IBSI's own test suite, oncoray/mirp
``test/ibsi_2_response_map_test.py``). Mean, Laws, Gabor and Simoncelli filters are not offered by pyradiomics.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from virtualbiopsy.errors import FileFormatError
from virtualbiopsy.progress import as_task

FILTER_FOLDER = "ibsi2_filters"
TOLERANCE = 0.01  # of the reference map's range
MATCH, CONVERTED_MATCH, DIFFERS, NOT_OFFERED = ("match", "match after conversion", "differs",
                                                "not offered by pyradiomics")
ROTATION = ("rotation invariance (mean over the 24 right-angle rotations) is not offered by pyradiomics: compared "
            "with its plain response")
LOG_SCALE = ("pyradiomics' LoG is scale-normalised in mm (sigma^2 x Laplacian, SimpleITK NormalizeAcrossScale); the "
             "IBSI map is the LoG in voxel units: IBSI = pyradiomics / (sigma / spacing)^2")
RECURSIVE = ("SimpleITK's recursive Gaussian approximates the kernel (IIR); IBSI samples it and truncates at 4 sigma: "
             "the largest difference is at the impulse, not at the border")
LOG_3D = "pyradiomics' LoG is 3D only (force2D does not change it): compared with its 3D response"
LEVEL_2 = ("level 2: pyradiomics filters the level-1 approximation again with the level-1 filters; IBSI (a trous) "
           "uses the upsampled filters; and pyradiomics' wavelet is periodic where IBSI pads by mirroring")
PERIODIC = "pyradiomics' stationary wavelet (PyWavelets swtn) is periodic; IBSI's boundary here is {}"


@dataclass(frozen=True)
class FilterTest:
    """One IBSI 2 test: phantom, filter in IBSI terms, boundary condition and how pyradiomics is run."""

    phantom: str
    filter: str
    boundary: str
    kind: str | None = None  # "log" or "wavelet"; None: not offered by pyradiomics
    sigma_mm: float = 0.0
    wavelet: str = ""
    band: str = ""
    level: int = 1
    two_d: bool = False
    invariant: bool = False
    reason: str = ""


_MEAN = "mean filter, support 15 voxels"
_LAWS, _GABOR, _SIMONCELLI = "Laws kernels", "Gabor filter", "Simoncelli wavelet"
TESTS = {
    "1A1": FilterTest("checkerboard", _MEAN, "zero"), "1A2": FilterTest("checkerboard", _MEAN, "nearest"),
    "1A3": FilterTest("checkerboard", _MEAN, "periodic"), "1A4": FilterTest("checkerboard", _MEAN, "mirror"),
    "1B1": FilterTest("impulse", _MEAN + ", 2D", "zero"),
    "2A": FilterTest("impulse", "LoG, sigma 3 mm, truncated at 4 sigma, 3D", "zero", "log", 3.0, reason=RECURSIVE),
    "2B": FilterTest("checkerboard", "LoG, sigma 5 mm, truncated at 4 sigma, 3D", "mirror", "log", 5.0,
                     reason="SimpleITK's recursive Gaussian continues the border value (IBSI: mirror)"),
    "2C": FilterTest("checkerboard", "LoG, sigma 5 mm, truncated at 4 sigma, 2D (in-slice)", "mirror", "log", 5.0,
                     two_d=True, reason=LOG_3D),
    **{f"3{s}": FilterTest(p, f"{_LAWS} {k}{' energy (delta 7)' if s[-1] == '3' else ''}"
                           f"{', rotation invariant' if s[-1] in '23' else ''}{', 2D' if s[0] == 'C' else ''}", b)
       for s, p, k, b in [("A1", "impulse", "E5L5S5", "zero"), ("A2", "impulse", "E5L5S5", "zero"),
                          ("A3", "impulse", "E5L5S5", "zero"), ("B1", "checkerboard", "E3W5R5", "mirror"),
                          ("B2", "checkerboard", "E3W5R5", "mirror"), ("B3", "checkerboard", "E3W5R5", "mirror"),
                          ("C1", "checkerboard", "L5S5", "mirror"), ("C2", "checkerboard", "L5S5", "mirror"),
                          ("C3", "checkerboard", "L5S5", "mirror")]},
    "4A1": FilterTest("impulse", f"{_GABOR}, sigma 10 mm, gamma 0.5, lambda 4 mm, theta 60 deg", "zero"),
    "4A2": FilterTest("impulse", f"{_GABOR}, sigma 10 mm, gamma 0.5, lambda 4 mm, rotation invariant", "zero"),
    "4B1": FilterTest("sphere", f"{_GABOR}, sigma 20 mm, gamma 2.5, lambda 8 mm, theta 225 deg", "mirror"),
    "4B2": FilterTest("sphere", f"{_GABOR}, sigma 20 mm, gamma 2.5, lambda 8 mm, rotation invariant", "mirror"),
    "5A1": FilterTest("impulse", "Daubechies 2 wavelet, LHL, level 1, undecimated, 3D", "zero", "wavelet",
                      wavelet="db2", band="LHL",
                      reason="the impulse lies far from the border, so periodic and zero padding agree"),
    "5A2": FilterTest("impulse", "Daubechies 2 wavelet, LHL, level 1, rotation invariant", "zero", "wavelet",
                      wavelet="db2", band="LHL", invariant=True, reason=ROTATION),
    "6A1": FilterTest("sphere", "Coiflet 1 wavelet, HHL, level 1, undecimated, 3D", "periodic", "wavelet",
                      wavelet="coif1", band="HHL", reason="periodic padding, as PyWavelets' swtn"),
    "6A2": FilterTest("sphere", "Coiflet 1 wavelet, HHL, level 1, rotation invariant", "periodic", "wavelet",
                      wavelet="coif1", band="HHL", invariant=True, reason=ROTATION),
    "7A1": FilterTest("checkerboard", "Haar wavelet, LLL, level 2, rotation invariant", "mirror", "wavelet",
                      wavelet="haar", band="LLL", level=2, invariant=True, reason=f"{LEVEL_2}; {ROTATION}"),
    "7A2": FilterTest("checkerboard", "Haar wavelet, HHH, level 2, rotation invariant", "mirror", "wavelet",
                      wavelet="haar", band="HHH", level=2, invariant=True, reason=f"{LEVEL_2}; {ROTATION}"),
    **{f"8A{n}": FilterTest("checkerboard", f"{_SIMONCELLI}, band-pass, level {n}", "periodic") for n in (1, 2, 3)},
}


def filter_paths(reference_dir: str | Path) -> tuple[Path, dict[str, Path]]:
    """The phantoms folder and {test id: reference map} in ``reference_dir``/ibsi2_filters."""
    folder = Path(reference_dir) / FILTER_FOLDER
    maps = {}
    for path in sorted((folder / "reference_response_maps").glob("id_*_CT_*.nii.gz")):
        maps[path.name.split("_CT_")[1].split("_")[0]] = path
    if not maps or not (folder / "phantoms").is_dir():
        raise FileFormatError(f"The IBSI 2 folder '{folder}' lacks phantoms/ or reference_response_maps/id_*.nii.gz; "
                              "give the folder holding ibsi2_filters/ with --reference.")
    return folder / "phantoms", dict(sorted(maps.items()))


def pyradiomics_response(test: FilterTest, image: sitk.Image) -> np.ndarray:
    """The response map pyradiomics' own image filter gives for ``test`` ([z, y, x], float64)."""
    from radiomics import imageoperations

    if test.kind == "log":
        generated = imageoperations.getLoGImage(image, image, sigma=[test.sigma_mm])
        name = f"log-sigma-{str(test.sigma_mm).replace('.', '-')}-mm-3D"
    else:
        generated = imageoperations.getWaveletImage(image, image, wavelet=test.wavelet, level=test.level)
        name = f"wavelet{test.level if test.level > 1 else ''}-{test.band}"
    responses = {image_name: response for response, image_name, _ in generated}
    return sitk.GetArrayFromImage(responses[name]).astype(np.float64)


def _rotations() -> list[tuple[int, int, int]]:
    """The 24 right-angle rotations of a cube, as numbers of quarter turns in the (0,1), (0,2), (1,2) planes."""
    probe, found = np.arange(27).reshape(3, 3, 3), {}
    for turns in itertools.product(range(4), repeat=3):
        found.setdefault(_rotate(probe, turns).tobytes(), turns)
    return list(found.values())


def _rotate(array: np.ndarray, turns, inverse: bool = False) -> np.ndarray:
    planes = [((0, 1), turns[0]), ((0, 2), turns[1]), ((1, 2), turns[2])]
    for axes, count in (reversed(planes) if inverse else planes):
        array = np.rot90(array, -count if inverse else count, axes=axes)
    return np.ascontiguousarray(array)


def rotation_pooled(response, array: np.ndarray) -> np.ndarray:
    """IBSI's rotation invariance: the mean of ``response`` over the 24 rotations of the image, each rotated back.
    (No library pools filter responses over the cube's rotations.)"""
    return np.mean([_rotate(response(_rotate(array, turns)), turns, inverse=True) for turns in _rotations()], axis=0)


def _as_image(array: np.ndarray, like: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like)
    return image


def _a_trous_mirror(test: FilterTest, array: np.ndarray, margin: int = 8) -> np.ndarray:
    """PyWavelets' stationary (a trous) transform at ``test.level`` with mirror padding: IBSI's level-2 wavelet."""
    import pywt

    padded = np.pad(array, margin, mode="symmetric")
    bands = pywt.swtn(padded, test.wavelet, level=test.level, axes=(2, 1, 0))[0]
    band = bands[test.band.replace("L", "a").replace("H", "d")]
    return band[margin:-margin, margin:-margin, margin:-margin]


def compare(ours: np.ndarray, reference: np.ndarray, margin: int) -> dict[str, float]:
    """Max |difference| (absolute and in % of the reference's range), RMS difference / RMS reference, and the
    max |difference| in % of range more than ``margin`` voxels from the border."""
    difference = np.abs(ours - reference)
    spread = float(reference.max() - reference.min()) or 1.0
    inner = difference[margin:-margin, margin:-margin, margin:-margin] if margin else difference
    return {"max_abs_difference": float(difference.max()),
            "max_difference_pct_of_range": 100 * float(difference.max()) / spread,
            "rms_relative": float(np.sqrt(np.mean(difference ** 2)) / (np.sqrt(np.mean(reference ** 2)) or 1.0)),
            "interior_max_difference_pct_of_range": 100 * float(inner.max()) / spread}


FILTER_COLUMNS = ("test_id", "phantom", "ibsi_filter", "ibsi_boundary", "pyradiomics_filter", "status",
                  "max_abs_difference", "max_difference_pct_of_range", "rms_relative",
                  "interior_max_difference_pct_of_range", "diagnostic", "reason")


def filter_report(reference_dir: str | Path, progress=None) -> list[dict]:
    """One row (:data:`FILTER_COLUMNS`) per IBSI 2 reference map, in test id order."""
    task = as_task(progress)
    phantoms, maps = filter_paths(reference_dir)
    rows = []
    for test_id in task.steps(list(maps), "IBSI 2 filter response maps"):
        test = TESTS.get(test_id)
        row = dict.fromkeys(FILTER_COLUMNS, "")
        row["test_id"] = test_id
        if test is None:
            rows.append(row | {"status": NOT_OFFERED, "reason": "test id not known to this report"})
            continue
        row.update(phantom=test.phantom, ibsi_filter=test.filter, ibsi_boundary=test.boundary)
        if test.kind is None:
            rows.append(row | {"status": NOT_OFFERED, "reason": f"{test.filter.split(',')[0]}: not offered by "
                                                               "pyradiomics"})
            continue
        rows.append(row | _compared(test, phantoms, maps[test_id]))
    task.update(1.0, "Filter comparison ready")
    return rows


def _compared(test: FilterTest, phantoms: Path, reference_path: Path) -> dict:
    path = phantoms / f"{test.phantom}_image.nii.gz"
    try:
        image = sitk.ReadImage(str(path))
        reference = sitk.GetArrayFromImage(sitk.ReadImage(str(reference_path))).astype(np.float64)
    except RuntimeError as error:
        raise FileFormatError(f"Could not read the IBSI 2 phantom '{path.name}' or map '{reference_path.name}': "
                              f"{str(error).strip().splitlines()[-1]}") from error
    ours = pyradiomics_response(test, image)
    found = {"reason": test.reason}
    if test.kind == "log":
        steps = float(test.sigma_mm / image.GetSpacing()[0])  # sigma in voxels (the phantoms are isotropic)
        found["pyradiomics_filter"] = f"LoG sigma [{test.sigma_mm:g}] mm (3D)"
        raw = compare(ours, reference, int(np.ceil(4 * steps)))
        converted = compare(ours / steps ** 2, reference, int(np.ceil(4 * steps)))
        found.update(converted, diagnostic=f"as pyradiomics reports it: max difference "
                                           f"{raw['max_difference_pct_of_range']:.3g} % of range")
        matched = converted["max_difference_pct_of_range"] <= 100 * TOLERANCE
        found["status"] = CONVERTED_MATCH if matched else DIFFERS
        found["reason"] = f"{LOG_SCALE}; {test.reason}" if not matched else LOG_SCALE
        return found
    found["pyradiomics_filter"] = f"Wavelet {test.wavelet}, level {test.level}, image wavelet" \
                                  f"{test.level if test.level > 1 else ''}-{test.band}"
    found.update(compare(ours, reference, 4 * test.level))
    matched = found["max_difference_pct_of_range"] <= 100 * TOLERANCE
    found["status"] = MATCH if matched else DIFFERS
    if test.invariant:
        array = sitk.GetArrayFromImage(image).astype(np.float64)
        pooled = compare(rotation_pooled(lambda a: pyradiomics_response(test, _as_image(a, image)), array), reference,
                         4 * test.level)
        notes = [f"pyradiomics' filter pooled over the 24 rotations: max difference "
                 f"{pooled['max_difference_pct_of_range']:.3g} % of range"]
        if test.level > 1:
            exact = compare(rotation_pooled(lambda a: _a_trous_mirror(test, a), array), reference, 4 * test.level)
            notes.append(f"PyWavelets a trous level {test.level} with mirror padding, pooled: max difference "
                         f"{exact['max_difference_pct_of_range']:.3g} % of range")
        found["diagnostic"] = "; ".join(notes)
    elif matched:
        found["reason"] = test.reason
    return found


def summary(rows: list[dict]) -> dict[str, int]:
    status = [r["status"] for r in rows]
    return {"maps": len(rows), "compared": len(rows) - status.count(NOT_OFFERED),
            "matched": status.count(MATCH) + status.count(CONVERTED_MATCH), "differing": status.count(DIFFERS),
            "not_offered": status.count(NOT_OFFERED)}


def summary_line(counts: dict[str, int]) -> str:
    return (f"IBSI 2 filter response maps: {counts['matched']} of the {counts['compared']} maps of filters pyradiomics "
            f"offers match within {100 * TOLERANCE:g} % of the reference's range; {counts['not_offered']} of the "
            f"{counts['maps']} maps use filters pyradiomics does not offer (mean, Laws, Gabor, Simoncelli).")


def add_to_report(report, rows: list[dict]) -> None:
    """The filter section of the HTML report (the report escapes every text)."""
    report.heading("IBSI 2 filter response maps (LoG, wavelets)")
    report.paragraph(summary_line(summary(rows)))
    report.paragraph(
        "Phantoms and reference maps: IBSI chapter 2 phase 1 (64 x 64 x 64 voxels of 2 mm; CC BY 4.0). Each response "
        "map is computed with pyradiomics' own image filter and compared voxel by voxel over the whole phantom; "
        "'interior' leaves out a border of the filter's reach. The diagnostic column applies IBSI's convention to "
        "pyradiomics' filter, to show what explains a difference; it is not what pyradiomics reports.")
    compared = [r for r in rows if r["status"] != NOT_OFFERED]
    report.table({c: [r[c] for r in compared] for c in FILTER_COLUMNS}, "Maps compared")
    missing = [r for r in rows if r["status"] == NOT_OFFERED]
    report.table({c: [r[c] for r in missing] for c in ("test_id", "phantom", "ibsi_filter", "reason")},
                 "Maps of filters pyradiomics does not offer")
