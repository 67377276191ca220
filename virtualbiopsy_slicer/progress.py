"""Progress dialogs with a Cancel button, bound to :class:`virtualbiopsy.progress.Task`.

Two ways to run a long step from a module widget:

``progress_dialog(title)``
    A context manager that yields a ``Task``. The step runs on the main thread; each
    ``task.update(fraction, message)`` moves the bar and pumps the Qt event loop, so the dialog
    repaints and its Cancel button works. Use it for logic that reads or writes MRML nodes::

        with progress_dialog("Fitting ADC") as task:
            adcNode = logic.fit_adc_map(nodes, bValues, progress=task)

``run_in_background(compute, on_done, title)``
    Runs ``compute(task)`` in a Python thread while a ``qt.QTimer`` on the main thread shows its
    progress, then calls ``on_done(result)`` on the main thread (or shows the error). ``compute``
    must NOT touch MRML nodes, the scene, VTK objects shared with the scene or Qt: MRML is not
    thread-safe and belongs to the main thread. Copy the arrays it needs beforehand and turn the
    result into nodes in ``on_done``.

Cancel sets the task's ``CancelToken``; the step stops at its next ``task.update`` by raising
:class:`~virtualbiopsy.errors.Cancelled`, which is reported as a status-bar note, not an error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import qt
import slicer

from virtualbiopsy.progress import CancelToken, Task
from virtualbiopsy_slicer.errors import show_error
from virtualbiopsy_slicer.i18n import tr as _

_STEPS = 1000  # resolution of the progress bar
POLL_INTERVAL_MS = 100  # how often the main thread refreshes a background job's dialog
# Python threads only run while the thread holding the GIL lets go of it. Slicer's main thread may
# keep the GIL while it sits in the Qt event loop, so each poll lends it to the worker this long.
GIL_YIELD_S = 0.02

_running: set[BackgroundJob] = set()  # keeps running jobs (and their timer and dialog) alive


@contextmanager
def busy_cursor() -> Iterator[None]:
    """Show the wait cursor over the whole application inside the block."""
    qt.QApplication.setOverrideCursor(qt.Qt.WaitCursor)
    try:
        yield
    finally:
        qt.QApplication.restoreOverrideCursor()


def _create_dialog(title: str, parent, token: CancelToken):
    dialog = slicer.util.createProgressDialog(
        parent=parent, windowTitle=title, labelText=_("Starting..."), maximum=_STEPS, value=0
    )
    dialog.autoClose = False  # closed explicitly when the step ends, not when the bar is full
    dialog.autoReset = False
    dialog.windowModality = qt.Qt.ApplicationModal
    dialog.setCancelButtonText(_("Cancel"))
    dialog.canceled.connect(token.cancel)
    dialog.show()
    slicer.app.processEvents()
    return dialog


def _poll_timer(poll) -> qt.QTimer:
    """The main-thread timer that watches a running job (started by the job)."""
    timer = qt.QTimer()
    timer.setInterval(POLL_INTERVAL_MS)
    timer.timeout.connect(poll)
    return timer


def _stop_watching(job) -> None:
    """The job has ended: stop its timer, close its dialog, let it go."""
    job._timer.stop()
    _close_dialog(job._dialog)
    _running.discard(job)


def _show_progress(dialog, fraction: float, message: str) -> None:
    dialog.value = int(round(min(max(float(fraction), 0.0), 1.0) * _STEPS))
    if message:
        dialog.labelText = message


def _close_dialog(dialog) -> None:
    dialog.close()
    dialog.deleteLater()


@contextmanager
def progress_dialog(title: str, parent=None) -> Iterator[Task]:
    """Show a progress dialog with Cancel for a step run on the main thread; yields its Task."""
    token = CancelToken()
    dialog = _create_dialog(title, parent, token)

    def callback(fraction: float, message: str) -> None:
        _show_progress(dialog, fraction, message)
        slicer.app.processEvents()  # repaint, and let the Cancel button be clicked

    try:
        yield Task(callback, token)
    finally:
        _close_dialog(dialog)


class BackgroundJob:
    """A pure computation in a worker thread, watched from the main thread by a QTimer.

    Made by :func:`run_in_background`; ``cancel()`` does what the dialog's Cancel button does.
    """

    def __init__(
        self,
        compute: Callable[[Task], Any],
        on_done: Callable[[Any], None],
        title: str,
        parent=None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.title = title
        self.token = CancelToken()
        self._compute = compute
        self._on_done = on_done
        self._on_error = on_error or (lambda exc: show_error(exc, title, parent))
        self._lock = threading.Lock()
        self._latest = (0.0, _("Starting..."))  # written by the worker, read by the timer
        self._result: Any = None
        self._error: BaseException | None = None
        self._cancel_noted = False
        self._thread = threading.Thread(target=self._work, name=f"VirtualBiopsy: {title}", daemon=True)
        self._dialog = _create_dialog(title, parent, self.token)
        self._timer = _poll_timer(self._poll)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def cancel(self) -> None:
        self.token.cancel()

    def start(self) -> BackgroundJob:
        _running.add(self)
        self._thread.start()
        self._timer.start()
        return self

    # -- worker thread: computes and records progress, never touches Qt or MRML ----------------

    def _report(self, fraction: float, message: str) -> None:
        with self._lock:
            self._latest = (fraction, message or self._latest[1])

    def _work(self) -> None:
        try:
            self._result = self._compute(Task(self._report, self.token))
        except BaseException as exc:  # handed over to the main thread, shown there
            self._error = exc

    # -- main thread ----------------------------------------------------------------------------

    def _poll(self) -> None:
        self._thread.join(GIL_YIELD_S)
        if self._thread.is_alive():
            if self.token.cancelled:
                if not self._cancel_noted:
                    self._cancel_noted = True
                    slicer.util.showStatusMessage(_("{title}: cancelling...").format(title=self.title), 3000)
                return
            with self._lock:
                fraction, message = self._latest
            _show_progress(self._dialog, fraction, message)
            return
        self._finish()

    def _finish(self) -> None:
        _stop_watching(self)
        if self._error is not None:
            self._on_error(self._error)
            return
        try:
            self._on_done(self._result)
        except Exception as exc:
            self._on_error(exc)


def run_in_background(
    compute: Callable[[Task], Any],
    on_done: Callable[[Any], None],
    title: str,
    parent=None,
    on_error: Callable[[BaseException], None] | None = None,
) -> BackgroundJob:
    """Run ``compute(task)`` in a thread behind a progress dialog; ``on_done(result)`` on the main thread.

    ``compute`` must not touch MRML, VTK objects of the scene or Qt (see the module docstring).
    Errors, from ``compute`` or from ``on_done``, go to ``on_error`` (default: :func:`show_error`).
    Returns the started :class:`BackgroundJob`.
    """
    return BackgroundJob(compute, on_done, title, parent, on_error).start()


class ProcessJob:
    """A step run as the library's command line in its own process (:class:`virtualbiopsy.command_job.CommandJob`),
    watched by a QTimer behind a non-modal progress dialog: the panel and the views stay usable, and Cancel
    interrupts the command (it removes what it had written), then kills its process group.

    ``on_done(state)`` runs on the main thread after the command succeeded (load its files there); a failed
    command's one-line error goes to ``on_error`` as a :class:`~virtualbiopsy.errors.VirtualBiopsyError`.
    """

    def __init__(self, job, on_done, title: str, parent=None, on_error=None, on_cancelled=None) -> None:
        self.title = title
        self.job = job
        self._on_done = on_done
        self._on_error = on_error or (lambda exc: show_error(exc, title, parent))
        self._on_cancelled = on_cancelled or (lambda: None)
        self.token = CancelToken()
        self._dialog = _create_dialog(title, parent, self.token)
        self._dialog.windowModality = qt.Qt.NonModal
        self._timer = _poll_timer(self._poll)

    @property
    def running(self) -> bool:
        return not self.job.state.done

    def cancel(self) -> None:
        self.token.cancel()

    def start(self) -> ProcessJob:
        _running.add(self)
        self.job.start()
        self._timer.start()
        return self

    def _poll(self) -> None:
        if self.token.cancelled and not self.job.state.cancelled:
            self.job.cancel()
            slicer.util.showStatusMessage(_("{title}: cancelling...").format(title=self.title), 3000)
        state = self.job.poll()
        if not state.done:
            _show_progress(self._dialog, state.fraction, state.message)
            return
        _stop_watching(self)
        if state.cancelled:
            self._on_cancelled()
            return
        if not state.succeeded:
            from virtualbiopsy.errors import VirtualBiopsyError

            self._on_error(VirtualBiopsyError(state.error or _("{title} stopped (exit status {code}).").format(
                title=self.title, code=state.returncode)))
            return
        try:
            self._on_done(state)
        except Exception as exc:
            self._on_error(exc)
