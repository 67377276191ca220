"""NeuroblastomaSegLogic.start_correction: the user edits a NEW copy, never the AI segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import vtk

from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic
from virtualbiopsy.mrml import arrays


def test_start_correction_copies_segments_into_a_new_node(context, image_and_mask):
    volume, ai, _, labels = image_and_mask
    ai.SetAttribute("VirtualBiopsy.Source", "AI")
    (segment_id,) = arrays.segment_ids(ai)
    ai.GetSegmentation().GetSegment(segment_id).SetTag("TerminologyEntry", "code~x")
    before = context.node_ids()

    corrected = NeuroblastomaSegLogic(context).start_correction(ai)

    assert corrected.GetID() not in before and corrected.GetID() != ai.GetID()
    assert corrected.GetName() == "mask corrected"
    assert corrected.GetDisplayNode() is not None
    assert arrays.segment_ids(corrected) == [segment_id]
    segment = corrected.GetSegmentation().GetSegment(segment_id)
    assert segment.GetName() == "tumour"
    assert np.allclose(segment.GetColor(), ai.GetSegmentation().GetSegment(segment_id).GetColor())
    tag = vtk.reference("")
    assert segment.GetTag("TerminologyEntry", tag) and str(tag) == "code~x"
    assert corrected.GetAttribute("VirtualBiopsy.Source") == "corrected"
    assert corrected.GetAttribute("VirtualBiopsy.CorrectedFrom") == ai.GetID()
    role = corrected.GetReferenceImageGeometryReferenceRole()
    assert corrected.GetNodeReferenceID(role) == ai.GetNodeReferenceID(role) == volume.GetID()
    assert np.array_equal(arrays.mask_from_segment(corrected, segment_id, volume), labels == 1)


def test_editing_the_copy_leaves_the_ai_segmentation_unchanged(context, image_and_mask, grid):
    volume, ai, _, labels = image_and_mask
    (segment_id,) = arrays.segment_ids(ai)
    corrected = NeuroblastomaSegLogic(context).start_correction(ai, name="edit me")
    assert corrected.GetName() == "edit me"

    # "Edit" the copy: replace its segment with a smaller box, as the Segment Editor would.
    smaller = np.zeros(grid.shape, np.uint8)
    smaller[3:5, 4:6, 5:7] = 1
    labelmap = arrays.add_volume_from_array(context, smaller, grid, "edit", "vtkMRMLLabelMapVolumeNode")
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    assert slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, corrected, ids)

    assert np.array_equal(arrays.mask_from_segment(corrected, segment_id, volume), smaller == 1)
    assert np.array_equal(arrays.mask_from_segment(ai, segment_id, volume), labels == 1)


def test_start_correction_refuses_missing_or_empty_input(context):
    logic = NeuroblastomaSegLogic(context)
    before = context.node_ids()
    with pytest.raises(InputError, match="Select the AI segmentation"):
        logic.start_correction(None)
    table = context.add_node("vtkMRMLTableNode", "not a segmentation")
    with pytest.raises(InputError, match="Select the AI segmentation"):
        logic.start_correction(table)
    empty = context.add_node("vtkMRMLSegmentationNode", "empty")
    nodes = context.node_ids()
    with pytest.raises(InputError, match="no segment"):
        logic.start_correction(empty)
    assert context.node_ids() == nodes and before < nodes
