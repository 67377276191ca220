"""Static check: the library's imports point one way and form no cycle.

The import graph of ``virtualbiopsy`` is read from the source (ast over every ``.py`` file): ``import
virtualbiopsy...``, ``from virtualbiopsy... import`` and relative imports at any depth, function-local
ones included, and modules named to ``LazyModule`` / ``importlib.import_module`` as constant strings.
Two rules: no cycle between modules, and the domain packages never import the layer that drives them
(``virtualbiopsy.logic``, the module Logic classes, and what sits above it: the command line, the demo,
the review session, the self-tests). :mod:`test_qt_free_logic` checks the other boundary, Qt.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "virtualbiopsy"

#: The layer over the Logic classes and the Logic classes themselves: everything else is domain code.
DRIVERS = ("logic", "cli", "demo", "demo_steps", "review", "selftests")
#: Domain packages named in the layering rule (every other non-driver module is checked as well).
DOMAIN_PACKAGES = ("prediction", "segmentation", "habitats", "radiomics", "signature", "dicom", "mrml", "phantom",
                   "report", "diffusion", "diffusion_shells")

#: Cycles that exist today, each as the set of its modules. The list may only shrink: a cycle not listed
#: fails the test, and so does a listed one that is gone (take it off the list).
KNOWN_CYCLES: list[frozenset] = []  # none left; a cycle found later is fixed, not listed

_LOADERS = ("LazyModule", "import_module")


def module_names(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """{dotted module name: (file, is a package ``__init__``)} for every ``.py`` file of ``root / package``."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def _known(name: str, modules) -> str | None:
    """``name`` if it is a module, else the innermost package or module that defines it."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imported_modules(source: str, module: str, is_package: bool, modules, package: str = PACKAGE) -> set[str]:
    """The modules of ``package`` that ``module``'s source imports, at any depth of its code."""
    base = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                parts = parts[:len(parts) - (node.level - 1)]
                origin = ".".join(parts + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            # ``from pkg import name``: the submodule pkg.name when there is one, else pkg itself
            names = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                     for alias in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in _LOADERS and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        for name in names:
            if name == package or name.startswith(package + "."):
                target = _known(name, modules)
                if target and target != module:
                    found.add(target)
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    """{module: the package's modules it imports} for every module of ``package`` under ``root``."""
    modules = module_names(root, package)
    return {name: imported_modules(path.read_text(), name, is_package, modules, package)
            for name, (path, is_package) in modules.items()}


def cycle_groups(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The groups of modules that import each other in a circle: strongly connected components of more
    than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(start: str) -> None:  # iterative, so a deep graph cannot hit the recursion limit
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        group.add(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(frozenset(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in stack:
                low[node] = min(low[node], index[child])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def cycle_path(group: frozenset[str], graph) -> list[str]:
    """A shortest import cycle inside ``group``, ``[a, b, ..., a]``, from its first module (breadth-first)."""
    start = min(group)
    previous = {start: None}
    queue = [start]
    for node in queue:
        for child in sorted(graph[node] & group):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return path[::-1] + [start]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def is_driver(module: str) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[1] in DRIVERS


# -- the checker itself, on a planted package -------------------------------------------------------------


@pytest.fixture
def planted(tmp_path) -> Path:
    """A package ``pkg`` whose imports take every form the checker must read, with one cycle a -> b -> c -> a."""
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.sub import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "def later():\n    from ..deep import c\n",
        "pkg/deep/__init__.py": "",
        "pkg/deep/c.py": "import pkg.a as alias\n",
        "pkg/lazy.py": "x = LazyModule('pkg.logic.step')\n",
        "pkg/logic/__init__.py": "",
        "pkg/logic/step.py": "from . import helpers\nfrom .helpers import name\n",
        "pkg/logic/helpers.py": "import os\nname = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_the_graph_reads_absolute_relative_function_local_and_lazy_imports(planted):
    graph = import_graph(planted, "pkg")
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.deep.c"}  # relative, inside a function
    assert graph["pkg.deep.c"] == {"pkg.a"}
    assert graph["pkg.lazy"] == {"pkg.logic.step"}
    assert graph["pkg.logic.step"] == {"pkg.logic.helpers"}  # `from . import module` and `from .module import name`
    assert graph["pkg.logic.helpers"] == set()


def test_a_cycle_is_found_and_reported_as_the_path_that_closes_it(planted):
    graph = import_graph(planted, "pkg")
    assert cycle_groups(graph) == [frozenset({"pkg.a", "pkg.sub.b", "pkg.deep.c"})]
    assert cycle_path(cycle_groups(graph)[0], graph) == ["pkg.a", "pkg.sub.b", "pkg.deep.c", "pkg.a"]
    assert cycle_groups({"x": {"y"}, "y": set()}) == []


# -- the library -------------------------------------------------------------------------------------------


def test_the_library_has_no_import_cycle_beyond_the_known_ones():
    graph = import_graph()
    found = cycle_groups(graph)
    new = [" -> ".join(cycle_path(group, graph)) + f" (of {sorted(group)})" for group in found
           if group not in KNOWN_CYCLES]
    gone = [sorted(group) for group in KNOWN_CYCLES if group not in found]
    assert not new, "import cycles: " + "; ".join(new)
    assert not gone, f"these known cycles are gone, take them off KNOWN_CYCLES: {gone}"


@pytest.mark.parametrize("package", DOMAIN_PACKAGES)
def test_a_domain_package_never_imports_the_logic_layer_or_what_drives_it(package):
    graph = import_graph()
    name = f"{PACKAGE}.{package}"
    inside = [m for m in graph if m == name or m.startswith(name + ".")]
    assert inside, f"no module {name}: update DOMAIN_PACKAGES"
    wrong = {m: sorted(t for t in graph[m] if is_driver(t)) for m in inside}
    assert {m: t for m, t in wrong.items() if t} == {}


def test_every_module_outside_the_drivers_is_domain_code():
    graph = import_graph()
    wrong = {m: sorted(t for t in targets if is_driver(t)) for m, targets in graph.items() if not is_driver(m)}
    assert {m: t for m, t in wrong.items() if t} == {}
