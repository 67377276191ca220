"""CorrectionSession: one person correcting one AI segmentation on a timed copy, shared by the Slicer
panel and the web viewer. Real MRML nodes (slicer-core), a fake clock for the editing time."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
from virtualbiopsy.mrml import arrays
from virtualbiopsy.segmentation.correction import read_editing_seconds
from virtualbiopsy.segmentation.correction_session import CorrectionSession

UTC = datetime.timezone.utc


class FakeClock:
    """A list-backed clock: each call returns the next time; the last one repeats."""

    def __init__(self, *times):
        self.times = list(times)

    def __call__(self):
        return self.times.pop(0) if len(self.times) > 1 else self.times[0]


def wall_clock(*moments):
    return FakeClock(*[datetime.datetime(2024, 5, 1, 9, 0, s, tzinfo=UTC) for s in moments])


def session_for(context, clock=None, now=None):
    return CorrectionSession(NeuroblastomaSegLogic(context), clock or FakeClock(0.0),
                             now=now or wall_clock(0))


def edit_in_place(corrected, segment_id):
    """Erase half of the copy's segment directly in its binary label map, as a brush would."""
    labelmap = corrected.GetSegmentation().GetSegment(segment_id).GetRepresentation("Binary labelmap")
    voxels = arrays.array_from_image(labelmap)  # a view on the copy's voxels
    voxels[: voxels.shape[0] // 2] = 0
    labelmap.Modified()
    corrected.GetSegmentation().Modified()


def test_start_copies_the_ai_segment_and_never_edits_it(context, image_and_mask):
    volume, ai, _, labels = image_and_mask
    (segment_id,) = arrays.segment_ids(ai)
    before = context.node_ids()

    corrected, resumed = session_for(context).start(ai)

    assert not resumed and corrected.GetID() not in before
    assert corrected.GetName() == "mask corrected"
    assert corrected.GetAttribute("VirtualBiopsy.CorrectedFrom") == ai.GetID()
    edit_in_place(corrected, segment_id)
    edited = arrays.mask_from_segment(corrected, segment_id, volume)
    assert 0 < edited.sum() < (labels == 1).sum()
    assert np.array_equal(arrays.mask_from_segment(ai, segment_id, volume), labels == 1)
    assert ai.GetAttribute("VirtualBiopsy.CorrectionStarted") is None
    assert read_editing_seconds(ai) is None


def test_start_records_the_provenance_on_the_copy(context, image_and_mask):
    _, ai, _, _ = image_and_mask
    session = session_for(context, now=wall_clock(5, 30))

    corrected, _ = session.start(ai, name="reader 1")

    assert corrected.GetName() == "reader 1" and session.corrected is corrected
    assert corrected.GetAttribute("VirtualBiopsy.AISegmentationName") == "mask"
    started = datetime.datetime.fromisoformat(corrected.GetAttribute("VirtualBiopsy.CorrectionStarted"))
    assert started == datetime.datetime(2024, 5, 1, 9, 0, 5, tzinfo=UTC)
    assert session.running and session.is_timed(corrected) and not session.is_timed(ai)


def test_start_again_on_the_same_ai_segmentation_resumes_the_timed_copy(context, image_and_mask):
    _, ai, _, _ = image_and_mask
    session = session_for(context, clock=FakeClock(10.0, 25.0, 100.0, 104.0), now=wall_clock(1, 2, 3))
    corrected, _ = session.start(ai)
    started = corrected.GetAttribute("VirtualBiopsy.CorrectionStarted")
    assert session.pause() == 15.0 and not session.running

    nodes = context.node_ids()
    again, resumed = session.start(ai, name="ignored on resume")

    assert resumed and again is corrected and context.node_ids() == nodes
    assert again.GetAttribute("VirtualBiopsy.CorrectionStarted") == started  # the first start is kept
    assert session.running and session.finish() == 19.0


def test_start_while_running_keeps_the_timer_running(context, image_and_mask):
    _, ai, _, _ = image_and_mask
    session = session_for(context, clock=FakeClock(0.0, 7.0))
    session.start(ai)
    _, resumed = session.start(ai)
    assert resumed and session.running and session.seconds == 7.0


def test_another_ai_segmentation_or_resume_false_starts_a_new_copy(context, image_and_mask, grid):
    volume, ai, _, labels = image_and_mask
    other = arrays.add_segmentation_from_labels(context, labels, grid, {1: ("tumour", (0, 1, 0))}, "other", volume)
    session = session_for(context, clock=FakeClock(0.0, 50.0, 60.0))
    first, _ = session.start(ai)

    second, resumed = session.start(other)
    assert not resumed and second is not first and session.corrected is second
    assert second.GetAttribute("VirtualBiopsy.CorrectedFrom") == other.GetID()
    assert session.seconds == 10.0  # a new timer, started at 50 s

    third, resumed = session.start(other, resume=False)
    assert not resumed and third not in (first, second) and session.is_timed(third)


def test_finish_stamps_the_editing_time_from_the_clock(context, image_and_mask):
    _, ai, _, _ = image_and_mask
    session = session_for(context, clock=FakeClock(3.0, 45.5), now=wall_clock(0, 59))
    corrected, _ = session.start(ai)

    seconds = session.finish()

    assert seconds == 42.5 and not session.running
    assert read_editing_seconds(corrected) == 42.5
    finished = datetime.datetime.fromisoformat(corrected.GetAttribute("VirtualBiopsy.CorrectionFinished"))
    assert finished == datetime.datetime(2024, 5, 1, 9, 0, 59, tzinfo=UTC)
    assert read_editing_seconds(ai) is None and ai.GetAttribute("VirtualBiopsy.CorrectionFinished") is None
    assert session.finish() == 42.5  # finishing again (paused) keeps the time


def test_finish_before_any_start_records_nothing(context):
    session = session_for(context)
    assert session.finish() is None and session.corrected is None
    assert session.pause() == 0.0 and not session.running and session.seconds == 0.0


def test_a_removed_copy_is_not_resumed(context, image_and_mask):
    _, ai, _, _ = image_and_mask
    session = session_for(context)
    first, _ = session.start(ai)
    context.scene.RemoveNode(first)

    second, resumed = session.start(ai)

    assert not resumed and second is not first
    assert context.scene.IsNodePresent(second) and session.is_timed(second)


def test_reset_forgets_the_copy_and_its_time(context, image_and_mask):
    _, ai, _, _ = image_and_mask
    session = session_for(context, clock=FakeClock(0.0, 30.0))
    first, _ = session.start(ai)

    session.reset()

    assert session.corrected is None and not session.running and session.seconds == 0.0
    assert not session.is_timed(first) and context.scene.IsNodePresent(first)  # the node is left as it is
    second, resumed = session.start(ai)
    assert not resumed and second is not first


@pytest.mark.parametrize("bad", ["none", "table", "string", "empty", "removed"])
def test_bad_input_is_refused_with_one_sentence(context, image_and_mask, bad):
    _, ai, _, _ = image_and_mask
    node = {
        "none": lambda: None,
        "table": lambda: context.add_node("vtkMRMLTableNode", "not a segmentation"),
        "string": lambda: "mask",
        "empty": lambda: context.add_node("vtkMRMLSegmentationNode", "empty"),
        "removed": lambda: (context.scene.RemoveNode(ai), ai)[1],
    }[bad]()
    session = session_for(context)
    nodes = context.node_ids()

    with pytest.raises(InputError) as refused:
        session.start(node)

    message = str(refused.value)
    assert message.endswith(".") and message.count(". ") == 0 and "\n" not in message
    assert context.node_ids() == nodes and session.corrected is None and not session.running


def test_a_failed_start_keeps_the_timed_copy(context, image_and_mask):
    _, ai, _, _ = image_and_mask
    session = session_for(context, clock=FakeClock(0.0, 5.0))
    corrected, _ = session.start(ai)
    with pytest.raises(InputError):
        session.start(None)
    assert session.corrected is corrected and session.running and session.seconds == 5.0
