"""Resolving what a user gives as the model (folder, dataset.json, zip) and the pipeline choices."""

from __future__ import annotations

import zipfile

import pytest

from virtualbiopsy.errors import FileFormatError, InputError, UnsafeArchiveError
from virtualbiopsy.segmentation.demo_model import DEMO_MODEL_NOTICE, demo_model_path
from virtualbiopsy.segmentation.model_source import ModelArchives, default_model_path, is_demo_model
from virtualbiopsy.segmentation.preprocessing import PreprocessingPipeline


def _zip_model(target):
    with zipfile.ZipFile(target, "w") as archive:
        for path in demo_model_path().rglob("*"):
            if path.is_file():
                archive.write(path, "Dataset/" + str(path.relative_to(demo_model_path())))
    return target


def test_folder_dataset_json_and_zip_resolve_to_a_model_folder(tmp_path):
    archives = ModelArchives()
    folder = demo_model_path()
    assert archives.folder(str(folder)) == folder
    assert archives.folder(folder / "dataset.json") == folder
    zipped = _zip_model(tmp_path / "model.zip")
    extracted = archives.folder(zipped)
    assert (extracted / "plans.json").is_file() and (extracted / "fold_0").is_dir()
    assert archives.folder(zipped) == extracted  # extracted once, reused
    assert not is_demo_model(extracted) and is_demo_model(folder) and default_model_path() == str(folder.resolve())


def test_descriptions_name_the_problem(tmp_path):
    archives = ModelArchives()
    model, message, problem = archives.describe(demo_model_path())
    assert model is not None and not problem and DEMO_MODEL_NOTICE in message
    model, message, problem = archives.describe(tmp_path / "nothing")
    assert model is None and problem and "No model folder" in message
    _, message, problem = archives.describe(_zip_model(tmp_path / "m.zip"))
    assert not problem and "extracted when the model is run" in message
    with pytest.raises(InputError, match="Choose the nnU-Net model"):
        archives.folder("  ")
    with pytest.raises(FileFormatError, match="No model archive"):
        archives.folder(tmp_path / "missing.zip")


def test_zip_with_escaping_entry_or_wrong_checksum_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../evil.txt", "x")
    with pytest.raises(UnsafeArchiveError):
        ModelArchives().folder(bad)
    assert not (tmp_path.parent / "evil.txt").exists()
    with pytest.raises(UnsafeArchiveError):
        ModelArchives().folder(_zip_model(tmp_path / "m.zip"), sha256="0" * 64)


def test_preprocessing_pipeline_is_built_from_the_panel_choices_and_refuses_bad_spacing():
    assert PreprocessingPipeline.from_choices() is None
    assert PreprocessingPipeline.from_choices(denoise="none", normalise="none", spacing_mm=" ") is None
    pipeline = PreprocessingPipeline.from_choices(n4=True, denoise="curvature_flow", normalise="percentile")
    assert pipeline.n4 is not None and pipeline.denoise.method == "curvature_flow" and pipeline.resample is None
    assert pipeline.normalise.method == "percentile"
    with pytest.raises(InputError, match="three numbers"):
        PreprocessingPipeline.from_choices(spacing_mm="1,x,4")
    with pytest.raises(InputError, match="three numbers"):
        PreprocessingPipeline.from_choices(spacing_mm="1,1")
    with pytest.raises(InputError, match="positive|> 0|spacing"):
        PreprocessingPipeline.from_choices(spacing_mm="1,0,4")
    with pytest.raises(InputError, match="Denoising method"):
        PreprocessingPipeline.from_choices(denoise="median")
