"""Bad-input matrix, IO and scene safety: corrupt / truncated / odd image files, masks that cannot be used,
hostile scene bundles, and library calls that must leave the user's scene untouched.

CLI cases run ``virtualbiopsy radiomics``, ``fcf`` and ``compare`` on files written here (with SimpleITK and
nibabel, outside the library's own IO); library cases call :mod:`virtualbiopsy.mrml.io` and the logic on a
scene that already holds a user's volume, segmentation and table.
"""

from __future__ import annotations

import gzip
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from refusals import CliCase, assert_cli_refuses, assert_scene_unchanged_after

from virtualbiopsy.errors import (
    EmptyMaskError,
    FileFormatError,
    ImageDimensionError,
    InputError,
    InvalidValuesError,
    UnsafeArchiveError,
)
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry

SHAPE = (8, 10, 12)  # k, j, i
SPACING = (1.5, 1.5, 4.0)


def _image(array: np.ndarray, spacing=SPACING, origin=(0.0, 0.0, 0.0), direction=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array, isVector=array.ndim == 4)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def _write(path: Path, array: np.ndarray, compress: bool = True, **geometry) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(_image(array, **geometry), str(path), useCompression=compress)
    return path


def _t2(shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(2).integers(100, 1000, size=shape).astype(np.int16)


def _labels(shape=SHAPE, value=1, dtype=np.uint8) -> np.ndarray:
    labels = np.zeros(shape, dtype)
    labels[2:6, 3:7, 4:9] = value
    return labels


def _truncate(path: Path, keep: float = 0.9) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


# -- radiomics: image and mask files -------------------------------------------------------------


def _radiomics(image=None, mask=None):
    """A ``make`` for radiomics: ``image(ws)`` / ``mask(ws)`` write the inputs (good ones by default)."""
    def make(ws: Path):
        image_path = image(ws) if image else _write(ws / "t2.nii.gz", _t2())
        mask_path = mask(ws) if mask else _write(ws / "mask.nii.gz", _labels())
        return ["radiomics", "--image", image_path, "--mask", mask_path, "--out", ws / "out" / "features.csv"]
    return make


def _mask_values(values) -> np.ndarray:
    mask = np.zeros(SHAPE, np.float32)
    mask[2:6, 3:7, 4:9] = np.resize(np.asarray(values, np.float32), (4, 4, 5))
    return mask


def _text_as_nrrd(ws):
    (ws / "notes.nrrd").write_text("patient notes, not an image\n")
    return ws / "notes.nrrd"


def _empty_file(ws):
    (ws / "empty.nii.gz").write_bytes(b"")
    return ws / "empty.nii.gz"


def _with(array_change, name="t2.nii.gz"):
    def write(ws):
        data = _t2().astype(np.float32)
        array_change(data)
        return _write(ws / name, data)
    return write


RADIOMICS_CASES = [
    CliCase("truncated_nii_gz_image", _radiomics(image=lambda ws: _truncate(_write(ws / "t2.nii.gz", _t2()))),
            ("t2.nii.gz", "truncated")),
    CliCase("truncated_nii_image", _radiomics(image=lambda ws: _truncate(_write(ws / "t2.nii", _t2(), False))),
            ("t2.nii", "truncated")),
    CliCase("truncated_raw_nrrd_image", _radiomics(image=lambda ws: _truncate(_write(ws / "t2.nrrd", _t2(), False))),
            ("t2.nrrd",)),
    CliCase("truncated_gzip_nrrd_mask", _radiomics(mask=lambda ws: _truncate(_write(ws / "m.nrrd", _labels()))),
            ("m.nrrd",)),
    CliCase("truncated_nii_gz_mask", _radiomics(mask=lambda ws: _truncate(_write(ws / "m.nii.gz", _labels()), 0.98)),
            ("m.nii.gz", "truncated")),
    CliCase("truncated_mha_image", _radiomics(image=lambda ws: _truncate(_write(ws / "t2.mha", _t2()))), ("t2.mha",)),
    CliCase("empty_file_image", _radiomics(image=_empty_file), ("empty.nii.gz",)),
    CliCase("text_file_named_nrrd", _radiomics(image=_text_as_nrrd), ("notes.nrrd",)),
    CliCase("rgb_image", _radiomics(image=lambda ws: _write(ws / "photo.nrrd", np.stack([_t2()] * 3, -1)
                                                            .astype(np.uint8))), ("photo.nrrd",)),
    CliCase("nan_voxels", _radiomics(image=_with(lambda a: a.__setitem__((3, 4, 5), np.nan))), ("t2.nii.gz", "nan")),
    CliCase("inf_voxels", _radiomics(image=_with(lambda a: a.__setitem__((3, 4, 5), np.inf))),
            ("t2.nii.gz", "infinite")),
    CliCase("mask_other_spacing", _radiomics(mask=lambda ws: _write(ws / "m.nii.gz", _labels(), spacing=(1, 1, 4))),
            ("m.nii.gz", "spacing")),
    CliCase("mask_other_origin", _radiomics(mask=lambda ws: _write(ws / "m.nii.gz", _labels(), origin=(5.0, 0, 0))),
            ("m.nii.gz", "origin")),
    CliCase("mask_other_direction", _radiomics(mask=lambda ws: _write(
        ws / "m.nii.gz", _labels(), direction=(0, 1, 0, 1, 0, 0, 0, 0, -1))), ("m.nii.gz", "direction")),
    CliCase("mask_other_size", _radiomics(mask=lambda ws: _write(ws / "m.nii.gz", _labels((8, 10, 11)))),
            ("m.nii.gz", "size")),
    CliCase("float_mask_075", _radiomics(mask=lambda ws: _write(ws / "prob.nii.gz", _mask_values([0.75]))),
            ("prob.nii.gz", "not an integer label map", "0.75")),
    CliCase("float_mask_0_05_1", _radiomics(mask=lambda ws: _write(ws / "prob.nii.gz", _mask_values([0.5, 1.0]))),
            ("prob.nii.gz", "not an integer label map", "0.5")),
    CliCase("empty_mask", _radiomics(mask=lambda ws: _write(ws / "m.nii.gz", np.zeros(SHAPE, np.uint8))),
            ("m.nii.gz",)),
    CliCase("one_voxel_mask", _radiomics(mask=lambda ws: _write(ws / "m.nii.gz", _one_voxel())), ("m.nii.gz",)),
]


def _one_voxel():
    mask = np.zeros(SHAPE, np.uint8)
    mask[4, 5, 6] = 1
    return mask


# -- fcf: 4D DWI and its mask --------------------------------------------------------------------

B_VALUES = (0.0, 50.0, 400.0, 800.0)


def _dwi(shape=SHAPE) -> np.ndarray:
    """(k, j, i, b) signals of a monoexponential decay, ADC 0.5-2.0e-3 mm²/s across i."""
    adc = np.broadcast_to(np.linspace(0.5e-3, 2.0e-3, shape[2]), shape)
    return (1000.0 * np.exp(-np.multiply.outer(adc, B_VALUES))).astype(np.float32)


def _write_4d(path: Path, frames: np.ndarray) -> Path:
    """A 4D NIfTI from (k, j, i, t) frames, through SimpleITK's JoinSeries (x, y, z, t)."""
    series = sitk.JoinSeries([_image(np.ascontiguousarray(frames[..., t])) for t in range(frames.shape[-1])])
    sitk.WriteImage(series, str(path), useCompression=True)
    return path


def _fcf(dwi=None, mask=None):
    def make(ws: Path):
        dwi_path = dwi(ws) if dwi else _write_4d(ws / "dwi.nii.gz", _dwi())
        mask_path = mask(ws) if mask else _write(ws / "mask.nii.gz", _labels())
        return ["fcf", "--dwi", dwi_path, "--bvalues", "0,50,400,800", "--mask", mask_path, "--out", ws / "out"]
    return make


FCF_CASES = [
    CliCase("fcf_truncated_4d_nii_gz", _fcf(dwi=lambda ws: _truncate(_write_4d(ws / "dwi.nii.gz", _dwi()), 0.95)),
            ("dwi.nii.gz", "truncated")),
    CliCase("fcf_float_mask", _fcf(mask=lambda ws: _write(ws / "prob.nii.gz", _mask_values([0.75]))),
            ("prob.nii.gz", "not an integer label map")),
    CliCase("fcf_truncated_mask", _fcf(mask=lambda ws: _truncate(_write(ws / "m.nii.gz", _labels()), 0.97)),
            ("m.nii.gz", "truncated")),
    CliCase("fcf_mask_other_spacing", _fcf(mask=lambda ws: _write(ws / "m.nii.gz", _labels(), spacing=(2, 2, 2))),
            ("'m.nii.gz'", "spacing")),
    CliCase("fcf_4d_text_file", _fcf(dwi=lambda ws: _text_as_nrrd(ws)), ("notes.nrrd",)),
]


# -- compare: segmentations ----------------------------------------------------------------------


def _compare(ai=None, corrected=None):
    def make(ws: Path):
        ai_path = ai(ws) if ai else _write(ws / "ai.nii.gz", _labels())
        corrected_path = corrected(ws) if corrected else _write(ws / "corrected.nii.gz", _labels())
        return ["compare", "--ai", ai_path, "--corrected", corrected_path, "--out", ws / "out"]
    return make


def _seg_nrrd(ws: Path) -> Path:
    context = MRMLContext.create()
    geometry = Geometry.from_spacing(SHAPE, SPACING)
    node = arrays.add_segmentation_from_labels(context, _labels(), geometry, {1: ("tumour", (1, 0, 0))}, "ai")
    return io.save_node(node, ws / "ai.seg.nrrd")


COMPARE_CASES = [
    CliCase("compare_truncated_seg_nrrd", _compare(ai=lambda ws: _truncate(_seg_nrrd(ws), 0.9)),
            ("ai.seg.nrrd", "truncated")),
    CliCase("compare_float_label_map", _compare(corrected=lambda ws: _write(ws / "c.nii.gz", _mask_values([0.75]))),
            ("c.nii.gz", "not an integer label map")),
    CliCase("compare_empty_file", _compare(ai=_empty_file), ("empty.nii.gz",)),
    CliCase("compare_4d_label_file", _compare(ai=lambda ws: _write_4d(ws / "ai4d.nii.gz", _dwi())),
            ("ai4d.nii.gz", "4D")),
]


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=c.marks, id=c.id) for c in RADIOMICS_CASES + FCF_CASES + COMPARE_CASES])
def test_commands_refuse_each_unreadable_or_unsafe_file_in_one_line(case, tmp_path, capsys):
    assert_cli_refuses(case, tmp_path, capsys)


# -- library: io and logic on a scene holding the user's work ------------------------------------


@pytest.fixture
def user_scene():
    """A scene with a user's volume, segmentation and table, which no refused call may change."""
    context = MRMLContext.create()
    geometry = Geometry.from_spacing(SHAPE, SPACING)
    volume = arrays.add_volume_from_array(context, _t2(), geometry, "T2w")
    segmentation = arrays.add_segmentation_from_labels(context, _labels(), geometry, {1: ("tumour", (1, 0, 0))},
                                                       "Tumour", volume)
    table = arrays.add_table(context, {"case_id": ["NB01", "NB02"], "volume_ml": [12.5, 3.25]}, "My results")
    return context, volume, segmentation, table


def _bundle(ws: Path) -> Path:
    """A real bundle written by io.save_scene: a volume, a segmentation, a table and a DWI sequence."""
    context = MRMLContext.create()
    geometry = Geometry.from_spacing(SHAPE, SPACING)
    volume = arrays.add_volume_from_array(context, _t2(), geometry, "T2w")
    arrays.add_segmentation_from_labels(context, _labels(), geometry, {1: ("tumour", (1, 0, 0))}, "Tumour", volume)
    arrays.add_table(context, {"a": [1.0]}, "table")
    return io.save_scene(context, ws / "scene.mrb")


def _bundle_entries(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as source:
        return {info.filename: source.read(info) for info in source.infolist()}


def _write_bundle(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as target:
        for name, data in entries.items():
            target.writestr(name, data)
    return path


def _edit_bundle(bundle: Path, edit) -> Path:
    """Rewrite the .mrml inside ``bundle`` with ``edit(text) -> text`` (other entries copied as they are)."""
    entries = _bundle_entries(bundle)
    (scene,) = [name for name in entries if name.endswith(".mrml")]
    entries[scene] = edit(entries[scene].decode()).encode()
    return _write_bundle(bundle.with_name("hostile.mrb"), entries)


def _point_image_at(target: str, attribute: str = "fileName"):
    """An edit that makes the volume's storage node name ``target`` in ``attribute``."""
    def edit(text: str) -> str:
        text, count = re.subn(rf'{attribute}="Data/T2w\.nrrd"', f'{attribute}="{target}"', text, count=1)
        assert count == 1, f"no {attribute} of T2w in the scene: {text[:300]}"
        return text
    return edit


def _outside_file(ws: Path) -> Path:
    secret = ws.parent / f"{ws.name}_elsewhere" / "secret.nrrd"
    return _write(secret, _t2())


def _nhdr_pointing_outside(ws: Path, edit=lambda header, data_file: header) -> Path:
    """A bundle whose volume is a detached .nhdr (inside) whose data file lies outside.

    ``edit(header, data_file)`` may rewrite the header further (another encoding, a LIST of files ...).
    """
    outside = _write(ws.parent / f"{ws.name}_elsewhere" / "secret.nhdr", _t2(), compress=False)
    bundle = _bundle(ws)
    entries = _bundle_entries(bundle)
    (scene,) = [name for name in entries if name.endswith(".mrml")]
    folder = scene.rsplit("/", 1)[0]
    raw_name = re.search(r"data file: (\S+)", outside.read_text(errors="replace")).group(1)
    header = outside.read_text(errors="replace").replace(f"data file: {raw_name}",
                                                       f"data file: {outside.parent / raw_name}")
    entries[f"{folder}/Data/T2w.nhdr"] = edit(header, outside.parent / raw_name).encode()
    entries[scene] = _point_image_at("Data/T2w.nhdr")(entries[scene].decode()).encode()
    entries[scene] = entries[scene].replace(b'fileListMember0="Data/T2w.nrrd"', b'fileListMember0="Data/T2w.nhdr"')
    return _write_bundle(ws / "hostile.mrb", entries)


def _zip_slip(ws: Path) -> Path:
    bundle = ws / "slip.mrb"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("scene/scene.mrml", "<MRML></MRML>")
        archive.writestr("../../outside.txt", "x")
    return bundle


def _no_scene(ws: Path) -> Path:
    bundle = ws / "data_only.mrb"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("scene/Data/T2w.nrrd", b"NRRD0004\n")
    return bundle


def _truncated_data_in_bundle(ws: Path) -> Path:
    bundle = _bundle(ws)
    entries = _bundle_entries(bundle)
    (segmentation,) = [name for name in entries if name.endswith(".seg.nrrd")]
    entries[segmentation] = entries[segmentation][: len(entries[segmentation]) * 9 // 10]
    return _write_bundle(ws / "cut.mrb", entries)


def _seq_nrrd(ws: Path) -> Path:
    context = MRMLContext.create()
    geometry = Geometry.from_spacing(SHAPE, SPACING)
    sequence = context.add_node("vtkMRMLSequenceNode", "DWI")
    for b, frame in zip(B_VALUES, np.moveaxis(_dwi(), -1, 0)):
        volume = arrays.add_volume_from_array(context, np.ascontiguousarray(frame), geometry, f"b{b:g}")
        sequence.SetDataNodeAtValue(volume, f"{b:g}")
    return io.save_node(sequence, ws / "dwi.seq.nrrd")


LIBRARY_CASES = [
    ("load_volume_truncated_nii_gz", lambda c, ws: io.load_volume(c, _truncate(_write(ws / "a.nii.gz", _t2()))),
     FileFormatError, ("a.nii.gz", "truncated", "expected 1920 bytes")),
    ("load_volume_truncated_nii", lambda c, ws: io.load_volume(c, _truncate(_write(ws / "a.nii", _t2(), False))),
     FileFormatError, ("a.nii", "truncated")),
    ("load_volume_truncated_mhd_raw", lambda c, ws: io.load_volume(c, _cut_mhd(ws)), FileFormatError,
     ("a.mhd", "a.raw", "truncated")),
    ("load_volume_empty_file", lambda c, ws: io.load_volume(c, _empty_file(ws)), FileFormatError, ("empty.nii.gz",)),
    ("load_volume_gzip_of_text", lambda c, ws: io.load_volume(c, _gzip_text(ws)), FileFormatError, ("text.nii.gz",)),
    ("load_volume_text_as_nrrd", lambda c, ws: io.load_volume(c, _text_as_nrrd(ws)), FileFormatError,
     ("notes.nrrd",)),
    ("load_volume_4d_series", lambda c, ws: io.load_volume(c, _write_4d(ws / "dwi.nii.gz", _dwi())),
     ImageDimensionError, ("dwi.nii.gz", "4D series of 4 volumes")),
    ("load_volume_2d_image", lambda c, ws: io.load_volume(c, _write(ws / "slice.nrrd", _t2((1, 10, 12)))),
     ImageDimensionError, ("slice.nrrd", "2D")),
    ("load_volume_nan_in_nifti", lambda c, ws: io.load_volume(c, _with(lambda a: a.__setitem__((1, 1, 1), np.nan))(ws)),
     InvalidValuesError, ("t2.nii.gz", "1 voxels", "NaN")),
    ("load_volume_inf_voxels", lambda c, ws: io.load_volume(c, _with(lambda a: a.__setitem__((1, 1, 1), -np.inf))(ws)),
     InvalidValuesError, ("t2.nii.gz", "1 voxels")),
    ("load_volume_rgb", lambda c, ws: io.load_volume(c, _write(ws / "rgb.nrrd", np.stack([_t2()] * 3, -1)
                                                               .astype(np.uint8))), FileFormatError, ("rgb.nrrd",)),
    ("load_segmentation_truncated_seg_nrrd", lambda c, ws: io.load_segmentation(c, _truncate(_seg_nrrd(ws))),
     FileFormatError, ("ai.seg.nrrd", "truncated")),
    ("load_segmentation_float_mask", lambda c, ws: io.load_segmentation(c, _write(ws / "p.nii.gz",
                                                                                  _mask_values([0.75]))),
     InvalidValuesError, ("p.nii.gz", "not an integer label map", "80 voxels", "0.75")),
    ("load_labelmap_nan_mask", lambda c, ws: io.load_volume(c, _write(ws / "p.nrrd", _mask_values([1.0, np.nan])),
                                                            labelmap=True, require_finite_values=False),
     InvalidValuesError, ("p.nrrd", "not an integer label map", "nan")),
    ("load_sequence_truncated_seq_nrrd", lambda c, ws: io.load_sequence(c, _truncate(_seq_nrrd(ws))),
     FileFormatError, ("dwi.seq.nrrd", "truncated")),
    ("load_frames_truncated_4d", lambda c, ws: io.load_frames(c, _truncate(_write_4d(ws / "d.nii.gz", _dwi()))),
     FileFormatError, ("d.nii.gz", "truncated")),
    ("load_frames_of_a_3d_file", lambda c, ws: io.load_frames(c, _write(ws / "t2.nii.gz", _t2())),
     ImageDimensionError, ("t2.nii.gz", "single 3D volume")),
    ("load_frames_nan_frame", lambda c, ws: io.load_frames(c, _write_4d(ws / "d.nii.gz", _nan_dwi())),
     InvalidValuesError, ("d.nii.gz", "1 voxels", "NaN")),
    ("mrb_parent_path", lambda c, ws: io.load_scene(c, _edit_bundle(
        _bundle(ws), _point_image_at(f"../../{ws.name}_elsewhere/secret.nrrd"))),
     UnsafeArchiveError, ("hostile.mrb", "secret.nrrd", "outside the bundle", "T2w")),
    ("mrb_absolute_path", lambda c, ws: io.load_scene(c, _edit_bundle(_bundle(ws), _point_image_at(
        str(_outside_file(ws))))), UnsafeArchiveError, ("hostile.mrb", "secret.nrrd", "outside the bundle")),
    ("mrb_file_list_member_outside", lambda c, ws: io.load_scene(c, _edit_bundle(_bundle(ws), _point_image_at(
        str(_outside_file(ws)), "fileListMember0"))), UnsafeArchiveError, ("secret.nrrd", "outside the bundle")),
    ("mrb_remote_uri", lambda c, ws: io.load_scene(c, _edit_bundle(_bundle(ws), lambda t: t.replace(
        'fileName="Data/T2w.nrrd"', 'fileName="Data/T2w.nrrd" uri="http://example.org/x.nrrd"', 1))),
     UnsafeArchiveError, ("http://example.org/x.nrrd",)),
    ("mrb_nhdr_data_file_outside", lambda c, ws: io.load_scene(c, _nhdr_pointing_outside(ws)), UnsafeArchiveError,
     ("T2w.nhdr", "secret", "outside the bundle")),
    ("mrb_text_encoded_nhdr_data_file_outside", lambda c, ws: io.load_scene(c, _nhdr_pointing_outside(
        ws, lambda h, _: re.sub(r"encoding: \S+", "encoding: ascii", h))), UnsafeArchiveError,
     ("T2w.nhdr", "secret", "outside the bundle")),
    ("mrb_nhdr_list_of_data_files_outside", lambda c, ws: io.load_scene(c, _nhdr_pointing_outside(
        ws, lambda h, data: h.replace(f"data file: {data}", "data file: LIST 2").rstrip("\n") + f"\n\n{data}\n")),
     UnsafeArchiveError, ("T2w.nhdr", "secret", "outside the bundle")),
    ("mrb_nhdr_numbered_data_files_outside", lambda c, ws: io.load_scene(c, _nhdr_pointing_outside(
        ws, lambda h, data: h.replace(f"data file: {data}", f"data file: {data.parent}/slice%03d.raw 1 8 1 2"))),
     UnsafeArchiveError, ("T2w.nhdr", "outside the bundle")),
    ("mrb_zip_slip_entry", lambda c, ws: io.load_scene(c, _zip_slip(ws)), UnsafeArchiveError, ("outside",)),
    ("mrb_without_mrml", lambda c, ws: io.load_scene(c, _no_scene(ws)), FileFormatError, ("no .mrml scene",)),
    ("mrb_with_truncated_segmentation", lambda c, ws: io.load_scene(c, _truncated_data_in_bundle(ws)),
     FileFormatError, ("tumour.seg.nrrd", "truncated")),
    ("mrb_invalid_xml", lambda c, ws: io.load_scene(c, _edit_bundle(_bundle(ws), lambda t: t + "<unclosed"))
     , FileFormatError, ("not valid MRML XML",)),
]


def _cut_mhd(ws: Path) -> Path:
    header = _write(ws / "a.mhd", _t2(), compress=False)
    _truncate(ws / "a.raw", 0.5)
    return header


def _gzip_text(ws: Path) -> Path:
    (ws / "text.nii.gz").write_bytes(gzip.compress(b"not a nifti header at all " * 20))
    return ws / "text.nii.gz"


def _nan_dwi() -> np.ndarray:
    dwi = _dwi()
    dwi[1, 2, 3, 2] = np.nan
    return dwi


@pytest.mark.parametrize("make, error, expect", [pytest.param(*c[1:], id=c[0]) for c in LIBRARY_CASES])
def test_library_refuses_and_leaves_the_scene_unchanged(user_scene, tmp_path, make, error, expect):
    context = user_scene[0]
    workspace = tmp_path / "ws"
    workspace.mkdir()
    assert_scene_unchanged_after(context, lambda: make(context, workspace), error, expect)


def test_segment_volumes_table_of_an_empty_segmentation_keeps_the_users_table(user_scene):
    from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic

    context, _, _, table = user_scene
    empty = context.add_node("vtkMRMLSegmentationNode", "Nothing drawn yet")
    logic = NeuroblastomaSegLogic(context)
    assert_scene_unchanged_after(context, lambda: logic.segment_volumes_table(empty, table), EmptyMaskError,
                                 ("Nothing drawn yet", "no segments"))
    assert arrays.table_columns(table) == {"case_id": ["NB01", "NB02"], "volume_ml": [12.5, 3.25]}


def test_add_table_with_ragged_columns_keeps_the_given_table(user_scene):
    context, _, _, table = user_scene
    assert_scene_unchanged_after(context, lambda: arrays.add_table(context, {"a": [1.0], "b": [1.0, 2.0]}, "x", table),
                                 InputError, ("different lengths",))
