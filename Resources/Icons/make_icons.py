"""Regenerate the extension icon and the four module icons (128x128 PNG), deterministically.

    python Resources/Icons/make_icons.py

Needs only Pillow. Each icon is drawn at 4x size on a rounded, gradient tile and downsampled, which
gives smooth edges without any randomness, so the same Pillow version writes the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 128
SCALE = 4
S = SIZE * SCALE  # drawing canvas
ROOT = Path(__file__).resolve().parents[2]

WHITE = (255, 255, 255, 255)
TUMOUR = (255, 140, 60, 255)
CONTOUR = (255, 225, 70, 255)
TISSUE = (205, 212, 222, 255)


def px(value: float) -> int:
    """A length given on the 128-pixel grid, in canvas pixels."""
    return int(round(value * SCALE))


def tile(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A rounded square with a vertical gradient from ``top`` to ``bottom``."""
    gradient = Image.new("RGBA", (S, S))
    draw = ImageDraw.Draw(gradient)
    for y in range(S):
        t = y / (S - 1)
        draw.line([(0, y), (S, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)) + (255,))
    mask = Image.new("L", (S, S), 0)
    ImageDraw.Draw(mask).rounded_rectangle([px(4), px(4), S - px(4), S - px(4)], radius=px(22), fill=255)
    icon = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    icon.paste(gradient, (0, 0), mask)
    return icon


def blob(cx: float, cy: float, radius: float, lobes: float = 0.14) -> list[tuple[int, int]]:
    """An irregular, tumour-like closed outline around (cx, cy), given on the 128-pixel grid."""
    points = []
    for i in range(96):
        a = 2 * math.pi * i / 96
        r = radius * (1 + lobes * math.sin(3 * a + 0.6) + 0.6 * lobes * math.cos(5 * a))
        points.append((px(cx + r * math.cos(a)), px(cy + r * math.sin(a))))
    return points


def abdomen(draw: ImageDraw.ImageDraw, cx: float, cy: float, rx: float, ry: float) -> None:
    """A simple axial abdominal slice: body outline, spine and the two kidneys."""
    draw.ellipse([px(cx - rx), px(cy - ry), px(cx + rx), px(cy + ry)], fill=TISSUE)
    draw.ellipse([px(cx - 7), px(cy + ry - 22), px(cx + 7), px(cy + ry - 8)], fill=(150, 158, 170, 255))
    for side in (-1, 1):
        kx = cx + side * rx * 0.55
        draw.ellipse([px(kx - 8), px(cy + 2), px(kx + 8), px(cy + 20)], fill=(170, 120, 130, 255))


def virtual_biopsy() -> Image.Image:
    icon = tile((20, 120, 140), (12, 60, 96))
    draw = ImageDraw.Draw(icon)
    abdomen(draw, 64, 68, 44, 36)
    draw.polygon(blob(52, 58, 15), fill=TUMOUR)
    # the biopsy needle entering the tumour from the upper right, with its hub
    draw.line([(px(112), px(14)), (px(54), px(58))], fill=WHITE, width=px(4))
    draw.rounded_rectangle([px(104), px(8), px(120), px(22)], radius=px(3), fill=(230, 70, 70, 255))
    draw.ellipse([px(50), px(54), px(58), px(62)], fill=WHITE)
    return icon


def neuroblastoma_seg() -> Image.Image:
    icon = tile((45, 95, 190), (20, 45, 110))
    draw = ImageDraw.Draw(icon)
    abdomen(draw, 64, 64, 48, 40)
    outline = blob(60, 54, 19)
    draw.polygon(outline, fill=TUMOUR)
    draw.line(outline + outline[:1], fill=CONTOUR, width=px(3.5), joint="curve")
    return icon


def radiomics_biomarkers() -> Image.Image:
    icon = tile((125, 70, 175), (60, 30, 100))
    draw = ImageDraw.Draw(icon)
    base = 104
    heights = [10, 24, 46, 68, 58, 36, 20, 9]
    for i, h in enumerate(heights):
        x0 = 18 + i * 12
        draw.rectangle([px(x0), px(base - h), px(x0 + 9), px(base)], fill=(230, 225, 245, 255))
    curve = []
    for i in range(81):
        x = 18 + i * 95 / 80
        z = (x - 63) / 17
        curve.append((px(x), px(base - 72 * math.exp(-0.5 * z * z))))
    draw.line(curve, fill=TUMOUR, width=px(3.5), joint="curve")
    draw.line([(px(14), px(base + 1)), (px(114), px(base + 1))], fill=WHITE, width=px(2.5))
    return icon


def fit_cluster_fit() -> Image.Image:
    icon = tile((30, 150, 110), (10, 80, 60))
    draw = ImageDraw.Draw(icon)
    x0, y0, x1, y1 = 20, 20, 112, 104
    draw.line([(px(x0), px(y0)), (px(x0), px(y1)), (px(x1), px(y1))], fill=WHITE, width=px(3), joint="curve")
    # signal against b-value for three habitats (ADC high, middle, low): fitted curves and samples
    colours = [(255, 225, 70, 255), TUMOUR, (235, 80, 90, 255)]
    for decay, colour in zip((3.2, 1.6, 0.6), colours):
        curve = [
            (px(x0 + t * (x1 - x0)), px(y1 - 74 * math.exp(-decay * t))) for t in (i / 60 for i in range(61))
        ]
        draw.line(curve, fill=colour, width=px(3), joint="curve")
        for t in (0.0, 0.15, 0.45, 0.9):
            x, y = x0 + t * (x1 - x0), y1 - 74 * math.exp(-decay * t)
            draw.ellipse([px(x - 3.5), px(y - 3.5), px(x + 3.5), px(y + 3.5)], fill=colour, outline=WHITE)
    return icon


def outcome_predictor() -> Image.Image:
    icon = tile((215, 105, 50), (135, 45, 35))
    draw = ImageDraw.Draw(icon)
    x0, y0, x1, y1 = 20, 20, 112, 104
    draw.line([(px(x0), px(y0)), (px(x0), px(y1)), (px(x1), px(y1))], fill=WHITE, width=px(3), joint="curve")
    # two Kaplan-Meier curves: survival fraction stepping down over time, with censoring ticks
    groups = [
        ((255, 240, 200, 255), [(0, 1.0), (0.2, 0.93), (0.45, 0.86), (0.7, 0.8), (1.0, 0.8)], (0.32, 0.85)),
        (
            (255, 220, 70, 255),
            [(0, 1.0), (0.12, 0.8), (0.3, 0.62), (0.5, 0.45), (0.75, 0.34), (1.0, 0.34)],
            (0.6,),
        ),
    ]
    for colour, steps, censored in groups:
        points = []
        for (t0, s0), (t1, _s1) in zip(steps, steps[1:]):
            y = y1 - 78 * s0
            points += [(px(x0 + t0 * (x1 - x0)), px(y)), (px(x0 + t1 * (x1 - x0)), px(y))]
            points.append((px(x0 + t1 * (x1 - x0)), px(y1 - 78 * _s1)))
        draw.line(points, fill=colour, width=px(3.5))
        for t in censored:
            s = [s for (ts, s) in steps if ts <= t][-1]
            x, y = x0 + t * (x1 - x0), y1 - 78 * s
            draw.line([(px(x), px(y - 5)), (px(x), px(y + 5))], fill=colour, width=px(2.5))
    return icon


ICONS = {
    "Resources/Icons/VirtualBiopsy.png": virtual_biopsy,
    "NeuroblastomaSeg/Resources/Icons/NeuroblastomaSeg.png": neuroblastoma_seg,
    "RadiomicsBiomarkers/Resources/Icons/RadiomicsBiomarkers.png": radiomics_biomarkers,
    "FitClusterFit/Resources/Icons/FitClusterFit.png": fit_cluster_fit,
    "OutcomePredictor/Resources/Icons/OutcomePredictor.png": outcome_predictor,
}


def main() -> None:
    for relative, draw_icon in ICONS.items():
        path = ROOT / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        draw_icon().resize((SIZE, SIZE), Image.LANCZOS).save(path, format="PNG")
        print(f"wrote {relative}")


if __name__ == "__main__":
    main()
