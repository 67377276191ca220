"""Safe extraction of untrusted zip archives (scene bundles, model zips).

Refuses any entry that would land outside the target folder (``../`` paths, absolute paths,
drive letters, symbolic links) before anything is written, and optionally checks a SHA256.
Written by hand because :mod:`zipfile`'s own sanitising silently rewrites such names instead of
refusing the archive, which would hide a tampered file from the user.
"""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path, PurePosixPath

from virtualbiopsy.errors import FileFormatError, UnsafeArchiveError


def sha256_of(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def unsafe_members(archive: zipfile.ZipFile) -> list[str]:
    """Names of entries that would escape the target folder or are symbolic links."""
    bad = []
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        is_link = stat.S_ISLNK(info.external_attr >> 16)
        if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]) or is_link:
            bad.append(info.filename)
    return bad


def safe_extract(zip_path: str | Path, target: str | Path, expected_sha256: str | None = None) -> Path:
    """Extract ``zip_path`` into ``target`` after checking every entry (and the SHA256 if given)."""
    zip_path, target = Path(zip_path), Path(target)
    if not zip_path.is_file():
        raise FileFormatError(f"No archive at '{zip_path}'.")
    if expected_sha256 is not None:
        actual = sha256_of(zip_path)
        if actual.lower() != expected_sha256.lower():
            raise UnsafeArchiveError(
                f"'{zip_path.name}' does not match its expected SHA256 (expected {expected_sha256}, "
                f"got {actual}); the file is damaged or not the one that was published."
            )
    try:
        with zipfile.ZipFile(zip_path) as archive:
            bad = unsafe_members(archive)
            if bad:
                raise UnsafeArchiveError(
                    f"'{zip_path.name}' was not extracted: {len(bad)} entries would be written outside the "
                    f"target folder or are links ({', '.join(bad[:5])}). Do not use this file."
                )
            target.mkdir(parents=True, exist_ok=True)
            archive.extractall(target)
    except zipfile.BadZipFile as error:
        raise FileFormatError(f"'{zip_path.name}' is not a valid zip archive ({error}).") from error
    return target
