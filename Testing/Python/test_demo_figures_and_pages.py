"""The demo's figures and pages, read as a reader would: every figure passes the figure checks of
:mod:`virtualbiopsy.report.style` (labelled axes and colour bars, visible legend entries, no overlapping
texts), the report includes every figure and links every file, and both pages fit 1400 px in a browser
with every image loaded."""

from __future__ import annotations

import csv
import html
import math
import re
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from virtualbiopsy.report import style  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The whole demo, once, with every figure it writes checked as it is saved."""
    from virtualbiopsy.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "out"
    with style.checking() as found:
        result = run_demo(out)
    return result, found


# --- the checks themselves: each finds what it claims to, and a clean figure passes --------------------------


def _clean_figure():
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1, 2], [1, 3, 2], "o-", label="measured")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("signal")
    ax.set_title("A clean figure")
    ax.legend()
    return fig, ax


def test_a_labelled_figure_has_no_problems():
    fig, _ = _clean_figure()
    assert style.figure_problems(fig) == []
    plt.close(fig)


@pytest.mark.parametrize("spoil, expected", [
    (lambda fig, ax: ax.set_ylabel(""), "y axis has tick labels but no label"),
    (lambda fig, ax: fig.colorbar(ax.imshow(np.eye(3), extent=(0, 2, 0, 3)), ax=ax), "colour bar"),
    (lambda fig, ax: ax.legend(handles=[matplotlib.lines.Line2D([], [], ls="none", label="ghost")]),
     "legend entry 'ghost' draws nothing"),
    (lambda fig, ax: ax.text(1, 2, "a note over the data", fontsize=30), "overlaps"),
    (lambda fig, ax: (ax.set_xticks([]), ax.set_yticks([]), ax.set_title(""), ax.set_xlabel(""),
                      ax.set_ylabel("")), "image panel without a title"),
], ids=["unlabelled-axis", "unlabelled-colour-bar", "invisible-legend-entry", "overlapping-text",
        "untitled-image-panel"])
def test_the_figure_checks_find_what_a_reader_would_miss(spoil, expected):
    fig, ax = _clean_figure()
    if expected == "overlaps":
        ax.text(1, 2.9, "another note", fontsize=30)
    spoil(fig, ax)
    problems = style.figure_problems(fig)
    plt.close(fig)
    assert any(expected in p for p in problems), problems


def test_tick_labels_outside_the_view_are_not_counted_as_overlapping():
    fig, ax = _clean_figure()
    ax.set_xlim(-5, 200)  # matplotlib keeps a tick label at -25, undrawn, where the y labels are
    ax.set_ylim(200, 1200)
    assert style.figure_problems(fig) == []
    plt.close(fig)


def test_habitat_and_prognosis_colours_are_colour_blind_safe_and_distinct():
    from matplotlib.colors import to_rgb

    assert len(set(style.HABITAT_COLOURS)) == len(style.HABITAT_COLOURS)
    assert style.habitat_colour(1) == style.HABITAT_COLOURS[0]
    assert style.habitat_colour(len(style.HABITAT_COLOURS) + 1) == style.HABITAT_COLOURS[0]
    grey = np.array([0.5, 0.5, 0.5])
    for colour in style.HABITAT_COLOURS[:-1]:  # the last (grey) is only for a ninth habitat
        assert np.abs(np.array(to_rgb(colour)) - grey).max() > 0.2, colour
    assert style.group_colours([300, 900]) == [style.POOR, style.GOOD]
    assert style.group_colours([900, 300, 600]) == [style.GOOD, style.POOR, style.OTHER_GROUPS[0]]


# --- the demo's figures ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_every_figure_of_the_demo_passes_the_figure_checks(demo_run):
    result, found = demo_run
    pngs = sorted(str(p) for p in Path(result.folder).rglob("*.png"))
    assert len(pngs) >= 17
    assert [p for p in pngs if p not in found] == [], "figures written without style.save"
    problems = {Path(p).relative_to(result.folder).as_posix(): found[p] for p in pngs if found[p]}
    assert problems == {}


# --- the report -----------------------------------------------------------------------------------------------


def _report_html(result) -> str:
    return Path(result.report).read_text(encoding="utf-8")


@pytest.mark.slow
def test_the_report_shows_every_figure_and_links_every_output_file(demo_run):
    result, _ = demo_run
    page = _report_html(result)
    folder = Path(result.folder)
    sources = set(re.findall(r"<img src='([^']+)'", page))
    pngs = {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")}
    assert pngs - sources == set(), "figures missing from the report"
    links = {html.unescape(h) for h in re.findall(r"<a href='([^']+)'", page)}
    series = {p for p in (folder / "study" / "dicom").iterdir() if p.is_dir()}
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*")
             if p.is_file() and p != Path(result.report) and not any(s in p.parents for s in series)}
    assert files - links == set(), "output files the report does not link"
    assert {s.relative_to(folder).as_posix() for s in series} <= links, "DICOM series folders not linked"
    for href in links:
        assert (folder / href).exists(), href


@pytest.mark.slow
def test_the_report_counts_radiomics_features_and_explains_and_flags_values(demo_run):
    result, _ = demo_run
    page = _report_html(result)
    with open(Path(result.folder) / "radiomics" / "t2w_tumour_features.csv", newline="") as stream:
        header = next(csv.reader(stream))
    features = [c for c in header if c.startswith("original_")]
    assert f"A few of the {len(features)} pyradiomics features" in page
    assert ">nan<" not in page and "not defined: mixed tissues, no single truth" in page
    assert "FP/(TP+FN), as in the source study" in page and "tolerance 1 mm" in page
    assert "Dice similarity coefficient (DSC)" in page
    # every habitat value more than 20 % from its truth is flagged, and no other
    with open(Path(result.folder) / "fit_cluster_fit" / "habitats_vs_truth.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    far = [r for r in rows if math.isfinite(float(r["iauc60_true"]))
           and abs(float(r["iauc60"]) / float(r["iauc60_true"]) - 1) > 0.2]
    flags = re.findall(r"<td class='num flag'[^>]*>([^<]+)</td>", page)
    for row in far:
        percent = 100 * (float(row["iauc60"]) / float(row["iauc60_true"]) - 1)
        assert any(f"{percent:+.0f} % from truth" in f for f in flags), (row["habitat"], flags)


# --- both pages in a browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).is_file():
        pytest.skip("Debian package 'chromium' is not installed (apt-get install chromium); page test skipped")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Python package 'playwright' is not installed in .venv (make setup installs it)")
    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.mark.slow
@pytest.mark.parametrize("page_path", ["report.html", "radiomics/ibsi/ibsi_compliance.html"])
def test_the_page_fits_1400_px_without_horizontal_overflow_and_every_image_loads(demo_run, browser, page_path):
    result, _ = demo_run
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto((Path(result.folder) / page_path).resolve().as_uri(), wait_until="load")
        widths = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
                               " document.body.scrollWidth, document.body.clientWidth]")
        images = page.evaluate("() => Array.from(document.images).map(i => [i.getAttribute('src'), i.complete,"
                               " i.naturalWidth])")
    finally:
        page.close()
    assert widths[0] <= widths[1] and widths[2] <= widths[3], f"horizontal overflow: {widths}"
    assert [src for src, complete, width in images if not (complete and width > 0)] == []
    if page_path == "report.html":
        assert len(images) >= 17


def test_texts_of_a_hidden_or_axis_less_panel_are_not_counted():
    fig, ax = _clean_figure()
    hidden = fig.add_axes(ax.get_position())  # exactly over the first: its tick labels would overlap
    hidden.set_axis_off()
    assert style.figure_problems(fig) == []
    hidden.set_axis_on()
    assert any("overlaps" in p for p in style.figure_problems(fig))
    plt.close(fig)


def test_report_figures_draw_edge_cases_a_real_study_has(tmp_path):
    """A one-voxel tissue interior (SD undefined) and a slice without any labelled tissue draw, labelled."""
    from virtualbiopsy.report import figures

    rng = np.random.default_rng(0)
    labels = np.zeros((3, 12, 12), int)
    labels[0, 3:6, 3:6] = 1  # tissue only on slice 0; the overview shows slice 2
    with style.checking() as found:
        figures.adc_by_tissue(tmp_path / "adc.png", ["liver", "spine"], [1.1e-3, 0.5e-3], [1e-4, float("nan")],
                              [1.1e-3, 0.5e-3])
        figures.study_overview(tmp_path / "overview.png", rng.random((3, 12, 12)), labels, rng.random((2, 3, 12, 12)),
                               [0, 800], rng.random((3, 12, 12)) * 1e-3, rng.random((3, 12, 12)) * 1e-3, labels, 2, 2,
                               tissue_names={1: "liver"})
    assert found == {str(tmp_path / "adc.png"): [], str(tmp_path / "overview.png"): []}
