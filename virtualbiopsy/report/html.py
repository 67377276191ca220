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
from dataclasses import dataclass, field
from pathlib import Path

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.5em 0; }
.warning { background: #fff4e0; border-left: 4px solid #e09000; padding: 0.6em 1em; }
.caption { color: #555; font-size: 0.9em; }
"""


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

    def paragraph(self, text: str, css_class: str | None = None) -> None:
        attribute = f' class="{html.escape(css_class)}"' if css_class else ""
        self.sections.append(f"<p{attribute}>{html.escape(text)}</p>")

    def table(self, columns: dict[str, list], caption: str = "", digits: int = 4) -> None:
        names = list(columns)
        rows = zip(*(columns[n] for n in names))
        head = "".join(f"<th>{html.escape(str(n))}</th>" for n in names)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(v, digits))}</td>" for v in row) + "</tr>" for row in rows
        )
        cap = f"<caption class='caption'>{html.escape(caption)}</caption>" if caption else ""
        self.sections.append(f"<table>{cap}<tr>{head}</tr>{body}</table>")

    def figure(self, png_path: str | Path, caption: str, relative_to: str | Path) -> None:
        source = Path(png_path).resolve().relative_to(Path(relative_to).resolve()).as_posix()
        self.sections.append(
            f"<figure><img src='{html.escape(source)}' alt='{html.escape(caption)}'>"
            f"<figcaption class='caption'>{html.escape(caption)}</figcaption></figure>"
        )

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        page = (
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(self.title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='caption'>Written {stamp}.</p>"
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
