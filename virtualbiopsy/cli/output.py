"""Command-line output helpers shared by the sub-commands: VTK's messages, and the rule for ``--out``.

The ``--out`` rule (one place, for every command; :class:`OutputGuard`):

- a folder ``--out`` must be new or empty, or hold an earlier run's results that the user asks to
  replace with ``--overwrite``; a resumable cohort run (``segment`` / ``radiomics --manifest``) may go
  on in the folder of an earlier run of the same command;
- with ``--overwrite`` the files of the earlier run (listed in ``.virtualbiopsy-outputs.json``) are
  moved aside first, so no stale result stays beside the new ones; they are deleted once the new run
  succeeded, and put back if it fails;
- a file ``--out`` (``preprocess``, ``radiomics`` of one case) is never replaced without ``--overwrite``;
- a run that fails (bad input, error, Ctrl+C) removes everything it wrote, the folders it created
  included, so a refused run leaves the disk as it was. A cancelled resumable run keeps its finished
  cases (that is what resuming is for).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import vtk

from virtualbiopsy.errors import InputError

#: exit status of a cohort run that finished but where some cases failed (their messages are in its table)
EXIT_SOME_CASES_FAILED = 3

MARKER = ".virtualbiopsy-outputs.json"
BACKUP = ".virtualbiopsy-previous"

#: commands whose --out is a file (as a function of their arguments); every other --out is a folder
FILE_OUTPUTS = {
    "preprocess": lambda args: True,
    "radiomics": lambda args: getattr(args, "manifest", None) is None,
}
#: commands that keep their own --out: ``view`` saves while it runs (what the reader saved must stay, even on Ctrl+C)
UNGUARDED = {"view"}
#: commands whose folder is a resumable store of per-case results: a re-run goes on where the last stopped
RESUMABLE = {
    "segment": lambda args: getattr(args, "manifest", None) is not None,
    "radiomics": lambda args: getattr(args, "manifest", None) is not None,
}


def quiet_vtk(log_file: Path) -> None:
    """Send VTK/MRML messages (zip chatter, reader notes) to ``log_file`` instead of the terminal.

    The file is opened on VTK's first message only, so a run that VTK says nothing about writes none.
    """
    window = vtk.vtkFileOutputWindow()
    window.SetFileName(str(log_file))
    window.SetFlush(True)
    window.SetAppend(True)
    vtk.vtkOutputWindow.SetInstance(window)
    vtk.vtkLogger.SetStderrVerbosity(vtk.vtkLogger.VERBOSITY_OFF)


def command_name(args) -> str:
    return getattr(args, "command", "") or ""


def _files_below(folder: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (size, mtime_ns) of every file below ``folder``, the backup folder excluded."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        if Path(dirpath) == folder and BACKUP in dirnames:
            dirnames.remove(BACKUP)
        for name in filenames:
            path = Path(dirpath, name)
            stat = path.stat()
            found[str(path.relative_to(folder))] = (stat.st_size, stat.st_mtime_ns)
    return found


def _read_marker(folder: Path) -> dict | None:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and isinstance(marker.get("files"), list) else None


def _inside(folder: Path, relative: str) -> Path | None:
    """``folder/relative`` when it stays inside ``folder`` (the marker is a file: never trusted blindly)."""
    path = (folder / relative).resolve()
    root = folder.resolve()
    return path if path != root and root in path.parents else None


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (or ``path`` itself) that does not exist yet: what a run may create."""
    return next((p for p in reversed([path, *path.parents]) if not p.exists()), None)


def _check_creatable(path: Path) -> None:
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            raise InputError(f"--out '{path}' cannot be created: '{parent}' is a file, not a folder.")


def _remove_empty_folders(folder: Path) -> None:
    for dirpath, _, _ in sorted(os.walk(folder), key=lambda item: -len(item[0])):
        if Path(dirpath) != folder:
            with contextlib.suppress(OSError):
                Path(dirpath).rmdir()


@dataclass
class OutputGuard:
    """Applies the ``--out`` rule around one command run (see the module docstring)."""

    path: Path
    kind: str  # "folder" or "file"
    overwrite: bool = False
    resumable: bool = False
    command: str = ""
    argv: tuple = ()

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._created: Path | None = None
        self._before: dict[str, tuple[int, int]] = {}
        self._backup: Path | None = None
        self._previous_files: list[str] = []
        self._parent_before: set[str] = set()

    # -- before the run ----------------------------------------------------------------------

    def __enter__(self) -> OutputGuard:
        _check_creatable(self.path)
        self._created = _first_missing(self.path)
        if self.kind == "file":
            self._enter_file()
        else:
            self._enter_folder()
        return self

    def _enter_file(self) -> None:
        path = self.path
        if path.is_dir():
            raise InputError(f"--out '{path}' is a folder; give the file to write (e.g. '{path / 'result.nrrd'}').")
        if path.parent.is_dir():
            self._parent_before = set(os.listdir(path.parent))
        if path.exists():
            if not self.overwrite:
                raise InputError(f"--out '{path}' already exists; give --overwrite to replace it, or choose another "
                                 "file name (nothing was written).")
            self._backup = path.with_name(f".{path.name}.previous-{os.getpid()}")
            path.rename(self._backup)

    def _enter_folder(self) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise InputError(f"--out '{path}' is a file, not a folder.")
        if not path.is_dir():
            return
        if (path / BACKUP).exists():
            shutil.rmtree(path / BACKUP, ignore_errors=True)  # left by a run that was killed
        entries = sorted(os.listdir(path))
        if not entries:
            return
        marker = _read_marker(path)
        same_command = marker is not None and marker.get("command") == self.command
        if self.resumable and not self.overwrite and (same_command or (marker is None and (path / "cases").is_dir())):
            self._before = _files_below(path)
            self._previous_files = list(marker["files"]) if marker else []
            return
        if not self.overwrite:
            shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
            raise InputError(f"--out '{path}' already holds files ({shown}); give --overwrite to replace an earlier "
                             "run's results, or choose a new folder (nothing was written).")
        if marker is not None:
            self._backup = path / BACKUP
            self._backup.mkdir()
            for relative in marker["files"]:
                source = _inside(path, str(relative))
                if source is not None and source.is_file():
                    target = self._backup / str(relative)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source.rename(target)
            (path / MARKER).rename(self._backup / MARKER)
            _remove_empty_folders(path)
        self._before = _files_below(path)

    # -- after the run -----------------------------------------------------------------------

    def __exit__(self, kind, error, traceback) -> bool:
        if kind is None:
            self._commit()
            return False
        from virtualbiopsy.errors import Cancelled

        if self.resumable and issubclass(kind, KeyboardInterrupt | Cancelled):
            self._commit()  # finished cases stay, recorded, for the next run to resume from
            return False
        with contextlib.suppress(OSError):  # never hide the run's own error behind a clean-up problem
            self._roll_back()
        return False

    def _written(self) -> list[str]:
        after = _files_below(self.path) if self.path.is_dir() else {}
        return sorted(k for k, v in after.items() if k != MARKER and self._before.get(k) != v)

    def _commit(self) -> None:
        if self.kind == "file":
            if self._backup is not None:
                if self.path.exists():
                    self._backup.unlink(missing_ok=True)
                else:
                    self._backup.rename(self.path)
            return
        if not self.path.is_dir():
            return
        files = sorted(set(self._written()) | set(self._previous_files))
        record = {"command": self.command, "argv": list(self.argv), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                  "files": files}
        (self.path / MARKER).write_text(json.dumps(record, indent=1))
        if self._backup is not None:
            shutil.rmtree(self._backup, ignore_errors=True)

    def _roll_back(self) -> None:
        if self._created is not None and self._created.exists():
            shutil.rmtree(self._created, ignore_errors=True)
        elif self.kind == "file":
            parent = self.path.parent
            if parent.is_dir():
                for name in set(os.listdir(parent)) - self._parent_before:
                    if self._backup is not None and name == self._backup.name:
                        continue
                    new = parent / name
                    shutil.rmtree(new, ignore_errors=True) if new.is_dir() else new.unlink(missing_ok=True)
        elif self.path.is_dir():
            for relative in self._written():
                if relative not in self._before:
                    (self.path / relative).unlink(missing_ok=True)
            _remove_empty_folders(self.path)
        if self._backup is None or not self._backup.exists():
            return
        if self.kind == "file":
            self.path.unlink(missing_ok=True)
            self._backup.rename(self.path)
            return
        for dirpath, _, filenames in os.walk(self._backup):
            for name in filenames:
                source = Path(dirpath, name)
                target = self.path / source.relative_to(self._backup)
                target.parent.mkdir(parents=True, exist_ok=True)
                source.replace(target)
        shutil.rmtree(self._backup, ignore_errors=True)


def guard_for(args, argv) -> OutputGuard | None:
    """The :class:`OutputGuard` of a parsed command line, or None for a command without ``--out``."""
    out = getattr(args, "out", None)
    command = command_name(args)
    if out is None or command in UNGUARDED:
        return None
    kind = "file" if FILE_OUTPUTS.get(command, lambda a: False)(args) else "folder"
    resumable = RESUMABLE.get(command, lambda a: False)(args)
    label = " ".join([command] + ([args.predict_command] if getattr(args, "predict_command", None) else []))
    return OutputGuard(Path(out), kind, bool(getattr(args, "overwrite", False)), resumable, label, tuple(argv))


def add_overwrite_flags(parser) -> None:
    """Give every (sub-)command that has ``--out`` an ``--overwrite`` flag (unless it defines its own)."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                add_overwrite_flags(sub)
    options = {option for action in parser._actions for option in action.option_strings}
    if "--out" in options and "--overwrite" not in options:
        parser.add_argument("--overwrite", action="store_true",
                            help="replace the results of an earlier run in --out (they are moved aside and deleted "
                                 "once this run succeeded; put back if it fails)")
