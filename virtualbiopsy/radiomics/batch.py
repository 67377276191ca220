"""Cohort radiomics: a manifest of cases -> one features table, in parallel, resumable.

The manifest is a CSV with one row per case:

==================  ===========================================================================
``case_id``         unique case identifier (required)
``image``           the image file; or several columns ``image_<sequence>`` (``image_t2w``,
                    ``image_adc``) for several sequences, giving columns ``<sequence>:<feature>``
``mask``            the label-map (or binary mask) file on the image's voxel grid (required)
``label``           the label value of the region (optional, default 1)
anything else       ``batch``, ``site``, clinical variables: copied into the features table
==================  ===========================================================================

Relative paths are relative to the manifest's folder. Each case runs in a worker process (reading
files with SimpleITK; no MRML) through :func:`~virtualbiopsy.radiomics.extraction.extract_case`,
the function the Slicer module uses. A case that fails (unreadable file, mask off the image grid,
empty mask, missing label, one-voxel region...) gets its message in the ``error`` column and the
run goes on.

Resumable: every finished case is written at once to ``<out>/cases/<case>.json`` together with a
key made of its input files (path, size, modification time), label, parameters and pyradiomics
version. A later run with the same inputs reuses those files instead of recomputing; cases that
failed, or whose inputs or settings changed, are computed again.
"""

from __future__ import annotations

import concurrent.futures
import csv
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from virtualbiopsy import manifests
from virtualbiopsy.errors import InputError, VirtualBiopsyError
from virtualbiopsy.progress import as_task
from virtualbiopsy.radiomics import extraction


@dataclass
class Case:
    """One manifest row: the sequences' image files, the mask file, the label and extra columns."""

    case_id: str
    images: dict[str, str]
    mask: str
    label: str = "1"
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class BatchResult:
    """What a cohort run produced: the table (rows in manifest order) and what it computed."""

    table_path: Path
    settings_path: Path
    rows: list[dict]
    computed: int  # cases computed in this run (successfully or not)
    reused: int  # cases read back from an earlier run's result files
    failed: int  # cases with an error (their message is in the 'error' column)

    @property
    def succeeded(self) -> int:
        """Cases whose features this run computed: :attr:`computed` less the failed ones (a reused case never
        failed: a failed one is computed again), so that succeeded + reused + failed = all cases."""
        return self.computed - self.failed

    def summary_line(self) -> str:
        """'9 case(s): 3 computed, 0 reused from an earlier run, 6 failed -> features.csv': counts that add up."""
        return (f"{len(self.rows)} case(s): {self.succeeded} computed, {self.reused} reused from an earlier run, "
                f"{self.failed} failed -> {self.table_path}")

    @property
    def columns(self) -> list[str]:
        return table_columns(self.rows)


def read_manifest(path: str | Path) -> list[Case]:
    """Parse a manifest CSV (columns above); paths become absolute, relative to the manifest's folder."""
    path = Path(path)
    header, lined_rows = manifests.read_rows(path)
    rows = [row for _, row in lined_rows]
    image_columns = [h for h in header if h == "image" or h.startswith("image_")]
    missing = [c for c in ("case_id", "mask") if c not in header] + ([] if image_columns else ["image"])
    if missing:
        raise InputError(f"The manifest '{path.name}' lacks the column(s) {', '.join(missing)} (it has: "
                         f"{', '.join(header) or 'no header'}). Needed: case_id, image (or image_<sequence>), mask.")
    if not rows:
        raise InputError(f"The manifest '{path.name}' lists no cases.")
    if len(image_columns) > 1 and "image" in image_columns:
        raise InputError(f"The manifest '{path.name}' mixes 'image' with 'image_<sequence>' columns; name every "
                         "image column image_<sequence>.")
    manifests.require_unique_ids([row["case_id"] for row in rows], path.name, [line for line, _ in lined_rows])

    def resolve(value: str) -> str:
        return str(Path(value) if Path(value).is_absolute() else (path.parent / value)) if value else ""

    sequences = {c: ("image" if c == "image" else c[len("image_"):]) for c in image_columns}
    known = {"case_id", "mask", "label", *image_columns}
    return [
        Case(row["case_id"], {sequences[c]: resolve(row[c]) for c in image_columns}, resolve(row["mask"]),
             row.get("label") or "1", {k: v for k, v in row.items() if k not in known})
        for row in rows
    ]


def case_key(case: Case, params: dict, versions: dict) -> str:
    """A hash of everything a case's features depend on (files, label, parameters, library versions)."""
    return manifests.content_key({
        "images": {name: manifests.file_stamp(p) for name, p in case.images.items()},
        "mask": manifests.file_stamp(case.mask),
        "label": case.label,
        "params": params,
        "versions": {k: v for k, v in versions.items() if k != "virtualbiopsy"},
    })


def result_path(out_dir: str | Path, case_id: str) -> Path:
    """``<out>/cases/<safe id>_<hash>.json`` (the hash keeps ids that differ only in odd characters apart)."""
    return Path(out_dir) / "cases" / manifests.hashed_name(case_id, ".json")


_EXTRACTORS: dict[str, object] = {}


def _worker_setup(threads: int | None) -> None:
    """Runs once in each worker process: one ITK thread per worker when several workers share the CPUs."""
    import SimpleITK as sitk

    if threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)


def compute_case(case: Case, parameters: extraction.ExtractionParameters, params: dict, key: str,
                 out_dir: str) -> dict:
    """Extract one case and write its result file; never raises for a bad case (the error is recorded)."""
    started = time.perf_counter()
    record = {"case_id": case.case_id, "key": key, "features": {}, "error": ""}
    try:
        params_key = json.dumps(params, sort_keys=True, default=str)
        if params_key not in _EXTRACTORS:
            _EXTRACTORS[params_key] = extraction.make_extractor(params)
        try:
            value = float(case.label)
        except ValueError as error:
            raise InputError(f"The label '{case.label}' is not an integer label value.") from error
        if not value.is_integer():  # '1.5' must not silently become label 1
            raise InputError(f"The label '{case.label}' is not an integer label value.")
        label = int(value)
        if not case.mask:
            raise InputError("No mask file given.")
        if not case.images or not all(case.images.values()):
            raise InputError("No image file given" + (f" for {', '.join(n for n, p in case.images.items() if not p)}"
                                                     if case.images else "") + ".")
        record["features"] = extraction.extract_files(case.images, case.mask, parameters, label,
                                                      _EXTRACTORS[params_key])
    except VirtualBiopsyError as error:
        record["error"] = str(error)
    except Exception as error:  # a bad case must not stop the cohort: record what happened
        record["error"] = f"{type(error).__name__}: {error}"
    record["seconds"] = time.perf_counter() - started
    path = result_path(out_dir, case.case_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(record))
    os.replace(temporary, path)  # atomic: an interrupted run never leaves half a result
    return record


def _previous(out_dir: Path, case: Case, key: str) -> dict | None:
    path = result_path(out_dir, case.case_id)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("key") != key or record.get("error") or not record.get("features"):
        return None
    return record


def run_batch(
    manifest: str | Path | list[Case],
    out_dir: str | Path,
    parameters: extraction.ExtractionParameters | None = None,
    workers: int = 1,
    progress=None,
    table_name: str = "features.csv",
) -> BatchResult:
    """Extract every case of ``manifest`` into ``<out_dir>/features.csv`` (+ ``features_settings.csv``).

    ``workers`` > 1 runs cases in that many processes. Cancelling (through ``progress``) stops
    after the running cases; finished cases are kept in ``<out_dir>/cases`` for the next run.
    """
    task = as_task(progress)
    cases = read_manifest(manifest) if not isinstance(manifest, list) else manifest
    parameters = parameters or extraction.ExtractionParameters()
    params = parameters.pyradiomics_params()
    provenance = extraction.provenance(parameters, params)  # validates the parameters before any work
    versions = extraction.library_versions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = {case.case_id: case_key(case, params, versions) for case in cases}
    records = {}
    for case in cases:
        previous = _previous(out_dir, case, keys[case.case_id])
        if previous is not None:
            records[case.case_id] = previous
    todo = [case for case in cases if case.case_id not in records]
    reused = len(records)
    task.update(reused / max(len(cases), 1), f"{reused} case(s) already done; {len(todo)} to compute")

    def finished(record: dict) -> None:
        records[record["case_id"]] = record
        state = "failed" if record["error"] else "done"
        task.update(len(records) / len(cases), f"{record['case_id']} {state} ({len(records)}/{len(cases)})")

    workers = max(1, min(int(workers), len(todo) or 1))
    if workers == 1:
        for case in todo:
            task.check()
            finished(compute_case(case, parameters, params, keys[case.case_id], str(out_dir)))
    elif todo:
        _run_pool(todo, parameters, params, keys, out_dir, workers, finished, task)

    rows = [_row(case, records[case.case_id]) for case in cases]
    table_path = write_table(rows, out_dir / table_name)
    settings_path = write_settings(provenance, out_dir / (Path(table_name).stem + "_settings.csv"))
    failed = sum(bool(row["error"]) for row in rows)
    return BatchResult(table_path, settings_path, rows, len(todo), reused, failed)


def _run_pool(todo, parameters, params, keys, out_dir, workers, finished, task) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold ITK / VTK threads
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_setup,
                                                  initargs=(threads,))
    try:  # on cancel (or any error) the queued cases are dropped; the running ones finish and are kept
        pending = {pool.submit(compute_case, case, parameters, params, keys[case.case_id], str(out_dir)): case
                   for case in todo}
        while pending:
            done, _ = concurrent.futures.wait(pending, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
            task.check()
            for future in done:
                case = pending.pop(future)
                try:
                    finished(future.result())
                except Exception as error:  # the worker process itself died (e.g. out of memory)
                    finished({"case_id": case.case_id, "features": {}, "error": f"worker failed: {error!r}"})
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _row(case: Case, record: dict) -> dict:
    row = {"case_id": case.case_id, "label": case.label}
    row.update(case.extra)
    row["error"] = record.get("error", "")
    row.update(record.get("features", {}))
    return row


def table_columns(rows: list[dict]) -> list[str]:
    """case_id, label, the manifest's extra columns, error, then every feature in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)


def write_table(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    columns = table_columns(rows)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.10g}" if isinstance(v, float) else v) for k, v in row.items()})
    os.replace(temporary, path)
    return path


def write_settings(provenance: dict, path: str | Path) -> Path:
    """The settings and library versions of a features table, as ``key,value`` rows."""
    path = Path(path)
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["key", "value"])
        writer.writerows(provenance.items())
    return path


