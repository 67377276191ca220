"""Static check: the shared library and every module's Logic stay free of Qt and of Slicer's
application-only API, so the same logic runs inside Slicer and headless on slicer-core."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("NeuroblastomaSeg", "RadiomicsBiomarkers", "FitClusterFit", "OutcomePredictor")
FORBIDDEN_MODULES = ("qt", "ctk", "slicer.util", "slicer.ScriptedLoadableModule", "slicer.parameterNodeWrapper",
                     "PythonQt", "qSlicerBaseQTCorePythonQt")
FORBIDDEN_ATTRIBUTES = ("slicer.util", "slicer.app", "slicer.mrmlScene", "slicer.modules", "slicer.qSlicer")


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _is_forbidden(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def qt_violations(source: str, filename: str = "<source>") -> list[str]:
    """Lines of ``source`` that import Qt / Slicer app-only modules or use app-only attributes."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if _is_forbidden(dotted, FORBIDDEN_ATTRIBUTES):
                found.append(f"{filename}:{node.lineno} uses {dotted}")
            continue
        found += [f"{filename}:{node.lineno} imports {n}" for n in names if _is_forbidden(n, FORBIDDEN_MODULES)]
    return found


def test_checker_catches_violations():
    assert qt_violations("import qt")
    assert qt_violations("from slicer.util import loadVolume")
    assert qt_violations("from slicer import util")
    assert qt_violations("import slicer\nslicer.util.loadVolume('x')")
    assert qt_violations("import slicer\nnode = slicer.mrmlScene.GetFirstNode()")
    assert not qt_violations("import slicer\nscene = slicer.vtkMRMLScene()")


@pytest.mark.parametrize("path", sorted((ROOT / "virtualbiopsy").rglob("*.py")), ids=lambda p: p.name)
def test_shared_library_is_qt_free(path):
    assert qt_violations(path.read_text(), str(path.relative_to(ROOT))) == []


@pytest.mark.parametrize("module", MODULES)
def test_module_logic_comes_from_the_library(module):
    """Module files may import Qt for their widget, but their Logic class is the library's."""
    tree = ast.parse((ROOT / module / f"{module}.py").read_text())
    defined = [node.name for node in tree.body if isinstance(node, ast.ClassDef)]
    assert f"{module}Logic" not in defined, "the Logic class must live in virtualbiopsy.logic (Qt-free)"
    imported = {alias.name: node.module for node in tree.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    assert imported.get(f"{module}Logic", "").startswith("virtualbiopsy.logic."), imported
    assert {f"{module}", f"{module}Widget", f"{module}Test"} <= set(defined)
