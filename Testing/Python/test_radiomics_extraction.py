"""pyradiomics extraction through MRML nodes: pyradiomics' own baseline (brain1), presets, traceability,
multi-sequence columns, clear errors for bad inputs, voxel-based feature maps with progress and cancel."""

from __future__ import annotations

import ast
import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from virtualbiopsy.errors import Cancelled, EmptyMaskError, GeometryMismatchError, InputError, InvalidValuesError
from virtualbiopsy.logic.radiomics_biomarkers import RadiomicsBiomarkersLogic
from virtualbiopsy.mrml import arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.progress import CancelToken, Task
from virtualbiopsy.radiomics import extraction
from virtualbiopsy.radiomics.extraction import ExtractionParameters

BRAIN1 = Path(__file__).resolve().parents[1] / "Data" / "pyradiomics_brain1"
# Mesh-based shape features: the baseline was made by pyradiomics 1.3-2.0, whose marching-cubes mesh differs
# from 3.0.1's (measured on the file as stored: MeshVolume 1.2e-4, SurfaceArea 7.9e-4, Sphericity 8.7e-4,
# SurfaceVolumeRatio 9.1e-4). Everything else must agree to 1e-9.
MESH_FEATURES = {"original_shape_MeshVolume": 2e-4, "original_shape_SurfaceArea": 1e-3,
                 "original_shape_SurfaceVolumeRatio": 1e-3, "original_shape_Sphericity": 1e-3}


def brain1_baseline() -> tuple[dict[str, float], dict]:
    with open(BRAIN1 / "brain1_baseline.csv", newline="") as stream:
        rows = {row["feature"]: row["brain1"] for row in csv.DictReader(stream)}
    settings = ast.literal_eval(rows["diagnostics_Configuration_Settings"])
    settings = {k: v for k, v in settings.items() if v is not None and k != "additionalInfo"}
    return {k: float(v) for k, v in rows.items() if k.startswith("original_")}, settings


@pytest.fixture
def brain1_nodes(context):
    volume = io.load_volume(context, BRAIN1 / "brain1_image.nrrd")
    segmentation = io.load_segmentation(context, BRAIN1 / "brain1_label.nrrd")
    return volume, segmentation


def test_pyradiomics_baseline_brain1_through_mrml_nodes(context, brain1_nodes):
    baseline, settings = brain1_baseline()
    assert len(baseline) == 107 and settings["binWidth"] == 25 and settings["voxelArrayShift"] == 2000
    volume, segmentation = brain1_nodes
    table = RadiomicsBiomarkersLogic(context).extract_features(volume, segmentation,
                                                               parameters=ExtractionParameters(settings=settings))
    ours = {k: v[0] for k, v in arrays.table_columns(table).items()}
    missing = sorted(set(baseline) - set(ours))
    assert not missing, f"baseline features not extracted: {missing}"
    for name, expected in baseline.items():
        tolerance = MESH_FEATURES.get(name, 1e-9)
        assert ours[name] == pytest.approx(expected, rel=tolerance, abs=1e-12), name
    # the non-mesh features are not just close: the first-order and texture values are the baseline's
    assert ours["original_firstorder_Energy"] == pytest.approx(baseline["original_firstorder_Energy"], rel=1e-12)


def test_mrml_path_gives_exactly_the_file_path_values(context, brain1_nodes):
    """Slicer's NRRD reader stores brain1's (left-handed) slices in reverse order; the MRML path undoes it and
    takes the file's exact geometry, so the values are those of the file path, bit for bit, also for wavelets."""
    volume, segmentation = brain1_nodes
    assert not np.array_equal(arrays.array_from_volume(volume), sitk.GetArrayFromImage(
        sitk.ReadImage(str(BRAIN1 / "brain1_image.nrrd"))))  # the node really holds another voxel order
    parameters = ExtractionParameters(wavelet=True)
    logic = RadiomicsBiomarkersLogic(context)
    table = logic.extract_features(volume, segmentation, parameters=parameters)
    from_nodes = {k: v[0] for k, v in arrays.table_columns(table).items() if "_" in k and k != "segment_id"}
    from_files = extraction.extract_files([BRAIN1 / "brain1_image.nrrd"], BRAIN1 / "brain1_label.nrrd", parameters)
    assert from_nodes.keys() == from_files.keys() and len(from_files) == 9 * 93 + 14
    assert from_nodes == from_files
    settings = arrays.table_columns(logic.settings_table(table))
    order = settings["value"][settings["key"].index("voxel_order")]
    assert "as stored in brain1_image.nrrd" in order and "reversed axis k" in order


def test_table_records_settings_and_versions(context, image_and_mask):
    volume, segmentation, image, labels = image_and_mask
    logic = RadiomicsBiomarkersLogic(context)
    table = logic.extract_features(volume, segmentation)
    columns = arrays.table_columns(table)
    assert columns["segment"] == ["tumour"] and columns["images"] == ["image"]
    assert columns["original_shape_VoxelVolume"][0] == pytest.approx(labels.sum() * 1.5 * 1.5 * 4.0)
    assert columns["original_firstorder_Mean"][0] == pytest.approx(image[labels == 1].mean())
    assert '"binWidth": 25' in table.GetAttribute("VirtualBiopsy.Radiomics.settings")
    assert "pyradiomics" in table.GetAttribute("VirtualBiopsy.Radiomics.versions")
    settings = arrays.table_columns(logic.settings_table(table))
    assert settings["value"][settings["key"].index("version_pyradiomics")].endswith("3.0.1")
    assert settings["value"][settings["key"].index("parameters")] == "preset:study_mr"


def test_several_sequences_get_prefixed_columns_and_filters(context, image_and_mask, grid):
    volume, segmentation, image, _ = image_and_mask
    second = arrays.add_volume_from_array(context, (image * 2).astype(np.int16), grid, "adc")
    parameters = ExtractionParameters(log_sigmas_mm=(2.0,), wavelet=True)
    columns = arrays.table_columns(RadiomicsBiomarkersLogic(context).extract_features(
        [volume, second], segmentation, parameters=parameters))
    assert columns["image:original_firstorder_Mean"][0] * 2 == pytest.approx(columns["adc:original_firstorder_Mean"][0])
    assert "adc:log-sigma-2-0-mm-3D_glcm_Contrast" in columns and "image:wavelet-LLH_firstorder_Mean" in columns
    assert not any(c.startswith("original_") for c in columns)


def test_presets_and_parameter_files(tmp_path):
    study, ibsi = extraction.load_params("study_mr"), extraction.load_params("ibsi")
    assert study["setting"]["binWidth"] == 25 and ibsi["setting"]["binWidth"] == 1
    assert set(study["featureClass"]) == set(extraction.FEATURE_CLASSES)
    custom = tmp_path / "mine.yaml"
    custom.write_text("setting:\n  binWidth: 5\nimageType:\n  Original: {}\nfeatureClass:\n  firstorder:\n")
    extractor = extraction.make_extractor(ExtractionParameters(params_file=str(custom)).pyradiomics_params())
    assert extractor.settings["binWidth"] == 5 and list(extractor.enabledFeatures) == ["firstorder"]
    with pytest.raises(InputError, match="Unknown radiomics preset 'ct'"):
        extraction.load_params("ct")
    custom.write_text("setting:\n  binWidht: 5\n")
    with pytest.raises(InputError, match="pyradiomics refused"):
        extraction.make_extractor(ExtractionParameters(params_file=str(custom)).pyradiomics_params())


def _images(shape=(8, 10, 12), spacing=(1.5, 1.5, 4.0)):
    rng = np.random.default_rng(3)
    image = sitk.GetImageFromArray(rng.integers(100, 1000, size=shape).astype(np.int16))
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 3:7, 4:9] = 1
    mask = sitk.GetImageFromArray(labels)
    for img in (image, mask):
        img.SetSpacing(spacing)
    return image, mask, labels


def test_bad_files_give_clear_errors():
    image, mask, labels = _images()
    shifted = sitk.Image(mask)
    shifted.SetSpacing((1.5, 1.5, 3.0))
    with pytest.raises(GeometryMismatchError, match=r"'mask' is not on the voxel grid of the image 'image'.*spacing"):
        extraction.extract_case(image, shifted)
    with pytest.raises(EmptyMaskError, match="'mask' is empty"):
        extraction.extract_case(image, sitk.Image(mask) * 0)
    with pytest.raises(EmptyMaskError, match=r"Label 3 does not occur in the mask 'mask' \(labels present: 1\)"):
        extraction.extract_case(image, mask, label=3)
    one = np.zeros_like(labels)
    one[4, 4, 4] = 1
    single = sitk.GetImageFromArray(one)
    single.CopyInformation(mask)
    with pytest.raises(InputError, match="single voxel"):
        extraction.extract_case(image, single)
    floats = sitk.Cast(image, sitk.sitkFloat32)
    floats[5, 4, 3] = float("nan")
    with pytest.raises(InvalidValuesError, match="1 NaN or infinite voxel"):
        extraction.extract_case(floats, mask)


def test_bad_segments_give_clear_errors_and_leave_the_scene(context, image_and_mask, scene_unchanged):
    volume, segmentation, _, labels = image_and_mask
    logic = RadiomicsBiomarkersLogic(context)
    coarse = Geometry.from_spacing((4, 5, 6), (3.0, 3.0, 8.0), (-9.0, -7.5, -16.0))
    other = arrays.add_segmentation_from_labels(context, np.ones((4, 5, 6), np.uint8), coarse,
                                                {1: ("tumour", (1, 0, 0))}, "coarse mask")
    one = np.zeros_like(labels)
    one[3, 4, 5] = 1
    single = arrays.add_segmentation_from_labels(context, one, Geometry.from_node(volume),
                                                 {1: ("dot", (1, 0, 0))}, "one voxel", volume)
    empty = arrays.add_segmentation_from_labels(context, np.zeros_like(labels), Geometry.from_node(volume),
                                                {1: ("nothing", (1, 0, 0))}, "empty", volume, keep_empty=True)
    cases = [(other, GeometryMismatchError, "not on the voxel grid"), (single, InputError, "single voxel"),
             (empty, EmptyMaskError, "contains no voxels")]
    for seg, error, words in cases:
        with scene_unchanged(context), pytest.raises(error, match=words):
            logic.extract_features(volume, seg)


def test_feature_map_is_the_neighbourhood_feature_and_can_be_cancelled(context, brain1_nodes, scene_unchanged):
    volume, segmentation = brain1_nodes
    logic = RadiomicsBiomarkersLogic(context)
    segment_id = arrays.segment_ids(segmentation)[0]
    seen = []
    node = logic.feature_map(volume, segmentation, segment_id, "firstorder_Mean",
                             progress=lambda fraction, message: seen.append(fraction))
    assert Geometry.from_node(node).differences(Geometry.from_node(volume)) == []
    values, image = arrays.array_from_volume(node), arrays.array_from_volume(volume).astype(float)
    mask = arrays.mask_from_segment(segmentation, segment_id, volume)
    assert np.count_nonzero(values[~mask]) == 0 and np.all(values[mask] > 0)
    for k, j, i in list(zip(*np.nonzero(mask)))[::500]:
        cube = (slice(k - 1, k + 2), slice(j - 1, j + 2), slice(i - 1, i + 2))
        assert values[k, j, i] == pytest.approx(image[cube][mask[cube]].mean(), rel=1e-5)
    assert len(seen) > 20 and seen[-1] == 1.0 and node.GetAttribute("VirtualBiopsy.Radiomics.feature")
    token = CancelToken()

    def cancel_midway(fraction, message):
        if fraction > 0.2:
            token.cancel()

    with scene_unchanged(context), pytest.raises(Cancelled):
        logic.feature_map(volume, segmentation, segment_id, "glcm_Contrast", progress=Task(cancel_midway, token))
    with pytest.raises(InputError, match="shape feature"):
        logic.feature_map(volume, segmentation, segment_id, "original_shape_Sphericity")
    with pytest.raises(InputError, match="not a glcm feature"):
        logic.feature_map(volume, segmentation, segment_id, "glcm_Contrastt")


def test_a_volume_moved_since_it_was_read_keeps_the_node_order(context, brain1_nodes):
    """The file's order is restored only while the node still has the file's grid (up to axis flips)."""
    volume, segmentation = brain1_nodes
    logic = RadiomicsBiomarkersLogic(context)
    assert "reversed axis k" in logic.voxel_order(volume)
    origin = list(volume.GetOrigin())
    volume.SetOrigin(origin[0] + 5.0, origin[1], origin[2])
    assert logic.voxel_order(volume) == "brain1_image: the volume's IJK order (no file with its grid)"
    stored = extraction.stored_grid(BRAIN1 / "brain1_image.nrrd")
    image = sitk.ReadImage(str(BRAIN1 / "brain1_image.nrrd"))
    same, flips = extraction.in_stored_order(sitk.Flip(image, [False, True, True]), stored)
    assert flips == ["j", "k"] and np.array_equal(sitk.GetArrayFromImage(same), sitk.GetArrayFromImage(image))
    assert extraction.in_stored_order(sitk.Resample(image, [10, 10, 10]), stored) is None
    assert extraction.stored_grid(BRAIN1 / "README.md") is None
