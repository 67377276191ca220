"""Dependency checks by metadata, install-after-confirm flow; b-value checks and the ADC fit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from virtualbiopsy import dependencies
from virtualbiopsy.diffusion import check_b_values, fit_adc
from virtualbiopsy.errors import DependencyError, InputError

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


@pytest.mark.parametrize(
    ("b_values", "n", "words"),
    [([0, 800], 3, "one b-value per volume"), ([800, 800], 2, "two distinct"), ([0, -5], 2, ">= 0"),
     ([0, 0.8], 2, "units"), (["zero", 800], 2, "numbers")],
)
def test_bad_b_values_are_named(b_values, n, words):
    with pytest.raises(InputError, match=words):
        check_b_values(b_values, n)


def test_weighted_fit_recovers_adc_and_ignores_masked_and_non_positive():
    b = np.array([0.0, 50.0, 400.0, 800.0])
    adc = np.array([0.5e-3, 1.0e-3, 3.0e-3])
    signals = 800.0 * np.exp(-b[:, None] * adc[None, :])
    signals = np.concatenate([signals, np.array([[100.0], [0.0], [0.0], [0.0]])], axis=1)
    fitted, s0 = fit_adc(signals, b, mask=np.array([True, True, True, True]))
    np.testing.assert_allclose(fitted[:3], adc, rtol=1e-6)  # float32 maps
    np.testing.assert_allclose(s0[:3], 800.0, rtol=1e-6)
    assert fitted[3] == 0.0 and s0[3] == 0.0  # one positive signal: no fit, not a made-up number
    masked, _ = fit_adc(signals, b, mask=np.array([True, False, True, False]))
    assert masked[1] == 0.0 and masked[0] == pytest.approx(0.5e-3)


def test_b_value_text_parsing():
    from virtualbiopsy.diffusion import parse_b_values

    assert parse_b_values(" 0, 50;400 ,800 ") == [0.0, 50.0, 400.0, 800.0]
    with pytest.raises(InputError, match="not numbers"):
        parse_b_values("0, fifty")
