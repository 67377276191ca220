"""Checks that each module's self-test runs, inside 3D Slicer and headless alike.

``<Module>Test.runTest`` in Slicer and the pytest suite both call :func:`run_module_checks`
with a scene context, so the in-app self-test exercises exactly what CI tests on slicer-core.
Each check builds a small synthetic study (seeded), runs the module's logic on real nodes,
compares against the phantom's truth, and feeds one bad input to confirm the error and that
the scene is left unchanged.
"""

from __future__ import annotations

import importlib

# Module -> its checks, as "submodule:function" of this package, imported only when run (a check
# may need packages that Slicer installs on the module's first use).
MODULE_CHECKS = {
    "NeuroblastomaSeg": ("neuroblastoma_seg_checks:check_neuroblastoma_seg",),
    "RadiomicsBiomarkers": ("radiomics_biomarkers_checks:check_radiomics_biomarkers",
                            "radiomics_signature_checks:check_radiomics_signature"),
    "FitClusterFit": ("fit_cluster_fit_checks:check_fit_cluster_fit",),
    "OutcomePredictor": ("outcome_predictor_checks:check_outcome_predictor",),
}


def required_packages(module_name: str) -> str:
    """The requirements group to install before running ``module_name``'s checks in Slicer.

    Each module with checks has a group of its name in ``virtualbiopsy/requirements_slicer.txt``;
    any other name needs only the Core group.
    """
    return module_name if module_name in MODULE_CHECKS else "Core"


def run_module_checks(module_name: str, context, workdir: str) -> None:
    """Run the checks of ``module_name``; raises AssertionError or a library error on failure."""
    if module_name not in MODULE_CHECKS:
        raise KeyError(f"No checks for module '{module_name}'; known: {', '.join(MODULE_CHECKS)}.")
    for check in MODULE_CHECKS[module_name]:
        submodule, function = check.split(":")
        getattr(importlib.import_module(f"{__name__}.{submodule}"), function)(context, workdir)
