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
from virtualbiopsy_slicer.i18n import tr as _
from virtualbiopsy_slicer.module import showTable
from virtualbiopsy_slicer.progress import progress_dialog


class CorrectionPanel:
    """The section's actions (run from its buttons by the module's ``actions`` table); ``model()`` gives
    the model last inspected or used (its channels name the exported images). Each action returns the
    status line to show."""

    def __init__(self, ui, logic, model, inputVolumes) -> None:
        """``model()``: the model folder last described; ``inputVolumes()``: the Segment section's volumes, one
        per model channel in its order (None where a channel has none chosen)."""
        self.ui, self.logic, self.model, self.inputVolumes = ui, logic, model, inputVolumes
        self.session = CorrectionSession(logic)

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
        text = _("Resumed correcting '{segmentation}' (timed until Compare).") if resume else _(
            "Started correcting '{segmentation}' (timed until Compare).")
        return text.format(segmentation=corrected.GetName())

    def referenceVolume(self, segmentation):
        """The first channel's input volume, else the segmentation's reference volume."""
        volumes = [v for v in self.inputVolumes() if v is not None]
        if volumes or segmentation is None:
            return volumes[0] if volumes else None
        return segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())

    def compareCorrection(self):
        ai, corrected = self.ui.aiSegmentSelector.currentNode(), self.ui.correctedSegmentSelector.currentNode()
        if ai is None or corrected is None:
            raise InputError(_("Select the AI segment and the corrected segment to compare."))
        reference = self.referenceVolume(ai)
        if reference is None:
            raise InputError(_("Check the input volume(s) under Segment: the first one is the grid of the comparison."))
        note = " " + _("Editing time not recorded (Start correcting times it).")
        if self.session.is_timed(corrected):
            note = " " + _("Editing time: {seconds:.1f} s.").format(seconds=self.session.finish())
        table = self.logic.compare(ai, self.ui.aiSegmentSelector.currentSegmentID(), corrected,
                                   self.ui.correctedSegmentSelector.currentSegmentID(), reference,
                                   table_node=self.ui.metricsTableSelector.currentNode())
        self.ui.metricsTableSelector.setCurrentNode(table)
        showTable(table)
        return _("Compared the AI and corrected segments into '{table}'.").format(table=table.GetName()) + note

    def exportCase(self):
        volumes, model = list(self.inputVolumes()), self.model()
        if model is None or len(model.channel_names) != len(volumes) or None in volumes:
            expected = f"{len(model.channel_names)} ({', '.join(model.channel_names)})" if model else _("the model's")
            raise InputError(_("Choose the model's input volumes under Segment ({expected} channels, one "
                               "selector each; {checked} chosen): they are the case's image channels.").format(
                                   expected=expected, checked=sum(v is not None for v in volumes)))
        corrected = self.ui.correctedSegmentSelector
        case = RetrainingCase(self.ui.caseIdLineEdit.text.strip(), volumes, corrected.currentNode(),
                              corrected.currentSegmentID())
        with progress_dialog(_("Exporting for retraining")) as task:
            dataset = self.logic.export_for_retraining([case], self.ui.exportFolderLineEdit.currentPath.strip(),
                                                       progress=task, channel_names=model.channel_names)
        return _("Exported case '{case}' to {folder}.").format(case=case.case_id, folder=dataset)
