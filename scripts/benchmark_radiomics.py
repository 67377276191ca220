"""Benchmark of the cohort radiomics batch: throughput with 1 vs 2 worker processes (prints figures; asserts nothing).

    .venv/bin/python scripts/benchmark_radiomics.py [--cases 40] [--workers 2]

Writes ``--cases`` synthetic MR cases (40 x 96 x 96 voxels of 1.5 x 1.5 x 4 mm, a lobulated tumour of
~20 000 voxels with a textured rim and core, Rician-like noise) to a temporary folder, then runs
:func:`virtualbiopsy.radiomics.batch.run_batch` (study preset: all 107 original features) on the same
cases with 1 worker and with ``--workers`` workers, each into a fresh output folder (nothing reused),
and prints cases/s for both and their ratio, with the load average (other processes on the machine
lower the ratio). Worker processes are started with 'spawn'; their start-up is included.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from virtualbiopsy.radiomics import batch  # noqa: E402

SHAPE = (40, 96, 96)  # k, j, i
SPACING = (1.5, 1.5, 4.0)  # i, j, k in mm


def write_case(folder: Path, seed: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SHAPE), indexing="ij")
    centre = np.array(SHAPE) / 2 + rng.uniform(-3, 3, 3)
    radii = np.array([7.0, 22.0, 22.0]) * rng.uniform(0.85, 1.15, 3)
    r = np.sqrt(sum(((axis - c) / radius) ** 2 for axis, c, radius in zip((k, j, i), centre, radii)))
    angle = np.arctan2(j - centre[1], i - centre[2])
    tumour = r <= 1 + 0.12 * np.sin(3 * angle + rng.uniform(0, 6))
    core = r <= 0.5
    texture = rng.normal(0, 1, SHAPE)
    image = 600 + 250 * tumour + 600 * core + 60 * texture * tumour + np.abs(rng.normal(0, 35, SHAPE))
    paths = folder / f"case{seed:03d}_t2w.nrrd", folder / f"case{seed:03d}_mask.nrrd"
    for array, path in ((image.astype(np.int16), paths[0]), (tumour.astype(np.uint8), paths[1])):
        itk = sitk.GetImageFromArray(array)
        itk.SetSpacing(SPACING)
        sitk.WriteImage(itk, str(path), useCompression=True)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vb-radiomics-bench-") as tmp:
        folder = Path(tmp)
        cases = []
        for seed in range(args.cases):
            image, mask = write_case(folder, seed)
            cases.append(batch.Case(f"case{seed:03d}", {"image": str(image)}, str(mask)))
        voxels = int(sitk.GetArrayViewFromImage(sitk.ReadImage(str(cases[0].mask))).sum())
        print(f"{args.cases} synthetic cases, {SHAPE[2]} x {SHAPE[1]} x {SHAPE[0]} voxels, tumour ~{voxels} voxels; "
              f"{os.cpu_count()} CPU(s); preset study_mr (107 features)")
        rates = {}
        for workers in (1, args.workers):
            load = os.getloadavg()[0]
            started = time.perf_counter()
            result = batch.run_batch(cases, folder / f"out{workers}", workers=workers)
            seconds = time.perf_counter() - started
            assert result.failed == 0 and result.computed == args.cases, [r["error"] for r in result.rows]
            rates[workers] = args.cases / seconds
            print(f"{workers} worker(s): {seconds:6.1f} s, {rates[workers]:.2f} cases/s "
                  f"(1-min load average before: {load:.2f})")
        print(f"throughput ratio {args.workers} vs 1 worker(s): {rates[args.workers] / rates[1]:.2f}x "
              f"(1-min load average after: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
