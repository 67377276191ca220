"""Logic of the NeuroblastomaSeg module: nnU-Net segmentation as new, editable segments with an
uncertainty overlay; segment volumes; (with the correction loop) AI-vs-corrected comparison.

Every result goes to NEW nodes; segmentations a person edited are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.errors import EmptyMaskError, InputError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import require_finite, require_same_geometry, require_scalar_3d
from virtualbiopsy.progress import as_task

# Terminology of the tumour segment (Slicer's terminology tag: context~category~type~modifier~...):
# SNOMED CT 49755003 "Morphologically altered structure" / 108369006 "Neoplasm".
TUMOUR_TERMINOLOGY = ("Segmentation category and type - 3D Slicer General Anatomy list"
                      "~SCT^49755003^Morphologically Altered Structure~SCT^108369006^Neoplasm~^^"
                      "~Anatomic codes - DICOM master list~^^~^^")
TUMOUR_COLOUR = (0.93, 0.47, 0.11)
AGREEMENT_COLOURS = {0.1: (1.0, 0.9, 0.2), 0.5: (1.0, 0.35, 0.1)}


@dataclass(frozen=True)
class SegmentParameters:
    """How to run a model. ``folds`` None = every fold in the folder; device auto/cuda/mps/cpu;
    ``checkpoint`` the file name in each fold_N/; ``configuration`` the one expected (checked against
    the checkpoint); speed options as :class:`~virtualbiopsy.segmentation.inference.NNUNetSegmenter`'s."""

    model_path: str
    folds: tuple | None = None
    device: str = "auto"
    mirroring: bool = True
    uncertainty: bool = True
    uncertain_threshold: float = 0.5
    checkpoint: str = "checkpoint_final.pth"
    configuration: str | None = None
    precision: str = "float32"
    mirror_axes: tuple | None = None
    tile_step_size: float = 0.5


@dataclass
class SegmentationJob:
    """Inputs copied from the scene, ready to run without touching MRML (e.g. in a worker thread)."""

    segmenter: object
    parameters: SegmentParameters
    channels: list
    names: list
    geometry: object
    reference: object
    name: str
    warnings: list = field(default_factory=list)  # how the inputs differ from the model's training data

    def run(self, progress=None):
        spacing_kji = tuple(float(s) for s in self.geometry.spacing[::-1])
        return self.segmenter.predict(self.channels, spacing_kji, progress, self.parameters.uncertainty, self.names)


@dataclass
class SegmentationOutputs:
    segmentation: object
    uncertainty: object | None
    agreement: object | None
    summary: dict = field(default_factory=dict)
    disagreement: object | None = None  # mutual information between the passes (mirrorings x folds)
    fold_disagreement: object | None = None  # fraction of folds disagreeing; only with >= 2 folds


class NeuroblastomaSegLogic:
    def __init__(self, context) -> None:
        self.context = context
        self._segmenters: dict = {}

    # -- models ----------------------------------------------------------------------------------

    def load_model(self, parameters: SegmentParameters):
        """A loaded model, kept for later cases with the same folder, folds, device and mirroring."""
        from virtualbiopsy.segmentation.inference import NNUNetSegmenter
        from virtualbiopsy.segmentation.nnunet_model import inspect_model

        p = parameters
        key = (str(Path(p.model_path).resolve()), p.folds, p.device, p.mirroring, p.checkpoint, p.configuration,
               p.precision, p.mirror_axes, p.tile_step_size)
        if key not in self._segmenters:
            model = inspect_model(p.model_path, p.folds, p.checkpoint, p.configuration)
            self._segmenters[key] = NNUNetSegmenter(model, p.device, p.mirroring, p.tile_step_size,
                                                    precision=p.precision, mirror_axes=p.mirror_axes)
        return self._segmenters[key]

    # -- segmentation ----------------------------------------------------------------------------

    def segment(self, input_volumes, parameters: SegmentParameters, progress=None, name: str | None = None):
        """Segment the tumour on ``input_volumes`` (in the model's channel order, one voxel grid).

        Adds a new segmentation (one segment per model label, the tumour coded as a neoplasm),
        an uncertainty volume (normalised predictive entropy, uint8 0-255) and the 10 % / 50 %
        agreement contours; returns them with a summary (volume, uncertain fraction, slices to
        review). Nothing is added if the inputs are refused or the user cancels.

        The three steps can also run apart, so that a GUI computes in a worker thread:
        :meth:`prepare_segmentation` (main thread, reads the nodes), ``job.run(progress)`` (any
        thread, touches no MRML) and :meth:`add_segmentation_results` (main thread).
        """
        task = as_task(progress)
        job = self.prepare_segmentation(input_volumes, parameters, name, task.sub(0.0, 0.05))
        result = job.run(task.sub(0.05, 0.92))
        outputs = self.add_segmentation_results(job, result)
        task.update(1.0, "Segmentation ready")
        return outputs

    def prepare_segmentation(self, input_volumes, parameters: SegmentParameters, name: str | None = None,
                             progress=None) -> SegmentationJob:
        """Check the inputs against the model and copy their voxels (main thread)."""
        from virtualbiopsy.segmentation.fingerprint import input_warnings
        from virtualbiopsy.segmentation.nnunet_model import check_channels

        task = as_task(progress)
        volumes = list(input_volumes)
        if not volumes:
            raise InputError("Select the input image(s) to segment (for the demo model: the T2-weighted volume).")
        geometry = require_scalar_3d(volumes[0], "input image")
        names = [v.GetName() for v in volumes]
        task.update(0.0, "Loading the model")
        segmenter = self.load_model(parameters)
        check_channels(segmenter.model, len(volumes), names)
        channels = []
        for volume in volumes:
            require_same_geometry(geometry, require_scalar_3d(volume, "input image"), names[0], volume.GetName())
            values = arrays.array_from_volume(volume)
            require_finite(values, volume.GetName())
            channels.append(values.copy())  # the worker thread must not read node memory
        warnings = input_warnings(segmenter.model, channels, tuple(float(s) for s in geometry.spacing[::-1]), names)
        task.update(1.0, "Inputs ready")
        return SegmentationJob(segmenter, parameters, channels, names, geometry, volumes[0], name or names[0],
                               warnings)

    def export_dicom(self, outputs, source_volume, folder, demo: bool, file_for_instance=None) -> list[Path]:
        """The AI segmentation (SEG), its measurements (SR) and uncertainty (Parametric Map) as DICOM files in
        ``folder``, referencing the series ``source_volume`` was read from (``file_for_instance``: Slicer's
        DICOM database lookup, for a volume its DICOM module loaded). The scene is not changed."""
        from virtualbiopsy.dicom.results import export_ai_segmentation
        from virtualbiopsy.mrml.dicom_nodes import attach_dicom_files

        if file_for_instance is not None:
            attach_dicom_files(source_volume, file_for_instance)
        return export_ai_segmentation(outputs, source_volume, folder, demo)

    def add_segmentation_results(self, job: SegmentationJob, result) -> SegmentationOutputs:
        """Add the new segmentation, uncertainty and agreement nodes for a finished job (main thread)."""
        from virtualbiopsy.segmentation.uncertainty import agreement_masks, summarise, to_uint8

        geometry, base = job.geometry, job.name
        segments = job.segmenter.model.segments  # the tumour first; a region's segment is the union it means
        tumour_segment = segments[0]
        tumour = np.isin(result.labels, tumour_segment.values)
        with self.context.transaction():
            segmentation = arrays.add_segmentation_from_labels(
                self.context, result.labels, geometry,
                {s.values: (s.name, TUMOUR_COLOUR if s is tumour_segment else (0.3, 0.6, 1.0)) for s in segments},
                f"{base} AI segmentation", reference_volume=job.reference, keep_empty=True)
            self._code_tumour_segment(segmentation, tumour_segment.name)
            segmentation.SetAttribute(attributes.SOURCE, "AI")
            segmentation.SetAttribute(attributes.MODEL, job.segmenter.model.describe())
            if job.warnings:
                segmentation.SetAttribute(attributes.WARNINGS, " | ".join(job.warnings))
            uncertainty = agreement = disagreement = fold_disagreement = None
            if job.parameters.uncertainty:
                uncertainty = arrays.add_volume_from_array(
                    self.context, to_uint8(result.predictive_entropy), geometry, f"{base} uncertainty")
                uncertainty.SetAttribute(attributes.QUANTITY, "normalised predictive entropy x 255")
                self._show_as_overlay(uncertainty)
                disagreement = arrays.add_volume_from_array(
                    self.context, to_uint8(result.mutual_information), geometry, f"{base} disagreement")
                disagreement.SetAttribute(attributes.QUANTITY, "normalised mutual information between the "
                                          f"{result.members} passes (mirrorings x folds) x 255")
                if result.fold_disagreement is not None:
                    fold_disagreement = arrays.add_volume_from_array(
                        self.context, to_uint8(result.fold_disagreement), geometry, f"{base} fold disagreement")
                    fold_disagreement.SetAttribute(attributes.QUANTITY, "fraction of folds whose label differs "
                                                   "from the ensemble's x 255")
                masks = agreement_masks(result.probabilities[tumour_segment.channel].astype(np.float32))
                contour_labels = np.zeros(tumour.shape, np.uint8)
                for index, level in enumerate(sorted(masks), start=1):
                    contour_labels[masks[level]] = index
                agreement = arrays.add_segmentation_from_labels(
                    self.context, contour_labels, geometry,
                    {i: (f"tumour probability >= {int(level * 100)} %", AGREEMENT_COLOURS.get(level, (1, 1, 0)))
                     for i, level in enumerate(sorted(masks), start=1)},
                    f"{base} agreement contours", reference_volume=job.reference, keep_empty=True)
                self._outline_only(agreement)
        entropy = result.predictive_entropy.astype(np.float32)
        summary = summarise(tumour, entropy, geometry.ijk_to_ras, job.parameters.uncertain_threshold).to_dict()
        summary.update({"model": job.segmenter.model.describe(), "members_per_tile": result.members,
                        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
                        "warnings": list(job.warnings)})
        return SegmentationOutputs(segmentation, uncertainty, agreement, summary, disagreement, fold_disagreement)

    @staticmethod
    def _code_tumour_segment(segmentation, label_name: str) -> None:
        seg = segmentation.GetSegmentation()
        for index in range(seg.GetNumberOfSegments()):
            segment = seg.GetNthSegment(index)
            if segment.GetName() == label_name:
                segment.SetName("Neuroblastoma" if label_name.lower() in ("tumour", "tumor") else label_name)
                segment.SetTag(segment.GetTerminologyEntryTagName(), TUMOUR_TERMINOLOGY)

    def _show_as_overlay(self, volume) -> None:
        display = volume.GetDisplayNode()
        colour = self.context.scene.GetFirstNodeByName("Iron")
        if display is not None:
            if colour is not None:
                display.SetAndObserveColorNodeID(colour.GetID())
            display.AutoWindowLevelOff()
            display.SetWindowLevelMinMax(0, 255)
            display.SetLowerThreshold(13)  # entropy < 0.05 shown transparent when thresholding is on
            display.SetApplyThreshold(1)
        if self.context.scene.IsNodeClassRegistered("vtkMRMLColorLegendDisplayNode"):  # Slicer's Colors module
            import slicer

            legend = slicer.vtkSlicerColorLogic.AddDefaultColorLegendDisplayNode(volume)
            if legend is not None:
                legend.SetTitleText("Uncertainty (entropy x 255)")

    @staticmethod
    def _outline_only(segmentation) -> None:
        display = segmentation.GetDisplayNode()
        if display is not None:
            display.SetVisibility2DFill(False)
            display.SetVisibility2DOutline(True)

    # -- pre-processing ----------------------------------------------------------------------------

    def preprocess(self, volume, pipeline, mask=None, name: str | None = None, progress=None):
        """A NEW volume after the chosen steps (N4, denoising, resampling, normalisation)."""
        from virtualbiopsy.segmentation.preprocess_nodes import preprocess_volume

        return preprocess_volume(self.context, volume, pipeline, mask, name, progress)

    def register(self, fixed_volume, moving_volume, parameters=None, fixed_mask=None, name: str | None = None,
                 progress=None):
        """Rigid/affine registration of another sequence onto the reference: (new volume, quality)."""
        from virtualbiopsy.segmentation.preprocess_nodes import register_volume

        return register_volume(self.context, fixed_volume, moving_volume, parameters, fixed_mask, name, progress)

    # -- correction loop ---------------------------------------------------------------------------

    def start_correction(self, ai_segmentation, name: str | None = None):
        """A NEW segmentation node holding a copy of ``ai_segmentation``'s segments, to be edited.

        The copy (default name "<AI name> corrected") keeps the segment IDs, names, colours,
        terminology and the reference geometry; the AI segmentation itself is never modified, so
        that the AI and the corrected contour can be compared afterwards.
        """
        if ai_segmentation is None or not ai_segmentation.IsA("vtkMRMLSegmentationNode"):
            raise InputError("Select the AI segmentation to correct (a segmentation node).")
        if ai_segmentation.GetSegmentation().GetNumberOfSegments() == 0:
            raise InputError(f"Segmentation '{ai_segmentation.GetName()}' has no segment to correct.")
        with self.context.transaction():
            corrected = self.context.add_node("vtkMRMLSegmentationNode",
                                              name or f"{ai_segmentation.GetName()} corrected")
            corrected.GetSegmentation().DeepCopy(ai_segmentation.GetSegmentation())
            corrected.CreateDefaultDisplayNodes()
            reference = ai_segmentation.GetNodeReference(ai_segmentation.GetReferenceImageGeometryReferenceRole())
            if reference is not None:
                corrected.SetNodeReferenceID(corrected.GetReferenceImageGeometryReferenceRole(), reference.GetID())
            corrected.SetAttribute(attributes.SOURCE, "corrected")
            corrected.SetAttribute(attributes.CORRECTED_FROM, ai_segmentation.GetID())
        return corrected

    def compare(self, ai_segmentation, ai_segment_id, corrected_segmentation, corrected_segment_id,
                reference_volume, tolerance_mm: float = 1.0, table_node=None):
        """AI vs corrected segment (an ID, or a list of IDs for their union): DSC, Jaccard, FPR, FNR, HD95, MSD,
        surface DSC, APL, volumes (a table)."""
        from virtualbiopsy.segmentation.correction import compare_segments

        return compare_segments(self.context, ai_segmentation, ai_segment_id, corrected_segmentation,
                                corrected_segment_id, reference_volume, tolerance_mm, table_node)

    def export_for_retraining(self, cases, dataset_folder, progress=None, **options):
        """Write corrected cases as an nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json)."""
        from virtualbiopsy.segmentation.correction import export_for_retraining

        return export_for_retraining(self.context, cases, dataset_folder, progress=progress, **options)

    # -- tables ----------------------------------------------------------------------------------

    def segment_volumes_table(self, segmentation_node, table_node=None):
        """A table of every segment's voxel count and volume (mL) in ``segmentation_node``.

        Fills ``table_node`` if given, else adds a new table named after the segmentation. A
        segmentation without segments is refused before any node is touched.
        """
        if segmentation_node is None or not segmentation_node.IsA("vtkMRMLSegmentationNode"):
            raise InputError("Choose a segmentation to measure.")
        if table_node is not None and not table_node.IsA("vtkMRMLTableNode"):
            raise InputError(f"'{table_node.GetName()}' is not a table; choose a table node for the volumes.")
        rows = arrays.segment_volumes(segmentation_node)
        if not rows:
            raise EmptyMaskError(f"Segmentation '{segmentation_node.GetName()}' has no segments; there is nothing to "
                                 "measure. Draw or load segments first.")
        columns = {
            "segment": [r["segment"] for r in rows],
            "voxels": [r["voxels"] for r in rows],
            "volume_ml": [r["volume_ml"] for r in rows],
        }
        with self.context.transaction(protect=[table_node]):
            return arrays.add_table(self.context, columns, f"{segmentation_node.GetName()} volumes", table_node)

