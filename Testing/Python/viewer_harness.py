"""Runs ``virtualbiopsy view`` as a user does (its own process, the URL it prints) and a headless Chromium on it.

What the server holds is checked from Python through what it writes: with ``--autosave-every 0`` every edit
is autosaved under ``--out``, so a test counts the corrected segment's voxels in that file after each step.
Screenshots go to ``out/test-screenshots/<test name>/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "out" / "test-screenshots"
URL_LINE = re.compile(r"^Open: (http://\S+)$")


def require_browser():
    """Skip, naming the missing piece, where the browser stack is absent (never silently)."""
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian package 'chromium' is not installed (apt-get install chromium); browser tests skipped")
    for module, package in (("playwright", "playwright"), ("trame_slicer", "trame-slicer")):
        try:
            __import__(module)
        except ImportError:
            pytest.skip(f"Python package '{package}' is not installed in .venv (make setup installs it); "
                        "browser tests skipped")


_SHARED: dict = {}


def _browser():
    """One headless Chromium for the whole test run (Playwright's sync API allows one driver per thread)."""
    if "browser" not in _SHARED:
        import atexit

        from playwright.sync_api import sync_playwright

        driver = sync_playwright().start()
        _SHARED["driver"], _SHARED["browser"] = driver, driver.chromium.launch(executable_path=CHROMIUM,
                                                                              headless=True)
        atexit.register(driver.stop)
        atexit.register(_SHARED["browser"].close)
    return _SHARED["browser"]


def view_command(*arguments) -> list[str]:
    return [sys.executable, "-m", "virtualbiopsy.cli.main", "view", *map(str, arguments)]


class Viewer:
    """One ``virtualbiopsy view`` process (one study) and, once :meth:`open` is called, one browser page on it."""

    def __init__(self, arguments, out: Path, screenshots: str, timeout_s: float = 120) -> None:
        self.out, self.shots = Path(out), SCREENSHOTS / screenshots
        shutil.rmtree(self.shots, ignore_errors=True)
        self.shots.mkdir(parents=True)
        environment = {k: v for k, v in os.environ.items() if k != "DISPLAY"}  # offscreen EGL, as on a server
        self.started = time.monotonic()
        self.process = subprocess.Popen(view_command(*arguments, "--out", out, "--port", 0), cwd=ROOT,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=environment)
        self.lines: list[str] = []
        self.url = None
        found = threading.Event()

        def read():
            for line in self.process.stdout:
                self.lines.append(line.rstrip())
                match = URL_LINE.match(line.strip())
                if match:
                    self.url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=read, daemon=True).start()
        found.wait(timeout_s)
        if self.url is None:
            self.process.kill()
            raise RuntimeError("virtualbiopsy view printed no URL:\n" + "\n".join(self.lines[-20:]))
        self.page = self.browser = None
        self._steps = 0

    @property
    def port(self) -> int:
        return int(re.search(r":(\d+)/", self.url).group(1))

    def open(self, url: str | None = None, width: int = 1500, height: int = 900):
        self.browser = _browser().new_context(viewport={"width": width, "height": height})
        self.page = self.browser.new_page()
        self.page.goto(url or self.url)
        return self.page

    def shot(self, name: str) -> Path:
        self._steps += 1
        path = self.shots / f"{self._steps:02d}_{re.sub(r'[^a-z0-9]+', '_', name.lower())}.png"
        self.page.screenshot(path=str(path))
        return path

    def wait_idle(self, timeout_s: float = 120) -> None:
        """Wait until the running action (its progress bar and Cancel button) has finished."""
        self.page.wait_for_timeout(400)
        self.page.wait_for_selector("#vb-cancel", state="hidden", timeout=timeout_s * 1000)
        self.page.wait_for_timeout(300)

    def settled_text(self, selector: str, quiet_ms: int = 1000, timeout_s: float = 20) -> str:
        """The element's text once it has stopped changing for ``quiet_ms`` (edits are counted after a debounce)."""
        deadline = time.monotonic() + timeout_s
        text = self.page.inner_text(selector)
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(quiet_ms)
            now = self.page.inner_text(selector)
            if now == text:
                return now
            text = now
        return text

    def view_box(self, index: int = 0) -> dict:
        """The on-screen box of slice view ``index`` (0 axial, 1 coronal, 2 sagittal)."""
        return self.page.query_selector_all("img.image-display-area")[index].bounding_box()

    def view_pixels(self, index: int = 0) -> np.ndarray:
        """The view's current frame as an RGB array (a screenshot of its box)."""
        from PIL import Image

        data = self.page.screenshot(clip=self.view_box(index))
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)

    def autosaved_voxels(self, reference_image: Path, timeout_s: float = 10) -> int:
        """Voxels of the corrected segment in the server's latest autosave, on ``reference_image``'s grid."""
        from virtualbiopsy.mrml import MRMLContext, arrays
        from virtualbiopsy.mrml import io as mrml_io

        deadline = time.monotonic() + timeout_s
        while True:
            files = sorted((self.out / ".autosave").glob("*/corrected.seg.nrrd"))
            if files or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert files, f"no autosave under {self.out}"
        context = MRMLContext.create()
        reference = mrml_io.load_volume(context, reference_image)
        node = mrml_io.load_segmentation(context, files[0])
        mask = arrays.mask_from_segment(node, arrays.segment_ids(node)[0], reference, allow_empty=True)
        return int(np.count_nonzero(mask))

    def close(self) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def colourful(rgb: np.ndarray, contrast: int = 60) -> np.ndarray:
    """Pixels that are not grey (overlays, outlines) in an RGB frame."""
    return (rgb.max(axis=2) - rgb.min(axis=2)) > contrast
