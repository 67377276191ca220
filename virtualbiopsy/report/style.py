"""One visual language for every figure the project writes (matplotlib, Agg backend).

Each kind of colour keeps its meaning wherever it appears: habitat k has one colour in every figure
and in Slicer's segments; poorer prognosis (and a SHAP value that raises the prediction) is
vermillion, better prognosis (and a value that lowers it) blue; the AI outline is orange, the truth /
corrected outline green, the p >= 10 % contour sky blue and dashed; tissues keep one colour each.
The palettes are few (colour-blind-safe sets are small), so one hue serves two kinds that never
share a figure (habitat 1 and poorer prognosis are both vermillion). Okabe & Ito's set (Color
Universal Design, 2008) for habitats, prognosis and outlines, Tol's "bright" for the tissues and
Tol's "muted" for categories without a meaning (batches, classes), all visible both on white and on
a grey MR image.

:func:`save` writes every PNG; inside :func:`checking` it also records what :func:`figure_problems`
finds (axes without labels, colour bars without labels, invisible legend entries, texts that
overlap), which the figure test of the demo asserts on.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

# matplotlib is imported by the functions that draw or check, so the palettes (and the scene's segment
# colours built from them) need no matplotlib: Slicer imports the logic before installing the packages.

RESEARCH_NOTE = "Research use only - not for clinical decisions"
ADC_UNIT = "×10⁻³ mm²/s"  # the one way ADC is written in figures, tables and messages
ORIENTATION = "patient right ←  → patient left"  # under axial slices in radiological convention
DPI = 110

# Okabe & Ito: habitat 1 = lowest ADC (most cellular) ... The scene's habitat segments use the same colours.
HABITAT_COLOURS = ("#D55E00", "#56B4E9", "#009E73", "#E69F00", "#0072B2", "#CC79A7", "#F0E442", "#000000")
EXCLUDED_COLOUR = "#FFFFFF"  # drawn white with black cross-hatching: unlike any grey of the image
EXCLUDED_HATCH = "xxxx"

POOR, GOOD = "#D55E00", "#0072B2"  # prognosis (and risk, events) / its opposite, in every survival figure
RAISES, LOWERS = POOR, GOOD  # SHAP: pushes the prediction up / down

# Categories without an order or a meaning of their own (batches, sites, classes, survival groups between the
# poorest and the best): Tol's "muted" scheme and black, which share no colour with the habitats or prognosis.
CATEGORICAL = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499",
               "#000000")
OTHER_GROUPS = CATEGORICAL

AI_OUTLINE, TRUE_OUTLINE, P10_OUTLINE = "#E69F00", "#009E73", "#56B4E9"
REFERENCE = "#777777"  # identity lines, truth bars, base values

# Tol's "bright" scheme, one colour per phantom tissue (outlines on the T2w, DCE curves, ADC bars).
TISSUE_COLOURS = {
    "body wall": "#CCBB44", "liver": "#228833", "left kidney": "#66CCEE", "right kidney": "#4477AA",
    "spine": "#BBBBBB", "tumour rim": "#EE6677", "tumour core": "#AA3377",
}


def categorical(n: int) -> list[str]:
    """``n`` colours for categories without a meaning (cycling after :data:`CATEGORICAL`'s ten)."""
    return [CATEGORICAL[i % len(CATEGORICAL)] for i in range(n)]


def habitat_colour(h: int) -> str:
    """The colour of habitat ``h`` (1-based, as in the label map), as ``#rrggbb``."""
    return HABITAT_COLOURS[(int(h) - 1) % len(HABITAT_COLOURS)]


def habitat_colours(n: int) -> list[str]:
    """The colours of habitats 1..n."""
    return [habitat_colour(h) for h in range(1, n + 1)]


def rgb(colour: str) -> tuple[float, float, float]:
    """``#rrggbb`` as an RGB triple in 0..1 (Slicer's segment colours).

    >>> rgb("#FF8000")
    (1.0, 0.5019607843137255, 0.0)
    """
    value = colour.lstrip("#")
    return tuple(int(value[i:i + 2], 16) / 255.0 for i in (0, 2, 4))


def tissue_colour(name: str, index: int = 0) -> str:
    """A tissue's colour; names outside the phantom's table get Okabe & Ito's colours in turn."""
    return TISSUE_COLOURS.get(str(name), OTHER_GROUPS[index % len(OTHER_GROUPS)])


def group_colours(scores) -> list[str]:
    """Colours for survival groups by a prognosis score (higher = better, e.g. RMST or median survival):
    the poorest group vermillion, the best blue, any in between from :data:`CATEGORICAL`; groups whose
    scores all tie (one group, or every case censored) carry no prognosis colour.

    >>> group_colours([300.0, 900.0]) == [POOR, GOOD], group_colours([500.0, 500.0]) == categorical(2)
    (True, True)
    """
    scores = [float(s) for s in scores]
    if len(scores) < 2 or max(scores) - min(scores) <= 1e-9 * max(1.0, abs(max(scores))):
        return categorical(len(scores))
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    colours = [""] * len(scores)
    for rank, i in enumerate(order):
        if rank == 0:
            colours[i] = POOR
        elif rank == len(scores) - 1:
            colours[i] = GOOD
        else:
            colours[i] = CATEGORICAL[(rank - 1) % len(CATEGORICAL)]
    return colours


def separate_annotations(fig, annotations, max_rounds: int = 50) -> None:
    """Move point labels (``ax.annotate`` with offset-point text) up, one line at a time, until none overlaps
    another (matplotlib has no label placement of its own; the lowest label stays where it is)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    placed = []
    for note in sorted(annotations, key=lambda a: _text_box(a, renderer).y0):
        for _ in range(max_rounds):
            box = _text_box(note, renderer)
            if not any(_overlap(box, other) for other in placed):
                break
            dx, dy = note.xyann
            note.xyann = (dx, dy + box.height * 72.0 / fig.dpi)
        placed.append(_text_box(note, renderer))


def _text_box(text, renderer):
    """The box of the text itself (an annotation's own extent includes its arrow)."""
    import matplotlib.text

    return matplotlib.text.Text.get_window_extent(text, renderer)


def _overlap(box, other) -> bool:
    dx = min(box.x1, other.x1) - max(box.x0, other.x0)
    dy = min(box.y1, other.y1) - max(box.y0, other.y0)
    return dx > 1.0 and dy > 1.0  # touching edges (adjacent tick labels) is not overlapping


_checking: list[dict] = []


@contextlib.contextmanager
def checking():
    """Within the block, :func:`save` records ``{path: [problems]}`` for every figure it writes."""
    found: dict[str, list[str]] = {}
    _checking.append(found)
    try:
        yield found
    finally:
        _checking.remove(found)


def save(fig, path, note: bool = True) -> Path:
    """Write ``fig`` as a PNG (folders made), with the research-use footer when ``note``; close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if note:
        _place_note(fig)
    if _checking:
        problems = figure_problems(fig)
        for found in _checking:
            found[str(path)] = problems
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _place_note(fig) -> None:
    """The footer goes just below the lowest text of the figure, so it never covers an axis label."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    lowest = min((_text_box(t, renderer).y0 for t in _texts(fig)), default=0.0)
    fig.text(0.99, min(0.0, (lowest - 2) / fig.bbox.height), RESEARCH_NOTE, ha="right", va="top", fontsize=6,
             color="#888", gid="research-note")


def _texts(fig):
    """Every visible, non-empty text artist of the figure (titles, labels, tick labels, legends, notes);
    tick labels of ticks outside the view are left out (matplotlib keeps them but does not draw them)."""
    import matplotlib.text

    undrawn = {id(label) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for label in _undrawn_labels(axis)}
    for ax in fig.axes:  # the axis texts of a hidden or axis-less panel are not drawn (and know no axes)
        if not ax.get_visible() or not ax.axison:
            undrawn.update(id(t) for t in _axis_texts(ax))
    for text in fig.findobj(matplotlib.text.Text):
        if text.get_visible() and text.get_text().strip() and id(text) not in undrawn and _shown(text):
            yield text


def _undrawn_labels(axis):
    low, high = sorted(axis.get_view_interval())
    slack = (high - low) * 1e-6
    for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]:
        if not low - slack <= tick.get_loc() <= high + slack:
            yield tick.label1
            yield tick.label2


def _shown(artist) -> bool:
    """False when the artist or one of its containers (axes, legend) is hidden."""
    axes = artist.axes
    if axes is not None and not axes.get_visible():
        return False
    return artist.get_alpha() != 0


def _axis_texts(axes) -> list:
    return [*axes.xaxis.get_ticklabels(), *axes.yaxis.get_ticklabels(), axes.xaxis.label, axes.yaxis.label]


def _colorbar_axes(fig) -> dict:
    return {ax: ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None}


def _name(ax) -> str:
    title = " / ".join(t for t in (ax.get_title("left"), ax.get_title(), ax.get_title("right")) if t)
    return f"axes '{title}'" if title else f"axes #{ax.figure.axes.index(ax)}"


def _has_tick_labels(axis) -> bool:
    undrawn = {id(label) for label in _undrawn_labels(axis)}
    return any(t.get_visible() and t.get_text().strip() and id(t) not in undrawn for t in axis.get_ticklabels())


def _labelled(ax, which: str) -> bool:
    """The axis has a label, or an axis it shares ticks with does (the shared column / row is labelled once)."""
    siblings = (ax.get_shared_x_axes() if which == "x" else ax.get_shared_y_axes()).get_siblings(ax)
    return any((s.get_xlabel() if which == "x" else s.get_ylabel()).strip() for s in siblings)


def _visible_handle(handle) -> bool:
    """A legend handle that draws something: a line or marker with a colour, a filled or hatched patch..."""
    import matplotlib.collections
    import matplotlib.lines
    import matplotlib.patches
    from matplotlib.colors import to_rgba

    if not handle.get_visible() or handle.get_alpha() == 0:
        return False
    if isinstance(handle, matplotlib.lines.Line2D):
        line = handle.get_linestyle() not in ("None", "none", "", " ") and handle.get_linewidth() > 0
        marker = handle.get_marker() not in ("None", "none", "", " ", None) and handle.get_markersize() > 0
        return (line or marker) and to_rgba(handle.get_color())[3] > 0
    if isinstance(handle, matplotlib.patches.Patch):
        edge = handle.get_linewidth() > 0 and handle.get_edgecolor()[3] > 0
        return handle.get_facecolor()[3] > 0 or edge or bool(handle.get_hatch())
    if isinstance(handle, matplotlib.collections.Collection):
        colours = [*handle.get_facecolor(), *handle.get_edgecolor()]
        return any(c[3] > 0 for c in colours)
    return True


def figure_problems(fig) -> list[str]:
    """What a reader of ``fig`` would miss, found from the matplotlib objects (empty when none):

    * an axis with tick labels but no label (unless an axis it shares ticks with is labelled), and an
      image panel (no tick labels) without a title;
    * a colour bar without a label;
    * a legend entry without text or whose handle draws nothing;
    * two texts whose bounding boxes overlap (titles, labels, tick labels, legend texts, annotations).
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    problems = []
    bars = _colorbar_axes(fig)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        if ax in bars:
            bar_label = ax.get_ylabel() if bars[ax].orientation == "vertical" else ax.get_xlabel()
            if not bar_label.strip():
                problems.append(f"colour bar beside {_colorbar_owner(fig, ax)} has no label")
            continue
        if not ax.axison:
            if not _name(ax).startswith("axes '") and ax.has_data():
                problems.append(f"{_name(ax)}: a panel without axes needs a title")
            continue
        ticks = {w: _has_tick_labels(a) for w, a in (("x", ax.xaxis), ("y", ax.yaxis))}
        for which, has in ticks.items():
            if has and not _labelled(ax, which):
                problems.append(f"{_name(ax)}: {which} axis has tick labels but no label")
        if not any(ticks.values()) and not _name(ax).startswith("axes '") and ax.has_data():
            problems.append(f"{_name(ax)}: an image panel without a title")
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            label = text.get_text().strip()
            if not label:
                problems.append("a legend entry without text")
            elif handle is None or not _visible_handle(handle):
                problems.append(f"legend entry '{label}' draws nothing")
    boxes = [(t, _text_box(t, renderer)) for t in _texts(fig)]
    boxes = [(t, b) for t, b in boxes if b.width > 0 and b.height > 0]
    for index, (text, box) in enumerate(boxes):
        for other, other_box in boxes[index + 1:]:
            if _overlap(box, other_box):
                problems.append(f"text '{_short(text)}' overlaps '{_short(other)}'")
    return problems


def _colorbar_owner(fig, bar_ax) -> str:
    """The panel a colour bar belongs to, named by its title (for the message)."""
    mappable = bar_ax._colorbar.mappable
    owner = getattr(mappable, "axes", None)
    return _name(owner) if owner is not None else "the figure"


def _short(text) -> str:
    value = " ".join(text.get_text().split())
    return value if len(value) <= 40 else value[:37] + "..."
