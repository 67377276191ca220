"""Reviewing one study: run the model, look where it is unsure, correct a copy, compare, save.

:class:`ReviewSession` is what a viewer (the web page of ``virtualbiopsy view``, a test) drives.
It holds no GUI: every action is a library call on MRML nodes, run under the scene transaction
so that a refused or failed action leaves the scene as it was. Files are written only below the
session's ``out`` folder, under names chosen here (never a name from the page). It drives the
modules' Logic classes (:mod:`virtualbiopsy.logic`) and sits above them, as the command line does.

Heavy work is split so a GUI keeps its main thread free: ``prepare_*`` (main thread, reads the scene),
``job.run(progress)`` (any thread, no MRML), ``finish_*`` (main thread, adds nodes).
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.errors import FileFormatError, InputError
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.progress import as_task

MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # largest file a page may upload (a corrected mask or an extra image)
AUTOSAVE = ".autosave"
DIFFERENCE_COLOURS = {"added by the correction": (0.1, 0.8, 0.2), "removed by the correction": (0.9, 0.1, 0.8)}
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ModelChoice:
    """A model the page may pick by ``key``: the bundled demo, or a folder / zip named on the command line."""

    key: str
    label: str
    path: str
    sha256: str | None = None
    configuration: str | None = None  # which model of a folder / zip holding several
    checkpoint: str = "checkpoint_final.pth"


def model_choices(paths=(), sha256: str | None = None, configuration: str | None = None,
                  checkpoint: str = "checkpoint_final.pth") -> list[ModelChoice]:
    """The bundled DEMO model (when installed) and each model path given (``sha256`` applies to zips;
    ``configuration`` and ``checkpoint`` to every path given, as ``segment``'s options)."""
    from virtualbiopsy.segmentation.model_source import default_model_path

    choices = []
    demo = default_model_path()
    if demo:
        choices.append(ModelChoice("demo", "Bundled DEMO model (phantom-trained, not for patients)", demo))
    for index, path in enumerate(paths):
        path = Path(path)
        label = path.name + (f" ({configuration})" if configuration else "")
        choices.append(ModelChoice(f"model{index + 1}", label, str(path),
                                   sha256 if path.suffix.lower() == ".zip" else None, configuration, checkpoint))
    return choices


def safe_name(text: str, default: str = "study") -> str:
    """``text`` as a plain file / case name (letters, digits, ``_ . -``).

    >>> safe_name("../../etc/passwd"), safe_name("Case 7 (T2)")
    ('etc_passwd', 'Case_7_T2')
    """
    cleaned = _SAFE.sub("_", str(text)).strip("._-")
    cleaned = re.sub(r"_+", "_", cleaned.replace("..", "_")).strip("._-")
    return cleaned[:64] or default


class ReviewSession:
    """One study, one reader: the AI result, its corrected copy and what is saved (see the module docstring)."""

    def __init__(self, context, study, out: str | Path, models: list[ModelChoice]) -> None:
        from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
        from virtualbiopsy.segmentation.correction_session import CorrectionSession
        from virtualbiopsy.segmentation.model_source import ModelArchives

        self.context, self.study, self.out = context, study, Path(out)
        self.models = {m.key: m for m in models}
        self.segmentation_logic = NeuroblastomaSegLogic(context)
        self.correction = CorrectionSession(self.segmentation_logic)
        self._archives = ModelArchives()
        self.ai = None  # SegmentationOutputs of the last run
        self.ai_model: ModelChoice | None = None
        self.metrics: dict | None = None
        self.difference = None
        self.habitats = None
        self.radiomics_table = None
        self._restored_from: Path | None = None

    # -- the AI segmentation -------------------------------------------------------------------

    def prepare_segmentation(self, model_key: str, progress=None):
        """Check the model and the inputs and copy the voxels (main thread); returns the job to run."""
        from virtualbiopsy.logic.neuroblastoma_seg import SegmentParameters

        choice = self.models.get(model_key)
        if choice is None:
            raise InputError(f"Unknown model '{model_key}'; pick one of: {', '.join(self.models) or 'none given'}.")
        folder = self._archives.folder(choice.path, choice.sha256, choice.configuration)
        parameters = SegmentParameters(str(folder), device="cpu", checkpoint=choice.checkpoint,
                                       configuration=choice.configuration)
        job = self.segmentation_logic.prepare_segmentation([self.study.primary], parameters,
                                                           f"{self.study.primary.GetName()}", progress)
        job.choice = choice
        return job

    def finish_segmentation(self, job, result) -> dict:
        """Add the finished job's nodes (main thread); returns the summary shown to the reader."""
        from virtualbiopsy.segmentation.model_source import is_demo_model

        outputs = self.segmentation_logic.add_segmentation_results(job, result)
        self.ai, self.ai_model = outputs, job.choice
        outputs.summary["demo"] = is_demo_model(job.parameters.model_path)
        return outputs.summary

    def segment(self, model_key: str, progress=None) -> dict:
        """The three steps in one call (tests, scripts)."""
        task = as_task(progress)
        job = self.prepare_segmentation(model_key, task.sub(0.0, 0.05))
        return self.finish_segmentation(job, job.run(task.sub(0.05, 1.0)))

    @property
    def tumour_segment_id(self) -> str:
        self._require_ai()
        return arrays.segment_ids(self.ai.segmentation)[0]

    def review_targets(self) -> list[dict]:
        """Where to look: the uncertain regions (largest first) then the axial slices ranked by summed
        uncertainty, each with the RAS point that centres the views there."""
        self._require_ai()
        geometry = Geometry.from_node(self.study.primary)
        summary = self.ai.summary
        targets = []
        for index, region in enumerate(summary.get("regions") or [], start=1):
            targets.append({"label": f"Uncertain region {index}: {region['volume_ml']:.2f} mL, slices "
                                     f"{region['slices'][0] + 1}-{region['slices'][1] + 1}",
                            "ras": [float(v) for v in region["centroid_ras"]],
                            "where": _where(region["centroid_ras"])})
        tumour = arrays.mask_from_segment(self.ai.segmentation, self.tumour_segment_id, self.study.primary,
                                          allow_empty=True)
        for rank, k in enumerate(summary.get("slices_to_review") or [], start=1):
            where = np.argwhere(tumour[k])
            j, i = where.mean(axis=0) if len(where) else (np.array(geometry.shape[1:]) - 1) / 2.0
            ras = geometry.ijk_to_ras[:3, :3] @ np.array([i, j, k]) + geometry.ijk_to_ras[:3, 3]
            targets.append({"label": f"Slice {k + 1} (rank {rank} by summed uncertainty)",
                            "ras": [float(v) for v in ras], "where": _where(ras)})
        return targets

    # -- correction ----------------------------------------------------------------------------

    def start_correction(self):
        """The copy to edit (new, or the one already being edited); the AI result is never edited."""
        self._require_ai()
        corrected, resumed = self.correction.start(self.ai.segmentation)
        return corrected, resumed

    def import_correction(self, path: str | Path):
        """A corrected segmentation made elsewhere (``.seg.nrrd`` / label map) as the corrected copy; it must
        lie on the image's voxel grid. Nothing is added if it is refused."""
        from virtualbiopsy.mrml import MRMLContext

        self._require_ai()
        # checked in a scratch scene first: a refused file never appears (even briefly) in the scene being viewed
        scratch = MRMLContext.create()
        geometry = Geometry.from_node(self.study.primary)
        reference = arrays.add_volume_from_array(scratch, np.zeros(geometry.shape, np.uint8), geometry, "reference")
        arrays.require_segmentation_on_grid(io.load_segmentation(scratch, path), reference)
        with self.context.transaction():
            node = io.load_segmentation(self.context, path, f"{Path(path).name.split('.')[0]} (imported)")
            arrays.require_segmentation_on_grid(node, self.study.primary)
            node.SetAttribute(attributes.SOURCE, "corrected (imported)")
            node.SetAttribute(attributes.CORRECTED_FROM, self.ai.segmentation.GetID())
            self.correction.adopt(node)
        return node

    def compare(self) -> dict:
        """AI vs corrected tumour: the metrics (name -> value, unit, description) and a new difference overlay."""
        self._require_corrected()
        ai, corrected = self.ai.segmentation, self.correction.corrected
        reference = self.study.primary
        corrected_id = self.corrected_tumour_id
        seconds = self.correction.finish()
        with self.context.transaction():
            table = self.segmentation_logic.compare(ai, self.tumour_segment_id, corrected, corrected_id, reference)
            columns = arrays.table_columns(table)
            rows = {name: {"value": float(value), "unit": unit, "description": description}
                    for name, value, unit, description in zip(columns["metric"], columns["value"], columns["unit"],
                                                              columns["description"])}
            rows["editing_time_s"] = {"value": round(float(seconds or 0.0), 1), "unit": "s",
                                      "description": "time spent correcting (from Start correcting to Compare)"}
            before = arrays.mask_from_segment(ai, self.tumour_segment_id, reference, allow_empty=True)
            after = arrays.mask_from_segment(corrected, corrected_id, reference, allow_empty=True)
            labels = np.zeros(before.shape, np.uint8)
            labels[after & ~before], labels[before & ~after] = 1, 2
            names = list(DIFFERENCE_COLOURS)
            difference = arrays.add_segmentation_from_labels(
                self.context, labels, Geometry.from_node(reference),
                {1: (names[0], DIFFERENCE_COLOURS[names[0]]), 2: (names[1], DIFFERENCE_COLOURS[names[1]])},
                f"{corrected.GetName()} difference", reference_volume=reference, keep_empty=True)
            if self.difference is not None and self.context.scene.IsNodePresent(self.difference):
                self.context.scene.RemoveNode(self.difference)  # the page shows one difference overlay
        self.difference, self.metrics, self._metrics_table = difference, rows, table
        return rows

    # -- the rest of the pipeline --------------------------------------------------------------

    def tumour_mask_node(self):
        """The segmentation the later steps use: the corrected copy once there is one, else the AI result."""
        self._require_ai()
        corrected = self.correction.corrected
        if corrected is not None and self.context.scene.IsNodePresent(corrected):
            return corrected, self.corrected_tumour_id
        return self.ai.segmentation, self.tumour_segment_id

    def fit_cluster_fit(self, progress=None) -> list[dict]:
        """Fit-Cluster-Fit habitats of the tumour on the study's DWI (with its DCE when present)."""
        from virtualbiopsy.logic.fit_cluster_fit import FitClusterFitLogic

        if self.study.dwi is None:
            raise InputError(f"Study '{self.study.name}' has no DWI series; Fit-Cluster-Fit needs one "
                             "(a dwi.seq.nrrd or a DWI DICOM series).")
        mask, segment_id = self.tumour_mask_node()
        outputs = FitClusterFitLogic(self.context).fit_cluster_fit(self.study.dwi, mask=mask, segments=[segment_id],
                                                                   dce=self.study.dce, progress=progress)
        if self.habitats is not None:
            self._remove(self.habitats.habitats, self.habitats.table, self.habitats.adc, self.habitats.adc_se,
                         self.habitats.r2, self.habitats.s0, *self.habitats.dce.values())
        self.habitats = outputs
        return _rows(outputs.table)

    def radiomics(self, progress=None) -> list[dict]:
        """pyradiomics features of the tumour on the segmented image (the project's MR preset)."""
        from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic

        mask, segment_id = self.tumour_mask_node()
        table = RadiomicsBiomarkersLogic(self.context).extract_features(self.study.primary, mask, [segment_id],
                                                                        progress=progress)
        if self.radiomics_table is not None:
            self._remove(self.radiomics_table)
        self.radiomics_table = table
        return _rows(table)

    def predict(self, model_folder: str | Path, progress=None) -> dict:
        """The outcome model (a folder written by ``predict train``) applied to this patient's tumour radiomics:
        the prediction, its SHAP values and a waterfall figure (``out/outcome/``). The model's features must be
        radiomics columns of this extraction (same names); missing ones are refused by name."""
        import pandas as pd

        from virtualbiopsy.prediction import figures
        from virtualbiopsy.prediction.explain import explain
        from virtualbiopsy.prediction.model_card import apply_model, load_model

        task = as_task(progress)
        task.update(0.0, "Loading the outcome model")
        model = load_model(model_folder)
        if self.radiomics_table is None:
            self.radiomics(task.sub(0.05, 0.5))
        case = safe_name(self.study.name, "case")
        features = {k: v for k, v in _rows(self.radiomics_table)[0].items() if k not in ("segment", "segment_id",
                                                                                        "images")}
        predictions, X = apply_model(model, pd.DataFrame([{model.key: case, **features}]), model.key)
        values = explain(model, X, predictions[model.key], progress=task.sub(0.5, 0.95))
        folder = self.out / "outcome"
        folder.mkdir(parents=True, exist_ok=True)
        predictions.to_csv(folder / "prediction.csv", index=False)
        values.to_frame(model.key).to_csv(folder / "shap_values.csv", index=False)
        figure = figures.shap_waterfall(folder / "waterfall.png", values, case)
        task.update(1.0, "Prediction ready")
        row = predictions.iloc[0].to_dict()
        return {"model": model.name, "case": case, "prediction": {k: v for k, v in row.items() if k != model.key},
                "figure": figure, "output": values.output}

    # -- files ---------------------------------------------------------------------------------

    def save(self, progress=None) -> list[Path]:
        """Write the results below ``out``; returns the files written. Nothing in the scene changes."""
        task = as_task(progress)
        self._require_ai()
        self.out.mkdir(parents=True, exist_ok=True)
        written = []
        task.update(0.0, "Saving the AI segmentation")
        written.append(io.save_node(self.ai.segmentation, self.out / "ai_segmentation.seg.nrrd"))
        if self.ai.uncertainty is not None:
            written.append(io.save_node(self.ai.uncertainty, self.out / "uncertainty.nrrd"))
        summary = self.out / "summary.json"
        summary.write_text(json.dumps(self.ai.summary, indent=2))
        written.append(summary)
        corrected = self.correction.corrected
        if corrected is not None and self.context.scene.IsNodePresent(corrected):
            task.update(0.2, "Saving the corrected segmentation")
            written.append(io.save_node(corrected, self.out / "corrected.seg.nrrd"))
            if self.study.from_dicom:
                written += self._save_dicom_seg(corrected)
        if self.metrics is not None:
            written.append(io.write_csv({"metric": list(self.metrics),
                                         "value": [r["value"] for r in self.metrics.values()],
                                         "unit": [r["unit"] for r in self.metrics.values()],
                                         "description": [r["description"] for r in self.metrics.values()]},
                                        self.out / "metrics.csv"))
        if self.habitats is not None:
            written.append(io.write_csv(self.habitats.table, self.out / "habitats.csv"))
        if self.radiomics_table is not None:
            written.append(io.write_csv(self.radiomics_table, self.out / "radiomics.csv"))
        task.update(0.5, "Saving the scene")
        written.append(io.save_scene(self.context, self.out / "scene.mrb"))
        self._clear_autosave()
        task.update(1.0, "Saved")
        return written

    def _save_dicom_seg(self, corrected) -> list[Path]:
        from virtualbiopsy.dicom import export

        algorithm = export.Algorithm("SEMIAUTOMATIC", "AI segmentation corrected by a reader")
        return [export.write_segmentation(corrected, self.study.primary, self.out / "dicom" / "corrected_seg.dcm",
                                          algorithm, [self.corrected_tumour_id],
                                          series_description="Corrected tumour segmentation", series_number=911)]

    def export_for_retraining(self, progress=None) -> Path:
        """The corrected case as an nnU-Net v2 raw dataset below ``out/retraining``."""
        from virtualbiopsy.segmentation.correction import RetrainingCase

        self._require_corrected()
        case = RetrainingCase(safe_name(self.study.name, "case"), [self.study.primary], self.correction.corrected,
                              self.corrected_tumour_id)
        return self.segmentation_logic.export_for_retraining([case], self.out / "retraining", progress=progress,
                                                             overwrite=True)

    def save_upload(self, name: str, content: bytes) -> Path:
        """Store a file the page uploaded below ``out/uploads`` under a safe name (size-limited)."""
        if len(content) > MAX_UPLOAD_BYTES:
            raise InputError(f"'{safe_name(name, 'upload')}' is {len(content) / 2**20:.0f} MiB; uploads are limited "
                             f"to {MAX_UPLOAD_BYTES // 2**20} MiB.")
        lowered = str(name).lower()
        suffix = next((s for s in (".seg.nrrd", ".nii.gz", ".nrrd", ".nii", ".mha", ".zip") if lowered.endswith(s)),
                      None)
        if suffix is None:
            raise InputError(f"'{safe_name(name, 'upload')}' is not an image or segmentation file this page takes "
                             "(.seg.nrrd, .nrrd, .nii, .nii.gz, .mha).")
        stem = safe_name(str(name)[: -len(suffix)], "upload")
        folder = self.out / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}{suffix}"
        path.write_bytes(content)
        return path

    # -- autosave ------------------------------------------------------------------------------

    @property
    def autosave_folder(self) -> Path:
        return self.out / AUTOSAVE / self.study.key()

    def autosave(self) -> Path | None:
        """Keep the edits (AI result, corrected copy, editing time) where the next view of this study finds
        them. Written to a temporary folder first, then swapped in, so a crash never leaves half an autosave."""
        corrected = self.correction.corrected
        if self.ai is None or corrected is None or not self.context.scene.IsNodePresent(corrected):
            return None
        folder = self.autosave_folder
        staging = folder.with_name(folder.name + ".writing")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        io.save_node(self.ai.segmentation, staging / "ai.seg.nrrd")
        io.save_node(corrected, staging / "corrected.seg.nrrd")
        state = {"study": self.study.name, "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
                 "editing_seconds": round(self.correction.seconds, 3), "ai_name": self.ai.segmentation.GetName(),
                 "corrected_name": corrected.GetName(), "summary": self.ai.summary}
        (staging / "state.json").write_text(json.dumps(state, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        return folder

    def autosave_offer(self) -> dict | None:
        """What an autosave of this study holds (for the page to offer it back), or None."""
        state = self.autosave_folder / "state.json"
        if not state.is_file():
            return None
        try:
            return json.loads(state.read_text())
        except ValueError:
            return None

    def restore_autosave(self):
        """Bring back the autosaved AI result and corrected copy as new nodes; returns the corrected node."""
        from virtualbiopsy.logic.neuroblastoma_seg import SegmentationOutputs

        state = self.autosave_offer()
        if state is None:
            raise FileFormatError("There is no autosave of this study to restore.")
        folder = self.autosave_folder
        with self.context.transaction():
            ai = io.load_segmentation(self.context, folder / "ai.seg.nrrd", state["ai_name"])
            corrected = io.load_segmentation(self.context, folder / "corrected.seg.nrrd", state["corrected_name"])
            for node, source in ((ai, "AI"), (corrected, "corrected")):
                arrays.require_segmentation_on_grid(node, self.study.primary)
                node.SetAttribute(attributes.SOURCE, source)
            corrected.SetAttribute(attributes.CORRECTED_FROM, ai.GetID())
            self.ai = SegmentationOutputs(ai, None, None, dict(state.get("summary") or {}))
            self.correction.adopt(corrected, float(state.get("editing_seconds") or 0.0))
        return corrected

    def _clear_autosave(self) -> None:
        shutil.rmtree(self.autosave_folder, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------

    def _require_ai(self) -> None:
        if self.ai is None or not self.context.scene.IsNodePresent(self.ai.segmentation):
            raise InputError("Run the AI segmentation first.")

    def _require_corrected(self) -> None:
        self._require_ai()
        corrected = self.correction.corrected
        if corrected is None or not self.context.scene.IsNodePresent(corrected):
            raise InputError("Start correcting first: the comparison is between the AI result and its corrected "
                             "copy.")

    @property
    def corrected_tumour_id(self) -> str:
        """The tumour segment's ID in the corrected copy (the AI's ID, kept by the copy)."""
        corrected = self.correction.corrected
        ids = arrays.segment_ids(corrected)
        tumour = self.tumour_segment_id
        return tumour if tumour in ids else ids[0]

    def _remove(self, *nodes) -> None:
        for node in nodes:
            if node is not None and self.context.scene.IsNodePresent(node):
                self.context.scene.RemoveNode(node)


def _where(ras) -> str:
    """A RAS point as a radiologist reads it: R/L, A/P, S/I in mm."""
    r, a, s = (float(v) for v in ras)
    return (f"{abs(r):.1f} mm {'R' if r >= 0 else 'L'}, {abs(a):.1f} mm {'A' if a >= 0 else 'P'}, "
            f"{abs(s):.1f} mm {'S' if s >= 0 else 'I'}")


def _rows(table) -> list[dict]:
    columns = arrays.table_columns(table)
    names = list(columns)
    count = len(columns[names[0]]) if names else 0
    return [{name: columns[name][row] for name in names} for row in range(count)]
