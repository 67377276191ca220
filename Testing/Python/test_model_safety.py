"""Model files are untrusted: plans.json names no code, checkpoints hold only weights (and a damaged one is
told apart from one carrying code), zips are size-limited, and an input unlike the training data is flagged.

The hostile plans are the ones a sweep used against nnU-Net's own loader; the first test shows that they do
run code there, so that the refusals below are refusals of something real.
"""

from __future__ import annotations

import io as bytes_io
import json
import os
import pickle
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from virtualbiopsy.archives import safe_extract
from virtualbiopsy.errors import FileFormatError, UnsafeArchiveError
from virtualbiopsy.segmentation.demo_model import demo_model_path
from virtualbiopsy.segmentation.fingerprint import input_warnings
from virtualbiopsy.segmentation.model_source import ModelArchives
from virtualbiopsy.segmentation.network_allowlist import build_network, check_architecture, check_model_files
from virtualbiopsy.segmentation.nnunet_model import inspect_model, load_checkpoint

CONFIG = "3d_fullres"


@pytest.fixture
def model_copy(tmp_path):
    target = tmp_path / "model"
    shutil.copytree(demo_model_path(), target)
    return target


def _plans(folder: Path) -> dict:
    return json.loads((folder / "plans.json").read_text())


def _write_plans(folder: Path, plans: dict) -> None:
    (folder / "plans.json").write_text(json.dumps(plans))


def _hub_architecture(tmp_path: Path) -> dict:
    """torch.hub.load on a local folder whose hubconf.py writes a marker when imported."""
    hub = tmp_path / "hub"
    hub.mkdir(exist_ok=True)
    (hub / "hubconf.py").write_text(f"open({str(tmp_path / 'HUB_RAN')!r}, 'w').write('ran')\n"
                                    "def evil(**kwargs):\n    return None\n")
    return {"network_class_name": "torch.hub.load", "_kw_requires_import": [],
            "arch_kwargs": {"repo_or_dir": str(hub), "model": "evil", "source": "local"}}


def _logging_architecture(tmp_path: Path) -> dict:
    return {"network_class_name": "logging.basicConfig", "_kw_requires_import": [],
            "arch_kwargs": {"filename": str(tmp_path / "created.log")}}


def _popen_architecture(tmp_path: Path) -> dict:
    """A valid U-Net whose nonlinearity is subprocess.Popen, 'configured' to run ``touch marker``."""
    architecture = _plans(demo_model_path())["configurations"][CONFIG]["architecture"]
    architecture["arch_kwargs"]["nonlin"] = "subprocess.Popen"
    architecture["arch_kwargs"]["nonlin_kwargs"] = {"args": ["touch", str(tmp_path / "POPEN_RAN")]}
    return architecture


def _planted_module_architecture(tmp_path: Path) -> dict:
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "plantedmod.py").write_text(f"open({str(tmp_path / 'IMPORT_RAN')!r}, 'w').write('ran')\n"
                                        "class Net:\n    def __init__(self, **kw):\n        pass\n")
    return {"network_class_name": "plantedmod.Net", "_kw_requires_import": [], "arch_kwargs": {}}


HOSTILE = {"torch_hub": (_hub_architecture, "HUB_RAN"), "logging_file": (_logging_architecture, "created.log"),
           "popen_nonlin": (_popen_architecture, "POPEN_RAN"), "planted_module": (_planted_module_architecture,
                                                                                  "IMPORT_RAN")}


def test_hostile_plans_run_code_through_nnunets_own_builder(tmp_path):
    """The control: nnU-Net's get_network_from_plans imports and calls what the file names."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    architecture = _hub_architecture(tmp_path)
    get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"], [], 1, 2,
                           deep_supervision=False)
    assert (tmp_path / "HUB_RAN").exists(), "the control case did not run: the hostile test would prove nothing"


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_hostile_plans_are_refused_before_anything_is_imported(model_copy, tmp_path, monkeypatch, hostile):
    make, marker = HOSTILE[hostile]
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    plans = _plans(model_copy)
    plans["configurations"][CONFIG]["architecture"] = make(tmp_path)
    _write_plans(model_copy, plans)
    with pytest.raises(FileFormatError, match="refused") as refused:
        inspect_model(model_copy)
    assert "\n" not in str(refused.value)
    with pytest.raises(FileFormatError, match="refused"):  # and the builder refuses on its own too
        build_network(plans["configurations"][CONFIG]["architecture"], 1, 2, "plans.json", CONFIG)
    assert not (tmp_path / marker).exists(), f"{hostile}: the file's code ran"
    assert "plantedmod" not in sys.modules


def test_refusal_names_the_entry(model_copy, tmp_path):
    plans = _plans(model_copy)
    plans["configurations"][CONFIG]["architecture"] = _hub_architecture(tmp_path)
    _write_plans(model_copy, plans)
    with pytest.raises(FileFormatError) as refused:
        inspect_model(model_copy)
    assert "configuration '3d_fullres' names network class 'torch.hub.load', which is not an nnU-Net network" \
        in str(refused.value)


@pytest.mark.parametrize(("key", "value", "named"), [
    ("n_stages", "four", "n_stages"),
    ("kernel_sizes", "3x3", "kernel_sizes"),
    ("features_per_stage", [8, -16, 32, 64], "features_per_stage"),
    ("conv_bias", "yes", "conv_bias"),
    ("norm_op_kwargs", "eps", "norm_op_kwargs"),
    ("num_classes", 7, "num_classes"),
])
def test_arguments_of_the_wrong_kind_are_refused(key, value, named):
    architecture = _plans(demo_model_path())["configurations"][CONFIG]["architecture"]
    architecture["arch_kwargs"][key] = value
    with pytest.raises(FileFormatError, match=named):
        check_architecture(architecture, "plans.json", CONFIG)


@pytest.mark.parametrize(("edit", "named"), [
    (lambda a: a["arch_kwargs"].update(squeeze=True), "'squeeze' to PlainConvUNet"),
    (lambda a: a["arch_kwargs"]["nonlin_kwargs"].update(evil=1), "'evil'"),
])
def test_arguments_the_class_does_not_take_are_refused(edit, named):
    architecture = _plans(demo_model_path())["configurations"][CONFIG]["architecture"]
    edit(architecture)
    with pytest.raises(FileFormatError, match=named):
        build_network(architecture, 1, 2, "plans.json", CONFIG)


def _nnunets_network(architecture, n_in=1, n_out=2):
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(architecture["network_class_name"], architecture["arch_kwargs"],
                                  architecture["_kw_requires_import"], n_in, n_out, deep_supervision=False)


def _same_network(ours, theirs, shape):
    import torch

    assert type(ours) is type(theirs)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    ours.load_state_dict(theirs.state_dict())
    x = torch.from_numpy(np.random.default_rng(0).normal(size=shape).astype(np.float32))
    with torch.no_grad():
        return float((ours.eval()(x) - theirs.eval()(x)).abs().max())


def test_demo_network_built_from_the_allow_list_equals_nnunets():
    architecture = _plans(demo_model_path())["configurations"][CONFIG]["architecture"]
    ours = build_network(architecture, 1, 2, "plans.json", CONFIG)
    assert _same_network(ours, _nnunets_network(architecture), (1, 1, 32, 64, 64)) == 0.0
    weights = load_checkpoint(demo_model_path() / "fold_0" / "checkpoint_final.pth")["network_weights"]
    ours.load_state_dict(weights)  # strict: the trained weights fit the network built here


def test_residual_encoder_plan_passes_and_builds_like_nnunet():
    """A plan as nnU-Net's ResEnc planners write it (class and module spellings included)."""
    architecture = {
        "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
        "arch_kwargs": {"n_stages": 4, "features_per_stage": [8, 16, 32, 64], "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
                        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], "n_blocks_per_stage": [1, 3, 4, 6],
                        "n_conv_per_stage_decoder": [1, 1, 1], "conv_bias": True,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
                        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    plans = _plans(demo_model_path())
    plans["configurations"][CONFIG]["architecture"] = architecture
    check_model_files(plans, {}, CONFIG, {"trainer_name": "nnUNetTrainer"}, "plans.json", 1)
    ours = build_network(architecture, 1, 3, "plans.json", CONFIG)
    assert type(ours).__name__ == "ResidualEncoderUNet"
    assert _same_network(ours, _nnunets_network(architecture, 1, 3), (1, 1, 16, 32, 32)) == 0.0
    legacy = dict(architecture, network_class_name="dynamic_network_architectures.architectures.residual_unet."
                                                   "ResidualEncoderUNet")  # what nnU-Net's pre-2.2 converter writes
    assert type(build_network(legacy, 1, 3, "plans.json", CONFIG)).__name__ == "ResidualEncoderUNet"


@pytest.mark.parametrize(("key", "value"), [
    ("preprocessor_name", "maybe_mkdir_p"), ("normalization_schemes", ["os"]),
    ("resampling_fn_data", "subprocess"), ("resampling_fn_probabilities", "save_json"),
])
def test_other_names_nnunet_resolves_are_allow_listed(key, value):
    plans = _plans(demo_model_path())
    plans["configurations"][CONFIG][key] = value
    with pytest.raises(FileFormatError, match="refused"):
        check_model_files(plans, {}, CONFIG, {}, "plans.json", 1)


@pytest.mark.parametrize(("key", "value"), [("label_manager", "os"), ("image_reader_writer", "subprocess")])
def test_plan_level_names_are_allow_listed(key, value):
    plans = _plans(demo_model_path())
    plans[key] = value
    with pytest.raises(FileFormatError, match=key):
        check_model_files(plans, {}, CONFIG, {}, "plans.json", 1)


def test_inherited_configuration_is_checked_after_resolution(tmp_path):
    plans = _plans(demo_model_path())
    plans["configurations"]["child"] = {"inherits_from": CONFIG}
    assert check_model_files(plans, {}, "child", {}, "plans.json", 1)["patch_size"] == [32, 64, 64]
    plans["configurations"][CONFIG]["architecture"] = _hub_architecture(tmp_path)
    with pytest.raises(FileFormatError, match="torch.hub.load"):
        check_model_files(plans, {}, "child", {}, "plans.json", 1)
    plans["configurations"][CONFIG]["inherits_from"] = "child"
    with pytest.raises(FileFormatError, match="inherits from itself"):
        check_model_files(plans, {}, "child", {}, "plans.json", 1)


# ---- checkpoints: corrupt is not unsafe --------------------------------------------------------------


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def _corrupt(kind: str, path: Path) -> None:
    good = (demo_model_path() / "fold_0" / "checkpoint_final.pth").read_bytes()
    if kind == "random_bytes":
        path.write_bytes(np.random.default_rng(3).bytes(4096))
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "zip_not_torch":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a checkpoint")
    elif kind == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("kind", ["random_bytes", "truncated", "zip_not_torch", "empty"])
def test_a_damaged_checkpoint_is_called_corrupt_not_unsafe(tmp_path, kind):
    path = tmp_path / "fold_0" / "checkpoint_final.pth"
    path.parent.mkdir()
    _corrupt(kind, path)
    with pytest.raises(FileFormatError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "corrupt or unreadable checkpoint" in message and "not plain weights" not in message, message


@pytest.mark.parametrize("layout", ["torch_save", "raw_pickle_protocol_4"])
def test_a_checkpoint_carrying_code_is_called_unsafe_not_corrupt(tmp_path, layout):
    import torch

    marker = tmp_path / "payload_ran"
    path = tmp_path / "checkpoint_final.pth"
    content = {"network_weights": {"w": torch.zeros(2)}, "init_args": {"extra": _Payload(str(marker))}}
    if layout == "torch_save":
        torch.save(content, path)
    else:
        path.write_bytes(pickle.dumps(content, protocol=4))
    with pytest.raises(FileFormatError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "not plain weights" in message and "makedirs" in message and "corrupt" not in message, message
    assert not marker.exists()


def test_a_plain_checkpoint_with_a_forged_trainer_name_is_refused(model_copy):
    import torch

    checkpoint = model_copy / "fold_0" / "checkpoint_final.pth"
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content["trainer_name"] = "os.system"
    torch.save(content, checkpoint)
    with pytest.raises(FileFormatError, match="trainer 'os.system'"):
        inspect_model(model_copy)


# ---- zips: size limits before anything is written -------------------------------------------------------


def _zeros_zip(path: Path, megabytes: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/plans.json", "{}")
        with archive.open("model/fold_0/checkpoint_final.pth", "w") as entry:
            block = bytes(1 << 20)
            for _ in range(megabytes):
                entry.write(block)
    return path


def test_zip_bomb_is_refused_before_anything_is_written(tmp_path):
    bomb = _zeros_zip(tmp_path / "bomb.zip", 300)
    assert bomb.stat().st_size < 1_000_000  # 300 MB of zeros in under 1 MB
    with pytest.raises(UnsafeArchiveError, match=r"expands \d+:1.*zip bomb"):
        safe_extract(bomb, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_total_size_limit_is_a_parameter(tmp_path):
    archive_path = tmp_path / "model.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("a.bin", np.random.default_rng(0).bytes(3_000_000))
    with pytest.raises(UnsafeArchiveError, match=r"3.0 MB, more than the limit of 1.0 MB"):
        safe_extract(archive_path, tmp_path / "target", max_total_bytes=1_000_000)
    assert not (tmp_path / "target").exists()
    assert (safe_extract(archive_path, tmp_path / "target") / "a.bin").stat().st_size == 3_000_000


def test_model_archives_take_the_limit_and_leave_no_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    archive_path = tmp_path / "model.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("model/a.bin", np.random.default_rng(0).bytes(2_000_000))
    with pytest.raises(UnsafeArchiveError, match="limit of 1.0 MB"):
        ModelArchives(max_total_bytes=1_000_000).folder(archive_path)
    assert list((tmp_path / "tmp").iterdir()) == []


def _lying_zip(path: Path) -> Path:
    """One 10 MB entry of zeros whose local and central headers declare 1000 bytes."""
    buffer = bytes_io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model/fold_0/checkpoint_final.pth", bytes(10_000_000))
    data = bytearray(buffer.getvalue())
    local = data.find(b"PK\x03\x04")
    central = data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 1000)
    struct.pack_into("<I", data, central + 24, 1000)
    path.write_bytes(bytes(data))
    return path


def test_zip_whose_headers_understate_the_size_leaves_nothing_behind(tmp_path):
    forged = _lying_zip(tmp_path / "forged.zip")
    with zipfile.ZipFile(forged) as archive:
        assert archive.infolist()[0].file_size == 1000  # passes the declared-size checks
    with pytest.raises(UnsafeArchiveError, match="does not match its header"):
        safe_extract(forged, tmp_path / "target")
    assert not (tmp_path / "target").exists()


# ---- out-of-distribution inputs ---------------------------------------------------------------------------


def _ct_like(shape=(40, 96, 96)) -> np.ndarray:
    """Air at -1000 HU around a soft-tissue body (40 +- 20 HU) with a bone (900 HU)."""
    rng = np.random.default_rng(0)
    _, yy, xx = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = (yy - shape[1] / 2) ** 2 + (xx - shape[2] / 2) ** 2 < (0.42 * shape[1]) ** 2
    ct = np.full(shape, -1000.0, np.float32)
    ct[body] = rng.normal(40, 20, int(body.sum()))
    ct[body & ((yy - shape[1] / 2) ** 2 + (xx - 0.62 * shape[2]) ** 2 < 36)] = 900
    return ct


def test_phantom_t2w_raises_no_warning_and_scale_does_not_matter():
    from virtualbiopsy.phantom import generate_study

    model = inspect_model(demo_model_path())
    for seed in (2000, 2001, 2002):
        study = generate_study(seed)
        spacing_kji = study.t2_grid.spacing[::-1]
        assert input_warnings(model, [study.t2w], spacing_kji, ["T2w"]) == []
        # z-score normalisation: another scanner's intensity scale is not a warning
        assert input_warnings(model, [study.t2w * 0.001], spacing_kji, ["T2w"]) == []


def test_ct_like_volume_is_flagged_for_intensity_and_voxel_size():
    warnings = input_warnings(inspect_model(demo_model_path()), [_ct_like()], (1.0, 0.5, 0.5), ["CT"])
    assert len(warnings) == 2
    assert "voxel size 1 x 0.5 x 0.5 mm" in warnings[0] and "4.0x finer along k" in warnings[0]
    assert "intensities unlike the training data" in warnings[1] and "below zero" in warnings[1]
    assert "T2" in warnings[1] and "634 to 1657" in warnings[1]


def test_ct_model_flags_an_mr_like_image_by_its_median(model_copy):
    plans = _plans(model_copy)
    plans["configurations"][CONFIG]["normalization_schemes"] = ["CTNormalization"]
    plans["foreground_intensity_properties_per_channel"]["0"].update(percentile_00_5=-60.0, percentile_99_5=220.0)
    _write_plans(model_copy, plans)
    model = inspect_model(model_copy)
    assert input_warnings(model, [_ct_like()], (4.0, 1.5, 1.5)) == []
    mr = np.random.default_rng(1).uniform(300, 1500, (20, 40, 40))
    (warning,) = input_warnings(model, [mr], (4.0, 1.5, 1.5), ["T2w"])
    assert "median inside the body" in warning and "outside the model's T2 training foreground range -60 to 220" \
        in warning


def test_a_configuration_inheriting_the_ct_normalisation_is_checked_as_ct(model_copy):
    plans = _plans(model_copy)
    plans["configurations"][CONFIG]["normalization_schemes"] = ["CTNormalization"]
    plans["foreground_intensity_properties_per_channel"]["0"].update(percentile_00_5=-60.0, percentile_99_5=220.0)
    plans["configurations"]["child"] = {"inherits_from": CONFIG}
    _write_plans(model_copy, plans)
    model = inspect_model(model_copy)
    model.configuration = "child"
    mr = np.random.default_rng(1).uniform(300, 1500, (20, 40, 40))
    (warning,) = input_warnings(model, [mr], (4.0, 1.5, 1.5), ["T2w"])
    assert "median inside the body" in warning


@pytest.mark.slow
def test_segmenting_a_ct_puts_the_warning_in_the_summary_and_on_the_segmentation(context):
    from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic, SegmentParameters
    from virtualbiopsy.mrml import arrays
    from virtualbiopsy.mrml.geometry import Geometry

    ct = _ct_like((24, 64, 64))
    volume = arrays.add_volume_from_array(context, ct, Geometry.from_spacing(ct.shape, (0.8, 0.8, 1.0)), "CT")
    outputs = NeuroblastomaSegLogic(context).segment(
        [volume], SegmentParameters(str(demo_model_path()), mirroring=False))
    warnings = outputs.summary["warnings"]
    assert any("intensities unlike the training data" in w for w in warnings), warnings
    assert "below zero" in outputs.segmentation.GetAttribute("VirtualBiopsy.Warnings")
    json.dumps(outputs.summary)
