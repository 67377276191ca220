"""A short, self-contained HTML report: sections of text, tables and figures (PNG files beside it),
and the escaping of user text (feature names, case ids, class labels) for HTML and Markdown.

Hand-written rather than a template engine: the report is a few headings, tables and images,
and escaping every value with :func:`html.escape` is all the safety it needs. Markdown (the
model card) gets :func:`markdown_text`: Markdown passes raw HTML through, so a feature named
``<script>`` must not reach it as markup.
"""

from __future__ import annotations

import datetime
import html
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222;
       line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 2em; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { text-align: right; white-space: nowrap; }
td.undefined { color: #666; font-style: italic; }
td.flag { background: #fde2d2; font-weight: 600; white-space: normal; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
.warning { background: #fff4e0; border-left: 4px solid #e09000; padding: 0.6em 1em; }
.caption { color: #555; font-size: 0.9em; caption-side: top; text-align: left; }
dl.definitions { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; font-size: 0.9em; }
dl.definitions dt { font-weight: 600; } dl.definitions dd { margin: 0; }
"""


@dataclass(frozen=True)
class Cell:
    """A table cell with its own text and a CSS class (``flag``: far from the truth) and a tooltip."""

    text: str
    css_class: str = ""
    title: str = ""


_MARKDOWN_SPECIAL = "\\`*_[]|#!~"  # backslash-escaped (CommonMark escapes any ASCII punctuation this way)


def markdown_text(value) -> str:
    """``value`` as literal Markdown text, safe inside a paragraph, a list item or a table cell.

    ``& < >`` become HTML entities (no raw HTML reaches the renderer, which shows them as the
    characters), the characters that make Markdown markup (``\\ ` * _ [ ] | # ! ~``) are
    backslash-escaped, and line breaks become spaces (a new line would end a table row).

    >>> print(markdown_text("<script>alert(1)</script> a|b *c*"))
    &lt;script&gt;alert(1)&lt;/script&gt; a\\|b \\*c\\*
    """
    text = " ".join(str(value).splitlines())
    text = html.escape(text, quote=False)
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in text)


def markdown_code(value) -> str:
    """``value`` as a Markdown code span (its content is shown literally; backticks and line breaks removed)."""
    return "`" + " ".join(str(value).replace("`", "'").splitlines()) + "`"


@dataclass
class Report:
    title: str
    sections: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.sections.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str, css_class: str | None = None, links: dict[str, str] | None = None) -> None:
        """A paragraph of plain text, followed by ``links`` ({label: relative href}) when given."""
        attribute = f' class="{html.escape(css_class)}"' if css_class else ""
        anchors = ", ".join(f"<a href='{html.escape(href)}'>{html.escape(label)}</a>"
                            for label, href in (links or {}).items())
        self.sections.append(f"<p{attribute}>{html.escape(text)}{anchors}</p>")

    def table(self, columns: dict[str, list], caption: str = "", digits: int = 4,
              undefined: str | dict[str, str] = "") -> None:
        """Columns of values as an HTML table (in a horizontal scroll box when wide): numbers right-aligned,
        text left-aligned and wrapped; a NaN reads "not defined" with the reason ``undefined`` gives
        (one text, or one per column name)."""
        names = list(columns)
        rows = zip(*(columns[n] for n in names))
        head = "".join(f"<th>{html.escape(str(n))}</th>" for n in names)
        body = "".join(
            "<tr>" + "".join(_cell(v, digits, _reason(undefined, n)) for n, v in zip(names, row)) + "</tr>"
            for row in rows
        )
        cap = f"<caption class='caption'>{html.escape(caption)}</caption>" if caption else ""
        self.sections.append(f"<div class='scroll'><table>{cap}<tr>{head}</tr>{body}</table></div>")

    def figure(self, png_path: str | Path, caption: str, relative_to: str | Path) -> None:
        """The PNG at its natural width (scaled down to the page when wider), linked to itself to enlarge."""
        source = html.escape(Path(png_path).resolve().relative_to(Path(relative_to).resolve()).as_posix())
        self.sections.append(
            f"<figure><a href='{source}' target='_blank' title='open at full size'>"
            f"<img src='{source}' alt='{html.escape(caption)}'></a>"
            f"<figcaption class='caption'>{html.escape(caption)}</figcaption></figure>"
        )

    def definitions(self, items: dict[str, str]) -> None:
        """Terms and what they mean (metric definitions beside a table)."""
        rows = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items.items())
        self.sections.append(f"<dl class='definitions'>{rows}</dl>")

    def links(self, paths, relative_to: str | Path, caption: str = "") -> None:
        """A table of files (or folders: their file count and total size), each linked relative to the page."""
        base = Path(relative_to).resolve()
        rows = []
        for path in sorted(Path(p).resolve() for p in paths):
            name = html.escape(path.relative_to(base).as_posix())
            if path.is_dir():  # a folder: its files counted, their sizes summed
                inside = [f for f in path.rglob("*") if f.is_file()]
                size, label = sum(f.stat().st_size for f in inside), f"{name}/ ({len(inside)} files)"
            else:
                size, label = path.stat().st_size, name
            rows.append(f"<tr><td><a href='{name}'>{label}</a></td><td class='num'>{_size(size)}</td></tr>")
        cap = f"<caption class='caption'>{html.escape(caption)}</caption>" if caption else ""
        self.sections.append(f"<div class='scroll'><table>{cap}<tr><th>file</th><th>size</th></tr>"
                             + "".join(rows) + "</table></div>")

    extra_style = ""  # a page kind's own CSS, after PAGE_STYLE
    notice = ""  # a sentence after the date under the title

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        notice = f" {html.escape(self.notice)}" if self.notice else ""
        page = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(self.title)}</title><style>{PAGE_STYLE}{self.extra_style}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='caption'>Written {stamp}.{notice}</p>"
            + "\n".join(self.sections)
            + "</body></html>"
        )
        path.write_text(page, encoding="utf-8")
        return path


def _fmt(value, digits: int) -> str:
    """Whole numbers in full (voxel counts), others to ``digits`` significant digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e12:
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _reason(undefined: str | dict[str, str], column: str) -> str:
    return undefined.get(column, "") if isinstance(undefined, dict) else undefined


def _cell(value, digits: int, reason: str) -> str:
    if isinstance(value, Cell):
        attributes = f" class='{html.escape(value.css_class)}'" if value.css_class else ""
        attributes += f" title='{html.escape(value.title)}'" if value.title else ""
        return f"<td{attributes}>{html.escape(value.text)}</td>"
    if isinstance(value, float) and math.isnan(value):
        text = f"not defined: {reason}" if reason else "not defined"
        return f"<td class='undefined'>{html.escape(text)}</td>"
    number = isinstance(value, numbers.Number) and not isinstance(value, bool)
    css = " class='num'" if number else ""
    return f"<td{css}>{html.escape(_fmt(value, digits))}</td>"


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""
