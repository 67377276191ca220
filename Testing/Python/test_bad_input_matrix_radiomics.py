"""Bad-input matrix, radiomics settings and the IBSI report: hostile or wrong pyradiomics parameter files, settings
pyradiomics would misuse, regions that cannot be extracted, and IBSI reference folders that are incomplete.

Every case runs the command line on files written here (SimpleITK, outside the library's own IO) and is held to
the refusal contract of ``refusals.assert_cli_refuses``: exit 2, one line naming the problem, no traceback,
nothing written. Image-file problems (truncated, NaN, float masks, grids) are in test_bad_input_matrix_io.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from refusals import CliCase, assert_cli_refuses

SHAPE = (8, 10, 12)  # k, j, i
SPACING = (1.5, 1.5, 4.0)


def _write(path: Path, array: np.ndarray, spacing=SPACING, origin=(0.0, 0.0, 0.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: array.ndim])
    image.SetOrigin(origin[: array.ndim])
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _t2(shape=SHAPE) -> np.ndarray:
    return np.random.default_rng(4).integers(100, 1000, size=shape).astype(np.int16)


def _labels(shape=SHAPE, value=1) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[(slice(2, 6), slice(3, 7), slice(4, 9))[: len(shape)]] = value
    return labels


def _case(*extra, image=None, mask=None, params_text=None):
    """A ``make``: a good T2 and mask unless replaced; ``params_text`` is written to params.yaml (--params)."""
    def make(ws: Path):
        image_path = image(ws) if image else _write(ws / "t2.nii.gz", _t2())
        mask_path = mask(ws) if mask else _write(ws / "mask.nii.gz", _labels())
        argv = ["radiomics", "--image", image_path, "--mask", mask_path, "--out", ws / "out" / "features.csv"]
        if params_text is not None:
            (ws / "params.yaml").write_text(params_text)
            argv += ["--params", ws / "params.yaml"]
        return argv + list(extra)
    return make


def _ibsi(*extra):
    def make(ws: Path):
        return ["ibsi-report", "--out", ws / "report", *[a(ws) if callable(a) else a for a in extra]]
    return make


def _folder_with(*names):
    """A folder holding empty files of these names (an incomplete reference folder)."""
    def make(ws: Path) -> Path:
        folder = ws / "reference"
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("")
        folder.mkdir(exist_ok=True)
        return folder
    return make


_OS_SYSTEM = "setting: !!python/object/apply:os.system ['touch hacked']\n"
_GOOD_SECTIONS = "imageType:\n  Original: {}\nfeatureClass:\n  firstorder:\n"

CASES = [
    CliCase("params_yaml_python_object_tag", _case(params_text=_OS_SYSTEM),
            ("params.yaml", "!!python/object/apply:os.system", "nothing was run")),
    CliCase("params_yaml_python_name_tag", _case(params_text="setting:\n  binWidth: !!python/name:os.getcwd\n"),
            ("params.yaml", "!!python/name:os.getcwd", "line 2")),
    CliCase("params_yaml_syntax_error", _case(params_text="setting: [binWidth: 25\n"),
            ("params.yaml", "not valid yaml", "line 2")),
    CliCase("params_not_a_mapping", _case(params_text="- binWidth\n- 25\n"), ("params.yaml", "holds a list")),
    CliCase("params_unknown_section", _case(params_text="settings:\n  binWidth: 25\n"),
            ("params.yaml", "'settings'", "setting, imageType")),
    CliCase("params_unknown_setting_name", _case(params_text="setting:\n  binWidht: 25\n" + _GOOD_SECTIONS),
            ("pyradiomics refused", "binWidht", "was not defined")),
    CliCase("params_unknown_feature_class", _case(params_text="imageType:\n  Original: {}\nfeatureClass:\n  glcmm:\n"),
            ("pyradiomics refused", "glcmm")),
    CliCase("params_unknown_image_type", _case(params_text="imageType:\n  Wavelett: {}\n"),
            ("pyradiomics refused", "Wavelett")),
    CliCase("params_negative_bin_width", _case(params_text="setting:\n  binWidth: -5\n" + _GOOD_SECTIONS),
            ("pyradiomics refused", "binWidth")),
    CliCase("params_file_missing", lambda ws: _case()(ws) + ["--params", ws / "nowhere.yaml"], ("nowhere.yaml",)),
    CliCase("bin_width_negative", _case("--bin-width", "-25"), ("--bin-width", "> 0")),
    CliCase("bin_width_zero", _case("--bin-width", "0"), ("--bin-width", "> 0")),
    CliCase("log_sigma_text", _case("--log-sigma", "1,two"), ("--log-sigma", "1,two")),
    CliCase("log_sigma_negative", _case("--log-sigma", "1,-3"), ("sigma", "> 0")),
    CliCase("preset_unknown", _case("--preset", "ct_lung"), ("preset", "ct_lung", "study_mr")),
    CliCase("label_not_in_mask", _case("--label", "3"), ("label 3", "mask.nii.gz", "labels present: 1")),
    CliCase("mask_off_grid_half_voxel", _case(mask=lambda ws: _write(ws / "mask.nii.gz", _labels(),
                                                                     origin=(0.75, 0.0, 0.0))),
            ("mask.nii.gz", "voxel grid", "origin")),
    CliCase("image_2d", _case(image=lambda ws: _write(ws / "slice.nii.gz", _t2((10, 12))),
                              mask=lambda ws: _write(ws / "slice_mask.nii.gz", _labels((10, 12)))),
            ("slice.nii.gz", "3D")),
    CliCase("region_flatter_than_minimum_dimensions",
            _case(mask=lambda ws: _write(ws / "line.nii.gz", _line()),
                  params_text="setting:\n  minimumROIDimensions: 2\n" + _GOOD_SECTIONS),
            ("line.nii.gz", "minimumROIDimensions")),
    CliCase("out_not_csv", lambda ws: _case()(ws)[:-1] + [ws / "features.xlsx"], ("--out", ".csv")),
    CliCase("ibsi_phantom_folder_incomplete", _ibsi("--phantom", _folder_with("image.nii.gz"), "--sections", "none"),
            ("mask.nii.gz", "reference_values.csv")),
    CliCase("ibsi_sections_unknown", _ibsi("--sections", "ct,laws"), ("--sections", "ct, filters")),
    CliCase("ibsi_reference_without_ct_phantom", _ibsi("--reference", _folder_with("README.md"), "--sections", "ct"),
            ("ibsi1_ct_phantom", "--reference")),
    CliCase("ibsi_reference_without_filter_maps",
            _ibsi("--reference", _folder_with("ibsi2_filters/phantoms/x.nii.gz"), "--sections", "filters"),
            ("ibsi2_filters", "reference_response_maps")),
    CliCase("ibsi_reference_ct_values_missing",
            _ibsi("--reference", _folder_with("ibsi1_ct_phantom/image.nii.gz", "ibsi1_ct_phantom/mask.nii.gz"),
                  "--sections", "ct"), ("reference_values_config_a.csv",)),
]


def _line() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[4, 5, 2:9] = 1  # seven voxels along one axis
    return labels


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_radiomics_commands_refuse_each_bad_input_and_write_nothing_outside(case, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_cli_refuses(case, tmp_path / "ws", capsys)
    assert not (tmp_path / "hacked").exists() and not (tmp_path / "ws" / "hacked").exists()
