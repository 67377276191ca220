"""Install a module's missing Python packages into Slicer's Python, after asking the user.

The list of packages and their pinned versions belongs to the library
(``virtualbiopsy.dependencies``); this file only supplies Slicer's ways to ask, to pip-install and
to install PyTorch. PyTorch is installed by the PyTorch extension (``PyTorchUtils`` module, a
dependency of this extension), which picks the build that matches the computer's GPU driver.
"""

from __future__ import annotations

import logging
import re

import slicer

from virtualbiopsy.dependencies import ensure_requirements
from virtualbiopsy.errors import DependencyError
from virtualbiopsy_slicer.progress import busy_cursor


def ensure(group: str, parent=None) -> list[str]:
    """Make sure the packages a module (``group``, e.g. ``"FitClusterFit"``) needs are installed.

    Asks before installing anything; declining raises :class:`DependencyError`. Returns the
    requirement strings that were installed (empty when everything was already there).
    """
    installed = ensure_requirements(
        group,
        confirm=lambda requirements: _confirm(group, requirements, parent),
        pip_install=_pip_install,
        install_torch=_torch_installer(),
    )
    if installed:
        logging.info("Virtual Biopsy installed for %s: %s", group, ", ".join(installed))
    return installed


def _confirm(group: str, requirements: list[str], parent=None) -> bool:
    if slicer.app.testingEnabled():
        return True  # self-tests run unattended
    listing = "\n".join(f"  \N{BULLET} {requirement}" for requirement in requirements)
    return slicer.util.confirmOkCancelDisplay(
        f"The {group} module needs these Python packages, which are not installed yet:\n\n{listing}\n\n"
        "Install them now? This downloads them from the internet and can take several minutes;"
        " Slicer does not respond meanwhile.",
        windowTitle="Virtual Biopsy: install Python packages",
        parent=parent,
    )


def _pip_install(arguments: list[str]) -> None:
    # A pinned requirement plus its pip options (e.g. --no-build-isolation); as a list, so that
    # slicer.util.pip_install passes each item as one command-line argument.
    with busy_cursor():
        slicer.util.pip_install(list(arguments))


def _torch_installer():
    """``install_torch(spec)`` through the PyTorch extension, or None when it is not installed."""
    if not hasattr(slicer.modules, "pytorchutils"):
        return None

    def install_torch(spec: str) -> None:
        import PyTorchUtils  # the PyTorch extension's module, importable once it is loaded

        # The library passes a requirement ("torch>=2.4", "torch==2.5.1"); installTorch wants only the
        # version part (">=2.4") and prepends "torch" itself.
        version = re.sub(r"^\s*torch\b\s*", "", spec).strip() or None
        with busy_cursor():
            torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=version
            )
        if torch is None:
            raise DependencyError(
                f"PyTorch ({spec}) could not be installed. Install it from the 'PyTorch Utils' module"
                " (Utilities category), restart Slicer and try again."
            )

    return install_torch
