"""Benchmark of the in-process nnU-Net inference with uncertainty (prints figures; asserts nothing).

    .venv/bin/python scripts/benchmark_segmentation.py [--cases 5] [--model DIR] [--device cpu]

For the same model and the same 5 synthetic studies it prints, each as a ratio against a
baseline measured in the same run:
1. in-process inference with the model kept loaded vs ``nnUNetv2_predict_from_modelfolder`` in a
   subprocess on the same 5-case batch (target: >= 10x faster), mirrored and single pass
   (``--disable_tta``);
2. uncertainty overhead: mirrored inference keeping uncertainty vs the same mirrored inference
   without it (target: <= 1.1);
3. the single-pass option (no mirroring, uncertainty from one softmax) vs plain single-pass inference;
4. peak resident memory of this process.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from virtualbiopsy.phantom import generate_study  # noqa: E402
from virtualbiopsy.segmentation.demo_model import demo_model_path  # noqa: E402
from virtualbiopsy.segmentation.inference import NNUNetSegmenter  # noqa: E402
from virtualbiopsy.segmentation.nnunet_model import inspect_model  # noqa: E402


def timed(function, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def write_nifti(study, path: Path) -> None:
    import SimpleITK as sitk

    from virtualbiopsy.mrml.sitk_bridge import image_from_array
    from virtualbiopsy.sample_study import geometry_of

    sitk.WriteImage(image_from_array(study.t2w.astype(np.float32), geometry_of(study.t2_grid)), str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model_dir = args.model or demo_model_path()
    studies = [generate_study(3000 + i) for i in range(args.cases)]
    spacing = [tuple(float(s) for s in st.t2_grid.spacing[::-1]) for st in studies]

    load_started = time.perf_counter()
    mirrored = NNUNetSegmenter(inspect_model(model_dir), args.device, mirroring=True)
    load_seconds = time.perf_counter() - load_started
    single = NNUNetSegmenter(inspect_model(model_dir), args.device, mirroring=False)

    def batch(segmenter, uncertainty):
        return lambda: [segmenter.predict([st.t2w], sp, uncertainty=uncertainty) for st, sp in zip(studies, spacing)]

    batch(mirrored, True)()  # warm-up (first call allocates)
    # With and without uncertainty alternate, best of 3 each, so that a burst of other work on the
    # machine does not land on one side of a ratio only.
    in_process_unc = in_process_plain = single_unc = single_plain = float("inf")
    for _ in range(3):
        in_process_unc = min(in_process_unc, timed(batch(mirrored, True)))
        in_process_plain = min(in_process_plain, timed(batch(mirrored, False)))
        single_unc = min(single_unc, timed(batch(single, True)))
        single_plain = min(single_plain, timed(batch(single, False)))

    work = Path(tempfile.mkdtemp(prefix="vb_bench_"))
    (work / "in").mkdir()
    for index, study in enumerate(studies):
        write_nifti(study, work / "in" / f"case{index:03d}_0000.nii.gz")
    command = [str(Path(sys.executable).parent / "nnUNetv2_predict_from_modelfolder"), "-i", str(work / "in"),
               "-o", str(work / "out"), "-m", str(model_dir), "-f", "0", "-device", args.device]
    runs = {}
    for label, extra in (("mirrored", []), ("single pass", ["--disable_tta"])):
        shutil.rmtree(work / "out", ignore_errors=True)
        started = time.perf_counter()
        completed = subprocess.run(command + extra, capture_output=True, text=True)
        runs[label] = (time.perf_counter() - started, completed)
    shutil.rmtree(work, ignore_errors=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n = args.cases
    print(f"model: {inspect_model(model_dir).describe()}; device {args.device}; {n} cases of "
          f"{studies[0].t2w.shape[::-1]} voxels")
    print(f"model load (once): {load_seconds:.2f} s")
    print(f"in-process, mirrored + uncertainty : {in_process_unc:7.2f} s  ({in_process_unc / n:.2f} s/case)")
    print(f"in-process, mirrored, plain        : {in_process_plain:7.2f} s  ({in_process_plain / n:.2f} s/case)")
    print(f"in-process, single pass + entropy  : {single_unc:7.2f} s")
    print(f"in-process, single pass, plain     : {single_plain:7.2f} s")
    for label, ours in (("mirrored", in_process_unc), ("single pass", single_unc)):
        seconds, completed = runs[label]
        if completed.returncode == 0:
            print(f"nnUNetv2_predict_from_modelfolder, {label:<11}: {seconds:7.2f} s (subprocess, same {n} cases); "
                  f"in-process with uncertainty is {seconds / ours:.1f}x faster (target >= 10x)")
        else:
            print(f"nnUNetv2_predict_from_modelfolder ({label}) failed (exit {completed.returncode}): "
                  f"{completed.stderr.strip().splitlines()[-1] if completed.stderr.strip() else ''}")
    print(f"uncertainty overhead, mirrored: {in_process_unc / in_process_plain:.3f} (target <= 1.1)")
    print(f"uncertainty overhead, single pass: {single_unc / single_plain:.3f}; single pass vs mirrored plain: "
          f"{single_plain / in_process_plain:.3f}")
    print(f"peak resident memory of this process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
