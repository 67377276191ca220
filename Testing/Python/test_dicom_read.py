"""Reading DICOM (issue 11): the phantom written as MR series with each vendor's b-value convention reads back
to the study's own voxels, grids, b-values and frame times; highdicom gives the same volumes; real files
shipped with pydicom (compressed transfer syntaxes) and nibabel (a Philips enhanced MR) are read; a DICOM
folder works wherever an image is taken; and damaged series are refused naming what is wrong."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from refusals import CliCase, assert_cli_refuses, write_nrrd

from virtualbiopsy.cli.main import main
from virtualbiopsy.dicom import series as dicom_series
from virtualbiopsy.dicom.phantom import B_VALUE_CONVENTIONS, write_study_dicom
from virtualbiopsy.errors import ImageDimensionError
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.phantom import generate_study
from virtualbiopsy.sample_study import geometry_of, write_study

DCE_TIMES = (0.0, 10.0, 20.0, 30.0, 40.0, 60.0, 90.0)


@pytest.fixture(scope="module")
def dicom_study(small_study, tmp_path_factory):
    study = small_study(5, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0), dce_times=DCE_TIMES)
    folder = tmp_path_factory.mktemp("dicom")
    written = write_study_dicom(study, folder / "standard", "standard")
    write_study(study, folder / "nrrd")
    return folder, written


@pytest.mark.parametrize("convention", B_VALUE_CONVENTIONS)
def test_each_vendor_b_value_convention_reads_back_the_truth(small_study, tmp_path, convention):
    study = small_study(5, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0), dce_times=DCE_TIMES)
    write_study_dicom(study, tmp_path, convention)
    (dwi_info,) = dicom_series.find_series(tmp_path / "dwi")
    dwi = dicom_series.read_series(dwi_info)
    assert dwi.kind == "dwi" and dwi.values == list(study.b_values)
    expected_source = {"standard": "(0018,9087)", "siemens": "(0019,100C)", "ge": "(0043,1039)",
                       "philips": "(2001,1003)"}[convention]
    assert expected_source in dwi.source
    np.testing.assert_array_equal(np.array(dwi.arrays), study.dwi.astype(np.float32))
    np.testing.assert_allclose(dwi.geometry.ijk_to_ras, geometry_of(study.dwi_grid).ijk_to_ras, atol=1e-4)


def test_the_t2w_and_dce_read_back_on_the_grid_of_the_nrrd_files(small_study, dicom_study):
    study = small_study(5, t2_spacing=(3.0, 3.0, 4.0), dwi_spacing=(4.0, 4.0, 4.0), dce_times=DCE_TIMES)
    folder, _ = dicom_study
    context = MRMLContext.create()
    nrrd = io.load_volume(context, folder / "nrrd" / "t2w.nrrd")
    dicom = io.load_volume(context, folder / "standard" / "t2w")
    assert not Geometry.from_node(dicom).differences(Geometry.from_node(nrrd), tolerance_mm=1e-4)
    from virtualbiopsy.mrml.arrays import array_from_volume

    np.testing.assert_array_equal(array_from_volume(dicom), array_from_volume(nrrd))
    uids = dicom.GetAttribute("DICOM.instanceUIDs").split()
    assert len(uids) == study.t2w.shape[0] and len(set(uids)) == len(uids)
    frames, times = io.load_frames(context, folder / "standard#DCE")
    assert [float(t) for t in times] == list(DCE_TIMES)  # AcquisitionTime, relative to the first frame
    np.testing.assert_array_equal(np.array([array_from_volume(f) for f in frames]), study.dce.astype(np.float32))
    assert "AcquisitionTime" in frames[0].GetAttribute("VirtualBiopsy.DicomFrameValuesFrom")


def test_the_volume_equals_highdicoms_get_volume_from_series(dicom_study):
    import highdicom

    folder, _ = dicom_study
    files = sorted((folder / "standard" / "t2w").glob("*.dcm"))
    volume = highdicom.get_volume_from_series([pydicom.dcmread(f) for f in files])
    ours = dicom_series.load(folder / "standard" / "t2w")
    array, geometry = _from_highdicom(volume)
    np.testing.assert_array_equal(ours.arrays[0], array)
    np.testing.assert_allclose(ours.geometry.ijk_to_ras, geometry.ijk_to_ras, atol=1e-6)


def _from_highdicom(volume) -> tuple[np.ndarray, Geometry]:
    """highdicom's (slice, row, column) LPS affine as our [k, j, i] RAS grid, slices right-handed."""
    matrix = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.affine[:, [2, 1, 0, 3]]
    array = np.asarray(volume.array, np.float32)
    if np.linalg.det(matrix[:3, :3]) < 0:
        matrix[:3, 3] += matrix[:3, 2] * (array.shape[0] - 1)
        matrix[:3, 2] *= -1
        array = array[::-1]
    return array, Geometry(array.shape, matrix)


def test_a_philips_enhanced_mr_from_nibabel_equals_highdicom(tmp_path):
    import highdicom
    import nibabel

    source = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / "philips_mprage.dcm.gz"
    if not source.is_file():
        pytest.skip("nibabel's test data (philips_mprage.dcm.gz) is not installed")
    path = tmp_path / "mprage" / "mprage.dcm"
    path.parent.mkdir()
    path.write_bytes(gzip.decompress(source.read_bytes()))
    (info,) = dicom_series.find_series(path.parent)
    assert info.enhanced and info.frames == 176 and info.manufacturer.startswith("Philips")
    ours = dicom_series.read_series(info)
    array, geometry = _from_highdicom(highdicom.Image.from_dataset(pydicom.dcmread(path)).get_volume())
    np.testing.assert_allclose(ours.arrays[0], array, rtol=1e-6)
    np.testing.assert_allclose(ours.geometry.ijk_to_ras, geometry.ijk_to_ras, atol=1e-4)


def _stack_of(name: str, folder: Path, n: int = 4, spacing: float = 2.0) -> Path:
    """n copies of one of pydicom's real MR slices as a series, ``spacing`` mm apart along its normal."""
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for k in range(n):
        ds = pydicom.dcmread(get_testdata_file(name))
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], position[2] + spacing * k]
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"{k:03d}.dcm")
    return folder


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_bigendian.dcm"])
def test_compressed_and_big_endian_real_mr_decode_to_the_uncompressed_pixels(tmp_path, name):
    plain = dicom_series.load(_stack_of("MR_small.dcm", tmp_path / "plain"))
    try:
        other = dicom_series.load(_stack_of(name, tmp_path / "other"))
    except Exception as error:  # a decoder plugin that is not installed must be named, not crash
        pytest.fail(f"{name}: {error}")
    np.testing.assert_array_equal(other.arrays[0], plain.arrays[0])
    assert plain.geometry.shape == (4, 64, 64)
    np.testing.assert_allclose(plain.geometry.spacing, (0.3125, 0.3125, 2.0))


# -- bad series -----------------------------------------------------------------------------------

def _phantom_series(role: str, edit=None):
    """A ``make`` copying one series of a freshly written phantom (tiny grid) and applying ``edit(folder)``."""
    def make(ws: Path):
        study = generate_study(1, t2_spacing=(12.0, 12.0, 16.0), dwi_spacing=(12.0, 12.0, 16.0),
                               dce_times=(0.0, 20.0, 40.0), b_values=(0, 500, 1000))
        written = write_study_dicom(study, ws / "dicom")
        folder = written["folders"][role]
        if edit is not None:
            edit(folder)
        return folder
    return make


def _files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.dcm"))


def _rewrite(folder: Path, change, which=None):
    for index, path in enumerate(_files(folder)):
        if which is None or index in which:
            ds = pydicom.dcmread(path)
            change(ds, index)
            ds.save_as(path)


def _remove_middle_slice(folder):
    _files(folder)[len(_files(folder)) // 2].unlink()


def _duplicate_slice(folder):
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(_files(folder)[3])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(folder / "copy.dcm")


def _shift_one_slice(folder):
    def change(ds, index):
        position = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [position[0], position[1], position[2] + 3.0]
    _rewrite(folder, change, which={4})


def _tilt_one_slice(folder):
    def change(ds, index):
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0.8, 0.6]
    _rewrite(folder, change, which={2})


def _truncate_one(folder):
    path = _files(folder)[2]
    path.write_bytes(path.read_bytes()[:-500])


def _strip_b_values(folder):
    def change(ds, index):
        del ds.DiffusionBValue
    _rewrite(folder, change)


def test_a_dwi_without_b_value_tags_is_read_in_instance_order_and_fitted_with_the_given_b_values(tmp_path):
    context = MRMLContext.create()
    tagged = _phantom_series("dwi")(tmp_path / "a")
    untagged = _phantom_series("dwi", _strip_b_values)(tmp_path / "b")
    frames, values = io.load_frames(context, tagged)
    bare, none = io.load_frames(context, untagged)
    assert values == ["0", "500", "1000"] and none is None
    for volume, same in zip(frames, bare, strict=True):  # the same volumes in the same order
        np.testing.assert_array_equal(arrays.array_from_volume(volume), arrays.array_from_volume(same))
    with pytest.raises(ImageDimensionError, match="4D series of 3 volumes"):
        io.load_volume(context, untagged)


def _strip_some_b_values(folder):
    def change(ds, index):
        del ds.DiffusionBValue
    _rewrite(folder, change, which={0, 1})


def _strip_timing(folder):
    def change(ds, index):
        for keyword in ("TemporalPositionIdentifier", "NumberOfTemporalPositions", "TriggerTime", "AcquisitionTime",
                        "ContentTime"):
            if keyword in ds:
                delattr(ds, keyword)
    _rewrite(folder, change)


def _second_series(folder):
    from pydicom.uid import generate_uid

    other = folder / "other"
    other.mkdir()
    uid = generate_uid()
    for path in _files(folder)[:3]:
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.SeriesDescription = uid, 9, "localiser"
        ds.SOPInstanceUID = generate_uid()
        ds.save_as(other / path.name)


def _only_a_dicomdir(folder):
    from pydicom.fileset import FileSet

    target = folder.parent / "cd"
    target.mkdir()
    fileset = FileSet()
    fileset.add(pydicom.dcmread(_files(folder)[0]))
    fileset.write(target)
    for path in target.rglob("*"):
        if path.is_file() and path.name != "DICOMDIR":
            path.unlink()
    shutil.rmtree(folder)
    target.rename(folder)


def _not_dicom(folder):
    shutil.rmtree(folder)
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")


def _volume_command(edit=None, choice=""):
    def make(ws: Path):
        folder = _phantom_series("t2w", edit)(ws)
        return ["preprocess", "--image", f"{folder}{choice}", "--normalise", "zscore", "--out", ws / "out.nrrd"]
    return make


def _dwi_command(edit=None, extra=(), role="dwi"):
    def make(ws: Path):
        folder = _phantom_series(role, edit)(ws)
        mask = write_nrrd(ws / "mask.nrrd", np.ones((8, 8, 8), np.uint8))
        return ["fcf", "--dwi", folder, "--mask", mask, "--out", ws / "out", *extra]
    return make


def _dce_command(edit=None):
    def make(ws: Path):
        folder = _phantom_series("dce", edit)(ws)
        mask = write_nrrd(ws / "mask.nrrd", np.ones((8, 8, 8), np.uint8))
        return ["dce", "--series", folder, "--mask", mask, "--out", ws / "out"]
    return make


BAD_SERIES = [
    CliCase("missing-slice", _volume_command(_remove_middle_slice), ("1 slice(s) missing",)),
    CliCase("duplicated-slice", _volume_command(_duplicate_slice), ("9 slices at 8 positions", "duplicated")),
    CliCase("non-uniform-spacing", _volume_command(_shift_one_slice), ("non-uniform slice spacing",)),
    CliCase("mixed-orientations", _volume_command(_tilt_one_slice), ("2 different orientations",)),
    CliCase("truncated-file", _volume_command(_truncate_one), ("Could not read the pixels", "002")),
    CliCase("two-series-without-a-choice", _volume_command(_second_series),
            ("holds 2 series", "localiser", "#NUMBER")),
    CliCase("choice-matching-nothing", _volume_command(choice="#FLAIR"), ("#FLAIR", "matches no series")),
    CliCase("only-a-dicomdir", _volume_command(_only_a_dicomdir), ("DICOMDIR",)),
    CliCase("no-dicom-in-folder", _volume_command(_not_dicom), ("No DICOM image", "1 not DICOM")),
    CliCase("dwi-given-as-a-volume", lambda ws: ["preprocess", "--image", _phantom_series("dwi")(ws), "--normalise",
                                                 "zscore", "--out", ws / "out.nrrd"], ("4D series of 3 volumes",)),
    CliCase("dwi-without-b-value-tags", _dwi_command(_strip_b_values),
            ("carries no b-value tag", "Give the b-values with --b-values", "InstanceNumber order")),
    CliCase("dwi-b-values-not-matching-the-frames", _dwi_command(_strip_b_values, ["--bvalues", "0,1000"]),
            ("2 b-values for the 3 DWI volumes",)),
    CliCase("dwi-with-some-b-values-missing", _dwi_command(_strip_some_b_values), ("carry no b-value",)),
    CliCase("dce-without-timing-tags", _dce_command(_strip_timing), ("no b-value or timing tag",)),
    CliCase("volume-given-as-a-dwi", _dwi_command(role="t2w"), ("single 3D volume",)),
]


@pytest.mark.parametrize("case", BAD_SERIES, ids=[c.id for c in BAD_SERIES])
def test_a_damaged_dicom_series_is_refused_naming_the_problem(case, tmp_path, capsys):
    assert_cli_refuses(case, tmp_path, capsys)


def test_a_lone_slice_is_refused_not_read_as_a_3d_volume(tmp_path):
    from pydicom.data import get_testdata_file

    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "slice.dcm")
    context = MRMLContext.create()
    with pytest.raises(Exception, match="single 2D slice"):
        io.load_volume(context, tmp_path / "slice.dcm")
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0


def test_dicom_list_prints_each_series_with_its_b_values_and_time_points(dicom_study, capsys):
    folder, written = dicom_study
    assert main(["dicom", "list", str(folder / "standard")]) == 0
    out = capsys.readouterr().out
    assert f"Study {written['study_uid']} (3 series)" in out
    assert "b = 0, 50, 400, 800 s/mm² (Diffusion b-value (0018,9087))" in out
    assert f"{len(DCE_TIMES)} time points" in out and written["series_uids"]["t2w"] in out


def test_a_series_that_is_not_mr_is_read_with_a_one_line_warning(tmp_path, capsys):
    def as_ct(folder):
        def change(ds, index):
            ds.Modality = "CT"
        _rewrite(folder, change)

    folder = _phantom_series("t2w", as_ct)(tmp_path)
    assert main(["preprocess", "--image", str(folder), "--normalise", "zscore", "--out",
                 str(tmp_path / "out.nrrd")]) == 0
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and warning[0].startswith("virtualbiopsy: warning: ")
    assert "modality is CT, not MR" in warning[0]


def _image_type(*values):
    def edit(folder):
        def change(ds, index):
            ds.ImageType = list(values)
        _rewrite(folder, change)
    return edit


def test_a_scanner_adc_map_is_read_as_a_map_with_a_warning_and_refused_as_a_dwi(tmp_path, capsys):
    folder = _phantom_series("t2w", _image_type("DERIVED", "PRIMARY", "DIFFUSION", "ADC"))(tmp_path)
    context = MRMLContext.create()
    with pytest.warns(UserWarning, match="scanner's ADC map"):
        io.load_volume(context, folder)
    mask = write_nrrd(tmp_path / "mask.nrrd", np.ones((8, 8, 8), np.uint8))
    assert main(["fcf", "--dwi", str(folder), "--bvalues", "0,1000", "--mask", str(mask), "--out",
                 str(tmp_path / "out")]) == 2
    assert "is the scanner's ADC map (ImageType), not a DWI" in capsys.readouterr().err


def test_scanner_trace_weighted_images_are_used_as_the_trace_and_said_so(tmp_path):
    folder = _phantom_series("dwi", _image_type("ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"))(tmp_path)
    context = MRMLContext.create()
    with pytest.warns(UserWarning, match="trace-weighted"):
        _, values = io.load_frames(context, folder)
    assert values == ["0", "500", "1000"]


def test_nibabels_real_siemens_mosaic_dwi_reads_as_two_b_values_on_nibabels_grid(tmp_path):
    import gzip
    import warnings

    import nibabel
    from nibabel.nicom import dicomwrappers

    data = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    names = ["siemens_dwi_0.dcm.gz", "siemens_dwi_1000.dcm.gz"]
    if not all((data / n).is_file() for n in names):
        pytest.skip("nibabel's test data (siemens_dwi_*.dcm.gz) is not installed")
    folder = tmp_path / "siemens"
    folder.mkdir()
    for name in names:
        (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress((data / name).read_bytes()))
    series = dicom_series.load(folder)
    assert series.kind == "dwi" and series.values == [0.0, 1000.0]  # the nominal b-values of (0019,100C)
    assert series.geometry.shape == (48, 128, 128)
    np.testing.assert_allclose(np.linalg.norm(series.directions[1]), 1.0, atol=1e-3)
    for array, name in zip(series.arrays, names, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapper = dicomwrappers.wrapper_from_data(pydicom.dcmread(folder / name.removesuffix(".gz")))
            reference, affine = wrapper.get_data(), wrapper.affine
        # every voxel of ours lies where nibabel puts the same value (LPS -> RAS; any axis flips undone)
        k, j, i = np.indices(array.shape).reshape(3, -1)
        ras = series.geometry.ijk_to_ras @ np.vstack([i, j, k, np.ones_like(i)])
        index = np.linalg.solve(np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine, ras)
        np.testing.assert_allclose(index, np.round(index), atol=1e-3)
        ni, nj, nk = np.round(index[:3]).astype(int)
        np.testing.assert_array_equal(array[k, j, i], reference[ni, nj, nk])
    context = MRMLContext.create()
    with pytest.warns(UserWarning, match="Siemens mosaic"):
        frames, values = io.load_frames(context, folder)
    assert values == ["0", "1000"] and len(frames) == 2


def test_an_enhanced_dce_reads_to_the_same_frames_and_times_as_the_classic_one(tmp_path):
    study = generate_study(1, t2_spacing=(12.0, 12.0, 16.0), dwi_spacing=(12.0, 12.0, 16.0),
                           dce_times=(0.0, 7.5, 20.0, 40.0), b_values=(0, 500, 1000))
    classic = write_study_dicom(study, tmp_path / "classic")["folders"]["dce"]
    enhanced = write_study_dicom(study, tmp_path / "enhanced", dce_timing="enhanced")["folders"]["dce"]
    [instance] = list(enhanced.glob("*.dcm"))
    assert int(pydicom.dcmread(instance, stop_before_pixels=True).NumberOfFrames) == 4 * study.dwi_grid.shape[0]
    a, b = dicom_series.load(classic), dicom_series.load(enhanced)
    assert a.values == b.values == [0.0, 7.5, 20.0, 40.0]
    assert "FrameAcquisitionDateTime" in b.source and "AcquisitionTime" in a.source
    assert not a.geometry.differences(b.geometry, tolerance_mm=1e-4)
    for x, y in zip(a.arrays, b.arrays, strict=True):
        np.testing.assert_array_equal(x, y)


def test_dicom_results_from_a_multi_frame_source_are_refused_before_anything_runs(tmp_path, capsys):
    study = generate_study(1, t2_spacing=(12.0, 12.0, 16.0), dwi_spacing=(12.0, 12.0, 16.0),
                           dce_times=(0.0, 20.0, 40.0, 60.0), b_values=(0, 500, 1000))
    folder = write_study_dicom(study, tmp_path / "dicom", dce_timing="enhanced")["folders"]["dce"]
    write_study(study, tmp_path / "study")
    assert main(["dce", "--series", str(folder), "--mask", str(tmp_path / "study" / "dwi_labels.nrrd"), "--label",
                 "6", "--out", str(tmp_path / "out"), "--dicom"]) == 2
    assert "one multi-frame instance" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
