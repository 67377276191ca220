"""Every node-attribute key the project writes on MRML nodes, in one place for the logic, the widgets, the
command line and the tests (``node.GetAttribute(attributes.UNITS)``). Values are text; JSON where noted."""

from __future__ import annotations

PREFIX = "VirtualBiopsy."

# what a node holds
UNITS = "VirtualBiopsy.Units"  # e.g. "mm2/s", "s"
QUANTITY = "VirtualBiopsy.Quantity"  # what a volume's values are, in words
SOURCE = "VirtualBiopsy.Source"  # the node (name) a result was computed from
MODEL = "VirtualBiopsy.Model"  # the model that made a result
SUMMARY = "VirtualBiopsy.Summary"  # JSON: a step's key numbers and parameters
WARNINGS = "VirtualBiopsy.Warnings"
NOTE = "VirtualBiopsy.Note"
NOTES = "VirtualBiopsy.Notes"
MISSING_CELLS = "VirtualBiopsy.MissingCells"  # a table's empty cells, counted
FITTED_MODEL = "VirtualBiopsy.FittedModel"  # JSON: a fitted ComBat model / reduction

# diffusion and DCE
B_VALUES = "VirtualBiopsy.BValues"
DWI_COMBINATION = "VirtualBiopsy.DwiCombination"  # how repeats / directions were combined
ARRIVAL = "VirtualBiopsy.Arrival"  # DCE bolus arrival (s)
HABITATS = "VirtualBiopsy.Habitats"

# segmentation, correction and comparison
PREPROCESSING = "VirtualBiopsy.Preprocessing"  # JSON: the pre-processing steps applied
CORRECTED_FROM = "VirtualBiopsy.CorrectedFrom"  # the AI segmentation a correction started from
AI_SEGMENTATION_NAME = "VirtualBiopsy.AISegmentationName"
CORRECTION_STARTED = "VirtualBiopsy.CorrectionStarted"
CORRECTION_FINISHED = "VirtualBiopsy.CorrectionFinished"
EDITING_SECONDS = "VirtualBiopsy.EditingSeconds"
AI_SEGMENTS = "VirtualBiopsy.AiSegments"
CORRECTED_SEGMENTS = "VirtualBiopsy.CorrectedSegments"
SURFACE_DICE_TOLERANCE_MM = "VirtualBiopsy.SurfaceDiceToleranceMm"

# DICOM
DICOM_SERIES_UID = "VirtualBiopsy.DicomSeriesUID"
DICOM_STUDY_UID = "VirtualBiopsy.DicomStudyUID"
DICOM_FILES = "VirtualBiopsy.DicomFiles"
DICOM_FRAME_VALUES_FROM = "VirtualBiopsy.DicomFrameValuesFrom"
DICOM_INSTANCE_UIDS = "DICOM.instanceUIDs"  # Slicer's own attribute name

# radiomics: RADIOMICS + "settings" / "versions" / "parameters" / "feature" / "ibsi.<count>"
RADIOMICS = "VirtualBiopsy.Radiomics."
RADIOMICS_SETTINGS = RADIOMICS + "settings"
RADIOMICS_VERSIONS = RADIOMICS + "versions"
IBSI_MATCHING = RADIOMICS + "ibsi.matching"
IBSI_SUMMARY_LINE = RADIOMICS + "ibsi.summary_line"

# explanations
GRADCAM_MODEL = "VirtualBiopsy.GradCAM.Model"
GRADCAM_TARGET = "VirtualBiopsy.GradCAM.Target"
GRADCAM_FRACTION_IN_SEGMENT = "VirtualBiopsy.GradCAM.FractionInSegment"
SHAP_OUTPUT = "VirtualBiopsy.SHAP.Output"
SHAP_METHOD = "VirtualBiopsy.SHAP.Method"
