"""The Slicer modules' requirements: parsed as PEP 508 by packaging, checked on the real installed
distributions, and the install decisions (a restart before a loaded torch is replaced, a restart after
a package already imported at another version, a failed install explained in one line)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from virtualbiopsy import dependencies
from virtualbiopsy.dependencies import Requirement, RestartRequiredError
from virtualbiopsy.errors import DependencyError

ROOT = Path(__file__).resolve().parents[2]


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return its output."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize(("line", "name", "spec", "options"), [
    ("numpy>=1.24", "numpy", "numpy>=1.24", ()),
    ("pyradiomics==3.0.1 --no-build-isolation", "pyradiomics", "pyradiomics==3.0.1", ("--no-build-isolation",)),
    ("torch>=2.3,!=2.9.*", "torch", "torch!=2.9.*,>=2.3", ()),
    ("scikit-learn == 1.9.1", "scikit-learn", "scikit-learn==1.9.1", ()),
], ids=["minimum", "pip-option", "minimum-and-exclusion", "spaces"])
def test_a_requirement_line_is_read_as_pep_508(line, name, spec, options):
    requirement = Requirement.parse(line)
    assert (requirement.name, requirement.spec, requirement.pip_options) == (name, spec, options)


@pytest.mark.parametrize("text", ["numpy>=1.0\n", "[Demo]\nnumpy>>1\n", "[Demo]\n==1.0\n"],
                         ids=["outside-a-group", "bad-operator", "no-name"])
def test_refuses_a_line_that_is_no_requirement(text):
    with pytest.raises(ValueError, match="Bad"):
        dependencies.parse_requirements(text)


@pytest.mark.parametrize(("line", "allowed", "refused"), [
    ("torch==2.13.0", "2.13.0+cpu", "2.13.1"),
    ("torch>=2.3,!=2.9.*", "2.13.0", "2.9.1"),
    ("numpy>=1.24", "2.4.6", "1.23.5"),
], ids=["exact-ignores-local-label", "excluded-series", "minimum"])
def test_versions_are_compared_as_pep_440(line, allowed, refused):
    requirement = Requirement.parse(line)
    assert requirement.allows(allowed) and not requirement.allows(refused)


def test_torch_is_a_minimum_version_not_a_pin():
    for group, requirements in dependencies.all_requirements().items():
        for requirement in requirements:
            if requirement.name == "torch":
                assert not any(s.operator == "==" for s in requirement.specifier), group
                assert requirement.allows("2.13.0") and not requirement.allows("2.0.0"), group


def test_import_names_come_from_the_installed_distribution():
    assert dependencies.import_names("scikit-learn") == {"sklearn"}  # a wheel without top_level.txt
    assert "numpy" in dependencies.import_names("numpy")
    assert dependencies.import_names("virtualbiopsy-no-such-package") == set()


def test_an_unsatisfied_requirement_already_imported_needs_a_restart():
    import packaging  # noqa: F401  (imported in this process, at the installed version)

    assert Requirement.parse("packaging>=999").needs_restart()
    assert not Requirement.parse("packaging>=1").needs_restart()  # satisfied: nothing to install


def test_an_unsatisfied_requirement_not_imported_needs_no_restart():
    output = fresh_python("""
        import sys
        from virtualbiopsy.dependencies import Requirement
        requirement = Requirement.parse("scikit-learn>=999")
        print("sklearn" in sys.modules, requirement.needs_restart())
        import sklearn
        print(requirement.needs_restart())
    """)
    assert output.split() == ["False", "False", "True"]


def test_a_loaded_torch_too_old_asks_for_a_restart_before_anything_is_installed(monkeypatch):
    import torch  # noqa: F401  (loaded, as another extension would have it)

    monkeypatch.setattr(dependencies, "all_requirements",
                        lambda: dependencies.parse_requirements("[Demo]\ntorch>=999\n"))
    asked, installed = [], []
    with pytest.raises(RestartRequiredError, match="already loaded") as caught:
        dependencies.ensure_requirements("Demo", asked.append, installed.append, install_torch=installed.append)
    assert caught.value.packages == ["torch"] and asked == [] and installed == []
    assert not dependencies.restart_before_install(Requirement.parse("torch>=2.3,!=2.9.*"))  # new enough: kept


def test_torch_not_loaded_is_installed_through_the_extension_and_a_failure_is_explained_in_one_line():
    output = fresh_python("""
        import sys
        from virtualbiopsy import dependencies
        from virtualbiopsy.errors import DependencyError
        dependencies.all_requirements = lambda: dependencies.parse_requirements("[Demo]\\ntorch>=999\\n")
        requirement = dependencies.requirements_for("Demo")[0]
        print("torch" in sys.modules, dependencies.restart_before_install(requirement))
        def install_torch(spec):
            print("installing", spec)
            raise RuntimeError("light-the-torch found no wheel\\nTraceback ...")
        try:
            dependencies.ensure_requirements("Demo", lambda specs: True, print, install_torch=install_torch)
        except DependencyError as error:
            print(str(error))
    """)
    lines = output.splitlines()
    assert lines[0] == "False False" and lines[1] == "installing torch>=999"
    assert len(lines) == 3
    assert "PyTorch (torch>=999) could not be installed: light-the-torch found no wheel." in lines[2]
    assert "PyTorch Utils" in lines[2]


def test_a_failed_pip_install_is_explained_in_one_line(monkeypatch):
    monkeypatch.setattr(dependencies, "all_requirements",
                        lambda: dependencies.parse_requirements("[Demo]\nvirtualbiopsy-no-such-package==1.0\n"))

    def pip_install(arguments):
        raise subprocess.CalledProcessError(1, ["pip", "install", *arguments])

    with pytest.raises(DependencyError) as caught:
        dependencies.ensure_requirements("Demo", lambda specs: True, pip_install)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("Installing virtualbiopsy-no-such-package==1.0 failed:")


def _write_distribution(site: Path, version: str) -> None:
    for old in site.glob("vbfake-*.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    info = site / f"vbfake-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vbfake\nVersion: {version}\n")
    (info / "RECORD").write_text(f"vbfake/__init__.py,,\nvbfake-{version}.dist-info/METADATA,,\n")
    (site / "vbfake").mkdir(exist_ok=True)
    (site / "vbfake" / "__init__.py").write_text(f"__version__ = {version!r}\n")


def test_an_install_over_a_package_imported_at_another_version_says_restart(tmp_path, monkeypatch):
    _write_distribution(tmp_path, "1.0")
    monkeypatch.syspath_prepend(str(tmp_path))
    import vbfake  # noqa: F401  (this process now runs version 1.0)

    monkeypatch.setitem(sys.modules, "vbfake", sys.modules["vbfake"])  # removed again after the test
    monkeypatch.setattr(dependencies, "all_requirements",
                        lambda: dependencies.parse_requirements("[Demo]\nvbfake>=2.0\n"))
    installed = []

    def pip_install(arguments):  # what pip leaves on disk: the new version's files and metadata
        installed.append(arguments)
        _write_distribution(tmp_path, "2.0")

    with pytest.raises(RestartRequiredError, match="restart Slicer") as caught:
        dependencies.ensure_requirements("Demo", lambda specs: True, pip_install)
    assert installed == [["vbfake>=2.0"]] and caught.value.packages == ["vbfake"]
    assert dependencies.missing_requirements("Demo") == []  # installed; only the running process is old
    sys.modules.pop("vbfake")
