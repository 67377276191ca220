"""Dependency checks by metadata (pins, what is missing) and the install-after-confirm flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from virtualbiopsy import dependencies
from virtualbiopsy.errors import DependencyError

ROOT = Path(__file__).resolve().parents[2]


def test_slicer_pins_agree_with_the_known_good_stack():
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    for group, requirements in dependencies.all_requirements().items():
        for requirement in requirements:
            assert requirement.name.lower() != "shap", "shap breaks Slicer's own `slicer` package"
            pinned = pins.get(requirement.name.lower())
            assert pinned is not None and requirement.allows(pinned), (group, requirement.spec)


def test_environment_has_every_module_requirement():
    for group in dependencies.all_requirements():
        assert dependencies.missing_requirements(group) == [], group


def test_slicer_package_still_has_mrml():
    import slicer

    assert hasattr(slicer, "vtkMRMLScene"), "something (the PyPI 'slicer' package?) replaced slicer-core's slicer"


def _fake_group(monkeypatch, text):
    monkeypatch.setattr(dependencies, "all_requirements", lambda: dependencies.parse_requirements(text))


def test_missing_package_found_without_import_and_installed_after_confirm(monkeypatch):
    _fake_group(monkeypatch, "[Demo]\nnumpy>=1.0\nvirtualbiopsy-no-such-package==1.2.3 --no-build-isolation\n")
    assert dependencies.missing_requirements("Demo") == ["virtualbiopsy-no-such-package==1.2.3"]
    asked, installed = [], []
    with pytest.raises(DependencyError, match="still missing"):
        dependencies.ensure_requirements("Demo", confirm=lambda specs: asked.append(specs) or True,
                                         pip_install=installed.append)
    assert asked == [["virtualbiopsy-no-such-package==1.2.3"]]
    assert installed == [["virtualbiopsy-no-such-package==1.2.3", "--no-build-isolation"]]


def test_declined_install_changes_nothing(monkeypatch):
    _fake_group(monkeypatch, "[Demo]\nvirtualbiopsy-no-such-package==1.0\n")
    installed = []
    with pytest.raises(DependencyError, match="Nothing was changed"):
        dependencies.ensure_requirements("Demo", confirm=lambda specs: False, pip_install=installed.append)
    assert installed == []


def test_local_version_labels_are_ignored():
    assert dependencies.Requirement.parse("torch==2.13.0").is_satisfied()  # installed as 2.13.0+cpu
