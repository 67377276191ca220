"""``virtualbiopsy view`` as a radiologist uses it, in headless Chromium: open the study, run the model, look
where it is unsure, correct, compare, save, run Fit-Cluster-Fit; and bad input through the page.

Screenshots of every step: ``out/test-screenshots/<test>/``.
"""

from __future__ import annotations

import re
import zipfile

import numpy as np
import pytest
from viewer_harness import Viewer, colourful, require_browser

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study_folder(sample_study_folder):
    return sample_study_folder(3)


@pytest.fixture(scope="module")
def evil_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "evil_model.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Dataset1/dataset.json", "{}")
        archive.writestr("../../escaped.txt", "outside")
    return path


@pytest.fixture(scope="module")
def outcome_model(tmp_path_factory):
    """A logistic model trained on three radiomics columns of a small synthetic cohort."""
    import pandas as pd

    from virtualbiopsy.cli.main import main

    folder = tmp_path_factory.mktemp("outcome")
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, 40)
    pd.DataFrame({"case_id": [f"c{i}" for i in range(40)],
                  "original_firstorder_Mean": rng.normal(500, 50, 40) + 60 * label,
                  "original_shape_Sphericity": rng.uniform(0.5, 0.9, 40),
                  "original_glcm_Contrast": rng.normal(10, 3, 40), "high_risk": label}).to_csv(folder / "c.csv",
                                                                                              index=False)
    assert main(["predict", "train", "--table", str(folder / "c.csv"), "--endpoint", "high_risk", "--model",
                 "logistic", "--folds", "3", "--bootstrap", "50", "--out", str(folder / "model")]) == 0
    return folder / "model"


@pytest.fixture(scope="module")
def viewer(study_folder, evil_zip, outcome_model, tmp_path_factory):
    require_browser()
    out = tmp_path_factory.mktemp("review") / "out"
    running = Viewer([study_folder, "--model", evil_zip, "--outcome-model", outcome_model, "--autosave-every", 0],
                     out, "view_end_to_end")
    running.open()
    running.page.wait_for_selector("#vb-segment", timeout=60_000)
    running.page.wait_for_timeout(2000)
    yield running
    running.close()
    print("\n".join(line for line in running.lines if not line.startswith(("Info", "Zip", "Warning")))[-4000:])


def _stroke(viewer, points, view=0):
    box = viewer.view_box(view)
    mouse = viewer.page.mouse
    mouse.move(box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"])
    mouse.down()
    for fx, fy in points[1:]:
        mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=8)
    viewer.page.wait_for_timeout(100)
    mouse.up()
    viewer.settled_text("#vb-corrected-voxels")  # the stroke is applied and counted


def _choose_effect(viewer, name):
    """Pick an effect and wait until the server has it active (the page says what the mouse does)."""
    viewer.page.click(f"#vb-effect-{name}")
    viewer.page.wait_for_selector(f"#vb-active-effect:text-is('{name}')", timeout=20_000)


def _centre_of_colour(rgb):
    """Centre of the coloured (overlay) pixels of a view, as fractions of its width and height."""
    rows, columns = np.nonzero(colourful(rgb))
    return columns.mean() / rgb.shape[1], rows.mean() / rgb.shape[0]


def _segment(viewer):
    page = viewer.page
    page.click("#vb-segment")
    page.wait_for_selector("#vb-progress-text:has-text('%')", timeout=20_000)
    viewer.shot("model running")
    viewer.wait_idle(240)
    page.wait_for_selector("#vb-ai-summary", timeout=30_000)


def test_a_reader_segments_reviews_corrects_compares_saves_and_runs_habitats(viewer, study_folder):
    page, t2w = viewer.page, study_folder / "t2w.nrrd"
    viewer.shot("study opened")
    before = viewer.view_pixels(0)

    # run the model (in the background) and wait for the progress bar to finish
    _segment(viewer)
    assert page.inner_text("#vb-error") == ""
    uncertain = float(page.inner_text("#vb-uncertain").rstrip(" %"))
    assert 0.0 <= uncertain <= 100.0
    page.wait_for_timeout(1500)
    viewer.shot("ai segmentation and uncertainty")
    after = viewer.view_pixels(0)
    # the overlay and outlines are visible: coloured pixels appear where there were only greys
    assert colourful(after).sum() > colourful(before).sum() + 200
    fx, fy = _centre_of_colour(after)

    # click a review target: the views move to it (the axial view to its S coordinate)
    axial = float(page.inner_text("#vb-slice-axial"))
    target = page.locator(".vb-target").nth(1)
    where = target.inner_text()
    s_mm = float(re.search(r"([0-9.]+) mm ([SI])", where).group(1)) * (1 if "mm S" in where else -1)
    target.click()
    page.wait_for_timeout(1000)
    moved = float(page.inner_text("#vb-slice-axial"))
    assert moved == pytest.approx(s_mm, abs=2.5)
    assert moved != axial or abs(axial - s_mm) < 2.5
    viewer.shot("centred on a review target")

    # start correcting a copy; the AI result is never edited
    page.click("#vb-start-correcting")
    viewer.wait_idle()
    assert page.inner_text("#vb-error") == ""
    _choose_effect(viewer, "paint")
    _stroke(viewer, [(fx - 0.25, fy - 0.15), (fx - 0.2, fy - 0.2), (fx - 0.15, fy - 0.25)])
    painted = viewer.autosaved_voxels(t2w)
    ai_voxels = int(re.search(r"AI tumour: (\d+) voxels", page.inner_text("#vb-ai-summary")).group(1))
    assert painted > ai_voxels
    viewer.shot("painted")
    _choose_effect(viewer, "erase")
    _stroke(viewer, [(fx - 0.22, fy - 0.17), (fx - 0.18, fy - 0.21)])  # across the painted stroke
    erased = viewer.autosaved_voxels(t2w)
    assert erased < painted
    viewer.shot("erased")
    page.click("#vb-undo")
    viewer.wait_idle()
    assert viewer.autosaved_voxels(t2w) == painted
    page.click("#vb-redo")
    viewer.wait_idle()
    assert viewer.autosaved_voxels(t2w) == erased
    assert viewer.settled_text("#vb-corrected-voxels") == str(erased)
    page.click("#vb-effect-none")

    # compare: the table shows a DSC below 1, each definition on hover
    page.click("#vb-compare")
    viewer.wait_idle()
    dsc = float(page.inner_text(".vb-metric-dsc"))
    assert 0.5 < dsc < 1.0
    assert "Dice" in page.locator(".vb-metric").first.get_attribute("title")
    viewer.shot("compared with the difference overlay")

    # save: the files exist and reload with the same voxels; the AI result was not edited
    page.click("#vb-save")
    viewer.wait_idle()
    saved = page.inner_text("#vb-saved")
    for name in ("corrected.seg.nrrd", "metrics.csv", "scene.mrb", "ai_segmentation.seg.nrrd"):
        assert name in saved
        assert (viewer.out / name).is_file()
    from virtualbiopsy.mrml import MRMLContext, arrays, io

    context = MRMLContext.create()
    reference = io.load_volume(context, t2w)
    for name, expected in (("corrected.seg.nrrd", erased), ("ai_segmentation.seg.nrrd", ai_voxels)):
        node = io.load_segmentation(context, viewer.out / name)
        mask = arrays.mask_from_segment(node, arrays.segment_ids(node)[0], reference, allow_empty=True)
        assert int(mask.sum()) == expected, name
    metrics = (viewer.out / "metrics.csv").read_text()
    assert f"{dsc:.3f}"[:4] in metrics and "editing_time_s" in metrics
    viewer.shot("saved")

    # Fit-Cluster-Fit on the corrected tumour: the habitat table appears
    page.click("#vb-fcf")
    viewer.wait_idle()
    page.wait_for_selector("#vb-habitats", timeout=30_000)
    assert "habitat 1" in page.inner_text("#vb-habitats")
    viewer.shot("habitats")


def _upload(viewer, path):
    viewer.page.locator("input[type=file]").first.set_input_files(str(path))
    viewer.wait_idle()
    viewer.page.wait_for_timeout(800)


def _segment_count(viewer) -> int:
    return viewer.page.locator("#vb-segments tr").count()


def test_bad_input_through_the_page_shows_one_line_and_leaves_the_scene_unchanged(viewer, tmp_path,
                                                                                  off_grid_segmentation):
    page = viewer.page
    if not page.is_visible("#vb-ai-summary"):
        _segment(viewer)
    segments = _segment_count(viewer)

    corrupt = tmp_path / "corrupt.seg.nrrd"
    corrupt.write_bytes(b"NRRD0004\ntype: uchar\ndimension: 3\nsizes: 10 10 10\nencoding: raw\n\n" + b"\0" * 10)
    _upload(viewer, corrupt)
    error = page.inner_text("#vb-error")
    assert error and "\n" not in error and "Traceback" not in error
    assert _segment_count(viewer) == segments
    viewer.shot("corrupt segmentation refused")

    _upload(viewer, off_grid_segmentation)
    error = page.inner_text("#vb-error")
    assert "grid" in error or "voxel" in error, error
    assert _segment_count(viewer) == segments
    viewer.shot("mask on another grid refused")

    page.locator("#vb-model").click(force=True)
    page.locator(".v-list-item:has-text('evil_model.zip')").click()
    page.click("#vb-segment")
    viewer.wait_idle()
    error = page.inner_text("#vb-error")
    assert error and "\n" not in error, error
    assert "../" in error or "outside" in error or "escap" in error, error
    assert _segment_count(viewer) == segments
    assert not (viewer.out.parent / "escaped.txt").exists()
    viewer.shot("unsafe model zip refused")
    # the session goes on
    page.locator("#vb-model").click(force=True)
    page.locator(".v-list-item:has-text('DEMO')").click()
    page.click("#vb-radiomics")
    viewer.wait_idle()
    assert page.inner_text("#vb-error") == ""
    assert "Sphericity" in page.inner_text("#vb-radiomics-table")


def test_the_outcome_model_predicts_this_patient_with_a_shap_waterfall(viewer):
    page = viewer.page
    if not page.is_visible("#vb-ai-summary"):
        _segment(viewer)
    page.click("#vb-predict")
    viewer.wait_idle()
    assert page.inner_text("#vb-error") == ""
    text = page.inner_text("#vb-prediction")
    assert "P(high_risk = 1)" in text and "Research use only" in text
    assert page.evaluate("() => document.querySelector('#vb-waterfall').naturalWidth") > 100
    assert (viewer.out / "outcome" / "waterfall.png").is_file()
    viewer.shot("outcome prediction")
