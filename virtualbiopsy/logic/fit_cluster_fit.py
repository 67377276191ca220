"""Logic of the FitClusterFit module: Fit-Cluster-Fit habitats from DWI (and DCE) on MRML nodes.

Inputs are MRML nodes: DWI as a list of volumes with their b-values or a volume sequence whose
index values are the b-values; DCE as volumes with acquisition times or a sequence indexed by
time (s); the tumour as segments of a segmentation (exported onto the DWI grid the way Slicer
exports label maps) or a label-map volume on the DWI grid. The numerical work is
:mod:`virtualbiopsy.diffusion` and :mod:`virtualbiopsy.habitats`; this class checks inputs, turns
nodes into arrays and results into NEW nodes (volumes, a segmentation with one coloured segment
per habitat, a table), inside a scene transaction so that an error or a cancel adds nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.diffusion import check_b_values, fit_monoexp
from virtualbiopsy.diffusion_shells import plan_shells, reconcile_values
from virtualbiopsy.errors import EmptyMaskError, InputError, InvalidValuesError
from virtualbiopsy.habitats import dce as dce_module
from virtualbiopsy.habitats.pipeline import (
    EXCLUDED_LABEL,
    MIN_VOXELS,
    DceParameters,
    FitClusterFitParameters,
    FitClusterFitResult,
    dwi_shells,
    dwi_summary,
    fit_voxels,
    run_fit_cluster_fit,
)
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry, require_finite, require_same_geometry, require_scalar_3d
from virtualbiopsy.mrml.io import sequence_volumes
from virtualbiopsy.progress import as_task
from virtualbiopsy.report import style

__all__ = ["DceOutputs", "DceParameters", "EXCLUDED_SEGMENT", "FitClusterFitLogic", "FitClusterFitOutputs",
           "FitClusterFitParameters", "HABITAT_COLOURS", "VoxelFitOutputs", "excluded_segment",
           "habitat_segment_colour"]

EXCLUDED_NAME = "excluded (boundary or uncertain fit)"
# Habitat 1, 2, ... (1 = lowest ADC, most cellular) as RGB 0..1: their colours in every figure.
HABITAT_COLOURS = tuple(style.rgb(colour) for colour in style.HABITAT_COLOURS)
EXCLUDED_SEGMENT = (EXCLUDED_NAME, style.rgb(style.EXCLUDED_COLOUR))  # white in Slicer; hatched in figures


def habitat_segment_colour(h: int) -> tuple[float, float, float]:
    """Habitat ``h``'s segment colour (RGB 0..1): its colour in every figure (:mod:`virtualbiopsy.report.style`)."""
    return style.rgb(style.habitat_colour(h))


def excluded_segment() -> tuple[str, tuple[float, float, float]]:
    """Name and colour of the segment of voxels left out of the clustering."""
    return EXCLUDED_SEGMENT


@dataclass
class VoxelFitOutputs:
    adc: object
    adc_se: object
    r2: object
    s0: object
    noise_sigma: float | None = None
    summary: dict = field(default_factory=dict)  # volumes combined per b-value, ADC SE source, warnings


@dataclass
class FitClusterFitOutputs:
    adc: object
    adc_se: object
    r2: object
    s0: object
    habitats: object  # segmentation node, segments "habitat 1..k" (+ "excluded (boundary or uncertain fit)")
    table: object  # table node, one row per habitat
    summary: dict
    result: FitClusterFitResult  # arrays (labels, mean signals, fits) for figures
    dce: dict = field(default_factory=dict)  # iAUC / TTP / wash-in volume nodes when DCE was given


@dataclass
class DceOutputs:
    iauc: object
    time_to_peak: object
    wash_in: object
    table: object
    summary: dict
    arrival: object = None  # per-voxel arrival volume ("voxel" mode only)
    maps: dce_module.DceMaps | None = None
    mean_curves: dict = field(default_factory=dict)  # region name -> mean curve (for figures)
    times: np.ndarray | None = None


def _index_values(values, what: str) -> list[float]:
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError) as error:
        raise InputError(f"The {what} sequence's index values {list(values)!r} are not numbers; enter them.") from error


class FitClusterFitLogic:
    def __init__(self, context) -> None:
        self.context = context

    # -- inputs ------------------------------------------------------------------------------

    @staticmethod
    def dwi_volumes(dwi, b_values=None, override_b_values: bool = False) -> tuple[list, list]:
        """DWI volume nodes and b-values from a list of volumes, or from a volume sequence whose
        index values are the b-values. ``b_values`` given for such a sequence must agree with its
        index values (:func:`~virtualbiopsy.diffusion_shells.reconcile_values`) unless ``override_b_values``."""
        return FitClusterFitLogic._series_volumes(dwi, b_values, "DWI", override_b_values)[:2]

    @staticmethod
    def _series_volumes(series, values, what: str, override: bool = False) -> tuple[list, list, dict | None]:
        """(volumes, values, override record or None) of a DWI (b-values) or DCE (times) series."""
        kind, unit, example = (("b-values", "s/mm²", "0,50,400,800") if what == "DWI"
                               else ("acquisition times", "s", "0,5,10,..."))
        if series is None:
            raise InputError(f"Select the {what} volumes or sequence.")
        if not hasattr(series, "GetNumberOfDataNodes"):
            if values is None:
                raise InputError(f"Enter the {kind} ({unit}), one per {what} volume, e.g. {example}.")
            return list(series), list(values), None
        volumes, index_values = sequence_volumes(series)
        if values is None:
            return volumes, _index_values(index_values, what), None
        try:
            stored = [float(v) for v in index_values]
        except (TypeError, ValueError):
            return volumes, list(values), None  # index values that are not numbers store nothing to disagree with
        used, record = reconcile_values(
            stored, list(values), stored_from=f"The {what} sequence '{series.GetName()}'",
            given_from=f"the {kind} entered", what=kind, unit=unit, override=override,
            hint=f"Leave the {kind} empty to use the stored ones, or override them explicitly.")
        return volumes, used, record

    def _stack(self, nodes, what: str) -> np.ndarray:
        if not nodes:
            raise InputError(f"Select the {what} volumes.")
        reference = require_scalar_3d(nodes[0], f"{what} volume")
        stack = []
        for node in nodes:
            require_same_geometry(reference, require_scalar_3d(node, f"{what} volume"), nodes[0].GetName(),
                                  node.GetName())
            values = arrays.array_from_volume(node)
            require_finite(values, node.GetName())
            stack.append(values.astype(np.float32))
        return np.stack(stack)

    def dwi_signals(self, dwi, b_values=None, override_b_values: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Stack DWI volumes into ``signals[n_volumes, k, j, i]`` after checking b-values and geometry."""
        nodes, b_values = self.dwi_volumes(dwi, b_values, override_b_values)
        if not nodes:
            raise InputError("Select the DWI volumes (one per b-value).")
        b = check_b_values(b_values, len(nodes))
        signals = self._stack(nodes, "DWI")
        if not np.any(signals > 0):
            raise InvalidValuesError("Every DWI voxel is zero or negative; these are not magnitude DWI images.")
        return signals, b

    def dce_signals(self, dce, times=None, override_times: bool = False) -> tuple[np.ndarray, np.ndarray, object]:
        """``signals[n_t, k, j, i]``, times (s) and the first frame's node, after checking them; ``times``
        given for a sequence must agree with its index values unless ``override_times``."""
        nodes, times, _ = self._series_volumes(dce, times, "DCE", override_times)
        t = dce_module.check_times(times, len(nodes))
        return self._stack(nodes, "DCE"), t, nodes[0]

    def tumour_mask(self, mask, reference, segments=None, label=None) -> np.ndarray:
        """Boolean ``[k, j, i]`` tumour mask on the grid of ``reference`` (a volume node).

        ``mask`` is a segmentation (``segments``: IDs or names, their union; None = its only segment)
        or a label-map / scalar volume on the reference grid (``label``: one value; None = every non-zero).
        """
        if mask is None:
            raise InputError("Select the tumour segment (or a label map of it).")
        if mask.IsA("vtkMRMLSegmentationNode"):
            ids = arrays.segment_ids(mask)
            wanted = [segments] if isinstance(segments, str) else list(segments or [])
            if not wanted:
                if len(ids) != 1:
                    raise InputError(f"Segmentation '{mask.GetName()}' has {len(ids)} segments; choose the tumour "
                                     "segment(s).")
                wanted = ids
            result = np.zeros(Geometry.from_node(reference).shape, bool)
            for item in wanted:
                segment_id = item if item in ids else arrays.segment_id_by_name(mask, item)
                result |= arrays.mask_from_segment(mask, segment_id, reference)
            return result
        geometry = require_scalar_3d(mask, "tumour label map")
        require_same_geometry(Geometry.from_node(reference), geometry, reference.GetName(), mask.GetName())
        values = arrays.array_from_volume(mask)
        result = values == label if label is not None else values != 0
        if not result.any():
            what = f"label {label}" if label is not None else "non-zero voxels"
            raise EmptyMaskError(f"The label map '{mask.GetName()}' has no {what}.")
        return result

    # -- voxel fits ----------------------------------------------------------------------------

    def fit_adc_map(self, dwi_volume_nodes, b_values=None, mask=None, progress=None, name: str = "ADC", *,
                    b_vectors=None, repeats_are_averages: bool = False, override_b_values: bool = False):
        """Add a new volume ``ADC`` (mm²/s) fitted voxel-wise from the DWI volumes.

        ``dwi_volume_nodes`` is a list of volumes (then ``b_values`` is required) or a volume
        sequence whose index values are the b-values. Volumes of one b-value are combined first
        (b = 0 averaged, gradient directions ``b_vectors[n, 3]`` into the trace, repeats averaged if
        ``repeats_are_averages``: :mod:`virtualbiopsy.diffusion_shells`).

        ``mask`` (optional boolean array on the DWI grid) limits the fit; other voxels are 0.
        """
        task = as_task(progress)
        signals, b = self.dwi_signals(dwi_volume_nodes, b_values, override_b_values)
        shells = plan_shells(b, b_vectors, repeats_are_averages)
        fit = fit_monoexp(shells.combine(signals), shells.b_values, mask=mask, weights=shells.averages,
                          progress=task.sub(0.0, 0.95))
        reference = self.dwi_volumes(dwi_volume_nodes, b, True)[0][0]
        with self.context.transaction():
            node = arrays.add_volume_from_array(self.context, fit.adc, Geometry.from_node(reference), name)
            node.SetAttribute(attributes.UNITS, "mm2/s")
            node.SetAttribute(attributes.B_VALUES, ",".join(f"{v:g}" for v in shells.b_values))
            node.SetAttribute(attributes.DWI_COMBINATION, shells.describe())
        task.update(1.0, "ADC map ready")
        return node

    def voxel_fit(self, dwi, b_values=None, mask=None, segments=None, label=None,
                  parameters: FitClusterFitParameters | None = None, progress=None, *, b_vectors=None,
                  override_b_values: bool = False) -> VoxelFitOutputs:
        """ADC, its standard error, R² and S0 maps (new volumes) of the voxels in the tumour mask (volumes of
        one b-value combined first, as in :meth:`fit_adc_map`)."""
        task = as_task(progress)
        p = parameters or FitClusterFitParameters()
        p.validate()
        signals, b = self.dwi_signals(dwi, b_values, override_b_values)
        reference = self.dwi_volumes(dwi, b, True)[0][0]
        with self.context.transaction():
            tumour = self.tumour_mask(mask, reference, segments, label)
            b, shells = dwi_shells(signals, b, tumour, p, b_vectors)
            voxel_p = replace(p, voxel_noise_floor=p.noise_floor or p.voxel_noise_floor)
            noise, _, fit = fit_voxels(signals, b, shells, tumour, voxel_p, task.sub(0.0, 0.9))
            spatial = {}
            for key in ("adc", "adc_se", "r2", "s0", "valid"):
                values = getattr(fit, key)
                spatial[key] = np.zeros(tumour.shape, values.dtype)
                spatial[key][tumour] = values
            maps = self._add_fit_maps(spatial["adc"], spatial["adc_se"], spatial["r2"], spatial["s0"],
                                      spatial["valid"], reference, fit.b_values)
        task.update(1.0, "Voxel fit ready")
        return VoxelFitOutputs(*maps, noise_sigma=None if noise is None else noise.sigma,
                               summary=dwi_summary(shells, noise, fit))

    def _add_fit_maps(self, adc, se, r2, s0, valid, reference, b_fitted) -> list:
        geometry = Geometry.from_node(reference)
        bvals = ",".join(f"{v:g}" for v in b_fitted)
        nodes = []
        for values, name, unit in ((adc, "ADC", "mm2/s"), (se, "ADC SE", "mm2/s"), (r2, "ADC R2", "1"),
                                   (s0, "S0", "signal")):
            clean = np.where(valid & np.isfinite(values), values, 0.0)
            note = "0 outside the tumour and where no fit was possible"
            if name == "ADC SE" and np.any(valid & np.isnan(values)):  # two b-values and no noise estimate
                clean = np.where(valid & np.isnan(values), np.nan, clean)
                note += "; NaN where the SE is undefined (no residual and no noise estimate)"
            node = arrays.add_volume_from_array(self.context, clean.astype(np.float32), geometry, name)
            node.SetAttribute(attributes.UNITS, unit)
            node.SetAttribute(attributes.B_VALUES, bvals)
            node.SetAttribute(attributes.NOTE, note)
            nodes.append(node)
        return nodes

    # -- Fit-Cluster-Fit -------------------------------------------------------------------------

    def check_fit_cluster_fit_inputs(self, dwi, b_values=None, mask=None, segments=None, label=None,
                                     parameters: FitClusterFitParameters | None = None, dce=None, dce_times=None, *,
                                     b_vectors=None, override_b_values: bool = False,
                                     override_dce_times: bool = False):
        """Every check :meth:`fit_cluster_fit` makes before it fits (parameters, b-values and directions,
        grids, tumour mask, signals, DCE times), adding no node: a caller can refuse bad input before
        it starts a long job. Returns the :class:`~virtualbiopsy.diffusion_shells.DwiShells` (how the
        DWI volumes will be combined per b-value)."""
        p = parameters or FitClusterFitParameters()
        return self._fit_inputs(dwi, b_values, mask, segments, label, p, dce, dce_times, b_vectors,
                                override_b_values, override_dce_times)["shells"]

    def _fit_inputs(self, dwi, b_values, mask, segments, label, p, dce, dce_times, b_vectors, override_b_values,
                    override_dce_times) -> dict:
        p.validate(dce is not None)
        nodes, b_values, b_override = self._series_volumes(dwi, b_values, "DWI", override_b_values)
        signals, b = self.dwi_signals(nodes, b_values)
        reference = nodes[0]
        geometry = Geometry.from_node(reference)
        dce_signals = times = t_override = first = None
        if dce is not None:
            _, _, t_override = self._series_volumes(dce, dce_times, "DCE", override_dce_times)
            dce_signals, times, first = self.dce_signals(dce, dce_times, override_dce_times)
            require_same_geometry(geometry, Geometry.from_node(first), reference.GetName(), first.GetName())
        with self.context.transaction():
            tumour = self.tumour_mask(mask, reference, segments, label)
        if tumour.sum() < MIN_VOXELS:
            raise EmptyMaskError(f"The tumour mask has {int(tumour.sum())} voxels on the DWI grid; Fit-Cluster-Fit "
                                 f"needs at least {MIN_VOXELS}.")
        b, shells = dwi_shells(signals, b, tumour, p, b_vectors)
        return {"signals": signals, "b": b, "shells": shells, "reference": reference, "geometry": geometry,
                "tumour": tumour, "dce_signals": dce_signals, "times": times, "first": first,
                "b_values_override": b_override, "dce_times_override": t_override}

    def fit_cluster_fit(self, dwi, b_values=None, mask=None, segments=None, label=None,
                        parameters: FitClusterFitParameters | None = None, dce=None, dce_times=None,
                        dce_parameters: DceParameters | None = None, progress=None,
                        name: str = "Habitats", *, b_vectors=None, override_b_values: bool = False,
                        override_dce_times: bool = False) -> FitClusterFitOutputs:
        """Fit every tumour voxel, drop uncertain fits, cluster into habitats, refit each habitat's mean
        signal. Adds new nodes: ADC / ADC SE / ADC R2 / S0 volumes, a segmentation ``name`` with
        segments "habitat 1..k" (habitat 1 = lowest ADC) and "excluded (boundary or uncertain fit)", and a table
        ``name + ' table'`` (ADC in mm²/s with confidence interval, voxel-mean ADC, volume; iAUC60
        and its voxel mean when a DCE series is given).

        ``b_vectors[n_volumes, 3]``: gradient directions, to combine the volumes of one b-value into
        the trace. ``b_values`` / ``dce_times`` given for a sequence that stores its own are refused
        when they differ, unless ``override_b_values`` / ``override_dce_times`` (then recorded in the
        summary as ``b_values_override`` / ``dce_times_override``)."""
        task = as_task(progress)
        p = parameters or FitClusterFitParameters()
        inputs = self._fit_inputs(dwi, b_values, mask, segments, label, p, dce, dce_times, b_vectors,
                                  override_b_values, override_dce_times)
        reference, geometry, tumour, first = inputs["reference"], inputs["geometry"], inputs["tumour"], inputs["first"]
        with self.context.transaction():
            result = run_fit_cluster_fit(inputs["signals"], inputs["b"], tumour, p, b_vectors=b_vectors,
                                         voxel_volume_ml=geometry.voxel_volume_ml, dce_signals=inputs["dce_signals"],
                                         dce_times=inputs["times"], dce_parameters=dce_parameters,
                                         progress=task.sub(0.0, 0.9))
            for key in ("b_values_override", "dce_times_override"):
                if inputs[key] is not None:
                    result.summary[key] = inputs[key]
            task.update(0.9, "Adding the results to the scene")
            fit = result.voxel_fit
            spatial = {}
            for key, values in (("adc", fit.adc), ("se", fit.adc_se), ("r2", fit.r2), ("s0", fit.s0),
                                ("valid", fit.valid)):
                full = np.zeros(tumour.shape, values.dtype)
                full[tumour] = values
                spatial[key] = full
            maps = self._add_fit_maps(spatial["adc"], spatial["se"], spatial["r2"], spatial["s0"], spatial["valid"],
                                      reference, fit.b_values)
            segments_spec = {h: (f"habitat {h}", habitat_segment_colour(h)) for h in range(1, result.k + 1)}
            segments_spec[EXCLUDED_LABEL] = excluded_segment()
            habitats = arrays.add_segmentation_from_labels(self.context, result.labels, geometry, segments_spec, name,
                                                           reference_volume=reference)
            habitats.SetAttribute(attributes.HABITATS, str(result.k))
            table = arrays.add_table(self.context, result.table, f"{name} table")
            table.SetAttribute(attributes.UNITS, json.dumps({"adc": "mm2/s", "volume_ml": "mL",
                                                                  "iauc60": "s", "ttp_s": "s", "wash_in_per_s": "1/s"}))
            table.SetAttribute(attributes.SUMMARY, json.dumps(result.summary, default=float))
            dce_nodes = {}
            if result.dce is not None:
                dce_nodes = self._add_dce_maps(result.dce, first)
        task.update(1.0, f"{result.k} habitat(s)")
        return FitClusterFitOutputs(*maps, habitats, table, result.summary, result, dce_nodes)

    # -- DCE ------------------------------------------------------------------------------------

    def _add_dce_maps(self, maps: dce_module.DceMaps, reference) -> dict:
        geometry = Geometry.from_node(reference)
        window = f"{maps.window_s:g}"
        out = {}
        for key, values, name, unit in (("iauc", maps.iauc, f"iAUC{window}", "s"),
                                        ("time_to_peak", maps.time_to_peak_s, "Time to peak", "s"),
                                        ("wash_in", maps.wash_in_per_s, "Wash-in slope", "1/s")):
            node = arrays.add_volume_from_array(self.context, values.astype(np.float32), geometry, name)
            node.SetAttribute(attributes.UNITS, unit)
            node.SetAttribute(attributes.ARRIVAL, maps.arrival_mode if maps.region_arrival_s is None
                              else f"{maps.region_arrival_s:.2f} s ({maps.arrival_mode})")
            out[key] = node
        if maps.region_arrival_s is None:
            node = arrays.add_volume_from_array(self.context, maps.arrival_s.astype(np.float32), geometry,
                                                "Bolus arrival")
            node.SetAttribute(attributes.UNITS, "s")
            out["arrival"] = node
        return out

    def dce_metrics(self, series, times=None, mask=None, segments=None, label=None,
                    parameters: DceParameters | None = None, habitats=None, progress=None,
                    name: str = "DCE metrics", *, override_times: bool = False) -> DceOutputs:
        """Voxel-wise iAUC60, time to peak and wash-in slope in the tumour (new volumes), and a table with
        one row for the tumour's mean curve and, if a ``habitats`` segmentation is given, one per segment.
        ``times`` given for a sequence that stores its own must agree with them unless ``override_times``."""
        task = as_task(progress)
        d = parameters or DceParameters()
        _, _, override = self._series_volumes(series, times, "DCE", override_times)
        signals, t, reference = self.dce_signals(series, times, override_times)
        with self.context.transaction():
            tumour = self.tumour_mask(mask, reference, segments, label)
            maps = dce_module.dce_maps(signals, t, tumour, d.window_s, d.arrival, task.sub(0.0, 0.7))
            arrival = maps.region_arrival_s if maps.region_arrival_s is not None else float(
                np.nanmedian(maps.arrival_s[tumour & maps.valid]))
            regions = [("tumour", tumour)]
            if habitats is not None:
                for segment_id in arrays.segment_ids(habitats):
                    region = arrays.mask_from_segment(habitats, segment_id, reference, allow_empty=True) & tumour
                    if region.any():
                        regions.append((habitats.GetSegmentation().GetSegment(segment_id).GetName(), region))
            window = f"{d.window_s:g}"
            columns: dict[str, list] = {c: [] for c in ("region", "voxels", "volume_ml", "arrival_s", f"iauc{window}",
                                                        f"voxel_mean_iauc{window}", "ttp_s", "wash_in_per_s",
                                                        "peak_enhancement")}
            voxel_ml = Geometry.from_node(reference).voxel_volume_ml
            curves = {}
            for region_name, region in task.sub(0.7, 0.9).steps(regions, "Region curves"):
                curve = signals[:, region].astype(np.float64).mean(1)
                metrics = dce_module.curve_metrics(curve, t, arrival, d.window_s)
                curves[region_name] = curve
                columns["region"].append(region_name)
                columns["voxels"].append(int(region.sum()))
                columns["volume_ml"].append(float(region.sum() * voxel_ml))
                columns["arrival_s"].append(float(arrival))
                columns[f"iauc{window}"].append(float(metrics.iauc))
                inside = region & maps.valid
                columns[f"voxel_mean_iauc{window}"].append(float(maps.iauc[inside].mean()) if inside.any() else 0.0)
                columns["ttp_s"].append(float(metrics.time_to_peak_s))
                columns["wash_in_per_s"].append(float(metrics.wash_in_per_s))
                columns["peak_enhancement"].append(float(metrics.peak_enhancement))
            nodes = self._add_dce_maps(maps, reference)
            table = arrays.add_table(self.context, columns, name)
            summary = {"arrival_s": float(arrival), "arrival_mode": maps.arrival_mode, "window_s": d.window_s,
                       "tumour_voxels": int(tumour.sum()), "invalid_voxels": int((tumour & ~maps.valid).sum()),
                       "arrival_capped_voxels": 0 if maps.capped is None else int((tumour & maps.capped).sum()),
                       "times_s": [float(v) for v in t]}
            if override is not None:
                summary["times_override"] = override
            table.SetAttribute(attributes.SUMMARY, json.dumps(summary))
        task.update(1.0, "DCE metrics ready")
        return DceOutputs(nodes["iauc"], nodes["time_to_peak"], nodes["wash_in"], table, summary, nodes.get("arrival"),
                          maps, curves, t)
