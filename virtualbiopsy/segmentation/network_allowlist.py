"""What a model's ``plans.json``, ``dataset.json`` and checkpoint may name, checked before anything is imported.

nnU-Net turns names in these files into code: the network class and every ``_kw_requires_import``
value go through ``pydoc.locate`` (any importable callable, called with keyword arguments from the
file), and the preprocessor, normalisation, resampling, label manager and trainer names are looked
up as attributes of nnU-Net's modules. A crafted file could therefore run code
(``torch.hub.load`` with a local ``hubconf.py``, ``logging.basicConfig(filename=...)``, importing a
module planted on ``sys.path``). Here each such name must be one of an explicit allow-list, every
argument must be plain JSON data, and the network is built from the allow-listed classes directly,
never by resolving a string from the file. Anything else is refused with one line naming the entry.

Checked here, and where nnU-Net would resolve it on our inference path:

======================================  ==========================================================
``architecture.network_class_name``      a U-Net of ``dynamic_network_architectures`` (pydoc.locate)
``architecture._kw_requires_import``     torch.nn conv / norm / dropout / activation classes, the
                                          residual blocks of dynamic_network_architectures
``architecture.arch_kwargs``             plain JSON; keys are parameters of the class; numbers where
                                          the U-Nets need numbers; ``*_kwargs`` keys are parameters of
                                          the op they configure
``preprocessor_name``                    ``DefaultPreprocessor`` (recursive_find_python_class)
``normalization_schemes``                nnU-Net's five schemes (recursive_find_python_class)
``resampling_fn_*`` (+ ``_kwargs``)      nnU-Net's resampling functions; kwargs are their parameters
``label_manager``                        ``LabelManager`` (recursive_find_python_class)
``image_reader_writer``                  nnU-Net's reader classes (not used here: images are read by
                                          SimpleITK; checked so the folder is safe for nnU-Net too)
``inherits_from``                        another configuration of the file, without cycles
checkpoint ``trainer_name``              a Python identifier; looked up only among installed nnU-Net
                                          trainers, and only used when it builds its own network
======================================  ==========================================================

Not checked: ``experiment_planner_used`` and dataset.json's ``overwrite_image_reader_writer``
(never resolved when predicting), and whether the *weights* are any good.
"""

from __future__ import annotations

import inspect
import math
from copy import deepcopy

from virtualbiopsy.errors import FileFormatError

# dynamic_network_architectures.architectures.unet: the networks nnU-Net's planners write into plans.json
# (PlainConvUNet: default planner; ResidualEncoderUNet: the ResEnc M/L/XL presets; ResidualUNet: its
# fully residual sibling). nnU-Net itself falls back to finding the class by its last name component
# inside dynamic_network_architectures.architectures (plans from before 2.2 name ``residual_unet``).
_UNET_MODULE = "dynamic_network_architectures.architectures.unet"
NETWORK_CLASSES = ("PlainConvUNet", "ResidualEncoderUNet", "ResidualUNet")

# Classes that ``_kw_requires_import`` may name, by module as torch writes ``cls.__module__``; each is
# also accepted as ``torch.nn.<Name>`` (the spelling nnU-Net uses for nonlinearities).
OPERATION_CLASSES = {
    "torch.nn.modules.conv": ("Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                              "ConvTranspose3d"),
    "torch.nn.modules.instancenorm": ("InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d"),
    "torch.nn.modules.batchnorm": ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d"),
    "torch.nn.modules.normalization": ("GroupNorm", "LayerNorm"),
    "torch.nn.modules.dropout": ("Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout"),
    "torch.nn.modules.activation": ("LeakyReLU", "ReLU", "ReLU6", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU",
                                    "Mish", "Tanh", "Sigmoid", "Softplus", "Hardswish"),
}
_BLOCK_MODULE = "dynamic_network_architectures.building_blocks.residual"
BLOCK_CLASSES = ("BasicBlockD", "BottleneckD")

PREPROCESSORS = ("DefaultPreprocessor",)
NORMALISATIONS = ("ZScoreNormalization", "CTNormalization", "NoNormalization", "RescaleTo01Normalization",
                  "RGBTo01Normalization")
RESAMPLING = {  # name -> module in nnunetv2.preprocessing.resampling
    "resample_data_or_seg_to_shape": "default_resampling",
    "resample_torch_fornnunet": "resample_torch",
    "resample_torch_simple": "resample_torch",
    "no_resampling_hack": "no_resampling",
}
LABEL_MANAGERS = ("LabelManager",)
READER_WRITERS = ("SimpleITKIO", "SimpleITKIOWithReorient", "NibabelIO", "NibabelIOWithReorient", "NaturalImage2DIO",
                  "Tiff3DIO")

# arch_kwargs the U-Nets need as numbers: name -> (kind, what the message says)
_WHOLE_NUMBERS = ("n_stages", "stem_channels")
_NUMBER_LISTS = ("features_per_stage", "n_conv_per_stage", "n_blocks_per_stage", "n_conv_per_stage_decoder",
                 "bottleneck_channels")
_KERNEL_LISTS = ("kernel_sizes", "strides")
_SWITCHES = ("conv_bias", "deep_supervision", "nonlin_first")
_SET_BY_US = ("input_channels", "num_classes")  # from dataset.json, never from plans.json


def _refuse(source: str, where: str, what: str) -> FileFormatError:
    return FileFormatError(f"{source}: {where} {what}; refused.")


def _describe(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def plain_json_problem(value, path: str = "") -> str | None:
    """Where ``value`` holds something other than JSON data (dict with text keys, list, text, number,
    true/false, null), e.g. ``"['a'][2]: a function"``; None when it is all plain data."""
    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, (int, float)):
        return None if math.isfinite(value) else f"{path}: a non-finite number"
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            if (problem := plain_json_problem(item, f"{path}[{index}]")) is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}: a key {_describe(key)} that is not text"
            if (problem := plain_json_problem(item, f"{path}[{key!r}]")) is not None:
                return problem
        return None
    return f"{path}: a {type(value).__name__} object"


def network_class_short_name(name) -> str | None:
    """The allow-listed class a ``network_class_name`` means, or None.

    >>> network_class_short_name("dynamic_network_architectures.architectures.unet.PlainConvUNet")
    'PlainConvUNet'
    >>> network_class_short_name("torch.hub.load") is None
    True
    """
    if not isinstance(name, str):
        return None
    short = name.rsplit(".", 1)[-1]
    inside = name == short or name.startswith("dynamic_network_architectures.architectures.")
    return short if inside and short in NETWORK_CLASSES else None


def operation_class_name(name) -> tuple[str, str] | None:
    """``(module, class)`` of an allow-listed ``_kw_requires_import`` value, or None."""
    if not isinstance(name, str) or "." not in name:
        return None
    module, short = name.rsplit(".", 1)
    for listed, names in OPERATION_CLASSES.items():
        if short in names and module in (listed, "torch.nn"):
            return listed, short
    if module == _BLOCK_MODULE and short in BLOCK_CLASSES:
        return module, short
    return None


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number_problem(key: str, value) -> str | None:
    """What is wrong with a numeric U-Net argument, in words; None when it is fine."""
    if key in _WHOLE_NUMBERS:
        ok = _positive_int(value) or (key == "stem_channels" and value is None)
        return None if ok else "must be a whole number >= 1"
    if key in _NUMBER_LISTS:
        ok = _positive_int(value) or (isinstance(value, list) and value and all(_positive_int(v) for v in value))
        return None if ok or (key == "bottleneck_channels" and value is None) else \
            "must be a whole number >= 1 or a list of them"
    if key in _KERNEL_LISTS:
        def entry(v):
            return _positive_int(v) or (isinstance(v, list) and v and all(_positive_int(x) for x in v))
        ok = _positive_int(value) or (isinstance(value, list) and value and all(entry(v) for v in value))
        return None if ok else "must be a list of whole numbers >= 1 (one per stage, or one list per stage)"
    if key in _SWITCHES:
        return None if isinstance(value, bool) else "must be true or false"
    if key.endswith("_kwargs"):
        return None if value is None or isinstance(value, dict) else "must be a JSON object or null"
    return None


def check_architecture(architecture, source: str, configuration: str) -> None:
    """Refuse an ``architecture`` entry that names anything outside the allow-lists (data only, no import)."""
    where = f"configuration '{configuration}'"
    if not isinstance(architecture, dict):
        raise _refuse(source, where, f"has an 'architecture' that is not a JSON object ({_describe(architecture)})")
    name = architecture.get("network_class_name")
    if network_class_short_name(name) is None:
        raise FileFormatError(f"{source}: {where} names network class {_describe(name)}, which is not an nnU-Net "
                              f"network ({', '.join(NETWORK_CLASSES)} of dynamic_network_architectures); refused.")
    kwargs = architecture.get("arch_kwargs")
    if not isinstance(kwargs, dict):
        raise _refuse(source, where, f"has 'arch_kwargs' that are not a JSON object ({_describe(kwargs)})")
    problem = plain_json_problem(kwargs, "arch_kwargs")
    if problem is not None:
        raise _refuse(source, where, f"holds something that is not plain data in {problem}")
    imports = architecture.get("_kw_requires_import", [])
    if not isinstance(imports, list) or not all(isinstance(k, str) for k in imports):
        raise _refuse(source, where, f"has a '_kw_requires_import' that is not a list of names ({_describe(imports)})")
    for key in imports:
        if key not in kwargs:
            raise _refuse(source, where, f"lists '{key}' in _kw_requires_import but arch_kwargs has no '{key}'")
        value = kwargs[key]
        if value is not None and operation_class_name(value) is None:
            raise FileFormatError(
                f"{source}: {where} sets arch_kwargs '{key}' to {_describe(value)}, which is not an allowed torch.nn "
                "convolution, normalisation, dropout or activation class; refused (a model file must not choose "
                "code to run).")
    for key, value in kwargs.items():
        if key in _SET_BY_US:
            raise _refuse(source, where, f"sets arch_kwargs '{key}', which comes from dataset.json, not plans.json")
        if key not in imports and isinstance(value, str) and operation_class_name(value) is not None:
            continue  # an op name nnU-Net would pass as text: harmless, and the constructor will say so
        if (problem := _number_problem(key, value)) is not None:
            raise _refuse(source, where, f"sets arch_kwargs '{key}' to {_describe(value)}, which {problem}")


def resolve_configuration(plans: dict, configuration: str, source: str) -> dict:
    """The configuration dict with ``inherits_from`` resolved as nnU-Net does (child keys win)."""
    configurations = plans.get("configurations")
    if not isinstance(configurations, dict):
        raise FileFormatError(f"{source} has no 'configurations' object; is it an nnU-Net v2 plans file?")
    chain, name = [], configuration
    while True:
        entry = configurations.get(name) if isinstance(name, str) else None
        if not isinstance(entry, dict):
            raise FileFormatError(f"{source}: configuration {_describe(name)} (needed by '{configuration}') is not "
                                  f"defined; available: {', '.join(map(str, configurations))}.")
        if name in chain:
            raise FileFormatError(f"{source}: configuration '{configuration}' inherits from itself "
                                  f"({' -> '.join(chain + [name])}).")
        chain.append(name)
        if "inherits_from" not in entry:
            break
        name = entry["inherits_from"]
    resolved: dict = {}
    for name in reversed(chain):
        resolved.update(deepcopy(configurations[name]))
    resolved.pop("inherits_from", None)
    return resolved


def _check_name(source, where, key, value, allowed, optional=False) -> None:
    if value is None and optional:
        return
    if value not in allowed:
        raise FileFormatError(f"{source}: {where} names {key} {_describe(value)}, which is not one of nnU-Net's "
                              f"({', '.join(allowed)}); refused (a model file must not choose code to run).")


def check_model_files(plans, dataset, configuration, checkpoint: dict, source: str, n_channels: int) -> dict:
    """Refuse any name in plans.json / dataset.json / the checkpoint that nnU-Net would turn into code and that is
    not allow-listed; returns the resolved configuration. Only data is read: nothing is imported."""
    if not isinstance(plans, dict):
        raise FileFormatError(f"{source} is not a JSON object; is it an nnU-Net v2 plans file?")
    if not isinstance(configuration, str):
        raise FileFormatError(f"The checkpoint names configuration {_describe(configuration)}, which is not a "
                              f"configuration name of {source}.")
    config = resolve_configuration(plans, configuration, source)
    where = f"configuration '{configuration}'"
    if "architecture" in config:
        check_architecture(config["architecture"], source, configuration)
    else:  # plans from before nnU-Net 2.2: ConfigurationManager maps these two names to fixed classes
        _check_name(source, where, "UNet_class_name", config.get("UNet_class_name"),
                    ("PlainConvUNet", "ResidualEncoderUNet"))
    _check_name(source, where, "preprocessor", config.get("preprocessor_name"), PREPROCESSORS)
    schemes = config.get("normalization_schemes")
    if not isinstance(schemes, list) or len(schemes) != n_channels:
        raise FileFormatError(f"{source}: {where} has normalization_schemes {_describe(schemes)}, not one scheme "
                              f"per input channel ({n_channels} in dataset.json).")
    for scheme in schemes:
        _check_name(source, where, "normalisation", scheme, NORMALISATIONS)
    masks = config.get("use_mask_for_norm")
    if not isinstance(masks, list) or len(masks) != n_channels or not all(isinstance(m, bool) for m in masks):
        raise FileFormatError(f"{source}: {where} has use_mask_for_norm {_describe(masks)}, not one true/false "
                              f"per input channel ({n_channels}).")
    for kind in ("data", "seg", "probabilities"):
        _check_name(source, where, f"resampling_fn_{kind}", config.get(f"resampling_fn_{kind}"), tuple(RESAMPLING))
        extra = config.get(f"resampling_fn_{kind}_kwargs", {})
        if not isinstance(extra, dict) or plain_json_problem(extra, f"resampling_fn_{kind}_kwargs"):
            raise _refuse(source, where, f"has resampling_fn_{kind}_kwargs that are not plain data "
                                         f"({_describe(extra)})")
    for key in ("patch_size", "spacing"):
        value = config.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                              and v > 0 for v in value):
            raise FileFormatError(f"{source}: {where} has {key} {_describe(value)}, not a list of positive numbers.")
    _check_name(source, "the plan", "label_manager", plans.get("label_manager"), LABEL_MANAGERS, optional=True)
    _check_name(source, "the plan", "image_reader_writer", plans.get("image_reader_writer"), READER_WRITERS,
                optional=True)
    for key in ("transpose_forward", "transpose_backward"):
        value = plans.get(key)
        if not isinstance(value, list) or sorted(map(str, value)) not in (["0", "1", "2"], ["0", "1"]) \
                or not all(isinstance(v, int) for v in value):
            raise FileFormatError(f"{source}: {key} {_describe(value)} is not an order of the image axes.")
    trainer = checkpoint.get("trainer_name", "nnUNetTrainer")
    if not isinstance(trainer, str) or not trainer.isidentifier():
        raise FileFormatError(f"The checkpoint names trainer {_describe(trainer)}, which is not a class name; "
                              "refused (a model file must not choose code to run).")
    return config


# ---- building from the allow-listed objects (imports only what the lists name) ---------------------------


def _operation(value):
    import importlib

    module, short = operation_class_name(value)
    return getattr(importlib.import_module(module), short)


def _parameters(callable_) -> set[str]:
    return {name for name, p in inspect.signature(callable_).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"}


def build_network(architecture: dict, n_in: int, n_out: int, source: str, configuration: str):
    """The network ``architecture`` describes, built from allow-listed classes (no name from the file is resolved).

    ``n_in`` / ``n_out``: input channels and segmentation heads (from dataset.json). Deep supervision off.
    """
    import importlib

    check_architecture(architecture, source, configuration)
    where = f"configuration '{configuration}'"
    network_class = getattr(importlib.import_module(_UNET_MODULE),
                            network_class_short_name(architecture["network_class_name"]))
    allowed = _parameters(network_class)
    kwargs = dict(architecture["arch_kwargs"])
    imports = architecture.get("_kw_requires_import", [])
    for key in kwargs:
        if key not in allowed:
            raise _refuse(source, where, f"passes '{key}' to {network_class.__name__}, which has no such parameter")
    for key in imports:
        if kwargs[key] is None:
            continue
        op = _operation(kwargs[key])
        options = kwargs.get(f"{key}_kwargs")
        if isinstance(options, dict):
            unknown = sorted(set(options) - _parameters(op))
            if unknown:
                raise _refuse(source, where, f"passes {', '.join(map(repr, unknown))} in '{key}_kwargs' to "
                                             f"{op.__name__}, which has no such parameter")
        kwargs[key] = op
    kwargs["deep_supervision"] = False
    try:
        return network_class(input_channels=n_in, num_classes=n_out, **kwargs)
    except (TypeError, ValueError, AssertionError, IndexError, KeyError, RuntimeError) as error:
        detail = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise FileFormatError(f"{source}: {where}: the {network_class.__name__} its architecture describes cannot "
                              f"be built ({detail}).") from error


def preprocessor_class(name: str):
    """nnU-Net's preprocessor class for an allow-listed ``preprocessor_name``."""
    if name not in PREPROCESSORS:
        raise FileFormatError(f"plans.json names preprocessor {_describe(name)}, which is not nnU-Net's; refused.")
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor

    return DefaultPreprocessor


def check_resampling_arguments(config: dict, source: str, configuration: str) -> None:
    """Refuse resampling keyword arguments that are not parameters of the allow-listed function they go to."""
    import importlib

    for kind in ("data", "seg", "probabilities"):
        name = config[f"resampling_fn_{kind}"]
        function = getattr(importlib.import_module(f"nnunetv2.preprocessing.resampling.{RESAMPLING[name]}"), name)
        unknown = sorted(set(config.get(f"resampling_fn_{kind}_kwargs", {})) - _parameters(function))
        if unknown:
            raise _refuse(source, f"configuration '{configuration}'",
                          f"passes {', '.join(map(repr, unknown))} to {name}, which has no such parameter")
