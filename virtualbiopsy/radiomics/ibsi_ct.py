"""IBSI chapter 1 CT phantom in the five reference configurations A-E, through our pyradiomics extraction.

The IBSI published consensus values (with tolerances) for a lung-cancer CT phantom (204 x 201 x 60 voxels
of 0.977 x 0.977 x 3 mm) processed in five configurations (IBSI 1 reference manual, arXiv 1612.07003,
table "reference configurations"; the values of ``stat_min`` / ``stat_max`` in the reference files confirm
the re-segmentation ranges):

== ===  ============================  ==========================  =====================  ============
.  dim  interpolation                 re-segmentation (HU)        discretisation         pyradiomics
== ===  ============================  ==========================  =====================  ============
A  2D   none                          range [-500, 400]           fixed bin size 25      see below
B  2D   2 x 2 mm in-plane, bilinear   range [-500, 400]           fixed bin number 32
C  3D   2 x 2 x 2 mm, trilinear       range [-1000, 400]          fixed bin size 25
D  3D   2 x 2 x 2 mm, trilinear       outliers (mean +- 3 sd)     fixed bin number 32
E  3D   2 x 2 x 2 mm, tricubic        range [-1000, 400] + 3 sd   fixed bin number 32
== ===  ============================  ==========================  =====================  ============

Common to the interpolating configurations: grids aligned on their centres, interpolated intensities
rounded to integer HU, the mask interpolated like the image and kept where >= 0.5. Each configuration is
mapped to the closest pyradiomics settings (:data:`CONFIGURATIONS`); what pyradiomics cannot reproduce is
said per configuration and, for every differing feature, in its row (:func:`reasons`). 2D configurations
run pyradiomics' ``force2D`` (in-slice directions, slices merged), which is IBSI's 2.5D aggregation; the
per-slice IBSI "2D" values are not computed by pyradiomics.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from virtualbiopsy.errors import FileFormatError
from virtualbiopsy.progress import as_task
from virtualbiopsy.radiomics import extraction, ibsi

REFERENCE_ENV = "VIRTUALBIOPSY_REFERENCE_DATA"  # folder holding ibsi1_ct_phantom/ and ibsi2_filters/
CT_FOLDER = "ibsi1_ct_phantom"
DIAGNOSTIC, NOT_A_FEATURE = "diagnostic", "image-processing diagnostic"

GRID = ("resampling grid: pyradiomics aligns the new grid with the corner of the first original voxel and "
        "resamples only the ROI's bounding box + 5 voxels; IBSI centres the new grid on the original one")
MASK = ("mask interpolation: pyradiomics resamples the mask by nearest neighbour; IBSI interpolates it like the "
        "image and keeps voxels >= 0.5")
ROUNDING = ("no intensity rounding: IBSI rounds interpolated intensities to integer HU; pyradiomics keeps the "
            "float values of the (float32) phantom file")
BIN_START = ("fixed bin size: pyradiomics numbers the bins from the one holding the ROI's minimum intensity, IBSI "
             "from the re-segmentation range's lower bound -1000 HU: grey levels are shifted, so features of the "
             "grey-level values themselves differ")
RESEG_E = ("re-segmentation: pyradiomics applies one mode; the 3 sd outlier filter is applied, the range "
           "[-1000, 400] HU is not")
SPLINE = "tricubic: pyradiomics' sitkBSpline (cubic B-spline) in place of IBSI's tricubic spline interpolation"
# IBSI features computed from the grey-level values (not only their differences or frequencies).
GREY_LEVEL_VALUES = {
    "cm_joint_avg", "cm_sum_avg", "cm_auto_corr", "rlm_lgre", "rlm_hgre", "rlm_srlge", "rlm_srhge", "rlm_lrlge",
    "rlm_lrhge", "szm_lgze", "szm_hgze", "szm_szlge", "szm_szhge", "szm_lzlge", "szm_lzhge", "ngl_lgce",
    "ngl_hgce", "ngl_ldlge", "ngl_ldhge", "ngl_hdlge", "ngl_hdhge", "ngt_busyness", "ngt_complexity",
    "ngt_strength"}

_AGGREGATIONS_2D = {
    "2_5D_avg": ({"force2D": True, "force2Ddimension": 0},
                 {"morph": "", "stat": "", "ih": "", "cm": "_2_5D_avg", "rlm": "_2_5D_avg", "szm": "_2_5D",
                  "ngl": "_2_5D", "ngt": "_2_5D"}),
    "2_5D_comb": ({"force2D": True, "force2Ddimension": 0, "weightingNorm": "no_weighting"},
                  {"cm": "_2_5D_comb", "rlm": "_2_5D_comb"}),
}
_AGGREGATIONS_3D = {name: ibsi.CONFIGURATIONS[name] for name in ("3D_avg", "3D_comb")}
_LINEAR, _SPACING_2D, _SPACING_3D = "sitkLinear", [2.0, 2.0, 0.0], [2.0, 2.0, 2.0]


@dataclass(frozen=True)
class Configuration:
    """One IBSI configuration: its settings in words, the closest pyradiomics settings (on top of the ``ibsi``
    preset) and what pyradiomics does differently."""

    ibsi: str
    settings: dict
    two_d: bool
    differences: tuple[str, ...] = field(default=())

    @property
    def aggregations(self) -> dict[str, tuple[dict, dict]]:
        return _AGGREGATIONS_2D if self.two_d else _AGGREGATIONS_3D


CONFIGURATIONS = {
    "A": Configuration("2D, no interpolation, re-segmentation [-500, 400] HU, fixed bin size 25 HU",
                       {"binWidth": 25, "resegmentRange": [-500, 400]}, True),
    "B": Configuration("2D, 2 x 2 mm in-plane bilinear interpolation (intensities rounded, mask >= 0.5), "
                       "re-segmentation [-500, 400] HU, fixed bin number 32",
                       {"binCount": 32, "resegmentRange": [-500, 400], "resampledPixelSpacing": _SPACING_2D,
                        "interpolator": _LINEAR}, True, (GRID, MASK, ROUNDING)),
    "C": Configuration("3D, 2 x 2 x 2 mm trilinear interpolation (intensities rounded, mask >= 0.5), "
                       "re-segmentation [-1000, 400] HU, fixed bin size 25 HU",
                       {"binWidth": 25, "resegmentRange": [-1000, 400], "resampledPixelSpacing": _SPACING_3D,
                        "interpolator": _LINEAR}, False, (GRID, MASK, ROUNDING, BIN_START)),
    "D": Configuration("3D, 2 x 2 x 2 mm trilinear interpolation (intensities rounded, mask >= 0.5), outlier "
                       "re-segmentation mean +- 3 sd, fixed bin number 32",
                       {"binCount": 32, "resegmentMode": "sigma", "resegmentRange": [-3, 3],
                        "resampledPixelSpacing": _SPACING_3D, "interpolator": _LINEAR}, False,
                       (GRID, MASK, ROUNDING)),
    "E": Configuration("3D, 2 x 2 x 2 mm tricubic interpolation (intensities rounded, mask >= 0.5), "
                       "re-segmentation [-1000, 400] HU and mean +- 3 sd, fixed bin number 32",
                       {"binCount": 32, "resegmentMode": "sigma", "resegmentRange": [-3, 3],
                        "resampledPixelSpacing": _SPACING_3D, "interpolator": "sitkBSpline"}, False,
                       (GRID, MASK, ROUNDING, RESEG_E, SPLINE)),
}


def default_reference_dir() -> Path | None:
    """``$VIRTUALBIOPSY_REFERENCE_DATA``, else ``<repository>/../shared/reference`` if it exists, else None."""
    if os.environ.get(REFERENCE_ENV):
        return Path(os.environ[REFERENCE_ENV])
    candidate = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
    return candidate if candidate.is_dir() else None


def ct_paths(reference_dir: str | Path) -> dict[str, Path]:
    """The CT phantom's files in ``reference_dir``/ibsi1_ct_phantom; refuses a folder that lacks any."""
    folder = Path(reference_dir) / CT_FOLDER
    paths = {"image": folder / "image.nii.gz", "mask": folder / "mask.nii.gz"}
    paths.update({name: folder / f"reference_values_config_{name.lower()}.csv" for name in CONFIGURATIONS})
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        raise FileFormatError(f"The IBSI CT phantom folder '{folder}' lacks {', '.join(missing)}; give the folder "
                              "holding ibsi1_ct_phantom/ with --reference.")
    return paths


def configuration_params(name: str, aggregation: str, interpolate: bool = True) -> dict:
    """The pyradiomics parameters of IBSI configuration ``name`` for one aggregation run (``interpolate``
    False: without pyradiomics' resampling, for images already interpolated by :func:`ibsi_interpolation`)."""
    configuration = CONFIGURATIONS[name]
    overrides, suffixes = configuration.aggregations[aggregation]
    params = extraction.load_params("ibsi")
    params["setting"].update(configuration.settings, **overrides)
    if "binCount" in params["setting"]:
        params["setting"].pop("binWidth", None)
    if not interpolate:
        for key in ("resampledPixelSpacing", "interpolator"):
            params["setting"].pop(key, None)
    return ibsi.restrict_feature_classes(params, suffixes)


def ibsi_interpolation(image: sitk.Image, mask: sitk.Image, name: str) -> tuple[sitk.Image, sitk.Image]:
    """Image and mask interpolated as IBSI configuration ``name`` prescribes (a diagnostic, not pyradiomics).

    SimpleITK resamples; the grid is IBSI's (no library defines it): the new size along each axis is
    ceil(extent / new spacing) and the new grid is centred on the original one. Intensities are rounded to
    integer HU; the mask is interpolated linearly and kept where >= 0.5. Axes whose new spacing is 0 keep
    theirs (2D configurations interpolate in-plane only).
    """
    settings = CONFIGURATIONS[name].settings
    if "resampledPixelSpacing" not in settings:
        return image, mask
    size, spacing = np.array(image.GetSize()), np.array(image.GetSpacing())
    new_spacing = np.where(np.array(settings["resampledPixelSpacing"]) > 0, settings["resampledPixelSpacing"], spacing)
    new_size = np.ceil(size * spacing / new_spacing - 1e-9).astype(int)
    directions = np.array(image.GetDirection()).reshape(3, 3)
    centre = np.array(image.GetOrigin()) + directions @ ((size - 1) / 2 * spacing)
    origin = centre - directions @ ((new_size - 1) / 2 * new_spacing)
    grid = ([int(n) for n in new_size], sitk.Transform())
    geometry = (tuple(float(v) for v in origin), tuple(float(v) for v in new_spacing), image.GetDirection())
    interpolator = sitk.sitkBSpline if settings["interpolator"] == "sitkBSpline" else sitk.sitkLinear
    new_image = sitk.Round(sitk.Resample(image, *grid, interpolator, *geometry, -1000.0, sitk.sitkFloat32))
    new_mask = sitk.Resample(sitk.Cast(mask, sitk.sitkFloat32), *grid, sitk.sitkLinear, *geometry, 0.0,
                             sitk.sitkFloat32)
    return new_image, sitk.Cast(new_mask >= 0.5, sitk.sitkUInt8)


def is_diagnostic(tag: str) -> bool:
    """IBSI's image-processing checkpoints (image / mask sizes, counts, intensities after each step)."""
    return tag.endswith(("_init_img", "_interp_img", "_init_roi", "_interp_roi", "_reseg_roi"))


PYRADIOMICS, IBSI_PREPROCESSING = "pyradiomics settings", "IBSI interpolation, then pyradiomics"


def reasons(name: str, base: str, preprocessing: str = PYRADIOMICS) -> list[str]:
    """What pyradiomics does differently in configuration ``name`` that can change the IBSI feature ``base``."""
    found = []
    for difference in CONFIGURATIONS[name].differences:
        if difference == BIN_START and base not in GREY_LEVEL_VALUES:
            continue
        if preprocessing == IBSI_PREPROCESSING and difference in (GRID, MASK, ROUNDING):
            continue  # done the IBSI way by ibsi_interpolation
        if ibsi._family(base) == "morph" and difference in (ROUNDING, RESEG_E, BIN_START, SPLINE):
            continue  # morphology uses the mask only
        found.append(difference)
    return found or ["outside the IBSI tolerance; no known setting difference explains it"]


def configuration_rows(name: str, image, mask, references: list[ibsi.Reference],
                       preprocessing: str = PYRADIOMICS) -> tuple[list[dict], dict]:
    """Rows (:data:`CT_COLUMNS`) of one configuration, and its run facts (seconds, ROI voxels, settings).

    ``preprocessing``: :data:`PYRADIOMICS` (the closest pyradiomics settings do everything) or
    :data:`IBSI_PREPROCESSING` (diagnostic: :func:`ibsi_interpolation` first, then pyradiomics without
    resampling), which tells the interpolation's share of the differences from the rest.
    """
    configuration = CONFIGURATIONS[name]
    started = time.perf_counter()
    interpolate = preprocessing == PYRADIOMICS
    if not interpolate:
        image, mask = ibsi_interpolation(image, mask, name)
    features, settings = {}, {}
    for aggregation in configuration.aggregations:
        params = configuration_params(name, aggregation, interpolate)
        settings[aggregation] = params["setting"]
        values = extraction.extract_case(image, mask, None, 1, f"IBSI CT phantom mask ({name})",
                                         extraction.make_extractor(params))
        features[aggregation] = {k.removeprefix("original_"): v for k, v in values.items()}
    first = features[next(iter(configuration.aggregations))]
    spacing = [s if s and interpolate else o for s, o in zip(
        configuration.settings.get("resampledPixelSpacing", [0, 0, 0]), image.GetSpacing())]
    voxels = round(first["shape_VoxelVolume"] / float(np.prod(spacing)))  # the (interpolated) morphological mask

    def explain(base, aggregation, value, reference):
        ratio = abs(value - reference.value) / reference.tolerance if reference.tolerance else float("inf")
        return f"{ratio:.3g} tolerances off: " + "; ".join(reasons(name, base, preprocessing))

    aggregations = {agg: suffixes for agg, (_, suffixes) in configuration.aggregations.items()}
    features_only = [r for r in references if not is_diagnostic(r.tag)]
    rows = {r["ibsi_tag"]: r for r in ibsi.compare_with_references(features_only, features, aggregations, voxels,
                                                                   explain)}
    table = []
    for reference in references:
        row = rows.get(reference.tag) or _diagnostic_row(reference, voxels)
        table.append({"ibsi_configuration": name, "preprocessing": preprocessing, **row})
    facts = {"seconds": time.perf_counter() - started, "roi_voxels": voxels, "settings": settings,
             "ibsi_roi_voxels": next((r.value for r in references if r.tag == "morph_mask_vox_count_interp_roi"), None)}
    return table, facts


def _diagnostic_row(reference: ibsi.Reference, voxels: int) -> dict:
    row = dict.fromkeys(ibsi.REPORT_COLUMNS, "")
    row.update(ibsi_tag=reference.tag, reference="" if reference.value is None else reference.value,
               tolerance="" if reference.tolerance is None else reference.tolerance, status=NOT_A_FEATURE,
               note="IBSI image-processing checkpoint (sizes, voxel counts, intensities after each step); not a "
                    "feature, not counted")
    if reference.tag == "morph_mask_vox_count_interp_roi" and reference.value is not None:
        row.update(status=DIAGNOSTIC, pyradiomics_value=float(voxels), difference=voxels - reference.value,
                   note="voxels of the (interpolated) morphological mask, from pyradiomics' VoxelVolume; not counted")
    return row


def ct_report(reference_dir: str | Path, configurations=tuple(CONFIGURATIONS), progress=None,
              diagnostic: bool = True) -> tuple[list[dict], dict]:
    """Rows of the chosen configurations (with ``diagnostic``, also the :data:`IBSI_PREPROCESSING` runs), and
    {(configuration, preprocessing): run facts}."""
    task = as_task(progress)
    paths = ct_paths(reference_dir)
    image, mask = extraction.read_image(paths["image"]), extraction.read_image(paths["mask"], "mask")
    runs = [(name, p) for name in configurations for p in ((PYRADIOMICS, IBSI_PREPROCESSING) if diagnostic
                                                            else (PYRADIOMICS,))]
    rows, facts = [], {}
    for name, preprocessing in task.steps(runs, "IBSI CT phantom, configurations A-E"):
        found, facts[name, preprocessing] = configuration_rows(name, image, mask, ibsi.read_references(paths[name]),
                                                               preprocessing)
        rows += found
    return rows, facts


def summary(rows: list[dict], preprocessing: str = PYRADIOMICS) -> dict[str, dict[str, int]]:
    """Per configuration: IBSI feature tags, compared (reference value and pyradiomics value), matched,
    differing, no consensus, not computed by pyradiomics."""
    counts = {}
    rows = [r for r in rows if r["preprocessing"] == preprocessing]
    for name in dict.fromkeys(r["ibsi_configuration"] for r in rows):
        mine = [r for r in rows if r["ibsi_configuration"] == name and r["status"] not in (DIAGNOSTIC, NOT_A_FEATURE)]
        status = [r["status"] for r in mine]
        matched = status.count(ibsi.MATCH) + status.count(ibsi.CONVERTED_MATCH)
        counts[name] = {"features": len(mine), "compared": matched + status.count(ibsi.DIFFERS), "matched": matched,
                        "differing": status.count(ibsi.DIFFERS), "no_consensus": status.count(ibsi.NO_CONSENSUS),
                        "not_computed": status.count(ibsi.NOT_COMPUTED)}
    return counts


def summary_line(counts: dict[str, dict[str, int]]) -> str:
    parts = [f"{name} {c['matched']}/{c['compared']}" for name, c in counts.items()]
    not_computed = ", ".join(f"{name} {c['not_computed']}" for name, c in counts.items())
    return (f"IBSI CT phantom, IBSI values matched / compared per configuration: {', '.join(parts)} "
            f"(IBSI tags not computed by pyradiomics: {not_computed}).")


CT_COLUMNS = ("ibsi_configuration", "preprocessing", *ibsi.REPORT_COLUMNS)


def add_to_report(report, rows: list[dict], facts: dict) -> None:
    """The CT phantom section of the HTML report (the report escapes every text)."""
    counts = summary(rows)
    diagnostic = summary(rows, IBSI_PREPROCESSING)
    report.heading("IBSI 1 CT phantom, configurations A-E")
    report.paragraph(summary_line(counts))
    report.paragraph(
        "Phantom: IBSI chapter 1 CT radiomics phantom (204 x 201 x 60 voxels, 0.977 x 0.977 x 3 mm; CC BY 4.0) with "
        "the IBSI consensus values of each configuration. Each configuration runs with the closest pyradiomics "
        "settings; a value matches when it is within the IBSI tolerance (or equal at 3 significant digits). 2D "
        "configurations use pyradiomics' force2D (IBSI 2.5D); IBSI's per-slice 2D values are not computed. "
        "Diagnostic column: the same with IBSI's interpolation done first (SimpleITK: grid centred, intensities "
        "rounded, mask interpolated and kept >= 0.5) and pyradiomics without resampling, which separates what the "
        "interpolation explains from the rest.")
    pyradiomics_facts = {name: facts[name, PYRADIOMICS] for name in counts}
    report.table({
        "configuration": list(counts),
        "IBSI settings": [CONFIGURATIONS[n].ibsi for n in counts],
        "pyradiomics settings (on the 'ibsi' preset)": [json.dumps(CONFIGURATIONS[n].settings) for n in counts],
        "matched": [c["matched"] for c in counts.values()], "compared": [c["compared"] for c in counts.values()],
        "not computed by pyradiomics": [c["not_computed"] for c in counts.values()],
        "matched after IBSI interpolation (diagnostic)": [diagnostic[n]["matched"] if n in diagnostic else ""
                                                          for n in counts],
        "ROI voxels pyradiomics / IBSI": [f"{pyradiomics_facts[n]['roi_voxels']} / "
                                          f"{pyradiomics_facts[n]['ibsi_roi_voxels']:.0f}" for n in counts],
        "run time (s)": [round(pyradiomics_facts[n]["seconds"], 1) for n in counts],
        "what pyradiomics does differently": ["; ".join(CONFIGURATIONS[n].differences) or "nothing known"
                                              for n in counts],
    }, "Match counts per configuration")
    compared = [r for r in rows if r["preprocessing"] == PYRADIOMICS
                and r["status"] in (ibsi.MATCH, ibsi.CONVERTED_MATCH, ibsi.DIFFERS, DIAGNOSTIC)]
    report.table({c: [r[c] for r in compared] for c in CT_COLUMNS if c != "preprocessing"},
                 "CT phantom features compared (pyradiomics settings)")
