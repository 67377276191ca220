"""The review session behind ``virtualbiopsy view``, headless: what a page's buttons do, on real MRML nodes."""

from __future__ import annotations

import numpy as np
import pytest

from virtualbiopsy.errors import FileFormatError, GeometryMismatchError, InputError
from virtualbiopsy.mrml import MRMLContext, arrays, io
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.review import session as review
from virtualbiopsy.review.study import open_study

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study_folder(sample_study_folder):
    return sample_study_folder(5)


@pytest.fixture(scope="module")
def segmented(study_folder, tmp_path_factory):
    """A session whose AI segmentation has run (shared: the model runs once)."""
    context = MRMLContext.create()
    session = review.ReviewSession(context, open_study(context, study_folder), tmp_path_factory.mktemp("out"),
                                   review.model_choices())
    session.segment("demo")
    return session


def _edit(session, add: tuple, remove: tuple) -> tuple[int, int]:
    """Add a box beside the tumour and clear one inside it, in the copy's own label map (as a brush would)."""
    corrected, _ = session.start_correction()
    segment = corrected.GetSegmentation().GetSegment(session.corrected_tumour_id)
    labelmap = segment.GetRepresentation("Binary labelmap")
    voxels = arrays.array_from_image(labelmap)
    value = int(voxels.max())
    before = voxels.copy()
    voxels[add] = value
    voxels[remove] = 0
    labelmap.Modified()
    corrected.GetSegmentation().Modified()
    added = int(np.count_nonzero((voxels > 0) & (before == 0)))
    removed = int(np.count_nonzero((voxels == 0) & (before > 0)))
    return added, removed


def test_a_study_folder_opens_by_role_and_an_unreadable_one_adds_nothing(study_folder, tmp_path, scene_unchanged):
    context = MRMLContext.create()
    study = open_study(context, study_folder)
    assert study.primary.GetName() == "T2w"
    assert study.dwi.GetNumberOfDataNodes() == 4 and study.dce is not None
    assert study.key() == open_study(MRMLContext.create(), study_folder).key()  # same files, same autosave key
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "t2w.nrrd").write_text("NRRD0004\ntype: short\n")
    with scene_unchanged(context), pytest.raises(FileFormatError, match="t2w.nrrd"):
        open_study(context, broken)
    with pytest.raises(InputError, match="one study"):
        open_study(context, study_folder, images=[study_folder / "t2w.nrrd"])


def test_review_targets_are_inside_the_image_and_say_where_in_patient_terms(segmented):
    targets = segmented.review_targets()
    assert targets
    geometry = Geometry.from_node(segmented.study.primary)
    ras_to_ijk = np.linalg.inv(geometry.ijk_to_ras)
    for target in targets:
        ijk = ras_to_ijk @ np.array([*target["ras"], 1.0])
        assert np.all(ijk[:3] > -0.5) and np.all(ijk[:3] < np.array(geometry.shape[::-1]) - 0.5)
        assert target["where"].count(" mm ") == 3
    assert any(t["label"].startswith("Slice") for t in targets)


def test_an_unknown_model_and_a_step_before_its_input_are_refused(segmented, study_folder):
    with pytest.raises(InputError, match="Unknown model"):
        segmented.prepare_segmentation("../../evil")
    context = MRMLContext.create()
    fresh = review.ReviewSession(context, open_study(context, images=[study_folder / "t2w.nrrd"]),
                                 segmented.out, review.model_choices())
    with pytest.raises(InputError, match="AI segmentation first"):
        fresh.start_correction()
    with pytest.raises(InputError, match="no DWI series"):
        fresh.fit_cluster_fit()


def test_compare_measures_the_edit_and_draws_what_it_added_and_removed(segmented):
    ai_before = int(arrays.segment_volumes(segmented.ai.segmentation)[0]["voxels"])
    added, removed = _edit(segmented, (slice(0, 2), slice(0, 3), slice(0, 4)), (slice(4, 6), slice(5, 8), slice(5, 8)))
    rows = segmented.compare()
    assert 0.0 < rows["dsc"]["value"] < 1.0
    assert rows["editing_time_s"]["unit"] == "s"
    difference = {r["segment"]: r["voxels"] for r in arrays.segment_volumes(segmented.difference)}
    assert difference == {"added by the correction": added, "removed by the correction": removed}
    assert int(arrays.segment_volumes(segmented.ai.segmentation)[0]["voxels"]) == ai_before  # AI never edited
    segmented.compare()  # compared again: still one difference overlay
    names = [n.GetName() for n in segmented.context.scene.GetNodesByClass("vtkMRMLSegmentationNode")]
    assert sum("difference" in name for name in names) == 1


def test_save_writes_below_out_only_and_reloads_with_the_same_voxels(segmented):
    written = segmented.save()
    assert all(segmented.out in path.parents for path in written)
    corrected = io.load_segmentation(MRMLContext.create(), segmented.out / "corrected.seg.nrrd")
    expected = arrays.segment_volumes(segmented.correction.corrected)
    assert [r["voxels"] for r in arrays.segment_volumes(corrected)] == [r["voxels"] for r in expected]
    assert "dsc" in (segmented.out / "metrics.csv").read_text()


def test_an_autosave_brings_the_correction_back_in_a_new_scene(segmented, tmp_path):
    segmented.correction.start(segmented.ai.segmentation)
    folder = segmented.autosave()
    assert folder is not None and (folder / "state.json").is_file()
    seconds = segmented.correction.seconds
    context = MRMLContext.create()
    later = review.ReviewSession(context, open_study(context, segmented.study.inputs[0].parent), segmented.out,
                                 review.model_choices())
    offer = later.autosave_offer()
    assert offer is not None and offer["study"] == segmented.study.name
    corrected = later.restore_autosave()
    assert [r["voxels"] for r in arrays.segment_volumes(corrected)] == \
        [r["voxels"] for r in arrays.segment_volumes(segmented.correction.corrected)]
    assert later.correction.seconds == pytest.approx(seconds, abs=0.01)
    assert later.compare()["dsc"]["value"] < 1.0  # the restored copy is compared with the restored AI result


def test_an_imported_correction_must_lie_on_the_image_grid(segmented, off_grid_segmentation, scene_unchanged):
    path = off_grid_segmentation
    with scene_unchanged(segmented.context), pytest.raises(GeometryMismatchError, match="voxel grid"):
        segmented.import_correction(path)


def test_uploads_land_below_out_under_a_safe_name_and_are_size_limited(segmented, monkeypatch):
    path = segmented.save_upload("../../etc/corrected tumour.seg.nrrd", b"data")
    assert path.parent == segmented.out / "uploads" and path.name == "etc_corrected_tumour.seg.nrrd"
    with pytest.raises(InputError, match="not an image"):
        segmented.save_upload("run.py", b"print(1)")
    monkeypatch.setattr(review, "MAX_UPLOAD_BYTES", 10)
    with pytest.raises(InputError, match="limited"):
        segmented.save_upload("big.nrrd", b"x" * 11)


def test_fit_cluster_fit_and_radiomics_run_on_the_corrected_tumour(segmented):
    mask, segment_id = segmented.tumour_mask_node()
    assert mask is segmented.correction.corrected
    rows = segmented.fit_cluster_fit()
    assert rows[0]["habitat"] == "habitat 1" and rows[0]["adc"] > 0
    features = segmented.radiomics()
    assert features[0]["original_shape_VoxelVolume"] > 0


def test_a_dicom_study_saves_the_corrected_tumour_as_a_dicom_seg_as_well(tmp_path):
    import pydicom

    from virtualbiopsy.dicom.phantom import write_study_dicom
    from virtualbiopsy.phantom import generate_study

    folders = write_study_dicom(generate_study(6), tmp_path / "dicom")["folders"]
    context = MRMLContext.create()
    session = review.ReviewSession(context, open_study(context, images=[folders["t2w"]]), tmp_path / "out",
                                   review.model_choices())
    assert session.study.from_dicom
    session.segment("demo")
    _edit(session, (slice(0, 2), slice(0, 3), slice(0, 4)), (slice(4, 6), slice(5, 8), slice(5, 8)))
    session.compare()
    written = session.save()
    seg = tmp_path / "out" / "dicom" / "corrected_seg.dcm"
    assert seg in written
    dataset = pydicom.dcmread(seg)
    assert dataset.Modality == "SEG" and dataset.SegmentationType == "BINARY"
    corrected = arrays.segment_volumes(session.correction.corrected)[0]["voxels"]
    assert int(np.count_nonzero(dataset.pixel_array)) == corrected
