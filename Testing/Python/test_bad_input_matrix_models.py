"""Bad-input matrix, segmentation models: hostile or damaged model folders, checkpoints and zips given to
``virtualbiopsy segment``.

Each case copies the bundled demo model into the workspace and breaks one thing: a plans.json naming code
(torch.hub.load with a local hubconf.py, logging.basicConfig writing a file, subprocess.Popen as the
nonlinearity), arguments of the wrong kind, names nnU-Net would look up (preprocessor, normalisation,
resampling, label manager, reader), dataset.json and checkpoint damage, and zips (escaping entries, wrong
SHA256, a zip bomb). Every one must exit 2 with one line naming the problem, run nothing and write nothing
(the markers the hostile files would write are inside the workspace, so the harness sees them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from refusals import CliCase, assert_cli_refuses, write_nrrd

from virtualbiopsy.segmentation.demo_model import demo_model_path

CONFIG = "3d_fullres"


def _image(ws: Path) -> Path:
    values = np.random.default_rng(4).integers(100, 1000, size=(8, 32, 32)).astype(np.int16)
    return write_nrrd(ws / "t2w.nrrd", values, spacing=(1.5, 1.5, 4.0))


def _model(plans=None, dataset=None, checkpoint=None, remove=()):
    """A ``model(ws)`` that copies the demo model into ``ws/model`` and applies the edits:
    ``plans(plans_dict, ws)`` / ``dataset(dataset_dict, ws)`` edit the JSON in place, ``checkpoint(path, ws)``
    rewrites the fold 0 checkpoint, ``remove`` lists files to delete."""
    def build(ws: Path) -> Path:
        folder = ws / "model"
        shutil.copytree(demo_model_path(), folder)
        for name, edit in (("plans.json", plans), ("dataset.json", dataset)):
            if edit is not None:
                content = json.loads((folder / name).read_text())
                edit(content, ws)
                (folder / name).write_text(json.dumps(content))
        if checkpoint is not None:
            checkpoint(folder / "fold_0" / "checkpoint_final.pth", ws)
        for name in remove:
            target = folder / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return folder
    return build


def _segment(model=None, images: int = 1, extra=()):
    def make(ws: Path):
        folder = (model or _model())(ws)
        image = _image(ws)
        args = ["segment", "--model", folder]
        for _ in range(images):
            args += ["--image", image]
        return [*args, "--out", ws / "out", "--device", "cpu", "--no-uncertainty", *extra]
    return make


def _config(plans) -> dict:
    return plans["configurations"][CONFIG]


def _arch(plans) -> dict:
    return _config(plans)["architecture"]


# -- hostile plans.json: code named by the file ---------------------------------------------------------


def _torch_hub(plans, ws):
    hub = ws / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(f"open({str(ws / 'HUB_RAN')!r}, 'w').write('ran')\n"
                                    "def evil(**kwargs):\n    return None\n")
    _config(plans)["architecture"] = {"network_class_name": "torch.hub.load", "_kw_requires_import": [],
                                      "arch_kwargs": {"repo_or_dir": str(hub), "model": "evil", "source": "local"}}


def _logging_file(plans, ws):
    _config(plans)["architecture"] = {"network_class_name": "logging.basicConfig", "_kw_requires_import": [],
                                      "arch_kwargs": {"filename": str(ws / "created.log")}}


def _set_arch(key, value):
    def edit(plans, ws):
        _arch(plans)["arch_kwargs"][key] = value
    return edit


def _popen_nonlin(plans, ws):
    _arch(plans)["arch_kwargs"].update(nonlin="subprocess.Popen", nonlin_kwargs={"args": ["touch", str(ws / "RAN")]})


def _set_config(key, value):
    def edit(plans, ws):
        _config(plans)[key] = value
    return edit


def _set_plan(key, value):
    def edit(plans, ws):
        plans[key] = value
    return edit


def _replace_plans(content):
    def edit(plans, ws):
        plans.clear()
        plans.update(content)
    return edit


def _set_dataset(key, value):
    def edit(dataset, ws):
        dataset[key] = value
    return edit


# -- checkpoints ------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this would create a folder: a stand-in for code hidden in a checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _ckpt_bytes(kind):
    def write(path: Path, ws: Path):
        good = path.read_bytes()
        if kind == "random":
            path.write_bytes(np.random.default_rng(5).bytes(5000))
        elif kind == "truncated":
            path.write_bytes(good[:5000])
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "zip_not_torch":
            path.unlink()
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr("readme.txt", "hello")
    return write


def _ckpt_edit(edit):
    def write(path: Path, ws: Path):
        import torch

        content = torch.load(path, map_location="cpu", weights_only=True)
        edit(content, ws)
        torch.save(content, path)
    return write


def _with_payload(content, ws):
    content["init_args"]["extra"] = _Payload(str(ws / "payload_ran"))


# -- zips ---------------------------------------------------------------------------------------------------


def _zip_of(folder_model=None, extra=None, name="model.zip"):
    """A ``model(ws)`` returning a zip of the demo model (edited), with ``extra(archive)`` entries added."""
    def build(ws: Path) -> Path:
        folder = (folder_model or _model())(ws)
        path = ws / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, f"Dataset990/{file.relative_to(folder)}")
            if extra is not None:
                extra(archive)
        shutil.rmtree(folder)
        return path
    return build


def _bomb(archive):
    with archive.open("Dataset990/fold_0/padding.bin", "w") as entry:
        block = bytes(1 << 20)
        for _ in range(64):
            entry.write(block)


def _escaping(archive):
    archive.writestr("../../escaped.txt", "x")


def _no_model_zip(ws: Path) -> Path:
    path = ws / "notes.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "no model here")
    return path


def _corrupt_dataset(ws: Path) -> Path:
    folder = _model()(ws)
    (folder / "dataset.json").write_text("{not json")
    return folder


def _wrong_sha(ws: Path):
    zipped = _zip_of()(ws)
    return ["segment", "--model", zipped, "--sha256", hashlib.sha256(b"other").hexdigest(), "--image", _image(ws),
            "--out", ws / "out", "--device", "cpu"]


def _two_models_zip(ws: Path) -> Path:
    """A zip holding two model folders as nnU-Net names them (the demo model under two configurations)."""
    folder = _model()(ws)
    path = ws / "two.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for configuration in ("3d_fullres", "2d"):
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, f"Dataset990/nnUNetTrainer__nnUNetPlans__{configuration}/"
                                        f"{file.relative_to(folder)}")
    shutil.rmtree(folder)
    return path


def _as_cascade(previous="3d_lowres"):
    """plans.json edit: the demo's configuration re-declared as a cascade stage after ``previous``."""
    def edit(plans, ws):
        plans["configurations"]["3d_cascade_fullres"] = {"inherits_from": CONFIG, "previous_stage": previous}
    return edit


def _best_only(path: Path, ws: Path) -> None:
    path.rename(path.with_name("checkpoint_best.pth"))


def _cascade_checkpoint(content, ws):
    content["init_args"]["configuration"] = "3d_cascade_fullres"


REGIONS = {"background": 0, "tumour": [1, 2], "necrosis": 2}


CASES = [
    # issue 13: labels, regions, checkpoints, configurations and cascades, refused before inference
    CliCase("regions_without_class_order", _segment(_model(dataset=lambda d, ws: d.update(labels=REGIONS))),
            ("region-based", "regions_class_order", "tumour, necrosis")),
    CliCase("regions_class_order_too_short", _segment(_model(dataset=lambda d, ws: d.update(
        labels=REGIONS, regions_class_order=[1]))), ("regions_class_order", "one label value > 0 per region")),
    CliCase("labels_only_background", _segment(_model(dataset=lambda d, ws: d.update(labels={"background": 0}))),
            ("no foreground label",)),
    CliCase("labels_with_a_gap", _segment(_model(dataset=lambda d, ws: d.update(
        labels={"background": 0, "tumour": 2}))), ("without gaps", "[0, 2]")),
    CliCase("checkpoint_option_is_a_path", _segment(extra=("--checkpoint", "../../fold_0/x.pth")),
            ("file name ending in .pth", "../../fold_0/x.pth")),
    CliCase("only_checkpoint_best_present", _segment(_model(checkpoint=_best_only)),
            ("no fold_N/checkpoint_final.pth", "checkpoint_best.pth", "--checkpoint")),
    CliCase("checkpoint_option_not_present", _segment(extra=("--checkpoint", "checkpoint_best.pth")),
            ("no fold_N/checkpoint_best.pth", "checkpoint_final.pth")),
    CliCase("configuration_option_differs_from_checkpoint", _segment(extra=("--configuration", "2d")),
            ("3d_fullres configuration, not 2d",)),
    CliCase("zip_with_two_models_and_no_configuration", _segment(_two_models_zip),
            ("two.zip", "2 model folders", "--configuration", "2d, 3d_fullres")),
    CliCase("zip_without_the_configuration_asked_for", _segment(_two_models_zip, extra=("--configuration",
                                                                                         "3d_lowres")),
            ("no model of configuration '3d_lowres'", "nnUNetTrainer__nnUNetPlans__2d")),
    CliCase("cascade_without_its_first_stage", _segment(_model(plans=_as_cascade(), checkpoint=_ckpt_edit(
        _cascade_checkpoint))), ("cascade stage", "3d_cascade_fullres", "first stage", "3d_lowres")),
    CliCase("cascade_previous_stage_not_a_name", _segment(_model(plans=_as_cascade("../../evil"),
                                                                 checkpoint=_ckpt_edit(_cascade_checkpoint))),
            ("previous stage", "../../evil", "not a configuration name")),
    CliCase("mirror_axes_the_model_was_not_trained_with", _segment(extra=("--mirror-axes", "0,3")),
            ("mirroring along axes 0, 1, 2", "0, 3")),
    CliCase("tile_step_zero", _segment(extra=("--tile-step", "0")), ("tile step", "between 0.1 and 1")),
    # plans.json naming code (new: item 1)
    CliCase("plans_torch_hub_load_with_local_hubconf", _segment(_model(plans=_torch_hub)),
            ("plans.json", "3d_fullres", "torch.hub.load", "not an nnU-Net network")),
    CliCase("plans_logging_basicconfig_writes_file", _segment(_model(plans=_logging_file)),
            ("logging.basicConfig", "not an nnU-Net network")),
    CliCase("plans_network_os_system", _segment(_model(plans=lambda p, ws: _arch(p).update(
        network_class_name="os.system"))), ("os.system", "refused")),
    CliCase("plans_network_not_a_unet", _segment(_model(plans=lambda p, ws: _arch(p).update(
        network_class_name="dynamic_network_architectures.architectures.resnet.ResNet18"))),
        ("ResNet18", "not an nnU-Net network")),
    CliCase("plans_nonlin_subprocess_popen", _segment(_model(plans=_popen_nonlin)),
            ("nonlin", "subprocess.Popen", "refused")),
    CliCase("plans_conv_op_builtins_eval", _segment(_model(plans=_set_arch("conv_op", "builtins.eval"))),
            ("conv_op", "builtins.eval")),
    CliCase("plans_import_key_missing", _segment(_model(plans=lambda p, ws: _arch(p)["_kw_requires_import"].append(
        "block"))), ("block", "_kw_requires_import")),
    # arguments of the wrong kind (new)
    CliCase("plans_n_stages_text", _segment(_model(plans=_set_arch("n_stages", "four"))), ("n_stages", "four")),
    CliCase("plans_kernel_sizes_text", _segment(_model(plans=_set_arch("kernel_sizes", "3x3"))), ("kernel_sizes",)),
    CliCase("plans_norm_kwargs_not_object", _segment(_model(plans=_set_arch("norm_op_kwargs", [1, 2]))),
            ("norm_op_kwargs",)),
    CliCase("plans_sets_num_classes", _segment(_model(plans=_set_arch("num_classes", 9))), ("num_classes",)),
    CliCase("plans_unknown_network_argument", _segment(_model(plans=_set_arch("squeeze", True))),
            ("squeeze", "PlainConvUNet", "no such parameter")),
    CliCase("plans_unknown_nonlin_argument", _segment(_model(plans=_set_arch("nonlin_kwargs", {"evil": 1}))),
            ("evil", "LeakyReLU")),
    CliCase("plans_stage_count_mismatch", _segment(_model(plans=_set_arch("n_stages", 3))),
            ("PlainConvUNet", "cannot be built")),
    # other names nnU-Net resolves (new)
    CliCase("plans_preprocessor_name", _segment(_model(plans=_set_config("preprocessor_name", "maybe_mkdir_p"))),
            ("preprocessor", "maybe_mkdir_p")),
    CliCase("plans_normalisation_scheme", _segment(_model(plans=_set_config("normalization_schemes", ["os"]))),
            ("normalisation", "'os'")),
    CliCase("plans_normalisation_per_channel", _segment(_model(plans=_set_config(
        "normalization_schemes", ["ZScoreNormalization", "ZScoreNormalization"]))), ("normalization_schemes",)),
    CliCase("plans_resampling_function", _segment(_model(plans=_set_config("resampling_fn_data", "subprocess"))),
            ("resampling_fn_data", "subprocess")),
    CliCase("plans_resampling_argument", _segment(_model(plans=_set_config(
        "resampling_fn_seg_kwargs", {"is_seg": True, "evil": 1}))), ("evil", "resample_data_or_seg_to_shape")),
    CliCase("plans_label_manager", _segment(_model(plans=_set_plan("label_manager", "os"))), ("label_manager",)),
    CliCase("plans_image_reader_writer", _segment(_model(plans=_set_plan("image_reader_writer", "subprocess"))),
            ("image_reader_writer",)),
    CliCase("plans_inherits_from_itself", _segment(_model(plans=_set_config("inherits_from", CONFIG))),
            ("inherits from itself",)),
    CliCase("plans_architecture_not_object", _segment(_model(plans=_set_config("architecture", ["x"]))),
            ("architecture",)),
    CliCase("plans_without_configurations", _segment(_model(plans=_replace_plans({"plans_name": "x"}))),
            ("3d_fullres", "does not define")),
    # dataset.json (new: these gave tracebacks)
    CliCase("dataset_channel_keys_not_numbers", _segment(_model(dataset=_set_dataset("channel_names", {"a": "T2"}))),
            ("dataset.json", "channel_names")),
    CliCase("dataset_label_not_a_number", _segment(_model(dataset=_set_dataset("labels", {"background": 0,
                                                                                         "tumour": "one"}))),
            ("dataset.json", "labels")),
    # checkpoints (new: item 20, corrupt is not unsafe)
    CliCase("checkpoint_random_bytes", _segment(_model(checkpoint=_ckpt_bytes("random"))),
            ("checkpoint_final.pth", "corrupt or unreadable checkpoint")),
    CliCase("checkpoint_truncated", _segment(_model(checkpoint=_ckpt_bytes("truncated"))),
            ("corrupt or unreadable checkpoint",)),
    CliCase("checkpoint_empty_file", _segment(_model(checkpoint=_ckpt_bytes("empty"))),
            ("corrupt or unreadable checkpoint", "empty")),
    CliCase("checkpoint_zip_not_torch", _segment(_model(checkpoint=_ckpt_bytes("zip_not_torch"))),
            ("corrupt or unreadable checkpoint", "data.pkl")),
    CliCase("checkpoint_trainer_name_not_a_class", _segment(_model(checkpoint=_ckpt_edit(
        lambda c, ws: c.update(trainer_name="../../evil")))), ("trainer", "../../evil")),
    CliCase("checkpoint_configuration_not_text", _segment(_model(checkpoint=_ckpt_edit(
        lambda c, ws: c["init_args"].update(configuration=["3d_fullres"])))), ("configuration", "does not define")),
    # zips (new: item 4)
    CliCase("zip_bomb_entry", _segment(_zip_of(extra=_bomb)), ("model.zip", "zip bomb", "1029:1")),
    # cases that already passed before this issue (regression guards)
    CliCase("checkpoint_carrying_code", _segment(_model(checkpoint=_ckpt_edit(_with_payload))),
            ("not plain weights", "makedirs", "not loaded")),
    CliCase("checkpoint_other_configuration", _segment(_model(checkpoint=_ckpt_edit(
        lambda c, ws: c["init_args"].update(configuration="2d")))), ("'2d'", "does not define")),
    CliCase("missing_fold", _segment(extra=("--folds", "3")), ("Fold(s) 3", "available: 0")),
    CliCase("no_trained_fold", _segment(_model(remove=("fold_0",))), ("no fold_N/checkpoint_final.pth",)),
    CliCase("missing_plans_json", _segment(_model(remove=("plans.json",))), ("plans.json",)),
    CliCase("corrupt_dataset_json", _segment(_corrupt_dataset), ("dataset.json", "not valid JSON")),
    CliCase("dataset_without_labels", _segment(_model(dataset=lambda d, ws: d.pop("labels"))),
            ("dataset.json", "'labels'")),
    CliCase("channel_count_mismatch", _segment(images=2), ("expects 1 input image", "T2", "2 were given")),
    CliCase("model_folder_missing", _segment(lambda ws: ws / "no_such_model"), ("No model folder",)),
    CliCase("model_zip_missing", _segment(lambda ws: ws / "missing.zip"), ("No model archive",)),
    CliCase("zip_entry_escapes", _segment(_zip_of(extra=_escaping)), ("outside the target", "escaped.txt")),
    CliCase("zip_without_model", _segment(_no_model_zip), ("notes.zip", "no nnU-Net model folder")),
    CliCase("zip_wrong_sha256", _wrong_sha, ("SHA256",)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_segment_refuses_bad_model(case, tmp_path, capsys):
    assert_cli_refuses(case, tmp_path, capsys)
    assert not {"HUB_RAN", "RAN", "created.log", "payload_ran"} & set(os.listdir(tmp_path))
