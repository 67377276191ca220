"""The Slicer module layer without Slicer: each module's action table, metadata, translatable strings and
logic protocol, and the library reload used by ``onReload``.

The action tables and strings are read statically from the module files; the metadata by loading each
module file in a fresh interpreter with stand-ins for the two Slicer modules that need a running Slicer
(``qt`` and ``slicer.ScriptedLoadableModule``); everything else is real (slicer-core's MRML and util).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from virtualbiopsy.dependencies import all_requirements

ROOT = Path(__file__).resolve().parents[2]
MODULES = ("NeuroblastomaSeg", "RadiomicsBiomarkers", "FitClusterFit", "OutcomePredictor")
BUTTON_CLASSES = ("QPushButton", "ctkPushButton", "QToolButton")
CORE_MODULES = ("Segmentations", "SegmentEditor", "Markups", "Plots", "Tables")


def module_tree(module: str) -> ast.Module:
    return ast.parse((ROOT / module / f"{module}.py").read_text())


def class_def(tree: ast.Module, name: str) -> ast.ClassDef:
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == name)


def action_table(module: str) -> list[tuple[str, str, str, bool]]:
    """``(button, method, dependency group, background)`` for each entry of the widget's ``actions``."""
    widget = class_def(module_tree(module), f"{module}Widget")
    assignment = next(node for node in widget.body if isinstance(node, ast.Assign)
                      and any(isinstance(t, ast.Name) and t.id == "actions" for t in node.targets))
    rows = []
    for key, value in zip(assignment.value.keys, assignment.value.values):
        assert isinstance(value, ast.Call) and value.func.id == "Action", ast.unparse(value)
        args = [ast.literal_eval(a) for a in value.args]
        background = next((ast.literal_eval(k.value) for k in value.keywords if k.arg == "background"),
                          args[2] if len(args) > 2 else False)
        rows.append((ast.literal_eval(key), args[0], args[1], background))
    return rows


def ui_buttons(module: str) -> set[str]:
    root = ET.parse(ROOT / module / "Resources" / "UI" / f"{module}.ui")
    return {w.get("name") for w in root.iter("widget") if w.get("class") in BUTTON_CLASSES}


def resolve(module: str, path: str) -> ast.FunctionDef | None:
    """The method a dotted action path names: the widget's own, or that of a panel it holds
    (``self.preprocessing = PreprocessingPanel(...)`` in the widget, the class in virtualbiopsy_slicer)."""
    widget = class_def(module_tree(module), f"{module}Widget")
    *holders, name = path.split(".")
    owner = widget
    for holder in holders:
        made = next(node.value.func.id for node in ast.walk(widget) if isinstance(node, ast.Assign)
                    and isinstance(node.targets[0], ast.Attribute) and node.targets[0].attr == holder
                    and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name))
        panel_file = next(p for p in (ROOT / "virtualbiopsy_slicer").glob("*_panel.py")
                          if f"class {made}" in p.read_text())
        owner = class_def(ast.parse(panel_file.read_text()), made)
    return next((n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


@pytest.mark.parametrize("module", MODULES)
def test_every_button_of_the_ui_has_exactly_one_action(module):
    buttons = [row[0] for row in action_table(module)]
    assert len(buttons) == len(set(buttons)), f"{module}: a button listed twice"
    assert set(buttons) == ui_buttons(module)


@pytest.mark.parametrize("module", MODULES)
def test_every_action_names_a_method_and_an_existing_dependency_group(module):
    groups = all_requirements()
    for button, method, group, background in action_table(module):
        assert group in groups, f"{module}.{button}: no [{group}] in requirements_slicer.txt"
        function = resolve(module, method)
        assert function is not None, f"{module}.{button}: no method {method}"
        returns_step = any(isinstance(n, ast.Return) and isinstance(n.value, ast.Call)
                           and getattr(n.value.func, "id", "") in ("BackgroundStep", "ProcessStep")
                           for n in ast.walk(function))
        assert returns_step == background, \
            f"{module}.{button}: a background action returns a BackgroundStep or a ProcessStep (and only it)"


@pytest.mark.parametrize("module", MODULES)
def test_buttons_run_only_through_the_shared_runner(module):
    source = (ROOT / module / f"{module}.py").read_text()
    defined = {n.name for n in ast.walk(module_tree(module)) if isinstance(n, ast.FunctionDef)}
    assert not defined & {"runAction", "apply", "onApplyButton"}, defined
    assert '"clicked(bool)"' not in source and "dependencies.ensure" not in source


def test_the_action_tables_pick_the_group_each_step_needs():
    groups = {(module, button): group for module in MODULES for button, _, group, _ in action_table(module)}
    assert groups[("NeuroblastomaSeg", "segmentButton")] == "NeuroblastomaSeg"  # torch, nnunetv2
    assert groups[("RadiomicsBiomarkers", "extractButton")] == "RadiomicsBiomarkers"  # pyradiomics
    assert groups[("FitClusterFit", "applyButton")] == "FitClusterFit"  # scikit-learn's mixture models
    assert all(groups[("OutcomePredictor", b)] == "OutcomePredictor"
               for b in ("trainButton", "applyModelButton", "survivalButton", "gradcamButton"))
    assert groups[("OutcomePredictor", "applyButton")] == "Core"  # joining tables needs only the library


LOADER = """
import importlib.util, json, sys, types
qt = types.ModuleType("qt")  # the widgets are not created here: only the module classes
sys.modules["qt"] = qt
stand_in = types.ModuleType("slicer.ScriptedLoadableModule")
class ScriptedLoadableModule:
    def __init__(self, parent):
        self.parent = parent
class ScriptedLoadableModuleWidget:
    def __init__(self, parent=None):
        pass
class ScriptedLoadableModuleTest:
    pass
for c in (ScriptedLoadableModule, ScriptedLoadableModuleWidget, ScriptedLoadableModuleTest):
    setattr(stand_in, c.__name__, c)
sys.modules["slicer.ScriptedLoadableModule"] = stand_in
found = {}
for name in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location(name, f"{name}/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parent = types.SimpleNamespace()
    getattr(module, name)(parent)
    found[name] = vars(parent)
found["documentationUrl"] = sys.modules["virtualbiopsy_slicer.module"].DOCUMENTATION_URL
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def metadata():
    result = subprocess.run([sys.executable, "-c", LOADER, *MODULES], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_extension_and_its_modules_share_one_category(metadata):
    category = re.search(r'set\(EXTENSION_CATEGORY "([^"]+)"\)', (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert {m: metadata[m]["categories"] for m in MODULES} == {m: [category] for m in MODULES}


@pytest.mark.parametrize("module", MODULES)
def test_help_links_to_the_documentation_and_has_no_unfilled_placeholder(metadata, module):
    url, help_text = metadata["documentationUrl"], metadata[module]["helpText"]
    homepage = re.search(r'set\(EXTENSION_HOMEPAGE "([^"]+)"\)', (ROOT / "CMakeLists.txt").read_text()).group(1)
    assert f'href="{url}"' in help_text and url.startswith(homepage)
    assert not re.search(r"\{\w*\}", help_text) and metadata[module]["title"]


def used_core_modules(module: str) -> set[str]:
    """The core modules a module's files show it uses (its .ui, its module file and the panels it imports)."""
    code = (ROOT / module / f"{module}.py").read_text()
    for panel in re.findall(r"from virtualbiopsy_slicer\.(\w+_panel) import", code):
        code += (ROOT / "virtualbiopsy_slicer" / f"{panel}.py").read_text()
    ui = (ROOT / module / "Resources" / "UI" / f"{module}.ui").read_text()
    evidence = {"Segmentations": "vtkMRMLSegmentationNode" in ui or "qMRMLSegmentSelectorWidget" in ui,
                "SegmentEditor": '"SegmentEditor"' in code, "Markups": "slicer.modules.markups" in code,
                "Plots": "slicer.modules.plots" in code, "Tables": "vtkMRMLTableNode" in ui or "showTable(" in code}
    return {name for name, used in evidence.items() if used}


@pytest.mark.parametrize("module", MODULES)
def test_dependencies_are_the_core_modules_the_module_uses(metadata, module):
    assert set(metadata[module]["dependencies"]) == used_core_modules(module)
    assert set(metadata[module]["dependencies"]) <= set(CORE_MODULES)


LAYER = [ROOT / m / f"{m}.py" for m in MODULES] + sorted((ROOT / "virtualbiopsy_slicer").glob("*.py"))


@pytest.mark.parametrize("path", LAYER, ids=lambda p: p.name)
def test_translated_strings_are_literals(path):
    """``_()`` gets one string literal (placeholders filled by ``.format`` after translation), so that the
    translation tools can extract it and a translation is looked up for the text the source holds."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("_", "translate"):
            texts = node.args[-1:] if node.func.id == "translate" else node.args
            assert len(texts) == 1 and isinstance(texts[0], ast.Constant) and isinstance(texts[0].value, str), \
                f"{path.name}:{node.lineno}: {ast.unparse(node)}"


@pytest.mark.parametrize("path", LAYER[:4], ids=lambda p: p.name)
def test_user_messages_of_the_module_files_are_translated(path):
    """Status lines (returned by actions or set as a label's text), error messages and dialog titles are
    not f-strings (an f-string cannot be translated); f-strings that build data (feature names) may stay."""
    messages = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Return) and node.value is not None:
            messages.append(node.value)
        elif isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            messages += node.exc.args
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("progress_dialog", "BackgroundStep"):
            messages += node.args + [k.value for k in node.keywords]
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "text"
                                                  for t in node.targets):
            messages.append(node.value)
    f_strings = [ast.unparse(m) for m in messages if any(isinstance(n, ast.JoinedStr) for n in ast.walk(m))]
    assert f_strings == []


def test_the_translation_fallback_returns_the_text_as_given():
    from virtualbiopsy_slicer.i18n import tr, translate

    assert tr("Segmenting the tumour") == "Segmenting the tumour"
    assert translate("qSlicerAbstractCoreModule", "Oncology") == "Oncology"


@pytest.mark.parametrize("module", MODULES)
def test_the_library_logic_accepts_what_the_widget_asks_of_it(module):
    import importlib

    from virtualbiopsy_slicer import protocols

    protocol = getattr(protocols, f"{module}LogicProtocol")
    logic = getattr(importlib.import_module(f"virtualbiopsy.logic.{_snake(module)}"), f"{module}Logic")
    for name, wanted in vars(protocol).items():
        if name.startswith("_") or not callable(wanted):
            continue
        assert hasattr(logic, name), f"{module}Logic has no {name}"
        asked = list(inspect.signature(wanted).parameters.values())[1:]
        offered = inspect.signature(getattr(logic, name)).parameters
        assert {p.name for p in asked} <= set(offered) | ({"options"} if "options" in offered else set()), name
        required = [p.name for p in asked if p.default is inspect.Parameter.empty and p.kind == p.POSITIONAL_OR_KEYWORD]
        assert list(offered)[1:1 + len(required)] == required, name


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def test_reload_imports_every_loaded_submodule_afresh(tmp_path):
    package = tmp_path / "vbreloaddemo"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "values.py").write_text("VALUE = 1\n")
    (package / "user.py").write_text("from vbreloaddemo.values import VALUE\n")
    (tmp_path / "vbreloaddemo_other.py").write_text("")
    output = subprocess.run([sys.executable, "-B", "-c", textwrap.dedent("""
        import importlib, pathlib, sys
        sys.path.insert(0, sys.argv[1])
        import vbreloaddemo.user, vbreloaddemo_other
        other = sys.modules["vbreloaddemo_other"]
        pathlib.Path(sys.argv[1], "vbreloaddemo", "values.py").write_text("VALUE = 22\\n")
        from virtualbiopsy_slicer.reloading import reloadPackages
        print(sorted(reloadPackages(("vbreloaddemo",))))
        print(sys.modules["vbreloaddemo.user"].VALUE, sys.modules["vbreloaddemo_other"] is other)
    """), str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert output.returncode == 0, output.stderr
    assert output.stdout.split("\n")[:2] == ["['vbreloaddemo', 'vbreloaddemo.user', 'vbreloaddemo.values']", "22 True"]
