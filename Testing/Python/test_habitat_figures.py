"""Habitat figures on real Fit-Cluster-Fit output of a phantom study: habitat k has its own colour in every
figure and in the scene's segments, whatever the habitats a figure shows; every habitat legend gives ADC and
iAUC60; legends sit outside the data; a habitat of a few voxels is visible on the map."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex, to_rgba

from virtualbiopsy.demo_steps.fit_cluster_fit import demo_step
from virtualbiopsy.habitats import figures
from virtualbiopsy.logic import fit_cluster_fit
from virtualbiopsy.mrml import MRMLContext, arrays
from virtualbiopsy.report import style

TUMOUR = ["tumour rim", "tumour core"]


@pytest.fixture(scope="module")
def fcf(tmp_path_factory):
    """The demo's Fit-Cluster-Fit step (DWI + DCE) on a sample study, its figures written inside
    ``style.checking()``; with the scene, the study's nodes and the habitat table's columns."""
    from virtualbiopsy.phantom import generate_study
    from virtualbiopsy.sample_study import study_to_scene

    context = MRMLContext.create()
    study = generate_study(2, t2_spacing=(3.0, 3.0, 4.0))
    nodes = study_to_scene(context, study)
    with style.checking() as found:
        step = demo_step(context, study, nodes, tmp_path_factory.mktemp("fcf"))
    outputs = step.extra["outputs"]
    logic = fit_cluster_fit.FitClusterFitLogic(context)
    background = arrays.array_from_volume(logic.dwi_volumes(nodes["dwi"])[0][0])
    return {"step": step, "found": found, "context": context, "nodes": nodes, "logic": logic,
            "outputs": outputs, "result": outputs.result, "table": arrays.table_columns(outputs.table),
            "background": background}


def _legend_entries(fig) -> list[tuple[str, object]]:
    (legend,) = fig.legends
    return [(text.get_text(), handle) for text, handle in zip(legend.get_texts(), legend.legend_handles)]


def _handle_colour(handle) -> str:
    colour = handle.get_color() if hasattr(handle, "get_marker") else handle.get_edgecolor()
    return to_hex(colour)


def _habitat_colours_in_legend(fig) -> dict[int, str]:
    return {figures.habitat_number(text): _handle_colour(handle) for text, handle in _legend_entries(fig)
            if figures.habitat_number(text) is not None}


def _assert_legend_outside_the_data(fig):
    fig.canvas.draw()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    for ax in fig.axes:
        assert not box.overlaps(ax.get_window_extent()), "the legend covers a panel"


def _figures(fcf, table=None):
    result, table = fcf["result"], table or fcf["table"]
    rows = [list(fcf["table"]["label"]).index(h) for h in table["label"]]
    summary = fcf["step"].summary
    return {
        "signal_vs_b": figures.signal_vs_b_figure(result.shells.b_values, result.mean_signals[:, rows],
                                                  result.habitat_s0[rows], result.habitat_adc[rows], table,
                                                  summary["noise_sigma"], False, result.b_values),
        "habitat_map": figures.habitat_map_figure(fcf["background"], result.labels, table),
        "habitat_enhancement": figures.enhancement_curves_figure(
            result.dce_times, {table["habitat"][i]: result.dce_mean_curves[:, rows[i]] for i in range(len(rows))},
            summary["dce_arrival_s"], summary["dce_window_s"], table),
    }


def _rows(table, keep: list[int]) -> dict:
    return {column: [values[i] for i in keep] for column, values in table.items()}


def test_every_habitat_figure_of_the_fcf_step_has_no_reading_problems(fcf):
    paths = fcf["step"].figures
    assert set(paths) == {"signal_vs_b", "habitat_map", "habitat_enhancement"}
    for name, path in paths.items():
        assert fcf["found"][str(path)] == [], name


def test_habitat_legends_give_each_habitat_its_colour_adc_with_interval_and_iauc60(fcf):
    table = fcf["table"]
    assert fcf["result"].k >= 3
    for name, fig in _figures(fcf).items():
        colours = _habitat_colours_in_legend(fig)
        assert colours == {h: style.habitat_colour(h).lower() for h in range(1, fcf["result"].k + 1)}, name
        texts = {figures.habitat_number(text): text for text, _ in _legend_entries(fig)}
        for i, h in enumerate(table["label"]):
            text = texts[int(h)]
            assert f"ADC {table['adc'][i] * 1e3:.3f} [{table['adc_ci_low'][i] * 1e3:.3f}, " \
                   f"{table['adc_ci_high'][i] * 1e3:.3f}] ×10⁻³ mm²/s" in text, (name, text)
            assert f"iAUC60 {table['iauc60'][i]:.1f} [" in text and text.endswith(" s"), (name, text)
        _assert_legend_outside_the_data(fig)
        assert style.figure_problems(fig) == [], name


def test_a_figure_of_habitats_2_and_3_only_keeps_their_colours(fcf):
    some = _rows(fcf["table"], [1, 2])
    for name, fig in _figures(fcf, some).items():
        assert _habitat_colours_in_legend(fig) == {2: style.habitat_colour(2).lower(),
                                                   3: style.habitat_colour(3).lower()}, name
    curves = _figures(fcf, some)["habitat_enhancement"].axes[0].get_lines()
    drawn = {to_hex(line.get_color()) for line in curves if line.get_marker() == "o"}
    assert drawn == {style.habitat_colour(2).lower(), style.habitat_colour(3).lower()}


def test_dce_curves_of_a_habitat_segmentation_are_coloured_by_habitat_number(fcf, tmp_path):
    """``virtualbiopsy dce --habitats``: regions named after the segments, habitat N in its colour, the
    tumour black, the excluded voxels drawn (black dotted, white markers); each legend gives the iAUC60."""
    logic, nodes = fcf["logic"], fcf["nodes"]
    dce = logic.dce_metrics(nodes["dce"], mask=nodes["segmentation"], segments=TUMOUR,
                            habitats=fcf["outputs"].habitats)
    names = list(dce.mean_curves)
    assert names[0] == "tumour" and any(n.startswith("excluded") for n in names)
    fig = figures.enhancement_curves_figure(dce.times, dce.mean_curves, dce.summary["arrival_s"], 60.0)
    entries = dict(_legend_entries(fig))
    table = arrays.table_columns(dce.table)
    for region, iauc in zip(table["region"], table["iauc60"]):
        (text,) = [t for t in entries if t.startswith(region)]
        assert text.endswith(f"iAUC60 {iauc:.1f} s")
        number = figures.habitat_number(region)
        expected = style.habitat_colour(number) if number else "#000000"
        assert _handle_colour(entries[text]) == expected.lower(), region
    assert f"bolus arrival {dce.summary['arrival_s']:.1f} s" in entries
    assert any(t.startswith("iAUC60 window") for t in entries)
    _assert_legend_outside_the_data(fig)
    with style.checking() as found:
        path = figures.enhancement_curves(tmp_path / "curves.png", dce.times, dce.mean_curves,
                                          dce.summary["arrival_s"], 60.0)
    assert found[str(path)] == []


def test_scene_habitat_segments_have_the_figures_colours(fcf):
    segmentation = fcf["outputs"].habitats.GetSegmentation()
    for h in range(1, fcf["result"].k + 1):
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(f"habitat {h}"))
        assert segment.GetColor() == pytest.approx(style.rgb(style.habitat_colour(h)))
    excluded = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(figures.EXCLUDED_NAME))
    assert excluded.GetColor() == pytest.approx(style.rgb(style.EXCLUDED_COLOUR))
    exported = fit_cluster_fit.HABITAT_COLOURS
    assert exported == tuple(style.rgb(c) for c in style.HABITAT_COLOURS)


def test_excluded_voxels_are_white_with_black_hatching_not_image_grey(fcf):
    fig = _figures(fcf)["habitat_map"]
    (handle,) = [h for text, h in _legend_entries(fig) if text == figures.EXCLUDED_NAME]
    assert handle.get_hatch() == style.EXCLUDED_HATCH
    assert to_hex(handle.get_facecolor()) == style.EXCLUDED_COLOUR.lower()
    assert to_hex(handle.get_edgecolor()) == "#000000"
    drawn = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "excluded"]
    assert len(drawn) == 2 and all(p.get_hatch() == style.EXCLUDED_HATCH for p in drawn)  # whole slice + zoom


def test_a_habitat_of_two_voxels_gets_its_slice_and_a_full_opacity_outline(fcf):
    """A fourth habitat of two adjacent voxels on a slice other than the one the map would show: that
    slice is chosen (it shows every habitat) and the two voxels are outlined in habitat 4's colour."""
    result, table = fcf["result"], fcf["table"]
    labels = result.labels.copy()
    best = figures.showing_slice(labels, table["label"])
    per_slice = [{int(v) for v in np.unique(labels[k])} for k in range(labels.shape[0])]
    other = next(k for k in range(labels.shape[0]) if k != best and {1, 2, 3} <= per_slice[k])
    r, c = np.argwhere((labels[other][:, :-1] == 1) & (labels[other][:, 1:] == 1))[0]
    labels[other, r, c:c + 2] = 4
    four = {column: [*values, values[0]] for column, values in table.items()}
    four["habitat"][-1], four["label"][-1] = "habitat 4", 4
    assert figures.showing_slice(labels, four["label"]) == other
    fig = figures.habitat_map_figure(fcf["background"], labels, four)
    outlines = [c for ax in fig.axes for c in ax.collections
                if isinstance(c, LineCollection) and c.get_gid() == "habitat 4 outline"]
    assert len(outlines) == 2  # the whole slice and the zoom
    for outline in outlines:
        assert len(outline.get_segments()) == 6  # the perimeter of two adjacent voxels
        assert tuple(outline.get_colors()[0]) == to_rgba(style.habitat_colour(4))
    assert f"k = {other}" in fig.axes[0].get_title()
    assert not any("not on this slice" in text for text, _ in _legend_entries(fig))
