"""One person correcting one AI segmentation, as the Slicer panel and the web viewer both do it.

The person edits a timed COPY of the AI segmentation (``NeuroblastomaSegLogic.start_correction``),
never the AI result, so that the two can be compared afterwards. Starting again on the same AI
segmentation resumes the same copy and its timer; finishing (Compare) stamps the editing time on
the copy. The copy carries its provenance as node attributes, saved with the scene:

* ``VirtualBiopsy.CorrectedFrom`` - ID of the AI segmentation (set by ``start_correction``)
* ``VirtualBiopsy.AISegmentationName`` - name of the AI segmentation
* ``VirtualBiopsy.CorrectionStarted`` - ISO 8601 UTC time of the first start (kept on resume)
* ``VirtualBiopsy.CorrectionFinished`` - ISO 8601 UTC time of the last finish
* ``VirtualBiopsy.EditingSeconds`` - editing time at the last finish (:func:`stamp_segmentation`)

Qt-free: only the library and slicer-core MRML.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable

from virtualbiopsy import attributes
from virtualbiopsy.errors import InputError
from virtualbiopsy.segmentation.correction import EditingTimer, stamp_segmentation

CORRECTED_FROM_ATTRIBUTE = attributes.CORRECTED_FROM
AI_NAME_ATTRIBUTE = attributes.AI_SEGMENTATION_NAME
STARTED_ATTRIBUTE = attributes.CORRECTION_STARTED
FINISHED_ATTRIBUTE = attributes.CORRECTION_FINISHED


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="seconds")


class CorrectionSession:
    """One person correcting one AI segmentation: a timed copy that is edited, never the AI result.

    ``logic`` is a :class:`~virtualbiopsy.logic.neuroblastoma_seg.NeuroblastomaSegLogic`;
    ``clock`` returns seconds for the editing time (default ``time.monotonic``) and ``now`` the
    UTC wall-clock time of the start/finish stamps; tests pass fakes for both.
    """

    def __init__(self, logic, clock: Callable[[], float] = time.monotonic, *,
                 now: Callable[[], datetime.datetime] = _utc_now) -> None:
        self._logic, self._clock, self._now = logic, clock, now
        self.reset()

    @property
    def corrected(self):
        """The segmentation node being corrected, or None before the first start."""
        return self._corrected

    @property
    def running(self) -> bool:
        return self._timer.running

    @property
    def seconds(self) -> float:
        """Editing time so far in seconds (including a stretch still running)."""
        return self._timer.seconds

    def start(self, ai_segmentation, name: str | None = None, *, resume: bool = True):
        """Start (or resume) correcting ``ai_segmentation``; returns ``(corrected node, resumed)``.

        Resumes the session's copy when it is still in the scene and was copied from
        ``ai_segmentation``; otherwise makes a NEW copy (named ``name``, default "<AI name>
        corrected") with a new timer. ``resume=False`` always makes a new copy. The timer runs
        from here until :meth:`pause` or :meth:`finish`.
        """
        self._check_ai(ai_segmentation)
        corrected = self._corrected if resume else None
        resumed = (corrected is not None and self._in_scene(corrected)
                   and corrected.GetAttribute(CORRECTED_FROM_ATTRIBUTE) == ai_segmentation.GetID())
        if not resumed:
            with self._logic.context.transaction():
                corrected = self._logic.start_correction(ai_segmentation, name)
                corrected.SetAttribute(STARTED_ATTRIBUTE, _iso(self._now()))
            self._corrected, self._timer = corrected, EditingTimer(self._clock)
        corrected.SetAttribute(AI_NAME_ATTRIBUTE, ai_segmentation.GetName())
        if not self._timer.running:
            self._timer.start()
        return corrected, resumed

    def adopt(self, corrected, seconds: float = 0.0) -> None:
        """Take ``corrected`` (a copy restored from an autosave, or imported) as the copy being corrected,
        with ``seconds`` of editing already spent; the timer is left stopped."""
        if not (hasattr(corrected, "IsA") and corrected.IsA("vtkMRMLSegmentationNode")):
            raise InputError("The corrected copy must be a segmentation node.")
        self._corrected, self._timer = corrected, EditingTimer(self._clock)
        self._timer.add(seconds)
        if corrected.GetAttribute(STARTED_ATTRIBUTE) is None:
            corrected.SetAttribute(STARTED_ATTRIBUTE, _iso(self._now()))

    def pause(self) -> float:
        """Stop the timer if it runs (e.g. the page is hidden); returns the editing seconds so far."""
        return self._timer.stop() if self._timer.running else self._timer.seconds

    def finish(self) -> float | None:
        """Stop the timer and stamp the editing time and finish time on the copy; returns the
        seconds, or None if no correction was started. Starting again afterwards resumes."""
        if self._corrected is None:
            return None
        seconds = self.pause()
        stamp_segmentation(self._corrected, seconds)
        self._corrected.SetAttribute(FINISHED_ATTRIBUTE, _iso(self._now()))
        return seconds

    def is_timed(self, node) -> bool:
        """Whether ``node`` is this session's corrected copy."""
        return node is not None and self._corrected is not None and node.GetID() == self._corrected.GetID()

    def reset(self) -> None:
        """Forget the copy and its timer (e.g. the scene was closed); the nodes are left as they are."""
        self._corrected, self._timer = None, EditingTimer(self._clock)

    # -- checks ------------------------------------------------------------------------------

    def _in_scene(self, node) -> bool:
        return bool(self._logic.context.scene.IsNodePresent(node))

    def _check_ai(self, ai_segmentation) -> None:
        if not (hasattr(ai_segmentation, "IsA") and ai_segmentation.IsA("vtkMRMLSegmentationNode")):
            raise InputError("Select the AI segmentation to correct (a segmentation node).")
        if not self._in_scene(ai_segmentation):
            raise InputError(f"Segmentation '{ai_segmentation.GetName()}' is not in the scene; "
                             "select an AI segmentation of the open scene.")
