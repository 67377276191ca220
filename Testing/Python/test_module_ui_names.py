"""Static check of the Slicer panels (3D Slicer itself cannot run here): every child widget a module
file, the shared widget base or a shared panel it uses reaches (``ui.<name>``, or by name in
``inputSignals``) exists in the module's ``.ui`` file, so a renamed widget fails here, not in Slicer."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("NeuroblastomaSeg", "RadiomicsBiomarkers", "FitClusterFit", "OutcomePredictor")
SHARED = ("virtualbiopsy_slicer/module.py",)
UI_NAME = re.compile(r"\bui\.([A-Za-z_]\w*)")
PANEL_IMPORT = re.compile(r"from virtualbiopsy_slicer\.(\w+) import")
SIGNAL_PAIR = re.compile(r'\("(\w+)",\s*"\w+\(')  # ("childWidgetName", "signal(...)") in inputSignals


def widget_names(ui_file: Path) -> set[str]:
    return {w.get("name") for w in ET.parse(ui_file).iter("widget")}


def referenced_names(module: str) -> dict[str, str]:
    """{widget name: file that uses it} for the module file, the shared base and the panels it imports."""
    module_file = ROOT / module / f"{module}.py"
    files = [module_file, *(ROOT / s for s in SHARED)]
    files += [ROOT / "virtualbiopsy_slicer" / f"{m}.py" for m in PANEL_IMPORT.findall(module_file.read_text())
              if m.endswith("_panel")]
    names = {}
    for path in files:
        text = path.read_text()
        for name in UI_NAME.findall(text) + SIGNAL_PAIR.findall(text):
            names.setdefault(name, path.name)
    return names


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_name_the_code_uses_exists_in_the_ui_file(module):
    present = widget_names(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    missing = {name: where for name, where in referenced_names(module).items() if name not in present}
    assert not missing, f"{module}: widgets used in code but absent from {module}.ui: {missing}"


def test_the_patterns_find_the_names(tmp_path):
    ui = tmp_path / "M.ui"
    ui.write_text('<ui><widget class="QWidget" name="M"><widget class="QPushButton" name="okButton"/></widget></ui>')
    assert widget_names(ui) == {"M", "okButton"}
    code = 'inputSignals = (("tableSelector", "currentNodeChanged(vtkMRMLNode*)"),)\nself.ui.okButton.enabled = ui.x.y'
    assert UI_NAME.findall(code) == ["okButton", "x"] and SIGNAL_PAIR.findall(code) == ["tableSelector"]
    assert {"okButton", "tableSelector"} - widget_names(ui) == {"tableSelector"}
