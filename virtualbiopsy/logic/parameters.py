"""Each module's parameters, as the library's dataclasses, in the scene's parameter node of the module
(:mod:`virtualbiopsy.mrml.parameter_node`): saved with the scene, restored on load, scriptable.

``MODULE_PARAMETERS`` says which dataclasses make up each module's panel state, under a group name that
prefixes their parameters (``segment.device``, ``reduction.factors.rule``...).
"""

from __future__ import annotations

from virtualbiopsy.errors import InputError
from virtualbiopsy.habitats.pipeline import DceParameters, FitClusterFitParameters
from virtualbiopsy.logic.neuroblastoma_seg import SegmentParameters
from virtualbiopsy.logic.outcome_predictor import GradCamParameters, SurvivalParameters, TrainModelParameters
from virtualbiopsy.mrml.parameter_node import parameter_node, read_parameters, write_parameters
from virtualbiopsy.radiomics.extraction import ExtractionParameters
from virtualbiopsy.signature.combat import ComBatParameters
from virtualbiopsy.signature.reduction import ReductionParameters

MODULE_PARAMETERS: dict[str, dict[str, type]] = {
    "NeuroblastomaSeg": {"segment": SegmentParameters},
    "RadiomicsBiomarkers": {"extraction": ExtractionParameters, "reduction": ReductionParameters,
                            "combat": ComBatParameters},
    "FitClusterFit": {"fcf": FitClusterFitParameters, "dce": DceParameters},
    "OutcomePredictor": {"train": TrainModelParameters, "survival": SurvivalParameters,
                         "gradcam": GradCamParameters},
}


def save_module_parameters(context, module: str, **groups) -> object:
    """Store the given groups (``segment=SegmentParameters(...)``) in ``module``'s parameter node (made when
    the scene has none); returns the node."""
    known = MODULE_PARAMETERS[module]
    node = parameter_node(context, module)
    for group, values in groups.items():
        if group not in known or not isinstance(values, known[group]):
            raise TypeError(f"{module} has no parameter group {group!r} of type {type(values).__name__}")
        write_parameters(node, values, f"{group}.")
    return node


def load_module_parameters(context, module: str, required: tuple[str, ...] = ()) -> dict:
    """``{group: dataclass instance}`` from ``module``'s parameter node: the groups it holds (a group with
    a field without default, e.g. the segmentation's model path, only when stored) and those in
    ``required`` (an :class:`~virtualbiopsy.errors.InputError` when they cannot be read)."""
    node = parameter_node(context, module, create=False)
    out = {}
    for group, cls in MODULE_PARAMETERS[module].items():
        stored = node is not None and any(name.startswith(f"{group}.") for name in node.GetParameterNames())
        if node is not None and (stored or group in required or _has_defaults(cls)):
            out[group] = read_parameters(node, cls, f"{group}.")
        elif _has_defaults(cls):
            out[group] = cls()
        elif group in required:
            raise InputError(f"The scene has no {module} parameters (needed: {group}).")
    return out


def _has_defaults(cls) -> bool:
    import dataclasses

    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cls))
