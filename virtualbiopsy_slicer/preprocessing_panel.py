"""The "Pre-processing and registration" section of a module panel, wired to the library.

Used by NeuroblastomaSeg; any module whose ``.ui`` has the same widget names can reuse it. The
work is done by ``NeuroblastomaSegLogic.preprocess`` / ``register`` (new volumes only); the module's
``actions`` table runs ``preprocess`` and ``register`` from the section's buttons.
"""

from __future__ import annotations

import json

from virtualbiopsy.errors import InputError
from virtualbiopsy.segmentation.preprocess_nodes import ATTRIBUTE
from virtualbiopsy.segmentation.preprocessing import PreprocessingPipeline
from virtualbiopsy.segmentation.registration import RegistrationParameters
from virtualbiopsy_slicer.i18n import tr as _
from virtualbiopsy_slicer.progress import progress_dialog

# combo-box row -> library method name (rows as in the .ui)
DENOISE_METHODS = ("none", "curvature_flow", "patch_based")
NORMALISE_METHODS = ("none", "zscore", "percentile")


class PreprocessingPanel:
    """Keeps the section's buttons enabled when usable; each action returns the status line to show."""

    def __init__(self, ui, logic) -> None:
        self.ui, self.logic = ui, logic
        for name in ("preprocessInputSelector", "fixedVolumeSelector", "movingVolumeSelector"):
            getattr(ui, name).connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.updateButtons()

    def updateButtons(self, *args):
        ui = self.ui
        ui.preprocessButton.enabled = ui.preprocessInputSelector.currentNode() is not None
        fixed, moving = ui.fixedVolumeSelector.currentNode(), ui.movingVolumeSelector.currentNode()
        ui.registerButton.enabled = fixed is not None and moving is not None and fixed is not moving

    def pipeline(self) -> PreprocessingPipeline:
        ui = self.ui
        pipeline = PreprocessingPipeline.from_choices(
            ui.n4CheckBox.checked, DENOISE_METHODS[ui.denoiseComboBox.currentIndex], ui.spacingLineEdit.text,
            NORMALISE_METHODS[ui.normaliseComboBox.currentIndex])
        if pipeline is None:
            raise InputError(_("Choose at least one step: N4, denoising, a voxel size to resample to, or "
                               "normalisation."))
        return pipeline

    def preprocess(self) -> str:
        volume, pipeline = self.ui.preprocessInputSelector.currentNode(), self.pipeline()
        with progress_dialog(_("Pre-processing '{volume}'").format(volume=volume.GetName())) as task:
            node = self.logic.preprocess(volume, pipeline, self.ui.preprocessMaskSelector.currentNode(), progress=task)
        self.ui.preprocessInputSelector.setCurrentNode(node)
        steps = ", ".join(step["step"] for step in json.loads(node.GetAttribute(ATTRIBUTE))["steps"])
        return _("Added '{volume}' ({steps}); check it under Segment to segment it.").format(
            volume=node.GetName(), steps=steps)

    def register(self) -> str:
        ui = self.ui
        parameters = RegistrationParameters(transform=ui.transformComboBox.currentText)
        with progress_dialog(_("Registering")) as task:
            node, quality = self.logic.register(
                ui.fixedVolumeSelector.currentNode(), ui.movingVolumeSelector.currentNode(), parameters,
                ui.preprocessMaskSelector.currentNode(), progress=task)
        ui.registrationQualityLabel.text = _(
            "Normalised cross-correlation {ncc_before:.3f} \u2192 {ncc_after:.3f}; mutual information "
            "{mi_before:.3f} \u2192 {mi_after:.3f} nats").format(
            ncc_before=quality.ncc_before, ncc_after=quality.ncc_after, mi_before=quality.mi_before,
            mi_after=quality.mi_after) + ("." if quality.improved else _(
                ". NOT improved: check the alignment before using it."))
        return _("Added '{volume}' on the reference grid.").format(volume=node.GetName())
