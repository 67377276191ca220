"""Which Python packages a module needs, what is missing, and installing it after confirmation.

Missing packages are found from installed distribution metadata (``importlib.metadata``),
without importing them: importing torch or nnunetv2 just to check would take seconds and could
fail half-way. Installing is done by callables the caller provides (``slicer.util.pip_install``
in Slicer, pip in a subprocess headless), only after ``confirm`` returns True. A package that this
process has already imported keeps running at its old version until the application restarts:
installing another version of it ends in :class:`RestartRequiredError`.

>>> [r.name for r in requirements_for("FitClusterFit")]
['scikit-learn', 'matplotlib']
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from importlib.resources import files

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as PackagingRequirement
from packaging.specifiers import SpecifierSet

from virtualbiopsy.errors import DependencyError


class RestartRequiredError(DependencyError):
    """Packages were installed at another version than the one this process has already imported;
    they take effect after the application restarts. ``packages`` names them."""

    def __init__(self, message: str, packages: list[str]) -> None:
        super().__init__(message)
        self.packages = packages


@dataclass(frozen=True)
class Requirement:
    """One line of requirements_slicer.txt: a PEP 508 requirement plus extra pip options.

    >>> r = Requirement.parse("pyradiomics==3.0.1 --no-build-isolation")
    >>> r.name, r.spec, r.pip_options, r.allows("3.0.1")
    ('pyradiomics', 'pyradiomics==3.0.1', ('--no-build-isolation',), True)
    """

    requirement: PackagingRequirement
    pip_options: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, line: str) -> Requirement:
        """``"name<specifier> [pip options]"``; raises ValueError for anything else."""
        text, *options = line.split(" --", 1)
        try:
            requirement = PackagingRequirement(text.strip())
        except InvalidRequirement as error:
            raise ValueError(f"Bad requirement {line!r}: {error}") from error
        return cls(requirement, tuple(("--" + options[0]).split()) if options else ())

    @property
    def name(self) -> str:
        return self.requirement.name

    @property
    def specifier(self) -> SpecifierSet:
        return self.requirement.specifier

    @property
    def spec(self) -> str:
        """The requirement as pip takes it, e.g. ``"torch!=2.9.*,>=2.3"``."""
        return str(self.requirement)

    def allows(self, version: str) -> bool:
        """Whether ``version`` meets the specifier; a local label (``2.13.0+cpu``) is ignored by ``==``."""
        return self.specifier.contains(version, prereleases=True)

    def installed_version(self) -> str | None:
        try:
            return metadata.version(self.name)
        except metadata.PackageNotFoundError:
            return None

    def is_satisfied(self) -> bool:
        installed = self.installed_version()
        return installed is not None and self.allows(installed)

    def needs_restart(self) -> bool:
        """Whether installing this requirement now would need an application restart to take effect:
        it is not satisfied, and a module of the installed distribution is already imported in this
        process (Python keeps the imported version until the process ends)."""
        return not self.is_satisfied() and imported(self.name)


def import_names(distribution: str) -> set[str]:
    """The top-level module names an installed distribution provides (empty if it is not installed).

    From ``top_level.txt`` where the distribution has one, else from its list of files (wheels built
    without setuptools, e.g. scikit-learn -> ``sklearn``). Works on Python 3.9 (Slicer 5.8), which
    lacks ``importlib.metadata.packages_distributions``.
    """
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return set()
    top_level = dist.read_text("top_level.txt")
    if top_level:
        return {line.strip() for line in top_level.splitlines() if line.strip()}
    names = set()
    for path in dist.files or ():
        first = path.parts[0]
        if first in ("..", "__pycache__") or first.endswith((".dist-info", ".egg-info", ".data", ".pth")):
            continue
        module_file = len(path.parts) == 1 and first.endswith((".py", ".so", ".pyd"))
        name = first.split(".", 1)[0] if module_file else first if len(path.parts) > 1 else ""
        if name.isidentifier():  # not e.g. scikit_learn.libs (bundled shared libraries)
            names.add(name)
    return names


def imported(distribution: str) -> bool:
    """Whether this process has imported any top-level module of ``distribution``."""
    return any(name in sys.modules for name in import_names(distribution))


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
        if current is None:
            raise ValueError(f"Bad line in the requirements list (before any [Group]): {raw!r}")
        current.append(Requirement.parse(line))
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


def restart_before_install(requirement: Requirement) -> bool:
    """Whether ``requirement`` can only be installed after a restart: it is torch, not satisfied, and
    already loaded (by another extension, say). A loaded torch's native libraries cannot be replaced
    (on Windows the files are locked), and replacing them under a running torch breaks it."""
    return requirement.name == "torch" and requirement.needs_restart()


def ensure_requirements(
    group: str,
    confirm: Callable[[list[str]], bool],
    pip_install: Callable[[list[str]], None],
    install_torch: Callable[[str], None] | None = None,
) -> list[str]:
    """Install what ``group`` lacks after ``confirm(missing)`` agrees; returns what was installed.

    torch goes through ``install_torch`` (the PyTorch extension) when given, since a plain pip
    install inside Slicer may pick a build that does not match the GPU driver. Raises
    :class:`DependencyError` if the user declines, an install fails (its reason in one line) or
    leaves a package missing; :class:`RestartRequiredError` when a loaded torch would have to be replaced
    (nothing is installed) or when an installed package was already imported at another version.
    """
    missing = [r for r in requirements_for(group) if not r.is_satisfied()]
    if not missing:
        return []
    for requirement in missing:
        if restart_before_install(requirement):
            raise RestartRequiredError(
                f"{group} needs {requirement.spec}, but PyTorch {requirement.installed_version()} is already loaded"
                " (by another module) and cannot be replaced while it runs. Nothing was changed: restart Slicer,"
                f" then apply in {group} first.", [requirement.name])
    specs = [r.spec for r in missing]
    if not confirm(specs):
        raise DependencyError(
            f"{group} needs these Python packages, which are not installed: {', '.join(specs)}. "
            "Nothing was changed; apply again and accept the installation to continue."
        )
    restart = [r.name for r in missing if r.needs_restart()]  # decided before installing changes the metadata
    for requirement in missing:
        _install(requirement, pip_install, install_torch)
    still = [r.spec for r in missing if not r.is_satisfied()]
    if still:
        raise DependencyError(
            f"Installation finished but these packages are still missing or at another version: "
            f"{', '.join(still)}. See the Python console for pip's messages."
        )
    if restart:
        raise RestartRequiredError(
            f"Installed {', '.join(specs)}. {', '.join(restart)} had already been loaded at its old version:"
            " restart Slicer to use the new one, then apply again.", restart)
    return specs


def _install(requirement: Requirement, pip_install, install_torch) -> None:
    """One requirement through the PyTorch installer or pip; a failure as one DependencyError line."""
    through_extension = requirement.name == "torch" and install_torch is not None
    try:
        if through_extension:
            install_torch(requirement.spec)
        else:
            pip_install([requirement.spec, *requirement.pip_options])
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        if through_extension:
            raise DependencyError(
                f"PyTorch ({requirement.spec}) could not be installed: {reason}. Install it in the PyTorch Utils"
                " module (Utilities category), restart Slicer and apply again.") from error
        raise DependencyError(
            f"Installing {requirement.spec} failed: {reason}. See the Python console for pip's messages.") from error


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
