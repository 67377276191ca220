"""Which Python packages a module needs, what is missing, and installing it after confirmation.

Missing packages are found from installed distribution metadata (``importlib.metadata``),
without importing them: importing torch or nnunetv2 just to check would take seconds and could
fail half-way. Installing is done by callables the caller provides (``slicer.util.pip_install``
in Slicer, pip in a subprocess headless), only after ``confirm`` returns True.

>>> [r.name for r in requirements_for("FitClusterFit")]
['scikit-learn', 'matplotlib']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from importlib.resources import files

from virtualbiopsy.errors import DependencyError

_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)\s*(==|>=)\s*([A-Za-z0-9_.+\-]+)\s*(.*)$")


@dataclass(frozen=True)
class Requirement:
    """One pinned package: ``name==version`` (or ``>=``) plus extra pip options."""

    name: str
    operator: str
    version: str
    pip_options: tuple[str, ...] = field(default=())

    @property
    def spec(self) -> str:
        return f"{self.name}{self.operator}{self.version}"

    def installed_version(self) -> str | None:
        try:
            return metadata.version(self.name)
        except metadata.PackageNotFoundError:
            return None

    def is_satisfied(self) -> bool:
        installed = self.installed_version()
        if installed is None:
            return False
        have, want = _release(installed), _release(self.version)
        return have == want if self.operator == "==" else have >= want


def _release(version: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0): the numeric release part, ignoring local labels."""
    parts = re.split(r"[.+]", version)
    numbers = []
    for part in parts:
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def parse_requirements(text: str) -> dict[str, list[Requirement]]:
    """Parse the ``[Group]`` sections of requirements_slicer.txt."""
    groups: dict[str, list[Requirement]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1], [])
            continue
        match = _REQUIREMENT.match(line)
        if match is None or current is None:
            raise ValueError(f"Bad line in the requirements list: {raw!r}")
        name, operator, version, options = match.groups()
        current.append(Requirement(name, operator, version, tuple(options.split())))
    return groups


def all_requirements() -> dict[str, list[Requirement]]:
    text = files("virtualbiopsy").joinpath("requirements_slicer.txt").read_text()
    return parse_requirements(text)


def requirements_for(group: str) -> list[Requirement]:
    groups = all_requirements()
    if group not in groups:
        raise DependencyError(f"Unknown module '{group}'; known: {', '.join(groups)}.")
    return groups[group]


def missing_requirements(group: str) -> list[str]:
    """The requirement strings of ``group`` that are not installed at a suitable version."""
    return [r.spec for r in requirements_for(group) if not r.is_satisfied()]


def ensure_requirements(
    group: str,
    confirm: Callable[[list[str]], bool],
    pip_install: Callable[[list[str]], None],
    install_torch: Callable[[str], None] | None = None,
) -> list[str]:
    """Install what ``group`` lacks after ``confirm(missing)`` agrees; returns what was installed.

    torch goes through ``install_torch`` (the PyTorch extension) when given, since a plain pip
    install inside Slicer may pick a build that does not match the GPU driver. Raises
    :class:`DependencyError` if the user declines or an install leaves a package missing.
    """
    missing = [r for r in requirements_for(group) if not r.is_satisfied()]
    if not missing:
        return []
    specs = [r.spec for r in missing]
    if not confirm(specs):
        raise DependencyError(
            f"{group} needs these Python packages, which are not installed: {', '.join(specs)}. "
            "Nothing was changed; apply again and accept the installation to continue."
        )
    for requirement in missing:
        if requirement.name == "torch" and install_torch is not None:
            install_torch(requirement.spec)
        else:
            pip_install([requirement.spec, *requirement.pip_options])
    still = [r.spec for r in missing if not r.is_satisfied()]
    if still:
        raise DependencyError(
            f"Installation finished but these packages are still missing or at another version: "
            f"{', '.join(still)}. See the Python console for pip's messages."
        )
    return specs


class LazyModule:
    """A module imported on first attribute access.

    Logic modules are imported when Slicer loads the module panels, before the user has been
    asked to install optional packages (pandas, scikit-learn, ...); importing those lazily keeps
    every panel loadable, and the step that needs them checks its dependency group first.

    >>> json = LazyModule("json")
    >>> json.dumps([1])
    '[1]'
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str):
        import importlib

        module = importlib.import_module(self.__dict__["_name"])
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<lazily imported module '{self._name}'>"
