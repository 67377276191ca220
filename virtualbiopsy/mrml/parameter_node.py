"""A module's parameters (the library's dataclasses) stored in its parameter node, so a panel's state is
saved with the scene, restored on scene load and scriptable.

The node is Slicer's ``vtkMRMLScriptedModuleNode`` of the module (one per scene, found by module name, the
convention of ``ScriptedLoadableModuleLogic.getParameterNode``); each field is one parameter, named
``<prefix><field>`` (nested dataclasses: ``<prefix><field>.<subfield>``), its value JSON text. Written
by hand rather than with ``slicer.parameterNodeWrapper`` because that imports Qt, and the library and
its tests must not (the widget layer may wrap the same dataclasses).

A scene file is untrusted: values are read with ``json.loads`` only and checked against the field's type;
a value of the wrong type is refused with an :class:`~virtualbiopsy.errors.InputError` naming the
parameter, never coerced into something else.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing

from virtualbiopsy.errors import InputError

NODE_CLASS = "vtkMRMLScriptedModuleNode"


def parameter_node(context, module: str, create: bool = True):
    """The scene's parameter node of ``module`` (the first scripted-module node with that module name),
    created (as a singleton) when there is none and ``create``; None otherwise."""
    scene = context.scene
    for index in range(scene.GetNumberOfNodesByClass(NODE_CLASS)):
        node = scene.GetNthNodeByClass(index, NODE_CLASS)
        if node.GetModuleName() == module:
            return node
    if not create:
        return None
    node = scene.CreateNodeByClass(NODE_CLASS)
    node.UnRegister(None)
    node.SetModuleName(module)
    node.SetSingletonTag(module)
    node.SetName(f"{module} parameters")
    return scene.AddNode(node)


def write_parameters(node, values, prefix: str = "") -> None:
    """Store every field of the dataclass instance ``values`` in ``node`` (one undoable modification)."""
    if not dataclasses.is_dataclass(values) or isinstance(values, type):
        raise TypeError(f"write_parameters needs a dataclass instance, got {type(values).__name__}")
    was = node.StartModify()
    try:
        for field in dataclasses.fields(values):
            value = getattr(values, field.name)
            name = f"{prefix}{field.name}"
            if dataclasses.is_dataclass(value):
                write_parameters(node, value, f"{name}.")
            else:
                node.SetParameter(name, json.dumps(_plain(value)))
    finally:
        node.EndModify(was)


def read_parameters(node, cls, prefix: str = ""):
    """An instance of dataclass ``cls`` from ``node``: each stored field checked against its type, the
    default for a field the node does not hold (a scene saved before the field existed)."""
    hints = typing.get_type_hints(cls)
    given = {}
    for field in dataclasses.fields(cls):
        name = f"{prefix}{field.name}"
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            given[field.name] = read_parameters(node, kind, f"{name}.")
            continue
        if not node.GetParameter(name):
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise InputError(f"{node.GetName()!r} lacks the parameter '{name}', which has no default.")
            continue  # not stored: the field's default
        try:
            value = json.loads(node.GetParameter(name))
        except json.JSONDecodeError as error:
            raise InputError(f"Parameter '{name}' of {node.GetName()!r} is not valid JSON ({error.msg}).") from None
        given[field.name] = _typed(value, kind, name)
    return cls(**given)


def _plain(value):
    """JSON-ready: tuples as lists, the rest as it is (str, int, float, bool, None, lists, dicts)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"parameter value {value!r} of type {type(value).__name__} cannot be stored")


def _typed(value, kind, name: str):
    """``value`` (from JSON) as ``kind`` (a field annotation), or an InputError naming the parameter."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in arguments:
            return None
        problems = []
        for option in (a for a in arguments if a is not type(None)):
            try:
                return _typed(value, option, name)
            except InputError as error:
                problems.append(str(error))
        raise InputError(problems[0] if len(problems) == 1 else f"Parameter '{name}' has an unexpected value "
                         f"{value!r}.")
    if kind is typing.Any:
        return value
    if origin in (tuple, list) or kind in (tuple, list):
        if not isinstance(value, list):
            raise InputError(f"Parameter '{name}' must be a list, got {value!r}.")
        inner = arguments[0] if arguments else typing.Any
        items = [_typed(v, inner, name) for v in value]
        return tuple(items) if (origin or kind) is tuple else items
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise InputError(f"Parameter '{name}' must be a mapping, got {value!r}.")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise InputError(f"Parameter '{name}' must be true or false, got {value!r}.")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"Parameter '{name}' must be a whole number, got {value!r}.")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"Parameter '{name}' must be a number, got {value!r}.")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise InputError(f"Parameter '{name}' must be text, got {value!r}.")
        return value
    raise TypeError(f"parameter '{name}': fields of type {kind!r} cannot be stored")
