"""The review page of ``virtualbiopsy view``: Slicer's slice views and Segment Editor effects in a browser
(trame-slicer), driving one :class:`~virtualbiopsy.review.session.ReviewSession`.

Thin by design: every action is one library call, run by :meth:`ReviewApp.run_action`, which shows
progress, offers Cancel, puts the library's one-line message in the error line, and keeps the
session alive whatever fails (the library's transaction leaves the scene as it was). The page sends
no path: the study, the models and ``--out`` are fixed when the server starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.errors import Cancelled, VirtualBiopsyError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.progress import CancelToken, Task
from virtualbiopsy.segmentation.metrics import METRIC_DESCRIPTIONS

LOG = logging.getLogger("virtualbiopsy.view")
AUTOSAVE_EVERY_S = 5.0
EFFECTS = ("none", "paint", "erase", "scissors", "threshold", "islands", "smoothing")
WINDOW_PRESETS = {"auto": "Auto (1-99 %)", "full": "Full range", "bright": "Bright structures (50-99.5 %)",
                  "dark": "Dark structures (0.5-50 %)"}
METRIC_LABELS = {"dsc": "DSC", "jaccard": "Jaccard", "fpr": "FPR", "fnr": "FNR", "hd95_mm": "HD95",
                 "msd_mm": "MSD", "surface_dsc": "Surface DSC", "added_path_length_mm": "APL",
                 "volume_ai_ml": "Volume AI", "volume_corrected_ml": "Volume corrected",
                 "volume_difference_ml": "Volume difference", "volume_difference_percent": "Volume difference",
                 "editing_time_s": "Editing time"}


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(round(max(0.0, min(1.0, float(c))) * 255)):02x}" for c in rgb[:3])


class ReviewApp:
    """The page and its actions. ``source``: keyword arguments of :func:`~virtualbiopsy.review.study.open_study`."""

    def __init__(self, server, source: dict, out: Path, models, show_3d: bool = False,
                 outcome_model: Path | None = None) -> None:
        import slicer
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories
        from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition
        from undo_stack import UndoStack

        from virtualbiopsy.mrml import MRMLContext
        from virtualbiopsy.review.session import ReviewSession
        from virtualbiopsy.review.study import open_study

        self.server, self.state = server, server.state
        import vtk

        output = vtk.vtkOutputWindow.GetInstance()
        self.slicer_app = SlicerApp()
        vtk.vtkOutputWindow.SetInstance(output)  # SlicerApp sends VTK's messages to stderr; keep the caller's choice
        self.slicer_app.register_module_logic(slicer.vtkSlicerTablesLogic(), logic_name="Tables")
        self.context = MRMLContext.attach(self.slicer_app.scene, self.slicer_app.app_logic)
        study = open_study(self.context, **source)  # refused before the server starts: the CLI prints why
        self.session = ReviewSession(self.context, study, out, models)
        register_rca_factories(self.slicer_app.view_manager, server)
        views = [ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.coronal_view(),
                 ViewLayoutDefinition.sagittal_view()]
        if show_3d:
            views.append(ViewLayoutDefinition.threed_view())
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, server)
        self.layout_manager.register_layout_dict({"review": Layout(LayoutDirection.Horizontal, views)})
        self.layout_manager.set_layout("review")
        self.editor = self.slicer_app.segmentation_editor
        self.undo_stack = UndoStack(undo_limit=50)
        self.editor.set_undo_stack(self.undo_stack)
        for signal in self.undo_stack.signals():
            signal.connect(self._schedule_edit_update)
        self._observed = None  # (segmentation, observer tag) of the corrected copy
        self._edit_update_pending = False
        self._autosave_pending = False
        self.outcome_model = outcome_model
        self._token: CancelToken | None = None
        self._last_autosave = 0.0
        self.autosave_every = AUTOSAVE_EVERY_S
        self._dirty = False
        self._init_state(models)
        from virtualbiopsy_web import page

        self.ui = page.build(self)
        self.slicer_app.display_manager.show_volume(study.primary, do_reset_views=True)
        self.apply_window_preset("auto")
        self._refresh_lists()
        for view in self.slicer_app.view_manager.get_slice_views():  # the page shows where each view is
            view.get_view_node().AddObserver("ModifiedEvent", self._on_slice_moved)
        server.controller.on_client_exited.add(self._on_client_exited)
        server.controller.on_server_exited.add(self._on_server_exited)

    # -- state ---------------------------------------------------------------------------------

    def _init_state(self, models) -> None:
        study = self.session.study
        offer = self.session.autosave_offer()
        defaults = {
            "trame__title": f"Virtual Biopsy review - {study.name}",
            "study_name": study.name, "busy": False, "busy_action": "", "progress": 0, "progress_text": "",
            "error": "", "message": "", "warnings": [],
            "volumes": [], "background_id": study.primary.GetID(), "window_preset": "auto",
            "window_presets": [{"value": k, "title": t} for k, t in WINDOW_PRESETS.items()],
            "segments": [],
            "models": [{"value": m.key, "title": m.label} for m in models],
            "model_key": models[0].key if models else None,
            "has_ai": False, "summary": None, "targets": [], "overlay_opacity": 0.5, "show_overlay": True,
            "colour_bar": self._colour_bar(), "correcting": False, "effect": "none", "brush_mm": 5.0,
            "threshold_range": [0.0, 1.0], "threshold_limits": [0.0, 1.0], "min_island_voxels": 100,
            "smoothing_mm": 3.0, "can_undo": False, "can_redo": False, "editing_seconds": 0.0,
            "corrected_voxels": None, "active_effect": "none", "corrected_ml": None, "metrics": [], "saved": [],
            "habitats": [], "radiomics": [], "autosave_offer": offer is not None,
            "autosave_text": (f"An autosave of this study from {offer['saved']} holds unsaved corrections "
                              f"({offer['editing_seconds']:.0f} s of editing).") if offer else "",
            "has_dwi": study.dwi is not None, "slice_positions": {},
            "has_outcome_model": self.outcome_model is not None, "prediction": None,
        }
        for key, value in defaults.items():
            self.state[key] = value
        self.state.change("overlay_opacity", "show_overlay")(self._on_overlay_changed)
        self.state.change("background_id")(self._on_background_changed)
        self.state.change("window_preset")(lambda window_preset, **_: self.run_sync(
            "window", lambda: self.apply_window_preset(window_preset)))
        self.state.change("effect", "brush_mm")(self._on_effect_changed)

    def _colour_bar(self) -> str:
        """A CSS gradient sampled from the Iron colour table the overlay uses (so the bar is the map's)."""
        node = self.context.scene.GetFirstNodeByName("Iron")
        if node is None:
            return "linear-gradient(to right, black, white)"
        table = node.GetLookupTable()
        stops = []
        for step in range(9):
            rgb = [0.0, 0.0, 0.0]
            table.GetColor(table.GetRange()[0] + step / 8 * (table.GetRange()[1] - table.GetRange()[0]), rgb)
            stops.append(f"{_hex(rgb)} {step * 12.5:.1f}%")
        return "linear-gradient(to right, " + ", ".join(stops) + ")"

    # -- running actions -----------------------------------------------------------------------

    def _report(self, fraction: float, message: str) -> None:
        with self.state:
            self.state.progress = int(round(100 * fraction))
            self.state.progress_text = message

    def _thread_progress(self, loop):
        def callback(fraction: float, message: str) -> None:
            loop.call_soon_threadsafe(self._report, fraction, message)
        return callback

    def _start(self, name: str) -> bool:
        if self.state.busy:
            self.state.error = f"Wait for '{self.state.busy_action}' to finish (or cancel it) first."
            return False
        self.state.update({"busy": True, "busy_action": name, "progress": 0, "progress_text": name, "error": "",
                           "message": ""})
        self.state.flush()
        return True

    def _fail(self, error: BaseException) -> None:
        if isinstance(error, Cancelled):
            self.state.message = str(error)
        elif isinstance(error, VirtualBiopsyError | OSError):
            self.state.error = str(error).splitlines()[0] if str(error) else type(error).__name__
        else:  # a bug: one line on the page, the traceback in the server's log
            LOG.exception("Action failed")
            self.state.error = f"Internal error ({type(error).__name__}: {error}); the scene was left unchanged."

    def run_sync(self, name: str, action) -> None:
        """A short action on the main thread (under a second)."""
        if not self._start(name):
            return
        try:
            message = action()
            if isinstance(message, str):
                self.state.message = message
        except BaseException as error:  # noqa: BLE001 - every failure is a line on the page
            self._fail(error)
        finally:
            self.state.update({"busy": False, "busy_action": "", "progress": 0})
            self._refresh_lists()

    async def run_action(self, name: str, action) -> None:
        """``action(task, loop)`` is a coroutine function: a long step with progress and Cancel."""
        if not self._start(name):
            return
        self._token = CancelToken()
        task = Task(self._report, self._token)
        try:
            message = await action(task, asyncio.get_running_loop())
            if isinstance(message, str):
                self.state.message = message
        except BaseException as error:  # noqa: BLE001
            self._fail(error)
        finally:
            self._token = None
            with self.state:
                self.state.update({"busy": False, "busy_action": "", "progress": 0})
                self._refresh_lists()

    def cancel(self) -> None:
        if self._token is not None:
            self._token.cancel()
            self.state.progress_text = "Cancelling..."

    # -- the AI segmentation -------------------------------------------------------------------

    async def segment(self) -> None:
        async def action(task, loop):
            job = self.session.prepare_segmentation(self.state.model_key, task.sub(0.0, 0.05))
            worker = Task(self._thread_progress(loop), self._token)
            result = await asyncio.to_thread(job.run, worker.sub(0.05, 0.97))
            task.update(0.98, "Adding the segmentation")
            summary = self.session.finish_segmentation(job, result)
            self._show_ai()
            return (f"AI segmentation ready: tumour {summary['tumour_volume_ml']:.1f} mL, "
                    f"{100 * summary['uncertain_fraction']:.1f} % uncertain.")
        await self.run_action("AI segmentation", action)

    def _show_ai(self) -> None:
        ai, summary = self.session.ai, self.session.ai.summary
        self.state.has_ai = True
        tumour = arrays.mask_from_segment(ai.segmentation, self.session.tumour_segment_id, self.session.study.primary,
                                          allow_empty=True)
        self.state.summary = {"tumour_ml": round(summary["tumour_volume_ml"], 2),
                              "tumour_voxels": int(np.count_nonzero(tumour)),
                              "uncertain_percent": round(100 * summary["uncertain_fraction"], 1),
                              "uncertain_ml": round(summary.get("uncertain_volume_ml", 0.0), 2),
                              "threshold": summary.get("threshold", 0.5),
                              "model": summary.get("model", ""), "demo": bool(summary.get("demo"))}
        self.state.warnings = list(summary.get("warnings") or [])
        self.state.targets = self.session.review_targets()
        display = ai.segmentation.GetDisplayNode()
        if display is not None:  # outlines, so that the uncertainty under them shows
            display.SetVisibility2DFill(False)
        if ai.uncertainty is not None:
            self.slicer_app.display_manager.show_volume_in_slice_foreground(ai.uncertainty)
        self._on_overlay_changed()

    def _on_overlay_changed(self, **_) -> None:
        opacity = float(self.state.overlay_opacity) if self.state.show_overlay else 0.0
        for view in self.slicer_app.view_manager.get_slice_views():
            view.set_foreground_opacity(opacity)
            view.schedule_render()

    def go_to(self, index) -> None:
        """Centre every view on review target ``index``."""
        import slicer

        targets = self.state.targets or []
        index = int(index)
        if not 0 <= index < len(targets):
            return
        r, a, s = targets[index]["ras"]
        slicer.vtkMRMLSliceNode.JumpAllSlices(self.context.scene, r, a, s, slicer.vtkMRMLSliceNode.CenteredJumpSlice)
        for view in self.slicer_app.view_manager.get_slice_views():
            view.schedule_render()
        self.state.slice_positions = self.slice_positions()
        self.state.message = f"Views centred on: {targets[index]['label']}."

    def _on_slice_moved(self, *_args) -> None:
        positions = self.slice_positions()
        if positions != self.state.slice_positions:
            with self.state:
                self.state.slice_positions = positions

    def slice_positions(self) -> dict:
        return {view.get_singleton_tag(): round(float(view.get_slice_value()), 2)
                for view in self.slicer_app.view_manager.get_slice_views()}

    # -- correction ----------------------------------------------------------------------------

    def start_correcting(self) -> None:
        def action():
            corrected, resumed = self.session.start_correction()
            self._watch(corrected)
            self.editor.set_active_segmentation(corrected, self.session.study.primary)
            self.editor.set_surface_representation_enabled(False)
            self.editor.set_active_segment_id(self.session.corrected_tumour_id)
            ai_display = self.session.ai.segmentation.GetDisplayNode()
            if ai_display is not None:  # the AI result stays as an outline under the copy
                ai_display.SetVisibility2DFill(False)
            self.state.correcting = True
            values = arrays.array_from_volume(self.session.study.primary)
            limits = [float(np.min(values)), float(np.max(values))]
            self.state.threshold_limits = limits
            self.state.threshold_range = [float(np.percentile(values, 75)), limits[1]]
            self._on_effect_changed()
            return (f"{'Resumed' if resumed else 'Started'} correcting '{corrected.GetName()}', a copy of the AI "
                    "result (which is never edited); the editing time is counted until Compare.")
        self.run_sync("Start correcting", action)

    def _effect(self):
        from trame_slicer import segmentation as seg

        return {"paint": seg.SegmentationEffectPaint, "erase": seg.SegmentationEffectErase,
                "scissors": seg.SegmentationEffectScissors, "threshold": seg.SegmentationEffectThreshold,
                "islands": seg.SegmentationEffectIslands, "smoothing": seg.SegmentationEffectSmoothing}

    def _on_effect_changed(self, **_) -> None:
        from trame_slicer.segmentation import BrushDiameterMode

        if not self.state.correcting:
            return
        name = self.state.effect
        if name not in EFFECTS or name == "none":
            self.editor.deactivate_effect()
            self.state.active_effect = "none"
            return
        effect = self.editor.set_active_effect_type(self._effect()[name])
        if name in ("paint", "erase"):
            effect.set_brush_diameter(float(self.state.brush_mm), BrushDiameterMode.Absolute)
        self.state.active_effect = name  # what the views now do with the mouse (the page says so)

    def apply_effect(self, operation: str) -> None:
        """The effects that act on the whole segment at once: threshold, islands, smoothing."""
        from trame_slicer import segmentation as seg

        def action():
            self._require_correcting()
            if operation == "threshold":
                effect = self.editor.set_active_effect_type(seg.SegmentationEffectThreshold)
                low, high = (float(v) for v in self.state.threshold_range)
                effect.set_threshold_min_max_values((low, high))
                effect.apply()
                text = f"Threshold {low:.0f}-{high:.0f} applied."
            elif operation in ("keep_largest", "remove_small"):
                effect = self.editor.set_active_effect_type(seg.SegmentationEffectIslands)
                if operation == "keep_largest":
                    effect.keep_largest_island()
                    text = "Kept the largest island."
                else:
                    effect.remove_small_islands(int(self.state.min_island_voxels))
                    text = f"Removed islands under {int(self.state.min_island_voxels)} voxels."
            elif operation == "smoothing":
                effect = self.editor.set_active_effect_type(seg.SegmentationEffectSmoothing)
                effect.apply_median_smoothing(float(self.state.smoothing_mm), self.editor.get_active_segment_id())
                text = f"Median smoothing ({float(self.state.smoothing_mm):g} mm) applied."
            else:
                return None
            self.state.effect = "none"
            self.editor.deactivate_effect()
            self.state.active_effect = "none"
            self._on_edit()
            return text
        self.run_sync(operation.replace("_", " "), action)

    def undo(self) -> None:
        self.run_sync("Undo", lambda: self.undo_stack.undo() if self.undo_stack.can_undo() else None)

    def redo(self) -> None:
        self.run_sync("Redo", lambda: self.undo_stack.redo() if self.undo_stack.can_redo() else None)

    def _require_correcting(self) -> None:
        from virtualbiopsy.errors import InputError

        if not self.state.correcting or self.session.correction.corrected is None:
            raise InputError("Press 'Start correcting' first: edits go to a copy of the AI result.")

    def corrected_voxels(self) -> int | None:
        corrected = self.session.correction.corrected
        if corrected is None or not self.context.scene.IsNodePresent(corrected):
            return None
        mask = arrays.mask_from_segment(corrected, self.session.corrected_tumour_id, self.session.study.primary,
                                        allow_empty=True)
        return int(np.count_nonzero(mask))

    def _watch(self, corrected) -> None:
        """Follow every change of the corrected copy (a brush stroke, an effect, undo / redo)."""
        import slicer

        if self._observed is not None:
            self._observed[0].RemoveObserver(self._observed[1])
        segmentation = corrected.GetSegmentation()
        tag = segmentation.AddObserver(slicer.vtkSegmentation.SourceRepresentationModified,
                                       self._schedule_edit_update)
        self._observed = (segmentation, tag)

    def _schedule_edit_update(self, *_args) -> None:
        """Count and autosave once the edit is complete (a stroke modifies the copy many times)."""
        if self._edit_update_pending:
            return
        self._edit_update_pending = True

        def update():
            self._edit_update_pending = False
            self._on_edit()
        asyncio.get_event_loop().call_later(0.25, update)

    def _on_edit(self, *_args) -> None:
        with self.state:
            self.state.can_undo = self.undo_stack.can_undo()
            self.state.can_redo = self.undo_stack.can_redo()
            corrected = self.session.correction.corrected
            if corrected is not None and self.context.scene.IsNodePresent(corrected):
                # counted on the segment's own label map (the copy's grid is the image's): no resampling per stroke
                row = {r["segment_id"]: r for r in arrays.segment_volumes(corrected)}.get(
                    self.session.corrected_tumour_id)
                if row is not None:
                    self.state.corrected_voxels = row["voxels"]
                    self.state.corrected_ml = round(row["volume_ml"], 2)
                self.state.editing_seconds = round(self.session.correction.seconds, 1)
        for view in self.slicer_app.view_manager.get_slice_views():
            view.schedule_render()
        self._dirty = True
        if self.autosave_every <= 0:
            self._autosave_if_due(force=True)
        elif not self._autosave_pending:  # written a while after the edits, off the stroke's round trip
            self._autosave_pending = True
            asyncio.get_event_loop().call_later(self.autosave_every, self._deferred_autosave)

    def _deferred_autosave(self) -> None:
        self._autosave_pending = False
        self._autosave_if_due(force=True)

    def _autosave_if_due(self, force: bool = False) -> None:
        if not self._dirty or (not force and time.monotonic() - self._last_autosave < self.autosave_every):
            return
        try:
            if self.session.autosave() is not None:
                self._last_autosave, self._dirty = time.monotonic(), False
        except (VirtualBiopsyError, OSError) as error:
            self.state.error = f"Autosave failed: {error}"

    def restore_autosave(self) -> None:
        def action():
            corrected = self.session.restore_autosave()
            self._show_ai()
            self.state.autosave_offer = False
            self._resume_restored(corrected)
            return f"Restored the autosaved correction '{corrected.GetName()}'."
        self.run_sync("Restore autosave", action)

    def _resume_restored(self, corrected) -> None:
        self.editor.set_active_segmentation(corrected, self.session.study.primary)
        self.editor.set_surface_representation_enabled(False)
        self._watch(corrected)
        self.state.correcting = True
        self.session.correction.start(self.session.ai.segmentation)
        self._on_edit()

    def compare(self) -> None:
        def action():
            rows = self.session.compare()
            self.state.metrics = [
                {"name": METRIC_LABELS.get(key, key), "key": key,
                 "value": f"{row['value']:.3f}" if abs(row["value"]) < 100 else f"{row['value']:.1f}",
                 "unit": row["unit"], "description": row["description"] or METRIC_DESCRIPTIONS.get(key, "")}
                for key, row in rows.items()]
            self.state.editing_seconds = rows["editing_time_s"]["value"]
            self._show_only(self.session.difference)
            return (f"Compared: DSC {rows['dsc']['value']:.3f}, HD95 {rows['hd95_mm']['value']:.1f} mm; "
                    "the difference overlay shows voxels added (green) and removed (magenta) by the correction.")
        self.run_sync("Compare", action)

    # -- files and the rest of the pipeline ----------------------------------------------------

    async def save(self) -> None:
        async def action(task, _loop):
            written = self.session.save(task)
            self.state.saved = [str(p.relative_to(self.session.out)) for p in written]
            return f"Saved {len(written)} files under {self.session.out}."
        await self.run_action("Save", action)

    async def export_for_retraining(self) -> None:
        async def action(task, _loop):
            dataset = self.session.export_for_retraining(task)
            return f"Exported the corrected case for retraining to {dataset}."
        await self.run_action("Export for retraining", action)

    async def fit_cluster_fit(self) -> None:
        async def action(task, _loop):
            rows = self.session.fit_cluster_fit(task)
            self.state.habitats = [
                {"habitat": r["habitat"], "volume_ml": f"{r['volume_ml']:.2f}",
                 "adc": f"{1e3 * r['adc']:.3f}" if r.get("adc") == r.get("adc") else "-",
                 "iauc60": f"{r['iauc60']:.1f}" if isinstance(r.get("iauc60"), float) else "-"}
                for r in rows]
            self._show_habitats()
            return f"Fit-Cluster-Fit: {len(rows)} habitat rows."
        await self.run_action("Fit-Cluster-Fit", action)

    def _show_habitats(self) -> None:
        habitats = self.session.habitats
        if habitats is None:
            return
        self._show_only(habitats.habitats)

    def _show_only(self, segmentation) -> None:
        """Show a new result over the image alone: the other segmentations are hidden (the list can show them)."""
        for node in self.context.scene.GetNodesByClass("vtkMRMLSegmentationNode"):
            display = node.GetDisplayNode()
            if display is not None:
                display.SetVisibility(node is segmentation)
        self.state.show_overlay = False
        self._on_overlay_changed()

    async def radiomics(self) -> None:
        async def action(task, _loop):
            rows = self.session.radiomics(task)
            shown = ("original_shape_MeshVolume", "original_shape_Sphericity", "original_firstorder_Mean",
                     "original_firstorder_Entropy", "original_glcm_Contrast", "original_glszm_ZonePercentage")
            self.state.radiomics = [{"feature": name, "value": f"{float(rows[0][name]):.4g}"}
                                    for name in shown if rows and name in rows[0]]
            return f"Radiomics: {len(rows[0]) if rows else 0} columns for the tumour (saved with Save)."
        await self.run_action("Radiomics", action)

    async def predict(self) -> None:
        async def action(task, _loop):
            import base64

            result = self.session.predict(self.outcome_model, task)
            probabilities = {k: v for k, v in result["prediction"].items() if k.startswith("p_")}
            top = max(probabilities, key=probabilities.get) if probabilities else None
            self.state.prediction = {
                "model": result["model"], "output": result["output"],
                "text": ", ".join(f"{k[2:]}: {100 * v:.1f} %" for k, v in probabilities.items()),
                "predicted": str(result["prediction"].get("predicted", top)),
                "figure": "data:image/png;base64," + base64.b64encode(result["figure"].read_bytes()).decode()}
            return f"Outcome model '{result['model']}' applied to this patient (research use only)."
        await self.run_action("Outcome prediction", action)

    async def upload_correction(self, files) -> None:
        """A corrected segmentation file from the reader's computer, imported as the corrected copy."""
        async def action(task, _loop):
            entry = (files or [None])[0] if isinstance(files, list) else files
            if not entry:
                return None
            content = entry.get("content") or b""
            if isinstance(content, list):
                content = b"".join(content)
            path = self.session.save_upload(entry.get("name", "upload"), bytes(content))
            node = self.session.import_correction(path)
            self.editor.set_active_segmentation(node, self.session.study.primary)
            self._watch(node)
            self.state.correcting = True
            self._on_edit()
            return f"Imported '{Path(path).name}' as the corrected segmentation."
        await self.run_action("Import a corrected segmentation", action)

    # -- volumes, segments, window / level -----------------------------------------------------

    def apply_window_preset(self, preset: str) -> None:
        volume = self.context.scene.GetNodeByID(self.state.background_id)
        if volume is None or volume.GetDisplayNode() is None:
            return
        values = arrays.array_from_volume(volume)
        bounds = {"auto": (1, 99), "full": (0, 100), "bright": (50, 99.5), "dark": (0.5, 50)}.get(preset, (1, 99))
        low, high = (float(v) for v in np.percentile(values, bounds))
        display = volume.GetDisplayNode()
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(low, high if high > low else low + 1)

    def _on_background_changed(self, background_id, **_) -> None:
        volume = self.context.scene.GetNodeByID(background_id)
        if volume is not None:
            self.slicer_app.display_manager.show_volume_in_slice_background(volume)
            self.apply_window_preset(self.state.window_preset)

    def set_segment(self, node_id: str, segment_id: str, field: str, value) -> None:
        node = self.context.scene.GetNodeByID(node_id)
        if node is None or node.GetDisplayNode() is None:
            return
        display, segment = node.GetDisplayNode(), node.GetSegmentation().GetSegment(segment_id)
        if segment is None:
            return
        if field == "visible":
            if value:
                display.SetVisibility(True)
            display.SetSegmentVisibility(segment_id, bool(value))
        elif field == "opacity":
            display.SetSegmentOpacity(segment_id, max(0.0, min(1.0, float(value))))
        elif field == "colour" and isinstance(value, str) and len(value) == 7 and value.startswith("#"):
            segment.SetColor(*(int(value[i:i + 2], 16) / 255.0 for i in (1, 3, 5)))
        self._refresh_lists()

    def _refresh_lists(self) -> None:
        scene = self.context.scene
        volumes = []
        for node in scene.GetNodesByClass("vtkMRMLScalarVolumeNode"):
            if node.IsA("vtkMRMLLabelMapVolumeNode") or node.GetAttribute(attributes.QUANTITY):
                continue
            if node.GetHideFromEditors():
                continue
            volumes.append({"value": node.GetID(), "title": node.GetName()})
        segments = []
        for node in scene.GetNodesByClass("vtkMRMLSegmentationNode"):
            display = node.GetDisplayNode()
            for segment_id in arrays.segment_ids(node):
                segment = node.GetSegmentation().GetSegment(segment_id)
                segments.append({"node_id": node.GetID(), "segment_id": segment_id, "node": node.GetName(),
                                 "name": segment.GetName(), "colour": _hex(segment.GetColor()),
                                 "visible": bool(display.GetVisibility() and display.GetSegmentVisibility(segment_id))
                                 if display else False,
                                 "opacity": round(float(display.GetSegmentOpacity2DFill(segment_id)), 2)
                                 if display else 1.0})
        self.state.volumes, self.state.segments = volumes, segments
        self.state.slice_positions = self.slice_positions()

    # -- life cycle ----------------------------------------------------------------------------

    def shutdown(self) -> None:
        """The server stops: keep unsaved edits in the autosave."""
        self._autosave_if_due(force=True)

    def _on_client_exited(self, *_args, **_kwargs) -> None:
        self._autosave_if_due(force=True)

    def _on_server_exited(self, *_args, **_kwargs) -> None:
        self._autosave_if_due(force=True)


