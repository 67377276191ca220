"""Progress reporting and cancellation shared by every long-running step.

A step takes a ``progress`` argument: any callable ``progress(fraction, message)`` with
``fraction`` in [0, 1]. It calls ``progress.check()``-style cancellation through a
:class:`Task`, which bundles the callback with a :class:`CancelToken` and can be split into
weighted sub-ranges so that nested steps report on one overall scale.

The runner is the caller's choice: :class:`ConsoleProgress` draws a bar on the command line,
the Slicer modules show a progress dialog with a Cancel button, tests record the calls.

>>> seen = []
>>> task = Task(lambda f, m: seen.append(round(f, 2)))
>>> with task.range(0.5, 1.0) as second_half:
...     second_half.update(0.5, "three quarters")
>>> seen  # the block's own report, then its end when the block finishes
[0.75, 1.0]
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from virtualbiopsy.errors import Cancelled

ProgressCallback = Callable[[float, str], None]
T = TypeVar("T")


class CancelToken:
    """A thread-safe flag the user sets (Cancel button, Ctrl+C) and long steps poll."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("Cancelled by the user; the scene was left unchanged.")


def _ignore(_fraction: float, _message: str) -> None:
    return None


class Task:
    """A progress callback plus a cancel token, mapped onto a sub-range of the overall bar.

    ``update(fraction, message)`` reports progress within this task's range and raises
    :class:`~virtualbiopsy.errors.Cancelled` if the user asked to stop, so a loop that reports
    progress is also a loop that can be cancelled.
    """

    def __init__(
        self,
        callback: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        self.callback = callback or _ignore
        self.cancel_token = cancel or CancelToken()
        self.start = start
        self.end = end

    def update(self, fraction: float, message: str = "") -> None:
        self.cancel_token.raise_if_cancelled()
        fraction = min(max(float(fraction), 0.0), 1.0)
        self.callback(self.start + (self.end - self.start) * fraction, message)

    def check(self) -> None:
        """Raise :class:`Cancelled` if the user cancelled, without reporting progress."""
        self.cancel_token.raise_if_cancelled()

    def sub(self, start: float, end: float) -> Task:
        """A task covering ``[start, end]`` of this task's range (fractions of this task)."""
        span = self.end - self.start
        return Task(self.callback, self.cancel_token, self.start + span * start, self.start + span * end)

    @contextmanager
    def range(self, start: float, end: float) -> Iterator[Task]:
        """Like :meth:`sub`, as a context manager that reports ``end`` when the block finishes."""
        sub = self.sub(start, end)
        yield sub
        sub.update(1.0, "")

    def steps(self, items: Iterable[T], message: str = "", total: int | None = None) -> Iterator[T]:
        """Iterate over ``items`` reporting progress (and checking cancel) before each one."""
        items = list(items) if total is None else items
        total = len(items) if total is None else total  # type: ignore[arg-type]
        for index, item in enumerate(items):
            self.update(index / max(total, 1), message)
            yield item
        self.update(1.0, message)


def as_task(progress: Task | ProgressCallback | None, cancel: CancelToken | None = None) -> Task:
    """Accept a Task, a plain ``callback(fraction, message)`` or None, and return a Task."""
    if isinstance(progress, Task):
        return progress
    return Task(progress, cancel)


class ConsoleProgress:
    """A command-line progress bar (tqdm on a terminal, plain lines otherwise; with the environment variable
    ``VIRTUALBIOPSY_PROGRESS=lines`` a flushed plain line at each new message and each 0.5 % step, for a
    program reading them: :mod:`virtualbiopsy.command_job`).

    Use as the callback of a :class:`Task`; ``close()`` when done.
    """

    def __init__(self, description: str = "", stream=None) -> None:
        import os

        from tqdm import tqdm

        self._stream = stream or sys.stderr
        # for a reader of the lines (virtualbiopsy.command_job): a line at each 0.5 % step too, flushed
        self._every_step = os.environ.get("VIRTUALBIOPSY_PROGRESS") == "lines"
        self._last_fraction = -1.0
        self._bar = tqdm(
            total=1000,
            desc="",
            file=self._stream,
            # the step's message goes after the bar ({desc} is set to it on each update)
            bar_format=description + ": {percentage:3.0f}%|{bar:30}| {elapsed}<{remaining}  {desc}",
            leave=True,
            mininterval=0.2,
            disable=True if self._every_step else None,  # disabled when the stream is not a terminal...
        )
        self._plain = self._bar.disable
        self._last_message = ""
        self._description = description

    def __call__(self, fraction: float, message: str) -> None:
        if self._plain:
            # ... where one line per new message keeps logs readable.
            moved = self._every_step and fraction - self._last_fraction >= 0.005
            if (message and message != self._last_message) or moved:
                print(f"[{fraction * 100:5.1f}%] {self._description}: {message or self._last_message}",
                      file=self._stream, flush=self._every_step)
                self._last_message = message or self._last_message
                self._last_fraction = fraction
            return
        self._bar.n = int(round(fraction * 1000))
        if message:
            self._bar.set_description_str(message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
