"""The README's test counts and timings come from a real pytest run's JUnit XML (scripts/readme_test_figures.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("readme_test_figures", ROOT / "scripts" / "readme_test_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def junit(tmp_path_factory):
    """A real pytest run of three passing, one failing and two skipped tests, as JUnit XML."""
    folder = tmp_path_factory.mktemp("suite")
    (folder / "test_small.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('n', [1, 2, 3])\n"
        "def test_passes(n):\n    assert n\n"
        "def test_fails():\n    assert False\n"
        "def test_skips_a():\n    pytest.skip(\"Debian package 'chromium' is not installed; browser tests skipped\")\n"
        "def test_skips_b():\n    pytest.skip(\"Debian package 'chromium' is not installed; browser tests skipped\")\n")
    xml = folder / "results.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                    "--rootdir", str(folder), str(folder / "test_small.py")], cwd=folder, capture_output=True)
    return xml


def test_the_figures_are_the_counts_of_the_run(junit):
    results = _script().read_results(junit)
    assert (results["tests"], results["passed"], results["failed"], results["skipped"]) == (6, 3, 1, 2)
    assert results["skip_reasons"] == [("Debian package 'chromium' is not installed", 2)]
    block = _script().markdown(results, cores=2)
    assert "6 tests, 3 passed, 1 failed, 2 skipped" in block and "2 CPU cores" in block


def test_only_the_block_between_the_markers_changes(junit, tmp_path):
    script = _script()
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\nintro\n{script.START}\nold figures: 1048 tests\n{script.END}\nafter\n")
    assert script.main([str(junit), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\nintro\n") and text.endswith(f"{script.END}\nafter\n")
    assert "1048" not in text and "6 tests, 3 passed" in text


def test_a_readme_without_markers_is_refused_and_left_alone(junit, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit, match="needs one"):
        _script().main([str(junit), "--readme", str(readme)])
    assert readme.read_text() == "no markers\n"


def test_the_readme_has_one_block_for_the_figures():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    script = _script()
    assert text.count(script.START) == 1 and text.count(script.END) == 1
