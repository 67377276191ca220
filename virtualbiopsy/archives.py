"""Safe extraction of untrusted zip archives (scene bundles, model zips).

Before anything is written, refuses an archive with any entry that would land outside the target
folder (``../`` paths, absolute paths, drive letters, symbolic links), whose entries add up to more
than ``max_total_bytes`` uncompressed (default 4 GiB), or with an entry above 8 MB that expands
more than ``max_ratio`` times (default 200:1; real model and scene files reach about 10:1, a zip
bomb of zeros about 1000:1); optionally checks a SHA256. The sizes in a zip's directory can lie,
so entries are then copied with a byte budget: an entry that yields more bytes than it declared
stops the extraction and everything written is removed again.
Written by hand because :mod:`zipfile`'s own sanitising silently rewrites such names instead of
refusing the archive, which would hide a tampered file from the user, and it has no size limits.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
import zipfile
import zlib
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


DEFAULT_MAX_TOTAL_BYTES = 4 * 1024 ** 3  # 4 GiB: a large nnU-Net ensemble is ~1-2 GB, a scene bundle less
DEFAULT_MAX_RATIO = 200.0
RATIO_CHECKED_FROM_BYTES = 8 * 1024 ** 2  # small entries (JSON, text) may compress far better than 200:1
_CHUNK = 1 << 20


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def size_problem(archive: zipfile.ZipFile, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
                 max_ratio: float = DEFAULT_MAX_RATIO) -> str | None:
    """Why the archive's declared sizes look like a zip bomb (total above ``max_total_bytes``, or an entry
    above 8 MB expanding more than ``max_ratio`` times), in words; None when they do not."""
    total = sum(info.file_size for info in archive.infolist())
    if total > max_total_bytes:
        return (f"its entries would unpack to {_size(total)}, more than the limit of {_size(max_total_bytes)} "
                "(raise max_total_bytes if the file is genuine)")
    for info in archive.infolist():
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > RATIO_CHECKED_FROM_BYTES and ratio > max_ratio:
            return (f"entry '{info.filename}' expands {ratio:.0f}:1 ({_size(info.compress_size)} to "
                    f"{_size(info.file_size)}), more than the {max_ratio:.0f}:1 a model or scene file reaches; it "
                    "looks like a zip bomb")
    return None


def _copy_entries(archive: zipfile.ZipFile, target: Path, budget: int, name: str) -> None:
    """Write every entry below ``target``, stopping when one yields more bytes than it declared or the total
    exceeds ``budget``; the caller removes what was written when this raises."""
    written = 0
    for info in archive.infolist():
        destination = target.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
        if info.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        entry_bytes = 0
        with archive.open(info) as source, open(destination, "wb") as sink:
            while chunk := _read(source, name, info.filename):
                entry_bytes += len(chunk)
                written += len(chunk)
                if entry_bytes > info.file_size or written > budget:
                    raise UnsafeArchiveError(
                        f"'{name}' was not extracted: entry '{info.filename}' holds more data than its header "
                        f"declares ({_size(info.file_size)}); the archive is forged. Do not use this file.")
                sink.write(chunk)


def _read(source, name: str, entry: str) -> bytes:
    try:
        return source.read(_CHUNK)
    except zipfile.BadZipFile as error:  # zipfile stops at the declared size, then the CRC does not match
        raise UnsafeArchiveError(f"'{name}' was not extracted: entry '{entry}' does not match its header ({error}); "
                                 "the archive is damaged or forged. Do not use this file.") from error


def safe_extract(zip_path: str | Path, target: str | Path, expected_sha256: str | None = None,
                 max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, max_ratio: float = DEFAULT_MAX_RATIO) -> Path:
    """Extract ``zip_path`` into ``target`` after checking every entry's path and size (and the SHA256 if given).

    ``max_total_bytes``: the most the entries may unpack to together; ``max_ratio``: the most an entry above
    8 MB may expand (uncompressed / compressed). Nothing is left in ``target`` when the archive is refused.
    """
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
            problem = size_problem(archive, max_total_bytes, max_ratio)
            if problem is not None:
                raise UnsafeArchiveError(f"'{zip_path.name}' was not extracted: {problem}. Do not use this file.")
            before = set(target.rglob("*")) if target.is_dir() else None
            target.mkdir(parents=True, exist_ok=True)
            try:
                _copy_entries(archive, target, max_total_bytes, zip_path.name)
            except BaseException:
                _remove_new(target, before)
                raise
    except zipfile.BadZipFile as error:
        raise FileFormatError(f"'{zip_path.name}' is not a valid zip archive ({error}).") from error
    except (zlib.error, EOFError, NotImplementedError, RuntimeError) as error:  # damaged data, encrypted entries
        raise FileFormatError(f"'{zip_path.name}' could not be extracted: it is damaged or uses an unsupported "
                              f"zip feature ({str(error)[:120]}).") from error
    return target


def _remove_new(target: Path, before: set | None) -> None:
    """Remove what an interrupted extraction wrote: the whole ``target`` if it did not exist, else new paths."""
    if before is None:
        shutil.rmtree(target, ignore_errors=True)
        return
    for path in sorted(set(target.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
