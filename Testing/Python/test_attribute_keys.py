"""Node-attribute keys are named constants in one place (virtualbiopsy/attributes.py), shared by the logic,
the widgets, the command line and the viewer: no key is spelled out anywhere else."""

from __future__ import annotations

import ast
from pathlib import Path

from virtualbiopsy import attributes

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("virtualbiopsy", "virtualbiopsy_slicer", "virtualbiopsy_web", "NeuroblastomaSeg", "RadiomicsBiomarkers",
          "FitClusterFit", "OutcomePredictor")


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_attribute_key_is_spelled_out_outside_the_attributes_module():
    spelled = []
    for layer in LAYERS:
        for path in sorted((ROOT / layer).rglob("*.py")):
            if path == Path(attributes.__file__):
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            docs = _docstrings(tree)
            for node in ast.walk(tree):
                if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
                        and node.value.startswith(attributes.PREFIX) and len(node.value) > len(attributes.PREFIX)):
                    spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert spelled == []


def test_every_key_is_distinct_and_under_the_project_prefix():
    keys = {name: value for name, value in vars(attributes).items() if name.isupper() and name != "PREFIX"}
    assert len(set(keys.values())) == len(keys), "two names for one key"
    outside = {n: v for n, v in keys.items() if not v.startswith(attributes.PREFIX)}
    assert outside == {"DICOM_INSTANCE_UIDS": "DICOM.instanceUIDs"}  # Slicer's own key, read, never invented
