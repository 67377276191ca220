"""Each module's parameters (the library's dataclasses) live in the scene's parameter node of the module:
they survive a saved and reloaded scene bundle exactly, take their defaults where a scene lacks them, and a
scene file (untrusted) cannot put a value of the wrong type, or code, into them."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest

from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.parameters import MODULE_PARAMETERS, load_module_parameters, save_module_parameters
from virtualbiopsy.mrml import MRMLContext, io
from virtualbiopsy.mrml.parameter_node import parameter_node


def _changed(value, kind):
    """A value of type ``kind`` different from ``value`` (every field moved off its default)."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        return _all_changed(value)
    if origin in (typing.Union, types.UnionType):  # the first non-None type, from its example when None
        option = next(a for a in arguments if a is not type(None))
        return _changed(value if value is not None else _example(option), option)
    if kind is bool:
        return not value
    if kind is int:
        return (value or 0) + 3
    if kind is float:
        return (value or 0.0) * 2 + 0.25
    if kind is str:
        return f"{value or ''}changed ünïcode \"quoted\""
    if origin is tuple or kind is tuple:
        inner = arguments[0] if arguments else str
        return (_example(inner), _example(inner))
    if origin is list or kind is list:
        inner = arguments[0] if arguments else str
        return [_example(inner)]
    if origin is dict or kind is dict:
        return {"binWidth": 10, "nested": {"a": [1, 2]}}
    raise AssertionError(f"no example for {kind}")


def _example(kind):
    return {bool: True, int: 7, float: 1.5, str: "x"}.get(kind, "x")


def _all_changed(values):
    hints = typing.get_type_hints(type(values))
    return dataclasses.replace(values, **{f.name: _changed(getattr(values, f.name), hints[f.name])
                                          for f in dataclasses.fields(values)})


def _defaults(cls):
    required = {f.name: "/models/Dataset990.zip" for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    return cls(**required)


@pytest.mark.parametrize("module", sorted(MODULE_PARAMETERS))
def test_a_modules_parameters_round_trip_through_a_saved_and_reloaded_scene_bundle(module, tmp_path):
    context = MRMLContext.create()
    groups = {group: _all_changed(_defaults(cls)) for group, cls in MODULE_PARAMETERS[module].items()}
    for group, values in groups.items():
        assert values != _defaults(type(values)), f"{group}: the test must move every field off its default"
    save_module_parameters(context, module, **groups)
    bundle = io.save_scene(context, tmp_path / "scene.mrb")
    reloaded = MRMLContext.create()
    io.load_scene(reloaded, bundle)
    assert load_module_parameters(reloaded, module) == groups


def test_one_parameter_node_per_module_found_again_by_name():
    context = MRMLContext.create()
    node = parameter_node(context, "FitClusterFit")
    assert parameter_node(context, "FitClusterFit") is node
    assert parameter_node(context, "OutcomePredictor") is not node
    assert parameter_node(context, "NeuroblastomaSeg", create=False) is None


def test_a_scene_without_the_parameters_gives_the_defaults():
    context = MRMLContext.create()
    loaded = load_module_parameters(context, "FitClusterFit")
    assert loaded == {group: cls() for group, cls in MODULE_PARAMETERS["FitClusterFit"].items()}
    assert "segment" not in load_module_parameters(context, "NeuroblastomaSeg")  # its model path has no default
    with pytest.raises(InputError, match="no NeuroblastomaSeg parameters"):
        load_module_parameters(context, "NeuroblastomaSeg", required=("segment",))


def test_a_parameter_added_after_the_scene_was_saved_takes_its_default():
    context = MRMLContext.create()
    node = save_module_parameters(context, "FitClusterFit", dce=MODULE_PARAMETERS["FitClusterFit"]["dce"](60.0))
    node.UnsetParameter("dce.arrival")
    assert load_module_parameters(context, "FitClusterFit")["dce"].arrival == "region"


@pytest.mark.parametrize("name, text, message", [
    ("segment.mirroring", '"yes"', "must be true or false"),
    ("segment.tile_step_size", '"0.5"', "must be a number"),
    ("segment.folds", '{"a": 1}', "must be a list"),
    ("segment.device", '__import__("os").system("echo pwned")', "not valid JSON"),
    ("segment.uncertain_threshold", "true", "must be a number"),
], ids=["text-for-a-switch", "text-for-a-number", "mapping-for-a-list", "code", "switch-for-a-number"])
def test_a_scene_value_of_the_wrong_type_is_refused_naming_the_parameter(name, text, message):
    from virtualbiopsy.logic.neuroblastoma_seg import SegmentParameters

    context = MRMLContext.create()
    node = save_module_parameters(context, "NeuroblastomaSeg", segment=SegmentParameters("/models/m.zip"))
    node.SetParameter(name, text)
    with pytest.raises(InputError, match=message) as refused:
        load_module_parameters(context, "NeuroblastomaSeg")
    assert name in str(refused.value)
