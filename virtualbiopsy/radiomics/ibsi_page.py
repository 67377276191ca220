"""The IBSI compliance page (``ibsi_compliance.html``): one page a radiologist or imaging scientist reads at a glance.

A headline whose counts add up (N IBSI features = matches + matches after a stated conversion + not computed by
pyradiomics + mismatches), a legend for the status colours, a table of counts per IBSI feature family, then one
table per family (morphology, local intensity, intensity-based statistics, ... in IBSI chapter 1's order) with
every IBSI tag of the family, its reference, our value and its status. The CT phantom and filter sections of
:mod:`~virtualbiopsy.radiomics.ibsi_ct` and :mod:`~virtualbiopsy.radiomics.ibsi_filters` are written through
the same :class:`CompliancePage`, so their tables look alike: every table sits in a container that scrolls
sideways (``overflow-x:auto``) instead of widening the page, text columns are left-aligned and wrap, numbers are
right-aligned, and each status cell is coloured (with a symbol, so colour is never the only cue). Every text
on the page goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import json
import numbers
from pathlib import Path

from virtualbiopsy.radiomics import ibsi
from virtualbiopsy.report.html import Report

# IBSI chapter 1's feature families, in its order: tag prefix -> name.
FAMILIES = {
    "morph": "Morphology",
    "loc": "Local intensity",
    "stat": "Intensity-based statistics",
    "ih": "Intensity histogram",
    "ivh": "Intensity-volume histogram",
    "cm": "Grey level co-occurrence matrix (GLCM)",
    "rlm": "Grey level run length matrix (GLRLM)",
    "szm": "Grey level size zone matrix (GLSZM)",
    "dzm": "Grey level distance zone matrix (GLDZM)",
    "ngt": "Neighbourhood grey tone difference matrix (NGTDM)",
    "ngl": "Neighbouring grey level dependence matrix (NGLDM)",
}

# status -> (CSS class, symbol, what it means); the labels are ibsi.STATUS_LABELS'. Okabe & Ito colours.
_MEANINGS = {
    ibsi.MATCH: ("match", "\u2713", "pyradiomics' value is within the IBSI tolerance of the reference, or equal to it "
                 "at the reference's 3 significant digits where the tolerance is 0"),
    ibsi.CONVERTED_MATCH: ("converted", "\u2713*", "matches once a documented convention difference is converted; "
                           "the note states the conversion (e.g. IBSI kurtosis = pyradiomics - 3)"),
    ibsi.NOT_COMPUTED: ("not-computed", "\u2013", "an IBSI feature (or aggregation) pyradiomics does not implement; "
                        "the note says which"),
    ibsi.DIFFERS: ("mismatch", "\u2717", "outside the IBSI tolerance even after the stated conversions (status "
                   "'differs' in the CSV); the note gives the reason where one is known"),
    ibsi.NO_CONSENSUS: ("no-consensus", "?", "computed, but IBSI published no reference value to compare with"),
}
STATUSES = {status: (css, symbol, ibsi.STATUS_LABELS[status][1], meaning)
            for status, (css, symbol, meaning) in _MEANINGS.items()}
# Statuses of the CT phantom and filter sections that the digital phantom does not have.
OTHER_STATUSES = {
    "not offered by pyradiomics": ("not-computed", "\u2013", "not offered by pyradiomics",
                                   "an IBSI 2 filter pyradiomics does not offer; the reason column says which"),
    "diagnostic": ("diagnostic", "i", "diagnostic",
                   "an image-processing check (e.g. ROI voxel count), not a feature: not counted"),
    "image-processing diagnostic": ("diagnostic", "i", "image-processing diagnostic",
                                    "an IBSI image-processing checkpoint, not a feature: not counted"),
}
HEADLINE_ORDER = (ibsi.MATCH, ibsi.CONVERTED_MATCH, ibsi.NOT_COMPUTED, ibsi.DIFFERS)

_PAGE_STYLE = """
body { max-width: 1200px; padding: 0 1em; line-height: 1.4; }
.table-scroll { overflow-x: auto; max-width: 100%; margin: 0.8em 0; }
.table-scroll table { margin: 0; }
td.text, th.text { text-align: left; white-space: normal; overflow-wrap: break-word; max-width: 36em; }
td.num, th.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.tag { white-space: nowrap; font-family: ui-monospace, monospace; font-size: 0.95em; }
tr.total td { font-weight: bold; border-top: 2px solid #888; }
.status { white-space: nowrap; font-weight: 600; }
.s-match { background: #d9f0e8; } .status.s-match { color: #00583f; border-left: 4px solid #009E73; }
.s-converted { background: #dcecf8; } .status.s-converted { color: #004a80; border-left: 4px solid #56B4E9; }
.s-mismatch { background: #fbe0d0; } .status.s-mismatch { color: #8a3600; border-left: 4px solid #D55E00; }
.s-not-computed { background: #eeeeee; } .status.s-not-computed { color: #444; border-left: 4px solid #999999; }
.s-no-consensus { background: #fdf3c4; } .status.s-no-consensus { color: #6b5d00; border-left: 4px solid #F0E442; }
.s-diagnostic { background: #f3e6ef; } .status.s-diagnostic { color: #6d2d57; border-left: 4px solid #CC79A7; }
.headline { font-size: 1.15em; background: #f7f7f7; border: 1px solid #ddd; padding: 0.6em 1em; }
.headline .status { padding: 0 0.35em; border-radius: 2px; }
dl.legend { display: grid; grid-template-columns: max-content 1fr; gap: 0.3em 1em; margin: 0.8em 0; }
dl.legend dt { padding: 1px 6px; } dl.legend dd { margin: 0; }
h3 { font-size: 1.05em; margin-top: 1.6em; }
"""


def status_style(status: str) -> tuple[str, str, str, str]:
    """(CSS class, symbol, label, meaning) of a status of any section (unknown ones: neutral, as written)."""
    return STATUSES.get(status) or OTHER_STATUSES.get(status) or ("other", "", str(status), "")


def status_label(status: str) -> str:
    """'\u2713 match', '\u2717 mismatch', ...: the symbol and label a status cell shows."""
    _, symbol, label, _ = status_style(status)
    return f"{symbol} {label}".strip()


def _badge(status: str, text: str, tag: str = "span") -> str:
    return f"<{tag} class='status s-{status_style(status)[0]}'>{html.escape(text)}</{tag}>"


def _is_number(value) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _cell_text(value, digits: int) -> str:
    """Whole numbers in full (voxel counts), other numbers to ``digits`` significant digits, NaN 'not defined'."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, numbers.Real) and not isinstance(value, float):
        value = float(value)  # numpy float32
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e12:
        return str(int(value))
    if isinstance(value, float) and value != value:
        return "not defined"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


class CompliancePage(Report):
    """A :class:`~virtualbiopsy.report.html.Report` whose tables scroll sideways and colour their status column."""

    def raw(self, markup: str) -> None:
        """Append markup built here from escaped text (never pass user text unescaped)."""
        self.sections.append(markup)

    def table(self, columns: dict[str, list], caption: str = "", digits: int = 5, tag_columns=(),
              total_row: list | None = None, row_status: bool = False, column_digits: dict | None = None) -> None:
        """A table in a sideways-scrolling container. Columns whose values are all numbers (or empty) are right-
        aligned, the others left-aligned and wrapped; a ``status`` column is coloured; ``tag_columns`` are
        identifiers (monospace, never wrapped); ``total_row`` is appended in bold; ``row_status`` tints each row
        by its status; numbers have ``digits`` significant digits (``column_digits``: {column: digits})."""
        column_digits = column_digits or {}
        names = list(columns)
        numeric = {n: all(_is_number(v) or v in ("", None) for v in columns[n]) and any(_is_number(v)
                                                                                    for v in columns[n])
                   for n in names}
        head = "".join(f"<th class='{'num' if numeric[n] else 'text'}'>{html.escape(str(n))}</th>" for n in names)
        rows = [list(row) for row in zip(*(columns[n] for n in names))]
        body = []
        for row in rows:
            cells, row_class = [], ""
            for name, value in zip(names, row):
                if name == "status" and value:
                    row_class = f"s-{status_style(value)[0]}"
                    cells.append(_badge(value, status_label(value), "td"))
                else:
                    cells.append(self._cell(value, numeric[name], name in tag_columns,
                                            column_digits.get(name, digits)))
            body.append(f"<tr class='{row_class}'>" if row_status and row_class else "<tr>")
            body[-1] += "".join(cells) + "</tr>"
        if total_row:
            body.append("<tr class='total'>" + "".join(self._cell(value, numeric[name], False, digits)
                                                       for name, value in zip(names, total_row)) + "</tr>")
        cap = f"<caption class='caption'>{html.escape(caption)}</caption>" if caption else ""
        self.sections.append(f"<div class='table-scroll' style='overflow-x:auto'><table>{cap}<thead><tr>{head}</tr>"
                             f"</thead><tbody>{''.join(body)}</tbody></table></div>")

    @staticmethod
    def _cell(value, numeric: bool, tag: bool, digits: int) -> str:
        kind = "num" if numeric else ("text tag" if tag else "text")
        return f"<td class='{kind}'>{html.escape(_cell_text(value, digits))}</td>"

    extra_style = _PAGE_STYLE
    notice = "Research use only."


def status_counts(rows: list[dict]) -> dict[str, int]:
    """{status: rows} in the headline's order: match, match after a stated conversion, not computed by pyradiomics,
    mismatch (each present, 0 when none), then any other status of ``rows`` (e.g. no IBSI consensus)."""
    counts = dict.fromkeys(HEADLINE_ORDER, 0)
    for row in rows:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def family_rows(rows: list[dict]) -> dict[str, list[dict]]:
    """{IBSI family prefix: its rows} in IBSI's family order (a prefix IBSI does not list comes last)."""
    grouped = {family: [] for family in FAMILIES}
    for row in rows:
        grouped.setdefault(ibsi._family(row["ibsi_tag"]), []).append(row)
    return {family: found for family, found in grouped.items() if found}


def counts_text(counts: dict[str, int]) -> str:
    """'263 match, 4 match after a stated conversion, 220 not computed by pyradiomics, 0 mismatch'."""
    return ", ".join(f"{count} {status_style(status)[2]}" for status, count in counts.items())


def _headline(rows: list[dict]) -> str:
    """'IBSI digital phantom, N IBSI features: a match, b ..., d mismatch (a + b + c + d = N).', counts coloured."""
    counts = status_counts(rows)
    parts = ", ".join(_badge(status, f"{count} {status_style(status)[2]}") for status, count in counts.items())
    sums = " + ".join(str(count) for count in counts.values())
    return (f"<p class='headline'><strong>IBSI digital phantom, {len(rows)} IBSI features:</strong> {parts} "
            f"<span class='sum'>({sums} = {len(rows)})</span>.</p>")


def _legend(statuses) -> str:
    items = [_badge(status, status_label(status), "dt") + f"<dd>{html.escape(status_style(status)[3])}</dd>"
             for status in dict.fromkeys(statuses)]
    return "<dl class='legend' aria-label='status legend'>" + "".join(items) + "</dl>"


# column heading of a family table -> key of the report row (ibsi.REPORT_COLUMNS)
FAMILY_COLUMNS = {
    "IBSI tag": "ibsi_tag", "configuration": "configuration", "pyradiomics feature": "pyradiomics_feature",
    "IBSI reference": "reference", "IBSI tolerance": "tolerance", "pyradiomics value": "pyradiomics_value",
    "value in the IBSI convention": "ibsi_convention_value", "difference": "difference", "status": "status",
    "note": "note",
}


def _family_sections(page: CompliancePage, rows: list[dict]) -> None:
    """The counts per family (with a total row equal to the headline), then one section per family."""
    grouped, statuses = family_rows(rows), list(status_counts(rows))
    page.heading("IBSI 1 digital phantom, by IBSI feature family")
    columns = {"IBSI family": [FAMILIES.get(f, f) for f in grouped], "tag prefix": [f"{f}_" for f in grouped],
               "IBSI features": [len(found) for found in grouped.values()]}
    for status in statuses:
        columns[status_style(status)[2]] = [status_counts(found).get(status, 0) for found in grouped.values()]
    page.table(columns, "IBSI features per family and status; the last row is the headline's",
               tag_columns=("tag prefix",), total_row=["all families", "", len(rows), *status_counts(rows).values()])
    page.raw("<p>Families: " + " \u00b7 ".join(f"<a href='#family-{html.escape(f)}'>{html.escape(FAMILIES.get(f, f))}"
                                             "</a>" for f in grouped) + "</p>")
    for family, found in grouped.items():
        page.raw(f"<section class='family' id='family-{html.escape(family)}' data-features='{len(found)}'>"
                 f"<h3>{html.escape(FAMILIES.get(family, family))} ({html.escape(family)}_): {len(found)} "
                 f"IBSI features: {html.escape(counts_text(status_counts(found)))}</h3>")
        page.table({name: [r[key] for r in found] for name, key in FAMILY_COLUMNS.items()},
                   tag_columns=("IBSI tag", "pyradiomics feature"), row_status=True, column_digits={"difference": 2})
        page.raw("</section>")


def write_page(rows: list[dict], path: str | Path, ct: tuple[list[dict], dict] | None = None,
               filters: list[dict] | None = None, notes=()) -> Path:
    """Write the compliance page of the digital phantom's ``rows`` (of
    :func:`~virtualbiopsy.radiomics.ibsi.compliance_report`), with a section for the CT phantom's ``ct`` (rows,
    facts) and the ``filters`` rows when given; ``notes``: paragraphs on sections not run."""
    from virtualbiopsy.radiomics import extraction, ibsi_ct, ibsi_filters

    page = CompliancePage("IBSI compliance of the Virtual Biopsy radiomics extraction (pyradiomics)")
    counts = ibsi.summary(rows)
    page.raw(_headline(rows))
    page.paragraph(
        "One IBSI feature is one IBSI tag: a feature in one aggregation (e.g. cm_contrast_3D_avg, the GLCM contrast "
        "of the 3D matrices averaged over directions). A match is within the IBSI tolerance, or equal at the "
        f"reference's 3 significant digits where the tolerance is 0; {counts['matching_without_conversion']} of the "
        f"{counts['matching']} matches need no conversion.")
    for line in ([ibsi_ct.summary_line(ibsi_ct.summary(ct[0]))] if ct is not None else []) + (
            [ibsi_filters.summary_line(ibsi_filters.summary(filters))] if filters is not None else []) + list(notes):
        page.paragraph(line)
    shown = [r["status"] for r in rows] + [r["status"] for r in (ct[0] if ct is not None else [])] + [
        r["status"] for r in (filters or [])]
    page.raw("<h2>Status colours</h2>" + _legend([*HEADLINE_ORDER, *(s for s in shown if s not in HEADLINE_ORDER)]))
    page.heading("IBSI 1 digital phantom")
    page.paragraph(
        "Phantom: IBSI chapter 1 digital phantom (5 x 4 x 4 voxels of 2 mm; CC BY 4.0) with its consensus reference "
        "values, run through the extraction with preset 'ibsi' in four aggregations (3D and 2.5D; texture matrices "
        "averaged over directions or merged). A value matches when it is within the IBSI tolerance or rounds to the "
        "reference at its 3 significant digits. The same rows are in ibsi_compliance.csv.")
    settings = ibsi.configuration_settings()
    page.table({"configuration": list(settings),
                "pyradiomics settings (preset 'ibsi' + the aggregation's)": [json.dumps(v, sort_keys=True, default=str)
                                                                           for v in settings.values()]},
               "Settings that make pyradiomics match, per configuration (aggregation)",
               tag_columns=("configuration",))
    page.paragraph("Library versions: " + ", ".join(f"{k} {v}" for k, v in extraction.library_versions().items()))
    _family_sections(page, rows)
    page.heading("pyradiomics features without an IBSI tag")
    page.table({"pyradiomics feature": [f"original_{k}" for k in ibsi.NO_IBSI_TAG],
                "why": list(ibsi.NO_IBSI_TAG.values())}, tag_columns=("pyradiomics feature",))
    if ct is not None:
        ibsi_ct.add_to_report(page, *ct)
    if filters is not None:
        ibsi_filters.add_to_report(page, filters)
    return page.write(path)


def write_report(rows: list[dict], out_dir: str | Path, ct: tuple[list[dict], dict] | None = None,
                 filters: list[dict] | None = None, notes: list[str] = ()) -> tuple[Path, Path]:
    """Write ``ibsi_compliance.csv`` (digital phantom), with ``ct`` (rows, facts of
    :func:`~virtualbiopsy.radiomics.ibsi_ct.ct_report`) ``ibsi_ct_phantom.csv``, with ``filters`` (rows of
    :func:`~virtualbiopsy.radiomics.ibsi_filters.filter_report`) ``ibsi_filters.csv``, and one
    ``ibsi_compliance.html`` (:func:`write_page`) with a section for each;
    ``notes``: paragraphs on sections not run. Returns the digital phantom's CSV and the HTML path."""
    from virtualbiopsy.radiomics import ibsi_ct, ibsi_filters

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = ibsi.write_csv(rows, ibsi.REPORT_COLUMNS, out_dir / "ibsi_compliance.csv")
    if ct is not None:
        ibsi.write_csv(ct[0], ibsi_ct.CT_COLUMNS, out_dir / "ibsi_ct_phantom.csv")
    if filters is not None:
        ibsi.write_csv(filters, ibsi_filters.FILTER_COLUMNS, out_dir / "ibsi_filters.csv")
    return csv_path, write_page(rows, out_dir / "ibsi_compliance.html", ct, filters, notes)
