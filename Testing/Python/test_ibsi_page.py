"""The IBSI compliance page (ibsi_compliance.html) of the digital phantom's real comparison: a headline whose counts
add up to the rows, one section per IBSI family whose heading counts its rows, coloured status cells with a legend,
every table in a sideways-scrolling container with left-aligned text columns, and all text escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from virtualbiopsy.radiomics import ibsi, ibsi_page

VOID = {"meta", "br", "img", "hr", "link", "input"}


class Element:
    def __init__(self, tag: str, attrs: dict, parent: Element | None):
        self.tag, self.attrs, self.parent, self.children, self.texts = tag, attrs, parent, [], []

    @property
    def classes(self) -> set[str]:
        return set((self.attrs.get("class") or "").split())

    def text(self) -> str:
        return "".join(t if isinstance(t, str) else t.text() for t in self.texts)

    def find_all(self, tag: str, css_class: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag and (css_class is None or css_class in child.classes):
                found.append(child)
            found += child.find_all(tag, css_class)
        return found

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


class Tree(HTMLParser):
    """The page as a tree of :class:`Element` (the standard library's tokenizer; no HTML repair)."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = self.node = Element("document", {}, None)
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), self.node)
        self.node.children.append(element)
        self.node.texts.append(element)
        if tag not in VOID:
            self.node = element

    def handle_endtag(self, tag):
        assert self.node.tag == tag, f"</{tag}> closes <{self.node.tag}>"
        self.node = self.node.parent

    def handle_data(self, data):
        self.node.texts.append(data)


def body_rows(table: Element) -> list[Element]:
    return [tr for tbody in table.find_all("tbody") for tr in tbody.find_all("tr")]


def row_of(tree: Element, tag: str) -> Element:
    """The table row whose first cell is the IBSI tag ``tag``."""
    return next(tr for tr in tree.find_all("tr") if tr.find_all("td") and tr.find_all("td")[0].text() == tag)


def headline_counts(text: str) -> tuple[int, dict[str, int], list[int], int]:
    """'IBSI digital phantom, N IBSI features: a match, ... (a + b + c + d = N).' -> N, {label: a, ...}, the sum's
    terms, the sum shown."""
    pattern = r"IBSI digital phantom, (\d+) IBSI features: (.*) \(([\d + ]+) = (\d+)\)\."
    match = re.fullmatch(pattern, " ".join(text.split()))
    assert match, text
    parts = {label: int(count) for count, label in (p.split(" ", 1) for p in match.group(2).split(", "))}
    return int(match.group(1)), parts, [int(t) for t in match.group(3).split(" + ")], int(match.group(4))


@pytest.fixture(scope="module")
def phantom_features():
    return ibsi.phantom_features()


@pytest.fixture(scope="module")
def rows():
    return ibsi.compliance_report()


@pytest.fixture(scope="module")
def page(rows, tmp_path_factory):
    _, path = ibsi_page.write_report(rows, tmp_path_factory.mktemp("ibsi"), notes=["<script>alert(1)</script>"])
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tree(page):
    return Tree(page).root


def test_the_headline_counts_add_up_to_the_number_of_rows(rows, tree):
    (headline,) = tree.find_all("p", "headline")
    total, parts, terms, sum_shown = headline_counts(headline.text())
    assert total == len(rows) == 487 == sum(parts.values()) == sum(terms) == sum_shown
    assert list(parts) == ["match", "match after a stated conversion", "not computed by pyradiomics", "mismatch"]
    by_status = {label: sum(r["status"] == status for r in rows) for status, (_, label) in ibsi.STATUS_LABELS.items()}
    assert all(parts[label] == by_status[label] for label in parts)
    assert parts == {"match": 263, "match after a stated conversion": 4, "not computed by pyradiomics": 220,
                     "mismatch": 0}
    # the same numbers in the summary line the command prints and the demo's report shows
    line = ibsi.summary_line(ibsi.summary(rows))
    assert line.startswith("IBSI digital phantom, 487 IBSI features: 263 match, 4 match after a stated conversion, "
                           "220 not computed by pyradiomics, 0 mismatch (")


def test_every_family_heading_counts_its_rows_in_ibsi_order(rows, tree):
    sections = tree.find_all("section", "family")
    assert [s.attrs["id"].removeprefix("family-") for s in sections] == list(ibsi_page.FAMILIES)
    assert sum(int(s.attrs["data-features"]) for s in sections) == len(rows)
    for section in sections:
        family = section.attrs["id"].removeprefix("family-")
        (heading,) = section.find_all("h3")
        match = re.fullmatch(r"(.+) \((\w+)_\): (\d+) IBSI features: (.*)", heading.text())
        assert match and match.group(1) == ibsi_page.FAMILIES[family] and match.group(2) == family, heading.text()
        (table,) = section.find_all("table")
        found = body_rows(table)
        assert int(match.group(3)) == len(found) == int(section.attrs["data-features"]), family
        tags = [tr.find_all("td")[0].text() for tr in found]
        assert all(tag.startswith(family + "_") for tag in tags), family
        assert tags == [r["ibsi_tag"] for r in rows if r["ibsi_tag"].startswith(family + "_")]
        said = {label: int(count) for count, label in (p.split(" ", 1) for p in match.group(4).split(", "))}
        shown = [tr.find_all("td", "status")[0].text() for tr in found]
        assert sum(said.values()) == len(found), family
        for status, (_, label) in ibsi.STATUS_LABELS.items():
            assert said.get(label, 0) == shown.count(ibsi_page.status_label(status)), (family, label)


def test_the_family_table_totals_equal_the_headline(tree):
    (headline,) = tree.find_all("p", "headline")
    total, parts, _, _ = headline_counts(headline.text())
    table = next(t for t in tree.find_all("table") if "per family" in t.text())
    head = [th.text() for th in table.find_all("th")]
    last = body_rows(table)[-1]
    assert "total" in last.classes
    cells = {name: td.text() for name, td in zip(head, last.find_all("td"))}
    assert int(cells["IBSI features"]) == total and all(int(cells[label]) == n for label, n in parts.items())
    per_family = body_rows(table)[:-1]
    assert len(per_family) == len(ibsi_page.FAMILIES)
    assert sum(int(tr.find_all("td")[head.index("IBSI features")].text()) for tr in per_family) == total


def test_status_cells_are_coloured_and_each_colour_is_explained(rows, tree, page):
    status_cells = [td for td in tree.find_all("td", "status")]
    assert len([td for s in tree.find_all("section", "family") for td in s.find_all("td", "status")]) == len(rows)
    classes = {c for td in status_cells for c in td.classes if c.startswith("s-")}
    assert {"s-match", "s-converted", "s-not-computed"} <= classes
    for status in ibsi_page.HEADLINE_ORDER:
        css, _, label, meaning = ibsi_page.status_style(status)
        assert re.search(rf"\.status\.s-{css} \{{[^}}]*border-left: 4px solid #", page), css  # a colour per status
        (entry,) = [dt for dt in tree.find_all("dt", f"s-{css}") if "legend" in dt.parent.classes]
        assert entry.text().endswith(label) and entry.parent.children[entry.parent.children.index(entry) + 1].text()
    kurtosis = row_of(tree, "stat_kurt")
    assert "s-converted" in kurtosis.classes and "- 3" in kurtosis.text()


def test_every_table_sits_in_a_sideways_scrolling_container_with_text_left_aligned(tree, page):
    tables = tree.find_all("table")
    assert len(tables) >= len(ibsi_page.FAMILIES) + 3
    for table in tables:
        container = table.parent
        assert container.tag == "div" and "table-scroll" in container.classes
        assert "overflow-x:auto" in container.attrs["style"].replace(" ", "")
    assert re.search(r"td\.text, th\.text \{ text-align: left; white-space: normal;", page)
    note = row_of(tree, "dzm_sde_3D")
    note_cell = note.find_all("td")[-1]
    assert "GLDZM" in note_cell.text() and "text" in note_cell.classes
    value = note.find_all("td")[3]  # the IBSI reference: a number, right-aligned
    assert "num" in value.classes


def test_all_text_on_the_page_is_escaped(page, tree):
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert any(p.text() == "<script>alert(1)</script>" for p in tree.find_all("p"))


def test_a_mismatch_is_counted_and_coloured(phantom_features, tmp_path):
    """The real comparison with one value off by 10 %: the headline, the family heading and the row say mismatch."""
    features = {name: dict(values) for name, values in phantom_features.items()}
    features["3D_avg"]["firstorder_Mean"] *= 1.1
    aggregations = {name: suffixes for name, (_, suffixes) in ibsi.CONFIGURATIONS.items()}
    references = ibsi.read_references(ibsi.phantom_paths()["reference_values"])
    rows = ibsi.compare_with_references(references, features, aggregations, features["voxels"]["count"])
    _, path = ibsi_page.write_report(rows, tmp_path)
    root = Tree(path.read_text(encoding="utf-8")).root
    (headline,) = root.find_all("p", "headline")
    total, parts, _, _ = headline_counts(headline.text())
    assert parts["mismatch"] == 1 and parts["match"] == 262 and sum(parts.values()) == total == 487
    stat = next(s for s in root.find_all("section", "family") if s.attrs["id"] == "family-stat")
    assert "1 mismatch" in stat.find_all("h3")[0].text()
    (row,) = [tr for tr in stat.find_all("tr", "s-mismatch")]
    assert row.find_all("td")[0].text() == "stat_mean" and "\u2717 mismatch" in row.text()
