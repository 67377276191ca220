"""Neuroblastoma Segmentation module: a thin Slicer front end to ``virtualbiopsy.logic.neuroblastoma_seg``.

The logic lives in the Qt-free library (so the command line and the headless tests run the same
code); this file only wires the widget, and Slicer finds the module, widget and test by name.
"""

from pathlib import Path

import qt
import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleTest

from virtualbiopsy.errors import InputError
from virtualbiopsy.logic.neuroblastoma_seg import NeuroblastomaSegLogic, SegmentParameters
from virtualbiopsy.mrml.arrays import segment_ids
from virtualbiopsy.mrml.geometry import Geometry
from virtualbiopsy.segmentation.demo_model import DEMO_MODEL_NOTICE
from virtualbiopsy.segmentation.model_source import (
    ModelArchives,
    default_model_path,
    is_demo_model,
    parse_folds,
)
from virtualbiopsy_slicer.correction_panel import CorrectionPanel
from virtualbiopsy_slicer.i18n import tr as _
from virtualbiopsy_slicer.i18n import translate
from virtualbiopsy_slicer.module import (
    Action,
    ProcessStep,
    VirtualBiopsyModuleWidget,
    documentationLink,
    runLibraryChecks,
    sceneContext,
    showTable,
)
from virtualbiopsy_slicer.preprocessing_panel import PreprocessingPanel
from virtualbiopsy_slicer.progress import busy_cursor
from virtualbiopsy_slicer.protocols import NeuroblastomaSegLogicProtocol

__all__ = ["NeuroblastomaSeg", "NeuroblastomaSegLogic", "NeuroblastomaSegTest", "NeuroblastomaSegWidget"]

TITLE = _("Neuroblastoma Segmentation")


class NeuroblastomaSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = TITLE
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Oncology")]
        self.parent.dependencies = ["Segmentations", "SegmentEditor", "Markups", "Tables"]
        self.parent.contributors = ["Virtual Biopsy team"]
        self.parent.helpText = _("""
Primary-tumour segmentation of neuroblastoma on MRI with nnU-Net v2, its uncertainty and a correction loop.
<b>Research use only; not for clinical decisions.</b> Default model: the bundled DEMO. <b>{notice}</b>
<p><b>Pre-processing and registration</b> (optional): N4 bias-field correction, denoising, resampling and
intensity normalisation of a volume, or rigid/affine registration of another sequence (DWI b0, DCE) onto the
T2w with its quality before and after; each adds a NEW volume.
<b>Model</b>: any nnU-Net v2 results folder or zip (2d, 3d_fullres, 3d_lowres, cascades, which run their
3d_lowres first stage first, region-based models, several folds); <i>Configuration</i> picks one where the
folder or zip holds several, <i>Checkpoint</i> another file than checkpoint_final.pth (e.g. checkpoint_best.pth),
<i>Precision</i> bfloat16 for speed on CPUs / GPUs that support it.
<b>Segment</b> (one input selector per model channel, named as in its dataset.json) runs in the
background and adds NEW nodes: the segmentation, an uncertainty volume (normalised predictive entropy,
shown over the first input) and the 10 %/50 % probability contours; it reports the tumour volume (mL),
its uncertain share (of the tumour's voxels, 0-100 %) and the slices to review (double-click: Red view).
<b>Export as DICOM</b> writes it as a DICOM SEG, an SR (TID 1500) and an uncertainty Parametric Map
referencing the DICOM series of the first input (loaded through the DICOM module).
<b>Start correcting</b> edits a timed copy in the Segment Editor (the AI result is never edited);
<b>Compare</b> stores the editing time and tabulates AI-vs-corrected agreement; <b>Export</b> writes an
nnU-Net training case. <b>Measure</b>: each segment's volume (mL) into a table.</p>
""").format(notice=DEMO_MODEL_NOTICE) + documentationLink()
        self.parent.acknowledgementText = _("""
Developed by the Virtual Biopsy team as an open-source extension of 3D Slicer (https://www.slicer.org).
""")


def jumpRedSliceTo(ras):
    """Centre the Red slice view on ``ras`` (all slice views if there is no Red one)."""
    sliceNode = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed")  # the Red view's singleton slice node
    if sliceNode is not None:
        sliceNode.JumpSliceByCentering(*ras)
    else:
        slicer.modules.markups.logic().JumpSlicesToLocation(*ras, True)


class NeuroblastomaSegWidget(VirtualBiopsyModuleWidget):
    logicClass = NeuroblastomaSegLogic
    logic: NeuroblastomaSegLogicProtocol
    title = TITLE
    actions = {
        "preprocessButton": Action("preprocessing.preprocess", "Core"),
        "registerButton": Action("preprocessing.register", "Core"),
        "segmentButton": Action("startSegmentation", "NeuroblastomaSeg", background=True),
        "exportDicomButton": Action("exportDicom", "Core"),
        "startEditingButton": Action("correction.startCorrecting", "Core"),
        "compareButton": Action("correction.compareCorrection", "Core"),
        "exportButton": Action("correction.exportCase", "Core"),
        "applyButton": Action("measureSegments", "Core"),
    }
    inputSignals = (("segmentationSelector", "currentNodeChanged(vtkMRMLNode*)"),
                    ("modelPathLineEdit", "currentPathChanged(QString)"),
                    ("aiSegmentSelector", "currentNodeChanged(vtkMRMLNode*)"),
                    ("correctedSegmentSelector", "currentNodeChanged(vtkMRMLNode*)"),
                    ("exportFolderLineEdit", "currentPathChanged(QString)"),
                    ("caseIdLineEdit", "textChanged(QString)"))

    def setup(self):
        self._archives = ModelArchives()  # each model zip extracted once
        self._modelInfo = self._modelInfoKey = None  # ModelFolder last inspected or used, and its path
        self._reviewSlices, self._reviewVolumeID = [], None
        self._lastResult = None  # (outputs, source volume, made by the demo model) of the last segmentation
        self._channelSelectors = []  # one volume selector per model channel, in the model's order
        VirtualBiopsyModuleWidget.setup(self)
        self.ui.modelPathLineEdit.connect("currentPathChanged(QString)", self.updateModelInfo)
        self.ui.configurationLineEdit.connect("editingFinished()", self.updateModelInfo)
        self.ui.checkpointLineEdit.connect("editingFinished()", self.updateModelInfo)
        self.ui.reviewSlicesList.connect("itemDoubleClicked(QListWidgetItem*)", lambda item: self.runAction(
            lambda: self.showReviewSlice(self.ui.reviewSlicesList.row(item)), "Core"))
        self._channelForm = self.ui.channelSelectorsWidget.layout()
        self.preprocessing = PreprocessingPanel(self.ui, self.logic)
        self.correction = CorrectionPanel(self.ui, self.logic, lambda: self._modelInfo, self.inputVolumes)
        self.ui.modelPathLineEdit.currentPath = default_model_path()
        self.updateModelInfo()
        self.updateButtons()

    def onSceneEndClose(self, caller, event):
        VirtualBiopsyModuleWidget.onSceneEndClose(self, caller, event)
        self.ui.summaryLabel.text = ""
        self.ui.reviewSlicesList.clear()
        self._reviewSlices, self._reviewVolumeID = [], None
        self.correction.reset()
        self._lastResult = None

    def updateButtons(self, *args):
        ui = self.ui
        ai, corrected = ui.aiSegmentSelector.currentNode(), ui.correctedSegmentSelector.currentNode()
        ui.applyButton.enabled = ui.segmentationSelector.currentNode() is not None
        ui.segmentButton.enabled = (self.backgroundJob is None and bool(self._channelSelectors)
                                    and all(s.currentNode() is not None for s in self._channelSelectors)
                                    and bool(ui.modelPathLineEdit.currentPath.strip()))
        ui.startEditingButton.enabled = ai is not None
        ui.exportDicomButton.enabled = self._lastResult is not None
        ui.compareButton.enabled = ai is not None and corrected is not None
        ui.exportButton.enabled = (corrected is not None and bool(ui.caseIdLineEdit.text.strip())
                                   and bool(ui.exportFolderLineEdit.currentPath.strip()))

    # -- model -------------------------------------------------------------------------------

    def modelFolder(self):
        """The model folder: the path given (or the folder of a dataset.json), or a .zip extracted once."""
        with busy_cursor():
            return self._archives.folder(self.ui.modelPathLineEdit.currentPath, self.ui.sha256LineEdit.text.strip(),
                                         self.ui.configurationLineEdit.text.strip())

    def updateModelInfo(self, *args):
        """Describe the chosen model under its path, or say in red what is wrong with it."""
        text = self.ui.modelPathLineEdit.currentPath.strip()
        configuration, checkpoint = self.ui.configurationLineEdit.text.strip(), self.ui.checkpointLineEdit.text.strip()
        key = (text, Path(text).stat().st_mtime_ns if text and Path(text).exists() else None, configuration, checkpoint)
        if key == self._modelInfoKey:
            return  # already described (the path is set both by the code and by its signal)
        self._modelInfoKey = key
        self._modelInfo, message, problem = self._archives.describe(text, configuration, checkpoint)
        self.ui.modelInfoLabel.setStyleSheet("color: red" if problem else "")
        self.ui.modelInfoLabel.text = message
        self.updateChannelSelectors(self._modelInfo.channel_names if self._modelInfo is not None else [])

    def inputVolumes(self):
        """The Segment section's input volumes, one per model channel in the model's order (None: not chosen)."""
        return [selector.currentNode() for selector in self._channelSelectors]

    def updateChannelSelectors(self, channelNames):
        """One volume selector per input channel of the model, labelled with its dataset.json name, so the
        inputs are given in the model's order (a checkable list would give them in the scene's order)."""
        names = list(channelNames) or [_("image")]
        if [s.toolTip for s in self._channelSelectors] == names:
            return
        kept = [s.currentNode() for s in self._channelSelectors]
        while self._channelForm.rowCount() > 0:
            self._channelForm.removeRow(0)  # deletes the row's label and selector
        self._channelSelectors = []
        for index, name in enumerate(names):
            selector = slicer.qMRMLNodeComboBox()
            selector.nodeTypes = ["vtkMRMLScalarVolumeNode"]
            selector.showChildNodeTypes = False
            selector.noneEnabled = True
            selector.addEnabled = selector.removeEnabled = False
            selector.toolTip = name
            selector.setMRMLScene(slicer.mrmlScene)
            if index < len(kept) and kept[index] is not None:
                selector.setCurrentNode(kept[index])
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
            self._channelForm.addRow(_("Channel {index} ({name}):").format(index=index, name=name), selector)
            self._channelSelectors.append(selector)
        self.updateButtons()

    # -- segment -----------------------------------------------------------------------------

    def startSegmentation(self):
        """The model runs as the command line in its own process (PythonSlicer: no Python thread competes
        with the GUI for the GIL); the inputs go out as files and the results come back as new nodes."""
        import tempfile

        from virtualbiopsy.cli.scene_steps import segment_step

        volumes = self.inputVolumes()  # in the model's channel order
        parameters = SegmentParameters(str(self.modelFolder()), parse_folds(self.ui.foldsLineEdit.text),
                                       self.ui.deviceComboBox.currentText, self.ui.mirroringCheckBox.checked,
                                       self.ui.uncertaintyCheckBox.checked,
                                       checkpoint=self.ui.checkpointLineEdit.text.strip() or "checkpoint_final.pth",
                                       configuration=self.ui.configurationLineEdit.text.strip() or None,
                                       precision=self.ui.precisionComboBox.currentText)
        workdir = tempfile.TemporaryDirectory(prefix="VirtualBiopsy-NeuroblastomaSeg-", dir=slicer.app.temporaryPath)
        try:
            step = segment_step(sceneContext(), volumes, parameters, workdir.name)
        except Exception:
            workdir.cleanup()
            raise
        demo = is_demo_model(parameters.model_path)
        return ProcessStep(step, lambda nodes: self.showSegmentation(nodes["outputs"], volumes[0], demo), workdir)

    def showSegmentation(self, outputs, reference, demo):
        uncertainty = outputs.uncertainty is not None
        # the uncertainty over the first input (None, without an uncertainty map, clears the overlay)
        slicer.util.setSliceViewerLayers(background=reference, foreground=outputs.uncertainty,
                                         foregroundOpacity=0.5)
        self.ui.aiSegmentSelector.setCurrentNode(outputs.segmentation)
        self.ui.aiSegmentSelector.setCurrentSegmentID(segment_ids(outputs.segmentation)[0])
        self.ui.segmentationSelector.setCurrentNode(outputs.segmentation)
        summary = outputs.summary
        text = _("Tumour: {volume:.1f} mL").format(volume=summary["tumour_volume_ml"]) + (_(
            "; {percent:.1f} % of it uncertain (entropy >= {threshold}).").format(
                percent=100 * summary["uncertain_fraction"], threshold=summary["threshold"]) if uncertainty else ".")
        if demo:
            text += "\n" + DEMO_MODEL_NOTICE
        self.ui.summaryLabel.text = text
        self._lastResult = (outputs, reference, demo)
        self.updateButtons()
        self._reviewSlices = list(summary["slices_to_review"]) if uncertainty else []
        self._reviewVolumeID = reference.GetID()
        self.ui.reviewSlicesList.clear()
        for k in self._reviewSlices:
            self.ui.reviewSlicesList.addItem(_("slice k = {k}").format(k=k))
        name = outputs.segmentation.GetName()
        return (_("Added '{segmentation}' and its uncertainty map.") if uncertainty else _("Added '{segmentation}'."))\
            .format(segmentation=name)

    def showReviewSlice(self, row):
        volume = slicer.mrmlScene.GetNodeByID(self._reviewVolumeID or "")
        if volume is None or not 0 <= row < len(self._reviewSlices):
            raise InputError(_("The segmented volume is no longer in the scene; segment again."))
        geometry = Geometry.from_node(volume)
        nj, ni = geometry.shape[1:]
        ras = geometry.ijk_to_ras @ [(ni - 1) / 2.0, (nj - 1) / 2.0, float(self._reviewSlices[row]), 1.0]
        jumpRedSliceTo([float(v) for v in ras[:3]])

    def exportDicom(self):
        """The last AI segmentation as DICOM SEG + SR + Parametric Map (the library writes them)."""
        outputs, source, demo = self._lastResult
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Folder for the DICOM results"))
        if not folder:
            return _("DICOM export cancelled.")
        with busy_cursor():
            written = self.logic.export_dicom(outputs, source, folder, demo, slicer.dicomDatabase.fileForInstance)
        return _("Wrote {count} DICOM file(s) into {folder}.").format(count=len(written), folder=folder)

    # -- measure -----------------------------------------------------------------------------

    def measureSegments(self):
        tableNode = self.logic.segment_volumes_table(
            self.ui.segmentationSelector.currentNode(), self.ui.outputTableSelector.currentNode()
        )
        self.ui.outputTableSelector.setCurrentNode(tableNode)
        showTable(tableNode)
        return _("Measured {count} segment(s) into '{table}'.").format(count=tableNode.GetNumberOfRows(),
                                                                        table=tableNode.GetName())


class NeuroblastomaSegTest(ScriptedLoadableModuleTest):
    """Runs the library's checks for this module on Slicer's own scene (pytest runs them headless)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_NeuroblastomaSeg_logic()

    def test_NeuroblastomaSeg_logic(self):
        runLibraryChecks(self, "NeuroblastomaSeg")
