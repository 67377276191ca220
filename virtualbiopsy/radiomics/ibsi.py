"""IBSI compliance of our pyradiomics extraction on the IBSI chapter 1 digital phantom.

The Image Biomarker Standardisation Initiative (IBSI, Zwanenburg et al., Radiology 2020) published
consensus values, with tolerances, for a 5 x 4 x 4 voxel digital phantom. :func:`compliance_report`
runs the phantom through :func:`~virtualbiopsy.radiomics.extraction.extract_case` with the ``ibsi``
preset and compares every feature pyradiomics implements with its IBSI reference: one row per IBSI
tag, saying whether it matches within the IBSI tolerance and, where not, why.

Aggregation. pyradiomics computes one GLCM / GLRLM per direction and averages the features over
directions (IBSI "avg"); with ``weightingNorm: no_weighting`` it sums the matrices first (IBSI
"comb"). With ``force2D`` it uses the in-slice directions over all slices together, which is the
IBSI "2.5D" aggregation (IBSI "2D" averages per-slice features; pyradiomics has no such mode). The
report therefore runs four configurations of the same preset: 3D_avg, 3D_comb, 2_5D_avg, 2_5D_comb.

Conventions that differ (a conversion is applied and said so in the row): pyradiomics' Kurtosis is
the plain fourth standardised moment, IBSI's ``stat_kurt`` the excess kurtosis (pyradiomics - 3).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from virtualbiopsy.errors import FileFormatError
from virtualbiopsy.progress import as_task
from virtualbiopsy.radiomics import extraction

PHANTOM_DIR = Path(__file__).resolve().parent / "ibsi_phantom"
PHANTOM_FILES = ("image.nii.gz", "mask.nii.gz", "reference_values.csv")

# Aggregation configurations: pyradiomics settings on top of the "ibsi" preset, and the IBSI tag
# suffix each feature family gets under them (None: the family is not computed in that configuration).
CONFIGURATIONS = {
    "3D_avg": ({}, {"morph": "", "stat": "", "ih": "", "cm": "_3D_avg", "rlm": "_3D_avg", "szm": "_3D",
                    "ngl": "_3D", "ngt": "_3D"}),
    "3D_comb": ({"weightingNorm": "no_weighting"}, {"cm": "_3D_comb", "rlm": "_3D_comb"}),
    "2_5D_avg": ({"force2D": True, "force2Ddimension": 0},
                 {"cm": "_2_5D_avg", "rlm": "_2_5D_avg", "szm": "_2_5D", "ngl": "_2_5D", "ngt": "_2_5D"}),
    "2_5D_comb": ({"force2D": True, "force2Ddimension": 0, "weightingNorm": "no_weighting"},
                  {"cm": "_2_5D_comb", "rlm": "_2_5D_comb"}),
}

TAG_MAP_FILE = Path(__file__).resolve().parent / "ibsi_tags.csv"


def read_tag_map(path: str | Path = TAG_MAP_FILE) -> dict[str, str]:
    """IBSI tag (without aggregation suffix) -> pyradiomics feature (``class_Feature``), in the file's order.

    >>> read_tag_map()["morph_volume"]
    'shape_MeshVolume'
    """
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["ibsi_tag"]: row["pyradiomics_feature"] for row in csv.DictReader(handle)}


IBSI_TO_PYRADIOMICS = read_tag_map()

# pyradiomics features that are deprecated (not enabled by default) but still computed; enabled
# explicitly so that their IBSI counterparts can be checked.
DEPRECATED_COMPUTED = {"shape": ["Compactness1", "Compactness2", "SphericalDisproportion"]}

# value in the IBSI convention = conversion(pyradiomics value, voxels in the ROI), and why.
_PCA_NOTE = ("pyradiomics takes the ROI's coordinate covariance over N voxels, the IBSI reference over N - 1: "
             "IBSI = pyradiomics * sqrt(N / (N - 1))")
CONVERSIONS = {
    "firstorder_Kurtosis": (lambda value, n: value - 3.0, "IBSI = pyradiomics - 3 (IBSI reports excess kurtosis)"),
    "shape_MajorAxisLength": (lambda value, n: value * (n / (n - 1)) ** 0.5, _PCA_NOTE),
    "shape_MinorAxisLength": (lambda value, n: value * (n / (n - 1)) ** 0.5, _PCA_NOTE),
    "shape_LeastAxisLength": (lambda value, n: value * (n / (n - 1)) ** 0.5, _PCA_NOTE),
}

# Why a pyradiomics feature stands for an IBSI tag of another name, or why it differs.
NOTES = {
    "cm_sum_var": "pyradiomics' SumVariance is deprecated as mathematically equal to ClusterTendency (value compared)",
    "cm_dissimilarity": "pyradiomics' Dissimilarity is deprecated as equal to DifferenceAverage (value compared)",
    "ngl_glnu_norm": "pyradiomics' GLDM GrayLevelNonUniformityNormalized is deprecated as equal to firstorder "
                     "Uniformity (value compared)",
    "morph_comp_1": "deprecated in pyradiomics (redundant with Sphericity) but computed; enabled explicitly",
    "morph_comp_2": "deprecated in pyradiomics (redundant with Sphericity) but computed; enabled explicitly",
    "morph_sph_dispr": "deprecated in pyradiomics (1 / Sphericity) but computed; enabled explicitly",
    "ih_entropy": "pyradiomics' Entropy uses the discretised intensities (bin width 1 here): IBSI intensity histogram",
    "ih_uniformity": "pyradiomics' Uniformity uses the discretised intensities: IBSI intensity histogram",
    "stat_energy": "needs voxelArrayShift 0 (pyradiomics adds the shift before squaring)",
}

# IBSI features pyradiomics does not compute, by tag prefix (the longest matching prefix wins).
NOT_IN_PYRADIOMICS = {
    "morph_": "not computed by pyradiomics",
    "loc_": "local intensity peaks are not computed by pyradiomics",
    "stat_": "not computed by pyradiomics",
    "ih_": "pyradiomics computes these statistics on the raw intensities (stat_*), not on the discretised histogram",
    "ivh_": "the intensity-volume histogram is not computed by pyradiomics",
    "dzm_": "the grey level distance zone matrix (GLDZM) is not implemented in pyradiomics",
    "ngl_dc_perc": "pyradiomics' DependencePercentage is deprecated (always 1 with its definition) and not computed",
    "ngl_dc_energy": "not computed by pyradiomics",
}
# pyradiomics features (enabled by the presets) that have no IBSI chapter 1 tag.
NO_IBSI_TAG = {
    "shape_Maximum2DDiameterSlice": "maximum in-plane diameter (axial); IBSI defines only the 3D diameter",
    "shape_Maximum2DDiameterColumn": "maximum diameter in the coronal plane; no IBSI tag",
    "shape_Maximum2DDiameterRow": "maximum diameter in the sagittal plane; no IBSI tag",
    "firstorder_TotalEnergy": "Energy times the voxel volume; no IBSI tag",
    "glcm_MCC": "maximal correlation coefficient; not in IBSI chapter 1",
}
AGGREGATION_2D = "per-slice (2D) aggregation: pyradiomics has no such mode (force2D merges all slices: 2.5D)"


@dataclass(frozen=True)
class Reference:
    tag: str
    value: float | None  # None: IBSI reached no consensus
    tolerance: float | None


def phantom_paths(phantom_dir: str | Path | None = None) -> dict[str, Path]:
    folder = Path(phantom_dir) if phantom_dir else PHANTOM_DIR
    paths = {name.split(".")[0]: folder / name for name in PHANTOM_FILES}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise FileFormatError(f"The IBSI digital phantom folder '{folder}' lacks {', '.join(missing)}.")
    return paths


def read_references(path: str | Path) -> list[Reference]:
    """IBSI reference values: CSV ``reference value;tolerance;tag`` (empty value: no consensus)."""
    references = []
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream, delimiter=";")
        for row in reader:
            value, tolerance = row["reference value"].strip(), row["tolerance"].strip()
            references.append(Reference(row["tag"].strip(), float(value) if value else None,
                                        float(tolerance) if tolerance else None))
    if not references:
        raise FileFormatError(f"'{Path(path).name}' holds no IBSI reference values.")
    return references


def _family(tag: str) -> str:
    return tag.split("_", 1)[0]


def _split_tag(tag: str, aggregations: dict[str, dict] | None = None) -> tuple[str, str | None]:
    """'cm_contrast_3D_avg' -> ('cm_contrast', '3D_avg' aggregation), or (tag, None) if not computed.

    ``aggregations``: {name: {family: tag suffix}} (default: the digital phantom's :data:`CONFIGURATIONS`).
    """
    if aggregations is None:
        aggregations = {name: suffixes for name, (_, suffixes) in CONFIGURATIONS.items()}
    for aggregation, suffixes in aggregations.items():
        suffix = suffixes.get(_family(tag))
        if suffix is None:
            continue
        if suffix and tag.endswith(suffix):
            return tag[: -len(suffix)], aggregation
        if not suffix and tag in IBSI_TO_PYRADIOMICS:
            return tag, aggregation
    return tag, None


def _configuration_parameters(configuration: str) -> extraction.ExtractionParameters:
    overrides, suffixes = CONFIGURATIONS[configuration]
    return extraction.ExtractionParameters(preset="ibsi", settings=dict(overrides))


def _configuration_params(configuration: str) -> dict:
    _, suffixes = CONFIGURATIONS[configuration]
    return restrict_feature_classes(_configuration_parameters(configuration).pyradiomics_params(), suffixes)


def restrict_feature_classes(params: dict, suffixes: dict) -> dict:
    """``params`` with only the feature classes that the IBSI families in ``suffixes`` need (deprecated
    features that IBSI defines enabled explicitly)."""
    classes = {feature.split("_")[0] for base, feature in IBSI_TO_PYRADIOMICS.items() if _family(base) in suffixes}
    params["featureClass"] = {
        name: (None if name not in DEPRECATED_COMPUTED else list(_enabled_with_deprecated(name)))
        for name in params["featureClass"] if name in classes
    }
    return params


def _enabled_with_deprecated(feature_class: str) -> list[str]:
    from radiomics import getFeatureClasses

    names = getFeatureClasses()[feature_class].getFeatureNames()
    return [n for n, deprecated in names.items() if not deprecated] + DEPRECATED_COMPUTED.get(feature_class, [])


def phantom_features(phantom_dir: str | Path | None = None, progress=None) -> dict[str, dict[str, float]]:
    """pyradiomics features of the phantom for each aggregation configuration (no ``original_`` prefix),
    plus ``{"voxels": {"count": N}}`` (the ROI's voxel count, which some conversions need)."""
    task = as_task(progress)
    paths = phantom_paths(phantom_dir)
    image, mask = extraction.read_image(paths["image"]), extraction.read_image(paths["mask"], "mask")
    results = {"voxels": {"count": float(np.count_nonzero(sitk.GetArrayViewFromImage(mask) == 1))}}
    for configuration in task.steps(list(CONFIGURATIONS), "Extracting the IBSI phantom's features"):
        extractor = extraction.make_extractor(_configuration_params(configuration))
        values = extraction.extract_case(image, mask, _configuration_parameters(configuration), 1,
                                         "IBSI phantom mask", extractor)
        results[configuration] = {k.removeprefix("original_"): v for k, v in values.items()}
    return results


def _not_in_pyradiomics(tag: str) -> str:
    if "_2D" in tag and _family(tag) in ("cm", "rlm", "szm", "ngl", "ngt"):
        return AGGREGATION_2D
    matches = [prefix for prefix in NOT_IN_PYRADIOMICS if tag.startswith(prefix)]
    return NOT_IN_PYRADIOMICS[max(matches, key=len)] if matches else "not computed by pyradiomics"


REPORT_COLUMNS = ("ibsi_tag", "configuration", "pyradiomics_feature", "reference", "tolerance", "pyradiomics_value",
                  "ibsi_convention_value", "difference", "status", "note")
MATCH, CONVERTED_MATCH, DIFFERS, NO_CONSENSUS, NOT_COMPUTED = (
    "match", "match after conversion", "differs", "no IBSI consensus", "not in pyradiomics")
# status -> (key of its count in :func:`summary`, how the summary line and the HTML page say it), headline order.
STATUS_LABELS = {MATCH: ("match", "match"), CONVERTED_MATCH: ("converted_match", "match after a stated conversion"),
                 NOT_COMPUTED: ("not_computed", "not computed by pyradiomics"), DIFFERS: ("mismatch", "mismatch"),
                 NO_CONSENSUS: ("no_consensus", "no IBSI consensus value")}


def compliance_report(phantom_dir: str | Path | None = None, progress=None) -> list[dict]:
    """One row per IBSI reference tag (see :data:`REPORT_COLUMNS`), in the reference file's order.

    ``status`` is one of: ``match`` (within the IBSI tolerance), ``match after conversion`` (after
    a documented convention change, e.g. kurtosis - 3), ``differs``, ``no IBSI consensus`` (no
    reference value) and ``not in pyradiomics``.
    """
    task = as_task(progress)
    paths = phantom_paths(phantom_dir)
    features = phantom_features(phantom_dir, task.sub(0.0, 0.9))
    aggregations = {name: suffixes for name, (_, suffixes) in CONFIGURATIONS.items()}
    rows = compare_with_references(read_references(paths["reference_values"]), features, aggregations,
                                   features["voxels"]["count"])
    task.update(1.0, "IBSI report ready")
    return rows


def compare_with_references(references: list[Reference], features: dict[str, dict[str, float]],
                            aggregations: dict[str, dict], voxels: float, explain=None) -> list[dict]:
    """One row (:data:`REPORT_COLUMNS`) per IBSI reference tag, in the references' order.

    ``features``: {aggregation: {pyradiomics class_Feature: value}}; ``aggregations``: {aggregation:
    {IBSI family: tag suffix}}; ``voxels``: the ROI's voxel count (for the PCA conversion);
    ``explain(base, aggregation, value, reference)``: the reason given for a differing value.
    """
    explain = explain or explain_difference
    rows = []
    for reference in references:
        base, configuration = _split_tag(reference.tag, aggregations)
        feature = IBSI_TO_PYRADIOMICS.get(base) if configuration else None
        row = dict.fromkeys(REPORT_COLUMNS, "")
        row.update(ibsi_tag=reference.tag, configuration=configuration or "",
                   reference="" if reference.value is None else reference.value,
                   tolerance="" if reference.tolerance is None else reference.tolerance)
        if feature is None or feature not in features.get(configuration, {}):
            row.update(status=NOT_COMPUTED, note=_not_in_pyradiomics(reference.tag))
            rows.append(row)
            continue
        value = features[configuration][feature]
        convert, conversion_note = CONVERSIONS.get(feature, (None, ""))
        ibsi_value = convert(value, voxels) if convert else value
        notes = [n for n in (conversion_note, NOTES.get(base, "")) if n]
        row.update(pyradiomics_feature=f"original_{feature}", pyradiomics_value=value,
                   ibsi_convention_value=ibsi_value)
        if reference.value is None:
            row.update(status=NO_CONSENSUS)
        else:
            difference = ibsi_value - reference.value
            row["difference"] = difference
            if matches(ibsi_value, reference):
                row["status"] = CONVERTED_MATCH if convert else MATCH
            else:
                row["status"] = DIFFERS
                notes.append(explain(base, configuration, value, reference))
        row["note"] = "; ".join(n for n in notes if n)
        rows.append(row)
    return rows


def matches(value: float, reference: Reference) -> bool:
    """Within the IBSI tolerance, or equal to the reference at its 3 significant digits.

    IBSI tabulates the phantom's values to 3 significant digits, most with tolerance 0 (exact
    arithmetic on a tiny phantom leaves no uncertainty): a value matches when it rounds to the
    reference (e.g. 2.1486 matches 2.15), i.e. lies within half a unit of the reference's 3rd
    significant digit. Where IBSI gives a tolerance (morphology) it is at least one unit of that
    digit, so the rounding never widens it.
    """
    if reference.value is None:
        return False
    if abs(value - reference.value) <= (reference.tolerance or 0.0) * (1 + 1e-9):
        return True
    return float(f"{value:.3g}") == float(f"{reference.value:.3g}")


# Why pyradiomics differs from IBSI for a feature (filled from the report's own results).
DIFFERENCES: dict[str, str] = {}


def explain_difference(base: str, configuration: str, value: float, reference: Reference) -> str:
    return DIFFERENCES.get(base, "outside the IBSI tolerance; no documented convention explains it")


def summary(rows: list[dict]) -> dict[str, int]:
    """Counts: IBSI tags; computed by pyradiomics; of those with a reference value, how many match
    (after the documented conversions) and how many match as pyradiomics reports them; and the rows of
    each status (:data:`STATUS_LABELS` keys: ``match``, ``converted_match``, ``not_computed``, ``mismatch``,
    ``no_consensus``), which add up to ``ibsi_tags``."""
    implemented = [r for r in rows if r["status"] != NOT_COMPUTED]
    with_reference = [r for r in implemented if r["status"] != NO_CONSENSUS]
    matching = [r for r in with_reference if r["status"] in (MATCH, CONVERTED_MATCH)]
    raw = [r for r in with_reference
           if matches(float(r["pyradiomics_value"]), Reference(r["ibsi_tag"], float(r["reference"]),
                                                               float(r["tolerance"] or 0.0)))]
    statuses = [r["status"] for r in rows]
    return {
        "ibsi_tags": len(rows),
        "implemented": len(implemented),
        "with_reference": len(with_reference),
        "matching": len(matching),
        "matching_without_conversion": len(raw),
        "differing": len(with_reference) - len(matching),
        **{key: statuses.count(status) for status, (key, _) in STATUS_LABELS.items()},
    }


def configuration_settings() -> dict[str, dict]:
    """The pyradiomics settings of each aggregation configuration (what makes the phantom match)."""
    return {name: _configuration_parameters(name).pyradiomics_params()["setting"] for name in CONFIGURATIONS}


def summary_line(counts: dict[str, int]) -> str:
    """One line whose counts add up: 'IBSI digital phantom, 487 IBSI features: 263 match, 4 match after a stated
    conversion, 220 not computed by pyradiomics, 0 mismatch (...)' (a no-consensus count only when there is one)."""
    parts = ", ".join(f"{counts[key]} {label}" for key, label in STATUS_LABELS.values()
                      if key != "no_consensus" or counts[key])
    return (f"IBSI digital phantom, {counts['ibsi_tags']} IBSI features: {parts} (a match is within the IBSI "
            "tolerance, or equal at the reference's 3 significant digits where the tolerance is 0; "
            f"{counts['matching_without_conversion']} of the {counts['matching']} matches need no conversion).")


def write_csv(rows: list[dict], columns, path: Path) -> Path:
    """Rows as a CSV (floats with 10 significant digits)."""
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items() if k in columns})
    return path
