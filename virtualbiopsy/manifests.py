"""Cohort manifests shared by the resumable cohort runs (``radiomics --manifest``, ``segment --manifest``).

A manifest is a CSV with one row per case and a ``case_id`` column. This module reads it (one clear
error per problem, naming the line), checks the case ids (present, unique, and, where an id becomes
a folder name, unable to point outside the output folder), and gives each case a content key: a
SHA-256 of everything its result depends on (input files' path, size and modification time, the
parameters), so that a later run reuses a finished case only when nothing it depends on changed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

from virtualbiopsy.errors import FileFormatError, InputError

# Names Windows reserves in every folder (a case folder called "con" cannot be created there).
_RESERVED_WINDOWS = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_UNSAFE_CHARACTERS = re.compile(r"[/\\:*?\"<>|\x00-\x1f]")
MAX_FOLDER_NAME = 100


def read_rows(path: str | Path, what: str = "manifest") -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """``(header, [(line number, {column: text}), ...])`` of a CSV file, cells stripped of spaces.

    Refuses a missing or undecodable file, and a row with more cells than the header (which
    ``csv.DictReader`` would silently gather under no name), naming the line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"No {what} at '{path}'.")
    rows = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            header = [(h or "").strip() for h in reader.fieldnames or []]
            for row in reader:
                if None in row:
                    raise InputError(f"Line {reader.line_num} of the {what} '{path.name}' has more cells than its "
                                     f"header ({len(header)} columns); quote cells that contain commas.")
                rows.append((reader.line_num, {(k or "").strip(): (v or "").strip() for k, v in row.items()}))
    except UnicodeDecodeError as error:
        raise FileFormatError(f"The {what} '{path.name}' is not a UTF-8 text CSV ({error.reason} at byte "
                              f"{error.start}); save it as CSV (UTF-8).") from error
    except csv.Error as error:
        raise FileFormatError(f"The {what} '{path.name}' is not a valid CSV file ({error}).") from error
    return header, rows


def require_unique_ids(ids: list[str], name: str, lines: list[int] | None = None) -> None:
    """Refuse empty or repeated case ids, naming the repeated ones and their lines."""
    lines = lines or [i + 2 for i in range(len(ids))]
    empty = [str(line) for i, line in zip(ids, lines) if not i]
    repeated = {i: [str(line) for j, line in zip(ids, lines) if j == i] for i in ids if i and ids.count(i) > 1}
    if empty or repeated:
        raise InputError(
            f"Every case_id in '{name}' must be present and unique; "
            + ("; ".join(f"repeated: {i} (lines {', '.join(at)})" for i, at in repeated.items()) if repeated
               else f"empty on line(s) {', '.join(empty)}") + "."
        )


def unsafe_folder_name(case_id: str) -> str | None:
    """Why ``case_id`` cannot be used as a folder name inside an output folder, or None if it can.

    Refused: path separators and drive letters ('../X', '/abs', 'a/b', 'C:x'), '.', '..', names
    Windows reserves (CON, NUL, ...), control characters, a trailing dot or space, and names longer
    than ``MAX_FOLDER_NAME`` characters.

    >>> unsafe_folder_name("case_07"), unsafe_folder_name("../X")
    (None, "contains '/' or '\\\\' (a path)")
    """
    if case_id in ("", ".", ".."):
        return "is not a folder name"
    if _UNSAFE_CHARACTERS.search(case_id):
        if "/" in case_id or "\\" in case_id:
            return "contains '/' or '\\' (a path)"
        return "contains a character not allowed in folder names (: * ? \" < > | or a control character)"
    if _RESERVED_WINDOWS.match(case_id):
        return "is a name Windows reserves for devices"
    if case_id[-1] in ". ":
        return "ends with a dot or a space"
    if len(case_id) > MAX_FOLDER_NAME:
        return f"is longer than {MAX_FOLDER_NAME} characters"
    return None


def require_folder_names(ids: list[str], name: str, lines: list[int], reserved: tuple[str, ...] = ()) -> None:
    """Refuse case ids that cannot be folder names inside ``--out`` (see :func:`unsafe_folder_name`),
    that equal a file the run writes there (``reserved``), or that differ only in letter case (they would
    share one folder on Windows and macOS); names the first bad id and its line."""
    for case_id, line in zip(ids, lines):
        reason = unsafe_folder_name(case_id)
        if reason is None and case_id.lower() in {r.lower() for r in reserved}:
            reason = "is the name of a file this run writes into --out"
        if reason is not None:
            raise InputError(f"The case_id '{case_id}' on line {line} of '{name}' {reason}; each case's results go "
                             "to a folder of that name inside --out. Rename the case (letters, digits, - _ .).")
    folded: dict[str, str] = {}
    for case_id, line in zip(ids, lines):
        other = folded.setdefault(case_id.lower(), case_id)
        if other != case_id:
            raise InputError(f"The case_ids '{other}' and '{case_id}' (line {line}) of '{name}' differ only in "
                             "letter case; they would share one folder on Windows and macOS. Rename one.")


def file_stamp(path: str | Path) -> list:
    """``[resolved path, size in bytes, modification time in ns]`` of a file; ``[path, None, None]`` if absent.
    A folder (a DICOM series, also as 'FOLDER#series') gets a digest of every file's path, size and time."""
    p = Path(path)
    if not p.exists() and "#" in str(path):
        p = Path(str(path).rsplit("#", 1)[0])
    if p.is_dir():
        listing = [(str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                   for f in sorted(p.rglob("*")) if f.is_file()]
        return [str(path), len(listing), content_key({"files": listing})]
    if not p.is_file():
        return [str(path), None, None]
    stat = p.stat()
    return [str(p.resolve()), stat.st_size, stat.st_mtime_ns]


def content_key(content: dict) -> str:
    """SHA-256 of ``content`` as canonical JSON (sorted keys): equal keys mean equal inputs and settings."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def hashed_name(case_id: str, suffix: str = "") -> str:
    """``<safe id>_<hash><suffix>``: a file name for any case id (the hash keeps ids that differ only in
    odd characters apart).

    >>> hashed_name("../X", ".json")
    '.._X_2dceba54.json'
    """
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", case_id)[:80]
    return f"{safe}_{hashlib.sha1(case_id.encode()).hexdigest()[:8]}{suffix}"


def sha256_of_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 4 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: str | Path, data: dict) -> Path:
    """Write ``data`` as JSON through a temporary file and a rename, so an interrupted run never leaves half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=1, default=str))
    os.replace(temporary, path)
    return path
