"""The "Correction loop" section of the NeuroblastomaSeg panel: edit a timed copy of the AI segment,
compare it with the AI result, export the corrected case for retraining.

The work is done by ``NeuroblastomaSegLogic.start_correction`` / ``compare`` /
``export_for_retraining``; the AI segmentation is never edited.
"""

from __future__ import annotations

import slicer

from virtualbiopsy.errors import InputError
from virtualbiopsy.segmentation.correction import EditingTimer, RetrainingCase, stamp_segmentation
from virtualbiopsy_slicer.module import showTable
from virtualbiopsy_slicer.progress import progress_dialog


class CorrectionPanel:
    """Connects the section's buttons; ``model()`` gives the model last inspected or used (its channels
    name the exported images). Each action returns the status line to show."""

    def __init__(self, ui, logic, runAction, model) -> None:
        self.ui, self.logic, self.model = ui, logic, model
        self.reset()
        for name, action in (("startEditingButton", self.startCorrecting), ("compareButton", self.compareCorrection),
                             ("exportButton", self.exportCase)):
            getattr(ui, name).connect("clicked(bool)", lambda *_, action=action: runAction(action))

    def reset(self):
        """Forget the timed correction (e.g. when the scene is closed)."""
        self._timer, self._timedNodeID = EditingTimer(), None

    def startCorrecting(self):
        ai, segmentId = self.ui.aiSegmentSelector.currentNode(), self.ui.aiSegmentSelector.currentSegmentID()
        current = self.ui.correctedSegmentSelector.currentNode()
        resume = (ai is not None and current is not None and current.GetID() == self._timedNodeID
                  and current.GetAttribute("VirtualBiopsy.CorrectedFrom") == ai.GetID())
        corrected = current if resume else self.logic.start_correction(ai)
        if not resume:
            self._timer, self._timedNodeID = EditingTimer(), corrected.GetID()
            self.ui.correctedSegmentSelector.setCurrentNode(corrected)
            self.ui.correctedSegmentSelector.setCurrentSegmentID(segmentId)
        if not self._timer.running:
            self._timer.start()
        slicer.util.selectModule("SegmentEditor")  # creates slicer.modules.SegmentEditorWidget if needed
        editor = slicer.modules.SegmentEditorWidget.editor
        editor.setSegmentationNode(corrected)
        reference = self.referenceVolume(ai)
        if reference is not None:
            editor.setSourceVolumeNode(reference)
        if segmentId:
            editor.setCurrentSegmentID(segmentId)
        return f"{'Resumed' if resume else 'Started'} correcting '{corrected.GetName()}' (timed until Compare)."

    def referenceVolume(self, segmentation):
        """The first checked input volume, else the segmentation's reference volume."""
        volumes = list(self.ui.inputVolumesSelector.checkedNodes())
        if volumes or segmentation is None:
            return volumes[0] if volumes else None
        return segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())

    def compareCorrection(self):
        ai, corrected = self.ui.aiSegmentSelector.currentNode(), self.ui.correctedSegmentSelector.currentNode()
        if ai is None or corrected is None:
            raise InputError("Select the AI segment and the corrected segment to compare.")
        reference = self.referenceVolume(ai)
        if reference is None:
            raise InputError("Check the input volume(s) under Segment: the first one is the grid of the comparison.")
        note = " Editing time not recorded (Start correcting times it)."
        if corrected.GetID() == self._timedNodeID:
            seconds = self._timer.stop() if self._timer.running else self._timer.seconds
            stamp_segmentation(corrected, seconds)
            note = f" Editing time: {seconds:.1f} s."
        table = self.logic.compare(ai, self.ui.aiSegmentSelector.currentSegmentID(), corrected,
                                   self.ui.correctedSegmentSelector.currentSegmentID(), reference,
                                   table_node=self.ui.metricsTableSelector.currentNode())
        self.ui.metricsTableSelector.setCurrentNode(table)
        showTable(table)
        return f"Compared the AI and corrected segments into '{table.GetName()}'.{note}"

    def exportCase(self):
        volumes, model = list(self.ui.inputVolumesSelector.checkedNodes()), self.model()
        if model is None or len(model.channel_names) != len(volumes):
            expected = f"{len(model.channel_names)} ({', '.join(model.channel_names)})" if model else "the model's"
            raise InputError(f"Check the model's input volumes under Segment ({expected} channels, in order; "
                             f"{len(volumes)} checked): they are the case's image channels.")
        corrected = self.ui.correctedSegmentSelector
        case = RetrainingCase(self.ui.caseIdLineEdit.text.strip(), volumes, corrected.currentNode(),
                              corrected.currentSegmentID())
        with progress_dialog("Exporting for retraining") as task:
            dataset = self.logic.export_for_retraining([case], self.ui.exportFolderLineEdit.currentPath.strip(),
                                                       progress=task, channel_names=model.channel_names)
        return f"Exported case '{case.case_id}' to {dataset}."
