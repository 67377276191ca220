"""Logic of the RadiomicsBiomarkers module, on MRML nodes.

- :meth:`RadiomicsBiomarkersLogic.intensity_statistics_table`: first-order statistics per segment.
- :meth:`~RadiomicsBiomarkersLogic.extract_features`: pyradiomics features of segments in one or
  several volumes, into a NEW table node that carries its settings and library versions.
- :meth:`~RadiomicsBiomarkersLogic.feature_map`: a voxel-based feature map as a NEW volume.
- :meth:`~RadiomicsBiomarkersLogic.ibsi_report`: the IBSI digital-phantom compliance table.
- feature reduction, exploration and ComBat come from :class:`RadiomicsSignatureMixin`.

Volumes become SimpleITK images through :mod:`virtualbiopsy.mrml.sitk_bridge` and go through the
same :func:`virtualbiopsy.radiomics.extraction.extract_case` as the cohort batch, so a case gives
the same values in Slicer and on the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from virtualbiopsy import attributes
from virtualbiopsy.errors import EmptyMaskError, InputError
from virtualbiopsy.logic.radiomics_signature import RadiomicsSignatureMixin
from virtualbiopsy.mrml import arrays
from virtualbiopsy.mrml.geometry import Geometry, require_finite, require_scalar_3d
from virtualbiopsy.progress import as_task

STATISTICS = ("voxels", "volume_ml", "mean", "sd", "min", "p10", "median", "p90", "max")
ATTRIBUTE = attributes.RADIOMICS  # node attributes: <ATTRIBUTE>settings, ...versions, ...parameters
SETTINGS_REFERENCE = "radiomicsSettings"  # node reference from a features table to its settings table


def intensity_statistics(values: np.ndarray, voxel_ml: float) -> dict[str, float]:
    """First-order statistics of the voxel values in a region (sd with n-1 degrees of freedom)."""
    values = np.asarray(values, dtype=np.float64)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {
        "voxels": float(values.size),
        "volume_ml": values.size * voxel_ml,
        "mean": float(values.mean()),
        "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
        "min": float(values.min()),
        "p10": float(p10),
        "median": float(median),
        "p90": float(p90),
        "max": float(values.max()),
    }


def _stored_grid(volume_node):
    """The grid of the file a volume node was read from (header only), or None (no file, or unreadable)."""
    from virtualbiopsy.radiomics import extraction

    storage = volume_node.GetStorageNode()
    path = storage.GetFullNameFromFileName() if storage is not None and storage.GetFileName() else ""
    return extraction.stored_grid(path) if path and Path(path).is_file() else None


def _as_list(nodes) -> list:
    if nodes is None:
        return []
    return list(nodes) if isinstance(nodes, (list, tuple)) else [nodes]


class RadiomicsBiomarkersLogic(RadiomicsSignatureMixin):
    def __init__(self, context) -> None:
        self.context = context

    def intensity_statistics_table(self, volume_node, segmentation_node, table_node=None):
        """Per segment: voxels, volume_ml, mean, sd, min, p10, median, p90, max of the volume.

        Refuses a 2D or multi-component volume, NaN voxels, a segmentation that is not on the
        image's voxel grid, and empty segments, naming each problem.
        """
        geometry = require_scalar_3d(volume_node, "image")
        image = arrays.array_from_volume(volume_node)
        require_finite(image, volume_node.GetName())
        arrays.require_segmentation_on_grid(segmentation_node, volume_node)
        names, rows = [], []
        for segment_id in arrays.segment_ids(segmentation_node):
            mask = arrays.mask_from_segment(segmentation_node, segment_id, volume_node)
            names.append(segmentation_node.GetSegmentation().GetSegment(segment_id).GetName())
            rows.append(intensity_statistics(image[mask], geometry.voxel_volume_ml))
        if not rows:
            raise EmptyMaskError(f"Segmentation '{segmentation_node.GetName()}' has no segments.")
        columns = {"segment": names} | {s: [row[s] for row in rows] for s in STATISTICS}
        with self.context.transaction():
            return arrays.add_table(
                self.context, columns, f"{volume_node.GetName()} statistics", table_node
            )

    # -- pyradiomics ---------------------------------------------------------------------------

    def _images_and_masks(self, volume_nodes, segmentation_node, segment_id):
        """{sequence: sitk image} and {sequence: sitk mask} of one segment, each on its volume's grid, in the voxel
        order of the file the volume was read from (see :meth:`voxel_order`)."""
        from virtualbiopsy.mrml import sitk_bridge
        from virtualbiopsy.radiomics import extraction

        images, masks = {}, {}
        for volume in volume_nodes:
            name = volume.GetName()
            image = sitk_bridge.image_from_volume(volume)
            mask = arrays.mask_from_segment(segmentation_node, segment_id, volume)
            mask = sitk_bridge.image_from_array(mask.astype(np.uint8), Geometry.from_node(volume))
            stored = _stored_grid(volume)
            restored = extraction.in_stored_order(image, stored) if stored else None
            if restored:  # the mask shares the volume's grid, so the same flips bring it into the file's order
                image, mask = restored[0], extraction.in_stored_order(mask, stored)[0]
            images[name], masks[name] = image, mask
        return images, masks

    def voxel_order(self, volume_node) -> str:
        """How the voxels of ``volume_node`` reach pyradiomics, in words (recorded with the features).

        A volume read from a file is given to pyradiomics in the file's voxel order, so that its features
        equal pyradiomics run directly on the file; Slicer's reader reverses an axis of files stored with
        left-handed axes, which is undone. A volume without a readable file keeps the node's IJK order
        (as SlicerRadiomics passes it).
        """
        from virtualbiopsy.mrml import sitk_bridge
        from virtualbiopsy.radiomics import extraction

        stored = _stored_grid(volume_node)
        restored = extraction.in_stored_order(sitk_bridge.image_from_volume(volume_node), stored) if stored else None
        if not restored:
            return f"{volume_node.GetName()}: the volume's IJK order (no file with its grid)"
        undone = (f"; Slicer's reader had reversed axis {', '.join(restored[1])}, undone" if restored[1] else "")
        return f"{volume_node.GetName()}: as stored in {Path(stored.path).name}{undone}"

    def _check_inputs(self, volume_nodes, segmentation_node, segment_ids):
        if not volume_nodes:
            raise InputError("Choose at least one volume to extract features from.")
        if segmentation_node is None:
            raise InputError("Choose the segmentation that holds the region(s) of interest.")
        names = [v.GetName() for v in volume_nodes]
        if len(set(names)) != len(names):
            raise InputError(f"The volumes need distinct names (they prefix the feature columns): {', '.join(names)}.")
        for volume in volume_nodes:
            require_scalar_3d(volume, "image")
            arrays.require_segmentation_on_grid(segmentation_node, volume)
        ids = list(segment_ids) if segment_ids else arrays.segment_ids(segmentation_node)
        if not ids:
            raise EmptyMaskError(f"Segmentation '{segmentation_node.GetName()}' has no segments.")
        known = arrays.segment_ids(segmentation_node)
        unknown = [s for s in ids if s not in known]
        if unknown:
            raise InputError(f"Segmentation '{segmentation_node.GetName()}' has no segment with ID "
                             f"{', '.join(unknown)}.")
        return ids

    def extract_features(self, volume_nodes, segmentation_node, segment_ids=None, parameters=None,
                         table_node=None, progress=None):
        """pyradiomics features of each chosen segment (default: all) into a NEW table node.

        ``volume_nodes``: one volume or several sequences on the segmentation's voxel grid(s);
        with several, columns are ``<volume name>:<pyradiomics name>``. ``parameters``: an
        :class:`~virtualbiopsy.radiomics.extraction.ExtractionParameters` (default: the study's
        fixed-bin-width MR preset). One row per segment (``segment``, ``segment_id``, ``images``,
        features). The settings and library versions are attached as node attributes
        ``VirtualBiopsy.Radiomics.*`` and as a companion key/value table (node reference
        ``radiomicsSettings``).
        """
        from virtualbiopsy.radiomics import extraction

        task = as_task(progress)
        volume_nodes = _as_list(volume_nodes)
        ids = self._check_inputs(volume_nodes, segmentation_node, segment_ids)
        parameters = parameters or extraction.ExtractionParameters()
        params = parameters.pyradiomics_params()
        record = extraction.provenance(parameters, params)
        record["voxel_order"] = "; ".join(self.voxel_order(volume) for volume in volume_nodes)
        extractor = extraction.make_extractor(params)
        rows = []
        for index, segment_id in enumerate(ids):
            segment_name = segmentation_node.GetSegmentation().GetSegment(segment_id).GetName()
            sub = task.sub(index / len(ids), (index + 1) / len(ids))
            sub.update(0.0, f"Segment '{segment_name}'")
            images, masks = self._images_and_masks(volume_nodes, segmentation_node, segment_id)
            features = extraction.extract_case(images if len(images) > 1 else next(iter(images.values())),
                                               masks if len(masks) > 1 else next(iter(masks.values())),
                                               parameters, 1, segment_name, extractor, sub)
            rows.append({"segment": segment_name, "segment_id": segment_id,
                         "images": ";".join(v.GetName() for v in volume_nodes)} | features)
        columns = {name: [row.get(name, float("nan")) for row in rows] for name in dict.fromkeys(
            key for row in rows for key in row)}
        name = f"{volume_nodes[0].GetName()} radiomics"
        with self.context.transaction():
            table = arrays.add_table(self.context, columns, name, table_node)
            self._attach_provenance(table, record)
        task.update(1.0, f"{len(rows)} segment(s) extracted")
        return table

    def _attach_provenance(self, table, record: dict) -> None:
        versions = {k[len("version_"):]: v for k, v in record.items() if k.startswith("version_")}
        table.SetAttribute(ATTRIBUTE + "parameters", record["parameters"])
        table.SetAttribute(ATTRIBUTE + "settings", record["settings"])
        table.SetAttribute(ATTRIBUTE + "imageTypes", record["image_types"])
        table.SetAttribute(ATTRIBUTE + "versions", json.dumps(versions, sort_keys=True))
        table.SetAttribute(ATTRIBUTE + "extracted", record["extracted_utc"])
        settings = arrays.add_table(self.context, {"key": list(record), "value": list(record.values())},
                                    f"{table.GetName()} settings")
        table.SetNodeReferenceID(SETTINGS_REFERENCE, settings.GetID())

    def settings_table(self, table_node):
        """The companion settings table of a features table made by :meth:`extract_features` (or None)."""
        return table_node.GetNodeReference(SETTINGS_REFERENCE)

    def feature_map(self, volume_node, segmentation_node, segment_id, feature: str, parameters=None,
                    kernel_radius: int = 1, progress=None):
        """A NEW float volume of ``feature`` (e.g. ``original_glcm_Contrast``) computed around each voxel of
        the segment (0 outside it), with the extraction's settings; progress and cancel through ``progress``."""
        from virtualbiopsy.mrml import sitk_bridge
        from virtualbiopsy.radiomics import feature_maps

        task = as_task(progress)
        ids = self._check_inputs([volume_node], segmentation_node, [segment_id] if segment_id else None)
        segment_name = segmentation_node.GetSegmentation().GetSegment(ids[0]).GetName()
        images, masks = self._images_and_masks([volume_node], segmentation_node, ids[0])
        name = volume_node.GetName()
        image = feature_maps.feature_map(images[name], masks[name], feature, parameters, 1, kernel_radius,
                                         task.sub(0.0, 0.95), name, segment_name)
        image = feature_maps.on_grid(image, sitk_bridge.image_from_volume(volume_node))  # back to the node's order
        with self.context.transaction():
            node = sitk_bridge.add_volume_from_image(self.context, image, f"{name} {feature} map")
            node.SetAttribute(ATTRIBUTE + "feature", feature)
            node.SetAttribute(ATTRIBUTE + "kernelRadius", str(int(kernel_radius)))
            node.SetAttribute(ATTRIBUTE + "segment", segment_name)
        task.update(1.0, "Feature map added")
        return node

    def ibsi_report(self, phantom_dir=None, table_node=None, progress=None):
        """The IBSI digital-phantom compliance table as a NEW table node (one row per IBSI tag).

        The summary counts are node attributes ``VirtualBiopsy.Radiomics.ibsi.<count>``, and the line that states
        them (the IBSI page's headline) ``VirtualBiopsy.Radiomics.ibsi.summary_line``.
        """
        from virtualbiopsy.radiomics import ibsi

        rows = ibsi.compliance_report(phantom_dir, progress)
        columns = {c: [row[c] for row in rows] for c in ibsi.REPORT_COLUMNS}
        for c in ("reference", "tolerance", "pyradiomics_value", "ibsi_convention_value", "difference"):
            columns[c] = [float(v) if v != "" else float("nan") for v in columns[c]]
        with self.context.transaction():
            table = arrays.add_table(self.context, columns, "IBSI compliance", table_node)
            counts = ibsi.summary(rows)
            for key, value in counts.items():
                table.SetAttribute(f"{ATTRIBUTE}ibsi.{key}", str(value))
            table.SetAttribute(f"{ATTRIBUTE}ibsi.summary_line", ibsi.summary_line(counts))
        return table
