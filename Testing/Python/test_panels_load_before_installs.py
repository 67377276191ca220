"""Every module panel must load in a Slicer that has only what Slicer ships.

Slicer imports each module file at start-up, before the user has been asked to install the
module's packages (virtualbiopsy/requirements_slicer.txt). So the library modules a module file
imports, and the self-test registry, must not import those packages at import time. This test
imports them in a fresh interpreter in which the optional packages cannot be imported.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("NeuroblastomaSeg", "RadiomicsBiomarkers", "FitClusterFit", "OutcomePredictor")
# Installed on first use (requirements_slicer.txt), not shipped with Slicer.
OPTIONAL = ("pandas", "sklearn", "matplotlib", "torch", "radiomics", "nnunetv2", "lifelines", "shapiq", "captum",
            "neuroCombat", "joblib", "yaml")

BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
        return None
sys.meta_path.insert(0, Block())
import importlib
for name in {modules!r}:
    importlib.import_module(name)
print("imported", len({modules!r}))
"""


def library_imports(source_file: Path) -> list[str]:
    """The ``virtualbiopsy.*`` modules a module file imports at its top level, also through the
    Qt helpers of ``virtualbiopsy_slicer`` it imports (which cannot themselves load without Slicer)."""
    names = []
    for node in ast.parse(source_file.read_text()).body:
        modules = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in modules:
            if name.startswith("virtualbiopsy."):
                names.append(name)
            elif name.startswith("virtualbiopsy_slicer."):
                names += library_imports(ROOT / (name.replace(".", "/") + ".py"))
    return names


@pytest.mark.parametrize("module", MODULES)
def test_module_file_imports_load_without_optional_packages(module):
    names = library_imports(ROOT / module / f"{module}.py")
    names += ["virtualbiopsy.selftests", f"virtualbiopsy.logic.{_snake(module)}"]
    assert names
    result = subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=OPTIONAL, modules=sorted(set(names)))],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"{module}: {result.stderr.strip().splitlines()[-1]}"


def test_the_blocker_blocks():
    result = subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=OPTIONAL, modules=["pandas"])],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0 and "blocked by the test" in result.stderr


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
