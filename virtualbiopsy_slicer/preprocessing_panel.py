"""The "Pre-processing and registration" section of a module panel, wired to the library.

Used by NeuroblastomaSeg; any module whose ``.ui`` has the same widget names can reuse it. The
work is done by ``NeuroblastomaSegLogic.preprocess`` / ``register`` (new volumes only).
"""

from __future__ import annotations

import json

from virtualbiopsy.errors import InputError
from virtualbiopsy.segmentation.preprocess_nodes import ATTRIBUTE
from virtualbiopsy.segmentation.preprocessing import PreprocessingPipeline
from virtualbiopsy.segmentation.registration import RegistrationParameters
from virtualbiopsy_slicer.progress import progress_dialog

# combo-box row -> library method name (rows as in the .ui)
DENOISE_METHODS = ("none", "curvature_flow", "patch_based")
NORMALISE_METHODS = ("none", "zscore", "percentile")


class PreprocessingPanel:
    """Connects the section's widgets; each action returns the status line to show."""

    def __init__(self, ui, logic, runAction) -> None:
        self.ui, self.logic = ui, logic
        ui.preprocessButton.connect("clicked(bool)", lambda *_: runAction(self.preprocess))
        ui.registerButton.connect("clicked(bool)", lambda *_: runAction(self.register))
        for name in ("preprocessInputSelector", "fixedVolumeSelector", "movingVolumeSelector"):
            getattr(ui, name).connect("currentNodeChanged(vtkMRMLNode*)", self.updateButtons)
        self.updateButtons()

    def updateButtons(self, *_):
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
            raise InputError("Choose at least one step: N4, denoising, a voxel size to resample to, or normalisation.")
        return pipeline

    def preprocess(self) -> str:
        volume, pipeline = self.ui.preprocessInputSelector.currentNode(), self.pipeline()
        with progress_dialog(f"Pre-processing '{volume.GetName()}'") as task:
            node = self.logic.preprocess(volume, pipeline, self.ui.preprocessMaskSelector.currentNode(), progress=task)
        self.ui.preprocessInputSelector.setCurrentNode(node)
        steps = ", ".join(step["step"] for step in json.loads(node.GetAttribute(ATTRIBUTE))["steps"])
        return f"Added '{node.GetName()}' ({steps}); check it under Segment to segment it."

    def register(self) -> str:
        ui = self.ui
        parameters = RegistrationParameters(transform=ui.transformComboBox.currentText)
        with progress_dialog("Registering") as task:
            node, quality = self.logic.register(
                ui.fixedVolumeSelector.currentNode(), ui.movingVolumeSelector.currentNode(), parameters,
                ui.preprocessMaskSelector.currentNode(), progress=task)
        ui.registrationQualityLabel.text = (
            f"Normalised cross-correlation {quality.ncc_before:.3f} \u2192 {quality.ncc_after:.3f}; mutual information "
            f"{quality.mi_before:.3f} \u2192 {quality.mi_after:.3f} nats"
            + ("." if quality.improved else ". NOT improved: check the alignment before using it."))
        return f"Added '{node.GetName()}' on the reference grid."
