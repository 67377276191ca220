"""The "Correction loop" section of the NeuroblastomaSeg panel: edit a timed copy of the AI segment,
compare it with the AI result, export the corrected case for retraining.

The rules of the timed copy (resume, editing time, provenance) are the library's ``CorrectionSession``,
shared with the web viewer; ``NeuroblastomaSegLogic.compare`` / ``export_for_retraining`` do the rest.
The AI segmentation is never edited.
"""

from __future__ import annotations

import slicer

from virtualbiopsy.errors import InputError
from virtualbiopsy.segmentation.correction import RetrainingCase
from virtualbiopsy.segmentation.correction_session import CorrectionSession
from virtualbiopsy_slicer.module import showTable
from virtualbiopsy_slicer.progress import progress_dialog


class CorrectionPanel:
    """Connects the section's buttons; ``model()`` gives the model last inspected or used (its channels
    name the exported images). Each action returns the status line to show."""

    def __init__(self, ui, logic, runAction, model) -> None:
        self.ui, self.logic, self.model = ui, logic, model
        self.session = CorrectionSession(logic)
        for name, action in (("startEditingButton", self.startCorrecting), ("compareButton", self.compareCorrection),
                             ("exportButton", self.exportCase)):
            getattr(ui, name).connect("clicked(bool)", lambda *_, action=action: runAction(action))

    def reset(self):
        """Forget the timed correction (e.g. when the scene is closed)."""
        self.session.reset()

    def startCorrecting(self):
        ai, segmentId = self.ui.aiSegmentSelector.currentNode(), self.ui.aiSegmentSelector.currentSegmentID()
        # The timed copy is resumed only while it is the selected corrected segment; another one there starts anew.
        current = self.ui.correctedSegmentSelector.currentNode()
        corrected, resume = self.session.start(ai, resume=self.session.is_timed(current))
        if not resume:
            self.ui.correctedSegmentSelector.setCurrentNode(corrected)
            self.ui.correctedSegmentSelector.setCurrentSegmentID(segmentId)
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
        if self.session.is_timed(corrected):
            note = f" Editing time: {self.session.finish():.1f} s."
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
