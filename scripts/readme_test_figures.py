"""The test figures the README quotes, read from pytest's JUnit XML (``make test`` writes out/test-results.xml).

    python scripts/readme_test_figures.py out/test-results.xml   # print them (``.ci/run`` does, into the CI log)
    python scripts/readme_test_figures.py out/test-results.xml --readme README.md   # rewrite the README's block

The README's block sits between ``<!-- test-figures:start -->`` and ``<!-- test-figures:end -->``; nothing else
of the README changes. Counts and timings thus come from a run's output, never from hand edits.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import re
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

START, END = "<!-- test-figures:start -->", "<!-- test-figures:end -->"


def read_results(path) -> dict:
    """Totals, duration, timestamp and skip reasons (grouped, most frequent first) of one JUnit XML file."""
    root = ElementTree.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = collections.Counter()
    seconds, stamp = 0.0, ""
    reasons = collections.Counter()
    for suite in suites:
        for key in ("tests", "failures", "errors", "skipped"):
            totals[key] += int(suite.get(key, 0))
        seconds += float(suite.get("time", 0.0))
        stamp = stamp or suite.get("timestamp", "")
        for case in suite.iter("testcase"):
            for skipped in case.findall("skipped"):
                reasons[_reason(skipped.get("message", ""))] += 1
    passed = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    return {"tests": totals["tests"], "passed": passed, "failed": totals["failures"] + totals["errors"],
            "skipped": totals["skipped"], "seconds": seconds, "timestamp": stamp,
            "skip_reasons": reasons.most_common()}


def _reason(message: str) -> str:
    """A skip message without pytest's location prefix, shortened to its first clause."""
    message = re.sub(r"^Skipped:\s*", "", message.strip())
    message = re.split(r"[:;(]\s", message, maxsplit=1)[0]
    return message[:90]


def markdown(results: dict, cores: int | None = None) -> str:
    """The README block: one sentence of totals and a list of skip reasons."""
    minutes, seconds = divmod(round(results["seconds"]), 60)
    when = results["timestamp"][:10] or datetime.date.today().isoformat()
    cores = cores or os.cpu_count()
    lines = [f"Last recorded `make test` ({when}, {cores} CPU cores): {results['tests']} tests, "
             f"{results['passed']} passed, {results['failed']} failed, {results['skipped']} skipped, "
             f"{minutes} min {seconds:02d} s of tests."]
    if results["skip_reasons"]:
        lines.append("Skipped, by reason:")
        lines += [f"- {count} x {reason}" for reason, count in results["skip_reasons"]]
    return "\n".join(lines)


def update_readme(readme, block: str) -> None:
    """Replace the text between the README's markers with ``block``; refuse when the markers are missing."""
    readme = Path(readme)
    text = readme.read_text(encoding="utf-8")
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{readme}: needs one '{START}' followed by one '{END}'")
    before, rest = text.split(START)
    _, after = rest.split(END)
    readme.write_text(f"{before}{START}\n{block}\n{END}{after}", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("junit", help="pytest's --junitxml file")
    parser.add_argument("--readme", help="rewrite this README's test-figures block")
    args = parser.parse_args(argv)
    if not Path(args.junit).is_file():
        print(f"readme_test_figures: {args.junit} not found (run make test first)", file=sys.stderr)
        return 2
    block = markdown(read_results(args.junit))
    print(block)
    if args.readme:
        update_readme(args.readme, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
