"""The library's command line run in a separate process, polled from a GUI timer: how the Slicer panels
run heavy steps without starving in a Python thread (docs/decisions/background-job-gil-yield.md).

A :class:`CommandJob` starts ``python -m virtualbiopsy.cli.main <command> ...`` (in Slicer, ``python`` is
``PythonSlicer``), reads its progress lines (``[ 42.0%] command: message``, which the command line writes
when ``VIRTUALBIOPSY_PROGRESS=lines``) on a reader thread that only waits on the pipe, and hands them out
through :meth:`CommandJob.poll`, which a ``qt.QTimer`` calls on the main thread. :meth:`CommandJob.cancel`
interrupts the command (SIGINT: it removes what it had written, as on Ctrl+C) and kills the whole process
group if it has not ended after a grace period. Results are the files the command writes; its one-line
error (``virtualbiopsy: error: ...``) becomes :attr:`JobState.error`. Qt-free, so tests run it headless.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

PROGRESS_LINE = re.compile(r"^\[\s*(\d+(?:\.\d+)?)%\]\s+(.*)$")
ERROR_PREFIX = "virtualbiopsy: error: "
CANCELLED_STATUS = 130


@dataclass
class JobState:
    """What the job has said so far: progress 0..1 and its latest message, the output lines that are not
    progress, and, once it has ended, its exit status, whether it was cancelled and its error line."""

    fraction: float = 0.0
    message: str = ""
    lines: list[str] = field(default_factory=list)
    done: bool = False
    returncode: int | None = None
    cancelled: bool = False
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.done and self.returncode == 0


class CommandJob:
    """One run of the command line in its own process group (``arguments`` after ``virtualbiopsy``)."""

    def __init__(self, arguments, python: str | None = None, env: dict | None = None, cwd=None,
                 grace_s: float = 10.0) -> None:
        self.arguments = [str(a) for a in arguments]
        self.python = python or sys.executable
        self.env = {**(os.environ if env is None else env), "VIRTUALBIOPSY_PROGRESS": "lines",
                    "PYTHONUNBUFFERED": "1"}
        self.cwd = cwd
        self.grace_s = grace_s
        self.state = JobState()
        self._lines: queue.Queue = queue.Queue()
        self._process: subprocess.Popen | None = None
        self._cancel_at: float | None = None

    @property
    def command(self) -> list[str]:
        return [self.python, "-m", "virtualbiopsy.cli.main", *self.arguments]

    def start(self) -> CommandJob:
        """Start the process (its own session on POSIX, a new process group on Windows, so cancel reaches
        every process it starts); returns self."""
        options = ({"start_new_session": True} if os.name == "posix"
                   else {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP})
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, text=True, encoding="utf-8", errors="replace",
                                         env=self.env, cwd=self.cwd, **options)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:  # blocks in the pipe, not in Python: the GUI thread keeps the GIL
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def poll(self) -> JobState:
        """Take in what the process printed since the last call; call it from a timer. Never blocks."""
        ended = False
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line is None:
                ended = True
                break
            self._take(line)
        if self._cancel_at is not None and not self.state.done and time.monotonic() > self._cancel_at:
            self._kill()
        if ended:
            self.state.returncode = self._process.wait()
            self.state.cancelled = self.state.cancelled or self.state.returncode == CANCELLED_STATUS
            if self.state.returncode == 0:
                self.state.fraction = 1.0  # a command's last step may not report its end
            self.state.done = True
        return self.state

    def _take(self, line: str) -> None:
        match = PROGRESS_LINE.match(line)
        if match:
            self.state.fraction = min(max(float(match.group(1)) / 100.0, self.state.fraction), 1.0)
            message = match.group(2)
            self.state.message = message.split(": ", 1)[1] if ": " in message else message
            return
        if line.startswith(ERROR_PREFIX):
            self.state.error = line[len(ERROR_PREFIX):]
        if line.strip():
            self.state.lines.append(line)

    def cancel(self) -> None:
        """Ask the command to stop (as Ctrl+C does: it removes its partial outputs); the process group is
        killed if it is still running ``grace_s`` later (checked by :meth:`poll` and :meth:`wait`)."""
        if self._process is None or self._process.poll() is not None:
            return
        self.state.cancelled = True
        self._cancel_at = time.monotonic() + self.grace_s
        if os.name == "posix":
            os.killpg(self._process.pid, signal.SIGINT)
        else:
            self._process.send_signal(signal.CTRL_BREAK_EVENT)

    def _kill(self) -> None:
        if self._process.poll() is None:
            if os.name == "posix":
                os.killpg(self._process.pid, signal.SIGKILL)
            else:
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(self._process.pid)], capture_output=True)

    def wait(self, timeout_s: float | None = None, interval_s: float = 0.05) -> JobState:
        """Poll until the job ends (for scripts and tests; a GUI polls from its timer instead)."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while not self.poll().done:
            if end is not None and time.monotonic() > end:
                self.cancel()
                self._cancel_at = time.monotonic()  # no grace left
                end = None
            time.sleep(interval_s)
        return self.state
