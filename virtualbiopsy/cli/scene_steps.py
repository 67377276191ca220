"""A panel's heavy step as a command line run in its own process (:mod:`virtualbiopsy.command_job`): the scene's
inputs written to a work folder, the command's arguments built from the library's parameter dataclass, and
its output files loaded back into the scene as new nodes.

Only what crosses the process boundary lives here; the computation is the command's (the same code as the
in-process logic, so the results agree: ``test_scene_steps.py`` compares them). A :class:`SceneStep` is
prepared on the main thread (it reads the scene), run by a ``CommandJob`` polled from a GUI timer, and
loaded on the main thread in one scene transaction (a failed load adds nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from virtualbiopsy.errors import InputError


@dataclass
class SceneStep:
    """``arguments`` for ``virtualbiopsy`` (its output in ``out``); ``load(context)`` adds what it wrote."""

    title: str
    arguments: list[str]
    out: Path
    load: Callable[[object], dict]


def fit_cluster_fit_step(context, dwi, b_values, segmentation, segment_ids, parameters, workdir, *, dce=None,
                         dce_times=None, window_s: float = 60.0, override_b_values: bool = False,
                         name: str = "Habitats") -> SceneStep:
    """Fit-Cluster-Fit of ``dwi`` (a sequence node, or volume nodes in b-value order) inside the segments
    ``segment_ids`` of ``segmentation``, as ``virtualbiopsy fcf`` in a process; ``parameters`` a
    :class:`~virtualbiopsy.habitats.pipeline.FitClusterFitParameters`. ``load`` adds the habitat segmentation,
    the ADC and ADC SE maps (and the iAUC map with ``dce``) and the habitat table, all named after ``name``."""
    from virtualbiopsy.mrml import io

    work = Path(workdir)
    inputs, out = work / "inputs", work / "out"
    inputs.mkdir(parents=True, exist_ok=True)
    if segmentation is None or not segment_ids:
        raise InputError("Select the tumour segment(s) for Fit-Cluster-Fit.")
    arguments = ["fcf", "--dwi", *_write_series(dwi, inputs, "dwi"),
                 "--mask", str(io.export_node(segmentation, inputs / "tumour.seg.nrrd"))]
    for segment_id in segment_ids:
        segment = segmentation.GetSegmentation().GetSegment(segment_id)
        if segment is None:
            raise InputError(f"'{segmentation.GetName()}' has no segment with ID '{segment_id}'.")
        arguments += ["--segment", segment.GetName()]
    if b_values is not None:
        arguments += ["--b-values", ",".join(f"{float(b):g}" for b in b_values)]
    if override_b_values:
        arguments.append("--override-b-values")
    if dce is not None:
        arguments += ["--dce", *_write_series(dce, inputs, "dce"), "--window", f"{float(window_s):g}"]
        if dce_times is not None:
            arguments += ["--times", ",".join(f"{float(t):g}" for t in dce_times)]
    arguments += [*fcf_arguments(parameters), "--out", str(out)]

    def load(target) -> dict:
        with target.transaction():
            nodes = {"habitats": io.load_segmentation(target, out / "habitats.seg.nrrd", name),
                     "adc": io.load_volume(target, out / "adc.nrrd", f"{name} ADC"),
                     "adc_se": io.load_volume(target, out / "adc_se.nrrd", f"{name} ADC SE"),
                     "table": load_csv_table(target, out / "habitats.csv", f"{name} table")}
            if (out / "iauc60.nrrd").is_file():
                nodes["iauc"] = io.load_volume(target, out / "iauc60.nrrd", f"{name} iAUC60")
        return nodes

    return SceneStep("Fit-Cluster-Fit", arguments, out, load)


def fcf_arguments(parameters) -> list[str]:
    """The options of ``fcf`` that give ``parameters`` (a FitClusterFitParameters): the inverse of
    :func:`virtualbiopsy.cli.fcf.parameters_from_args`, so a step run as a command gets the panel's parameters."""
    p = parameters
    out = ["--noise-method", p.noise_method, "--method", p.method, "--k-max", str(p.k_max),
           "--features", ",".join(p.features), "--min-habitat-voxels", str(p.min_habitat_voxels), "--ci", p.ci_method,
           "--bootstrap", str(p.n_bootstrap), "--confidence", repr(float(p.confidence)), "--seed", str(p.seed),
           "--erode", str(p.erode_voxels)]
    out += ["--threshold-se" if p.threshold_kind == "absolute" else "--threshold-percentile", repr(float(p.threshold))]
    for option, value in (("--min-b", p.min_b), ("--max-b", p.max_b), ("--noise-sigma", p.noise_sigma)):
        if value is not None:
            out += [option, repr(float(value))]
    if p.k is not None:
        out += ["--k", str(p.k)]
    for option, flag in (("--nonlinear", p.nonlinear), ("--noise-floor", p.noise_floor),
                         ("--voxel-noise-floor", p.voxel_noise_floor),
                         ("--repeats-are-averages", p.repeats_are_averages)):
        if flag:
            out.append(option)
    return out


def segment_arguments(parameters) -> list[str]:
    """The options of ``segment`` that give ``parameters`` (a SegmentParameters): the inverse of
    :func:`virtualbiopsy.cli.segment.parameters_from_args`."""
    p = parameters
    out = ["--model", str(p.model_path), "--device", p.device, "--threshold", repr(float(p.uncertain_threshold)),
           "--checkpoint", p.checkpoint, "--precision", p.precision, "--tile-step", repr(float(p.tile_step_size))]
    if p.folds is not None:
        out += ["--folds", ",".join(str(f) for f in p.folds)]
    if p.configuration:
        out += ["--configuration", p.configuration]
    if p.mirror_axes is not None:
        out += ["--mirror-axes", ",".join(str(a) for a in p.mirror_axes)]
    if not p.mirroring:
        out.append("--no-mirroring")
    if not p.uncertainty:
        out.append("--no-uncertainty")
    return out


def segment_step(context, volumes, parameters, workdir) -> SceneStep:
    """The nnU-Net segmentation of ``volumes`` (one per model channel, in its order) as ``virtualbiopsy
    segment`` in a process. ``load`` adds the AI segmentation, its uncertainty, disagreement and agreement
    nodes named after the first volume (as the in-process logic names them) and returns them with the
    summary as a :class:`~virtualbiopsy.logic.neuroblastoma_seg.SegmentationOutputs` under ``"outputs"``."""
    import json

    from virtualbiopsy import attributes
    from virtualbiopsy.logic.neuroblastoma_seg import SegmentationOutputs
    from virtualbiopsy.mrml import io

    volumes = list(volumes)
    if not volumes or any(v is None for v in volumes):
        raise InputError("Choose an input volume for every channel of the model.")
    work = Path(workdir)
    inputs, out = work / "inputs", work / "out"
    arguments = ["segment", *segment_arguments(parameters)]
    for index, volume in enumerate(volumes):
        arguments += ["--image", str(io.export_node(volume, inputs / f"channel_{index}.nrrd"))]
    arguments += ["--out", str(out)]
    base = volumes[0].GetName()

    def load(target) -> dict:
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        optional = {key: out / f"{key}.nrrd" for key in ("uncertainty", "disagreement", "fold_disagreement")}
        with target.transaction():
            segmentation = io.load_segmentation(target, out / "segmentation.seg.nrrd", f"{base} AI segmentation")
            segmentation.SetAttribute(attributes.SOURCE, "AI")
            segmentation.SetAttribute(attributes.MODEL, str(summary.get("model", "")))
            maps = {key: io.load_volume(target, path, f"{base} {key.replace('_', ' ')}")
                    for key, path in optional.items() if path.is_file()}
            agreement = (io.load_segmentation(target, out / "agreement.seg.nrrd", f"{base} agreement contours")
                         if (out / "agreement.seg.nrrd").is_file() else None)
        outputs = SegmentationOutputs(segmentation, maps.get("uncertainty"), agreement, summary,
                                      maps.get("disagreement"), maps.get("fold_disagreement"))
        return {"outputs": outputs, "segmentation": segmentation, **maps}

    return SceneStep("Segmentation", arguments, out, load)


def _write_series(series, folder: Path, stem: str) -> list[str]:
    """A sequence node as one ``.seq.nrrd``, or volume nodes as one NRRD each (in their order)."""
    from virtualbiopsy.mrml import io

    if series is None:
        raise InputError(f"Select the {stem.upper()} series.")
    if isinstance(series, (list, tuple)):
        if not series:
            raise InputError(f"Select the {stem.upper()} volumes.")
        return [str(io.export_node(node, folder / f"{stem}_{i:03d}.nrrd")) for i, node in enumerate(series)]
    return [str(io.export_node(series, folder / f"{stem}.seq.nrrd"))]


def load_csv_table(context, path, name: str):
    """A CSV the command line wrote, as a new table node (through the one DataFrame -> table conversion)."""
    from virtualbiopsy.mrml import arrays
    from virtualbiopsy.prediction.data import read_table

    return arrays.add_frame(context, read_table(path), name)
