"""Benchmark of the browser viewer (``virtualbiopsy view``) in headless Chromium (prints figures; asserts nothing).

    .venv/bin/python scripts/benchmark_viewer.py [--strokes 50] [--scrolls 30] [--screenshot Resources/viewer.png]

Starts ``virtualbiopsy view`` on the sample study (seed 0) as a user would, opens the printed URL and measures:
start-up (process start to the first frame of the axial view in the page: server start, study read, page load),
the paint round trip (mouse-up of a brush stroke to the next frame of the view, which holds the stroke: the edit
is applied on release), the slice-scroll frame time (mouse-wheel step to the next frame), the AI segmentation
through the page, and the server's resident memory with the study and the AI result loaded. Medians and 95th
percentiles over the strokes / scrolls; the load average is printed (other work on the machine slows all of them).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Testing" / "Python"))

from viewer_harness import Viewer  # noqa: E402

NEXT_FRAME = """([index, marker]) => new Promise(resolve => {
    const image = document.querySelectorAll('img.image-display-area')[index];
    const start = performance.now();
    window[marker] = start;
    const timeout = setTimeout(() => resolve(-1), 5000);
    image.addEventListener('load', () => { clearTimeout(timeout); resolve(performance.now() - start); },
                           {once: true});
})"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _percentiles(values) -> str:
    values = np.asarray([v for v in values if v >= 0], float)
    if not len(values):
        return "no frames"
    return f"median {np.median(values):.0f} ms, p95 {np.percentile(values, 95):.0f} ms (n={len(values)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strokes", type=int, default=50)
    parser.add_argument("--scrolls", type=int, default=30)
    parser.add_argument("--screenshot", type=Path, default=None, help="save a screenshot of the viewer there")
    args = parser.parse_args()

    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import write_study

    work = Path(tempfile.mkdtemp(prefix="vb-viewer-bench-"))
    study = work / "sample"
    write_study(generate_study(0), study)
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    viewer = Viewer([study], work / "out", "benchmark_viewer")
    page = viewer.open()
    page.wait_for_selector("img.image-display-area", timeout=120_000)
    page.wait_for_function("() => { const i = document.querySelector('img.image-display-area');"
                           " return i && i.naturalWidth > 0; }", timeout=120_000)
    startup = time.monotonic() - viewer.started
    print(f"start-up to first frame: {startup:.1f} s (target < 15 s)")
    print(f"server memory, study loaded: {_rss_mb(viewer.process.pid):.0f} MB")

    began = time.monotonic()
    page.click("#vb-segment")
    viewer.wait_idle(300)
    page.wait_for_selector("#vb-ai-summary")
    print(f"AI segmentation through the page (demo model, mirrored, uncertainty): {time.monotonic() - began:.1f} s")
    print(f"server memory, AI result loaded: {_rss_mb(viewer.process.pid):.0f} MB")

    page.click("#vb-start-correcting")
    viewer.wait_idle()
    page.click("#vb-effect-paint")
    page.wait_for_timeout(500)
    box = viewer.view_box(0)
    mouse = page.mouse
    rng = np.random.default_rng(0)
    round_trips = []
    for _ in range(args.strokes):
        x = box["x"] + box["width"] * rng.uniform(0.3, 0.7)
        y = box["y"] + box["height"] * rng.uniform(0.3, 0.7)
        mouse.move(x, y)
        mouse.down()
        mouse.move(x + 15, y + 10, steps=4)
        page.wait_for_timeout(300)  # frames of the stroke itself have arrived
        waiting = page.evaluate_handle(NEXT_FRAME, [0, "__vbStroke"])
        mouse.up()
        round_trips.append(waiting.json_value())
        page.wait_for_timeout(150)
    print(f"paint round trip (mouse-up to updated frame): {_percentiles(round_trips)} "
          "(targets: median < 150 ms, p95 < 300 ms)")

    page.click("#vb-effect-none")
    page.wait_for_timeout(300)
    mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    scrolls = []
    for step in range(args.scrolls):
        waiting = page.evaluate_handle(NEXT_FRAME, [0, "__vbScroll"])
        mouse.wheel(0, 120 if step % 2 == 0 else -120)
        scrolls.append(waiting.json_value())
        page.wait_for_timeout(100)
    print(f"slice-scroll frame time (wheel step to next frame): {_percentiles(scrolls)}")
    print(f"server memory at the end: {_rss_mb(viewer.process.pid):.0f} MB")
    if args.screenshot is not None:
        page.click("#vb-effect-none")
        page.locator(".vb-target").first.click()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.screenshot))
        print(f"screenshot: {args.screenshot}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
