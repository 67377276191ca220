"""Cohort segmentation (``segment --manifest``): one result folder per case, per-case failures, resumable.

The manifest is a CSV with a ``case_id`` column and one column per model channel (``image``,
``image2``, ... in the model's channel order; relative paths are relative to the manifest's folder).
Each case's results go to ``<out>/<case_id>/``; the case ids are checked before anything runs:
present, unique (also ignoring letter case) and usable as a folder name inside ``--out`` (no
``../X``, ``/abs``, ``a/b``; see :func:`virtualbiopsy.manifests.unsafe_folder_name`).

A case that fails (a missing or corrupt image, a 4D series, a grid mismatch...) gets its message in
``<out>/cases.csv`` and the run goes on. A case's folder is written under a temporary name and
renamed when complete, so a killed run never leaves half a case.

Resumable: ``summary.json`` records a key of everything the result depends on (the input files'
path, size and modification time, the model's files, the folds, mirroring, threshold and
pre-processing) and the SHA-256 of the ``segmentation.seg.nrrd`` it wrote. A later run reuses a
case whose key is unchanged. A case whose inputs or settings changed is segmented again, unless its
segmentation was changed since it was written (a person corrected it): that case is kept as it is
and reported as failed, so an edit is never lost without ``--overwrite``.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from virtualbiopsy import manifests
from virtualbiopsy.errors import Cancelled, InputError, VirtualBiopsyError
from virtualbiopsy.progress import as_task

TABLE = "cases.csv"
SEGMENTATION = "segmentation.seg.nrrd"
SUMMARY = "summary.json"
_PARTIAL = ".virtualbiopsy-partial-"
#: names in --out that a case folder must not take (the table, VTK's log, the --out rule's files)
RESERVED = (TABLE, "vtk.log", ".virtualbiopsy-outputs.json", ".virtualbiopsy-previous")


@dataclass
class SegmentCase:
    """One manifest row: the case id, its images in channel order, and its line in the manifest."""

    case_id: str
    images: list[str]
    line: int = 0


@dataclass
class CaseResult:
    case_id: str
    status: str  # "computed", "reused" or "failed"
    error: str = ""
    summary: dict = field(default_factory=dict)


@dataclass
class CohortResult:
    table_path: Path
    results: list[CaseResult]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "failed"]


def read_manifest(path: str | Path) -> list[SegmentCase]:
    """The cases of a segmentation manifest; refuses a bad header, and empty, repeated or unsafe ids."""
    path = Path(path)
    header, lined_rows = manifests.read_rows(path)
    image_columns = [h for h in header if h.lower().startswith("image")]
    missing = (["case_id"] if "case_id" not in header else []) + ([] if image_columns else ["image"])
    if missing:
        raise InputError(f"The manifest '{path.name}' lacks the column(s) {', '.join(missing)} (it has: "
                         f"{', '.join(header) or 'no header'}). Needed: case_id, image[, image2, ...].")
    if not lined_rows:
        raise InputError(f"The manifest '{path.name}' lists no cases.")
    ids = [row["case_id"] for _, row in lined_rows]
    lines = [line for line, _ in lined_rows]
    manifests.require_unique_ids(ids, path.name, lines)
    manifests.require_folder_names(ids, path.name, lines, RESERVED)
    for case_id, line in zip(ids, lines):
        if case_id.startswith(_PARTIAL):
            raise InputError(f"The case_id '{case_id}' on line {line} of '{path.name}' starts with '{_PARTIAL}', "
                             "the prefix of this run's temporary folders. Rename the case.")

    def resolve(value: str) -> str:
        return str(Path(value) if Path(value).is_absolute() else path.parent / value) if value else ""

    return [SegmentCase(row["case_id"], [resolve(row[c]) for c in image_columns], line) for line, row in lined_rows]


def model_stamp(model_folder: str | Path) -> list:
    """Path, size and modification time of every file of a model folder (what its predictions depend on)."""
    folder = Path(model_folder)
    return [manifests.file_stamp(p) for p in sorted(folder.rglob("*")) if p.is_file()]


def case_key(case: SegmentCase, settings: dict) -> str:
    """A hash of the case's input files and of ``settings`` (model stamp, folds, pre-processing...)."""
    return manifests.content_key({"images": [manifests.file_stamp(p) for p in case.images], "settings": settings})


def _previous(folder: Path) -> dict | None:
    try:
        summary = json.loads((folder / SUMMARY).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _check_images(case: SegmentCase) -> None:
    if not case.images or not all(case.images):
        empty = [str(i + 1) for i, p in enumerate(case.images) if not p]
        raise InputError(f"No image file given (image column {', '.join(empty)} is empty).")
    from virtualbiopsy.mrml.dicom_nodes import is_dicom_reference

    for image in case.images:
        if not Path(image).is_file() and not is_dicom_reference(image):
            raise InputError(f"No image at '{image}'.")


def run_cohort(
    cases: list[SegmentCase],
    out_dir: str | Path,
    settings: dict,
    segment_case: Callable[[SegmentCase, Path, object], dict],
    progress=None,
) -> CohortResult:
    """Segment every case into ``<out_dir>/<case_id>/`` and write ``<out_dir>/cases.csv``.

    ``segment_case(case, folder, task)`` writes one case's files into ``folder`` (a new, empty
    folder) and returns its summary; it may raise for a bad case (recorded, the run goes on).
    Cancelling stops after the running case; finished cases stay for the next run.
    """
    task = as_task(progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(_PARTIAL + "*"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    results: list[CaseResult] = []
    try:
        for index, case in enumerate(cases):
            task.check()
            case_task = task.sub(index / len(cases), (index + 1) / len(cases))
            results.append(_run_case(case, out_dir, settings, segment_case, case_task))
            state = results[-1].status
            task.update((index + 1) / len(cases), f"{case.case_id} {state} ({index + 1}/{len(cases)})")
    finally:  # the table is written even when cancelled, for the cases done so far
        table = write_table(results, out_dir / TABLE)
    return CohortResult(table, results)


def _run_case(case: SegmentCase, out_dir: Path, settings: dict, segment_case, task) -> CaseResult:
    folder = out_dir / case.case_id
    key = case_key(case, settings)
    previous = _previous(folder)
    if previous is not None and previous.get("key") == key and (folder / SEGMENTATION).is_file():
        return CaseResult(case.case_id, "reused", summary=previous)
    if folder.exists():
        if previous is None:
            return CaseResult(case.case_id, "failed", f"the folder '{folder}' exists but holds no result of "
                              "segment; it was kept (move it away to segment this case).")
        written = previous.get("segmentation_sha256")
        segmentation = folder / SEGMENTATION
        if segmentation.is_file() and written != manifests.sha256_of_file(segmentation):
            return CaseResult(case.case_id, "failed", f"its inputs or settings changed, but '{segmentation}' was "
                              "edited after it was segmented; it was kept (give --overwrite to segment it again, "
                              "or move the folder away).", previous)
    partial = out_dir / (_PARTIAL + manifests.hashed_name(case.case_id))
    try:
        _check_images(case)
        partial.mkdir()
        summary = dict(segment_case(case, partial, task))
        summary["key"] = key
        segmentation = partial / SEGMENTATION
        summary["segmentation_sha256"] = manifests.sha256_of_file(segmentation) if segmentation.is_file() else None
        (partial / SUMMARY).write_text(json.dumps(summary, indent=2))
    except (Cancelled, KeyboardInterrupt):
        shutil.rmtree(partial, ignore_errors=True)
        raise
    except VirtualBiopsyError as error:
        shutil.rmtree(partial, ignore_errors=True)
        return CaseResult(case.case_id, "failed", " ".join(str(error).split()))
    except Exception as error:  # noqa: BLE001 - a bad case must not stop the cohort: record what happened
        shutil.rmtree(partial, ignore_errors=True)
        return CaseResult(case.case_id, "failed", f"{type(error).__name__}: {' '.join(str(error).split())}")
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
    return CaseResult(case.case_id, "computed", summary=summary)


def write_table(results: list[CaseResult], path: Path) -> Path:
    """``cases.csv``: case_id, status, error, tumour volume, uncertain fraction, warnings, folder."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(temporary, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["case_id", "status", "error", "tumour_volume_ml", "uncertain_fraction", "warnings",
                         "folder"])
        for result in results:
            summary = result.summary if result.status != "failed" else {}
            writer.writerow([
                result.case_id, result.status, result.error,
                "" if summary.get("tumour_volume_ml") is None else f"{summary['tumour_volume_ml']:.6g}",
                "" if summary.get("uncertain_fraction") is None else f"{summary['uncertain_fraction']:.6g}",
                "; ".join(summary.get("warnings") or []),
                result.case_id if result.status != "failed" else "",
            ])
    os.replace(temporary, path)
    return path
