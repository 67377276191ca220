"""SimpleITK filters run with progress and cancel: the bridge between a filter's events and a :class:`Task`.

Shared by pre-processing (N4, denoising, resampling) and registration: a filter's progress
events update the task, and a cancel raised by the task halts the filter in the way that filter
honours (``Abort()``, ``StopRegistration()`` or an exception through SimpleITK).
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import SimpleITK as sitk

from virtualbiopsy.progress import Task


class _StopProcess(Exception):  # noqa: N818 - internal signal, never seen by callers
    """Raised from a SimpleITK callback to halt a filter that ignores Abort() (N4)."""


def execute_with_progress(process: sitk.ProcessObject, task: Task, message: str, run: Callable[[], object],
                          event=sitk.sitkProgressEvent, fraction: Callable[[], float] | None = None,
                          stop: str = "abort"):
    """Call ``run()`` (which executes ``process``) while reporting its progress to ``task``.

    On each ``event`` the task is updated with ``fraction()`` (default: the filter's own
    progress). When the update raises (the user cancelled, or the callback failed) the filter is
    halted and the same exception is raised once it has returned: ``stop="abort"`` uses
    ``process.Abort()`` (filters that check it), ``"registration"`` calls
    ``StopRegistration()`` at every later iteration (each resolution level), ``"raise"`` throws
    through SimpleITK (filters that ignore Abort; called only from the main loop's events).
    """
    failure: list[BaseException] = []

    def halt() -> None:
        if stop == "registration":
            process.StopRegistration()
        elif stop == "raise":
            raise _StopProcess()
        else:
            process.Abort()

    def on_event() -> None:
        if not failure:
            try:
                task.update(fraction() if fraction is not None else process.GetProgress(), message)
            except BaseException as error:  # noqa: BLE001 - re-raised below, after the filter returns
                failure.append(error)
        if failure:
            halt()

    previous_hook = sys.excepthook

    def quiet_hook(kind, value, traceback) -> None:  # SimpleITK prints callback errors through excepthook
        if not isinstance(value, _StopProcess):
            previous_hook(kind, value, traceback)

    process.AddCommand(event, on_event)
    sys.excepthook = quiet_hook
    try:
        result = run()
    except RuntimeError:
        if failure:
            raise failure[0] from None
        raise
    finally:
        sys.excepthook = previous_hook
        process.RemoveAllCommands()
    if failure:
        raise failure[0]
    return result
