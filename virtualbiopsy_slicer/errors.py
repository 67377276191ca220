"""Show a failure to the user: library errors as their message, anything else with its traceback."""

from __future__ import annotations

import logging
import traceback

import slicer

from virtualbiopsy.dependencies import RestartRequiredError
from virtualbiopsy.errors import Cancelled, VirtualBiopsyError
from virtualbiopsy_slicer.i18n import tr as _


def show_error(exc: BaseException, title: str = "Virtual Biopsy", parent=None) -> None:
    """Show ``exc`` in a message box (or only log it when Slicer has no main window, e.g. in tests).

    - :class:`~virtualbiopsy.errors.Cancelled`: the user asked for it, so only a status-bar note.
    - :class:`~virtualbiopsy.dependencies.RestartRequiredError`: its message, and an offer to restart Slicer.
    - :class:`~virtualbiopsy.errors.VirtualBiopsyError`: its message is written for the user and
      says what to fix, so it is shown as is.
    - anything else is a bug: a short message, with the full traceback under "Show Details...".
    """
    if isinstance(exc, Cancelled):
        logging.info("%s: %s", title, exc)
        slicer.util.showStatusMessage(str(exc), 5000)
        return
    if isinstance(exc, RestartRequiredError):
        logging.warning("%s: %s", title, exc)
        if not slicer.app.testingEnabled() and slicer.util.confirmOkCancelDisplay(
                str(exc) + "\n\n" + _("Restart Slicer now?"), windowTitle=title, parent=parent):
            slicer.util.restart()
        return
    if isinstance(exc, VirtualBiopsyError):
        slicer.util.errorDisplay(str(exc), windowTitle=title, parent=parent)
        return
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    logging.error("%s: unexpected error\n%s", title, details)
    slicer.util.errorDisplay(
        _("Unexpected error: {error}\n\nThis is a bug in Virtual Biopsy; please report it with the details below.")
        .format(error=exc),
        windowTitle=title,
        parent=parent,
        detailedText=details,
    )
