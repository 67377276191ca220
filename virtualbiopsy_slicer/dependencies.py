"""Install a module's missing Python packages into Slicer's Python, after asking the user.

The list of packages, their versions and the install decisions (what is missing, what needs a
restart) belong to the library (``virtualbiopsy.dependencies``); this file only supplies Slicer's
ways to ask, to pip-install, to install PyTorch and to restart. PyTorch is installed by the PyTorch
extension (``PyTorchUtils`` module, a dependency of this extension), which picks the build that
matches the computer's GPU driver.
"""

from __future__ import annotations

import logging

import slicer
from packaging.requirements import Requirement

from virtualbiopsy.dependencies import ensure_requirements
from virtualbiopsy_slicer.i18n import tr as _
from virtualbiopsy_slicer.progress import busy_cursor


def ensure(group: str, parent=None) -> list[str]:
    """Make sure the packages of the dependency group ``group`` (e.g. ``"FitClusterFit"``) are installed.

    Asks before installing anything; declining raises :class:`~virtualbiopsy.errors.DependencyError`.
    When the new packages only work after a restart, raises
    :class:`~virtualbiopsy.dependencies.RestartRequiredError` (so the action does not run on the old ones;
    :func:`~virtualbiopsy_slicer.errors.show_error` offers the restart). Returns the requirement strings
    that were installed (empty when everything was already there).
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
        _("The {group} module needs these Python packages, which are not installed yet:\n\n{listing}\n\n"
          "Install them now? This downloads them from the internet and can take several minutes;"
          " Slicer does not respond meanwhile.").format(group=group, listing=listing),
        windowTitle=_("Virtual Biopsy: install Python packages"),
        parent=parent,
    )


def _pip_install(arguments: list[str]) -> None:
    # A requirement plus its pip options (e.g. --no-build-isolation); as a list, so that
    # slicer.util.pip_install passes each item as one command-line argument.
    with busy_cursor():
        slicer.util.pip_install(list(arguments))


def _torch_installer():
    """``install_torch(spec)`` through the PyTorch extension, or None when it is not installed.

    ``installTorch`` raises when light-the-torch or pip fails (the library turns that into a one-line
    DependencyError); with ``askConfirmation=False`` it never returns None.
    """
    if not hasattr(slicer.modules, "pytorchutils"):
        return None

    def install_torch(spec: str) -> None:
        import PyTorchUtils  # the PyTorch extension's module, importable once it is loaded

        # installTorch wants only the version part (">=2.3,!=2.9.*") and prepends "torch" itself.
        with busy_cursor():
            PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=False, torchVersionRequirement=str(Requirement(spec).specifier) or None
            )

    return install_torch
