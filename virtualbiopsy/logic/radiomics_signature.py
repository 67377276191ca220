"""Feature-table steps of the RadiomicsBiomarkers module: reduction to a signature, exploration
and ComBat harmonisation, on Table nodes.

The numeric work is in :mod:`virtualbiopsy.signature`; here tables are read from and written to
the scene. Every step writes NEW table nodes (the input table is never changed) inside a
transaction. A fitted reduction or ComBat model travels with its result node as JSON in the
node attribute :data:`MODEL_ATTRIBUTE` (saved with the scene); :meth:`save_fitted_model` writes
it to a file and :meth:`apply_fitted_model` applies it to new cases.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from virtualbiopsy import attributes
from virtualbiopsy.dependencies import LazyModule
from virtualbiopsy.errors import InputError
from virtualbiopsy.mrml import arrays
from virtualbiopsy.progress import as_task

if TYPE_CHECKING:
    import pandas as pd

    from virtualbiopsy.signature.reduction import ReductionParameters

# pandas and scikit-learn (behind virtualbiopsy.signature) are installed in Slicer only when the user confirms:
# imported on first use.
combat = LazyModule("virtualbiopsy.signature.combat")
batch_effect = LazyModule("virtualbiopsy.signature.batch_effect")
exploration = LazyModule("virtualbiopsy.signature.exploration")
persistence = LazyModule("virtualbiopsy.signature.persistence")
reduction_module = LazyModule("virtualbiopsy.signature.reduction")
tables = LazyModule("virtualbiopsy.signature.tables")

MODEL_ATTRIBUTE = attributes.FITTED_MODEL
NOTES_ATTRIBUTE = attributes.NOTES


class RadiomicsSignatureMixin:
    """Mixed into ``RadiomicsBiomarkersLogic`` (which provides ``self.context``)."""

    def _table_frame(self, table_node) -> pd.DataFrame:
        if table_node is None:
            raise InputError("No feature table was selected.")
        frame = arrays.frame_from_table_node(table_node)
        if frame.empty:
            raise InputError(f"Table '{table_node.GetName()}' has no rows.")
        return frame

    # -- reduction ------------------------------------------------------------------------------

    def reduce_feature_table(self, table_node, parameters: ReductionParameters | None = None, progress=None) -> dict:
        """Reduce a cohort feature table to a signature; returns {"signature", "loadings", "log"} table nodes.

        ``signature``: the cases' identifier/label columns and the signature features' values (the
        fitted reduction is stored on it); ``loadings``: features x factors with communalities;
        ``log``: every column/feature that was set aside or dropped, by which step and why.
        Features: ``parameters.features`` as given, else the shared guard's default (never ids,
        outcome-like columns such as ``os_days``, text, binary or categorical codes) less
        ``parameters.exclude``; text in a numeric column is refused naming the cell.
        """
        task = as_task(progress)
        frame = self._table_frame(table_node)
        parameters = parameters or reduction_module.ReductionParameters()
        reduction = reduction_module.FeatureReduction(parameters).fit(frame, task.sub(0.0, 0.9))
        signature = reduction.signature_table(frame)
        name = table_node.GetName()
        task.update(0.95, "Writing the signature tables")
        with self.context.transaction():
            signature_node = arrays.add_frame(self.context, signature, f"{name} signature")
            signature_node.SetAttribute(MODEL_ATTRIBUTE, persistence.model_to_json(reduction))
            loadings_node = arrays.add_frame(self.context, reduction.loadings_table(), f"{name} factor loadings")
            log_node = arrays.add_frame(self.context, reduction.report_, f"{name} reduction log")
        task.update(1.0, f"Signature of {len(reduction.signature_)} feature(s)")
        return {"signature": signature_node, "loadings": loadings_node, "log": log_node}

    # -- exploration ----------------------------------------------------------------------------

    def explore_features(self, table_node, label_column, volume_column=None, features=None, exclude=()):
        """Per-feature Mann-Whitney p (Bonferroni, BH), univariate AUC and Spearman rho with volume.

        ``volume_column`` None: pyradiomics' MeshVolume (or VoxelVolume) column when present.
        ``features`` / ``exclude``: as for :meth:`reduce_feature_table`.
        """
        frame = self._table_frame(table_node)
        if not label_column:
            raise InputError("Name the label column (two classes, e.g. the outcome) to explore the features against.")
        tables.require_columns(frame, [label_column], "feature table")
        if volume_column is None:
            volume_column = exploration.find_volume_column(list(frame.columns))
        elif volume_column:
            tables.require_columns(frame, [volume_column], "feature table")
        exploration.check_label(tables.labels_as_text(frame[label_column].tolist(), f"label '{label_column}'"),
                                name=f"label '{label_column}'")
        features = tables.feature_selection(frame, features, exclude, {label_column: "label"}).features
        volume = frame[volume_column] if volume_column else None
        table = exploration.univariate_table(frame[features], frame[label_column].tolist(), volume)
        with self.context.transaction():
            node = arrays.add_frame(self.context, table, f"{table_node.GetName()} exploration")
            node.SetAttribute(NOTES_ATTRIBUTE, f"label: {label_column}; volume: {volume_column or 'none'}")
        return node

    # -- harmonisation --------------------------------------------------------------------------

    def harmonise_feature_table(self, table_node, batch_column, covariates: Iterable[str] = (), parametric=True,
                                progress=None, categorical: Iterable[str] = (), features: Iterable[str] | None = None,
                                exclude: Iterable[str] = ()):
        """A new table: the input with its feature columns ComBat-harmonised by ``batch_column``.

        ``covariates``: columns whose (biological) effects are preserved; text columns are
        categorical, numeric ones linear unless also listed in ``categorical`` (e.g. a stage
        coded 1-4). ``features``: the columns to harmonise (default: the shared guard's, never
        outcome-like, id, text, binary or categorical columns) less ``exclude``; binary and
        categorical columns are copied unchanged, and the node's notes say so. The fitted model is
        stored on the new node.
        """
        task = as_task(progress)
        frame = self._table_frame(table_node)
        params = combat.ComBatParameters(parametric=bool(parametric))
        output, model = combat.harmonise_table(frame, batch_column, list(covariates), params, task.sub(0.0, 0.9),
                                               categorical=list(categorical),
                                               features=None if features is None else list(features),
                                               exclude=list(exclude))
        with self.context.transaction():
            node = arrays.add_frame(self.context, output, f"{table_node.GetName()} harmonised")
            node.SetAttribute(MODEL_ATTRIBUTE, persistence.model_to_json(model))
            node.SetAttribute(NOTES_ATTRIBUTE, "; ".join(model.notes))
        task.update(1.0, "Harmonised")
        return node

    def batch_effect_table(self, before_node, after_node, batch_column):
        """Per feature: Kruskal-Wallis p of batch before and after harmonisation (a new table node)."""
        before, after = self._table_frame(before_node), self._table_frame(after_node)
        tables.require_columns(before, [batch_column], "table before harmonisation")
        fitted = after_node.GetAttribute(MODEL_ATTRIBUTE)
        model = persistence.model_from_json(fitted) if fitted else None
        if isinstance(model, combat.ComBatModel):
            features = model.features
        else:
            features, _ = tables.split_columns(before, [batch_column])
        tables.require_columns(before, features, "table before harmonisation")
        tables.require_columns(after, features, "harmonised table")
        if len(before) != len(after):
            raise InputError(f"The tables before ({len(before)} cases) and after ({len(after)}) harmonisation differ.")
        ok = ~tables.failed_rows(before).to_numpy()
        table = batch_effect.batch_effect_table(before.loc[ok, features], after.loc[ok, features],
                                          before.loc[ok, batch_column].tolist())
        with self.context.transaction():
            return arrays.add_frame(self.context, table, f"{after_node.GetName()} batch effect")

    # -- deep features --------------------------------------------------------------------------

    def deep_feature_table(self, volume_node, segmentation_node, parameters=None, progress=None):
        """ROI-pooled nnU-Net encoder activations of each segment (one row per segment): a new table node.

        ``parameters``: :class:`virtualbiopsy.signature.deep_features.DeepFeatureParameters`
        (default: the bundled demo model, CPU). Empty segments are refused, naming them.
        """
        from virtualbiopsy.mrml.geometry import require_finite, require_scalar_3d
        from virtualbiopsy.signature.deep_features import DeepFeatureExtractor

        task = as_task(progress)
        geometry = require_scalar_3d(volume_node, "image")
        image = arrays.array_from_volume(volume_node)
        require_finite(image, volume_node.GetName())
        arrays.require_segmentation_on_grid(segmentation_node, volume_node)
        ids = arrays.segment_ids(segmentation_node)
        if not ids:
            raise InputError(f"Segmentation '{segmentation_node.GetName()}' has no segments.")
        masks = {segment_id: arrays.mask_from_segment(segmentation_node, segment_id, volume_node) for segment_id in ids}
        task.update(0.05, "Loading the network")
        extractor = DeepFeatureExtractor(parameters)
        spacing_kji = tuple(float(s) for s in geometry.spacing[::-1])
        rows = []
        for index, segment_id in enumerate(ids):
            sub = task.sub(0.1 + 0.85 * index / len(ids), 0.1 + 0.85 * (index + 1) / len(ids))
            rows.append(extractor.extract(image, masks[segment_id], spacing_kji, sub))
        names = [segmentation_node.GetSegmentation().GetSegment(i).GetName() for i in ids]
        columns = {"segment": names} | {name: [row[name] for row in rows] for name in extractor.feature_names}
        with self.context.transaction():
            node = arrays.add_table(self.context, columns, f"{volume_node.GetName()} deep features")
            node.SetAttribute(NOTES_ATTRIBUTE, f"encoder of {extractor.model.describe()}")
        task.update(1.0, "Deep features ready")
        return node

    # -- fitted models --------------------------------------------------------------------------

    def fitted_model(self, source):
        """The fitted reduction / ComBat model of a result node, a JSON file path, or a model itself."""
        if hasattr(source, "GetAttribute"):
            text = source.GetAttribute(MODEL_ATTRIBUTE)
            if not text:
                raise InputError(f"Table '{source.GetName()}' carries no fitted reduction or ComBat model.")
            return persistence.model_from_json(text)
        if isinstance(source, (reduction_module.FeatureReduction, combat.ComBatModel)):
            return source
        return persistence.load_model(source)

    def save_fitted_model(self, result_node, path):
        """Write the model carried by a signature / harmonised table node to a JSON file."""
        return persistence.save_model(self.fitted_model(result_node), path)

    def apply_fitted_model(self, table_node, model_source, progress=None):
        """Apply a fitted model to new cases (a new table node).

        A reduction gives the cases' identifier/label columns and signature features' values; a
        ComBat model harmonises the cases, which must come from its batches and carry its batch
        and covariate columns (cases with an extraction error are copied unchanged).
        """
        task = as_task(progress)
        model = self.fitted_model(model_source)
        frame = self._table_frame(table_node)
        name = table_node.GetName()
        if isinstance(model, reduction_module.FeatureReduction):
            output, suffix = model.signature_table(frame), "signature"
        else:
            output, suffix = combat.apply_to_table(model, frame), "harmonised"
        task.update(0.9, "Writing the table")
        with self.context.transaction():
            node = arrays.add_frame(self.context, output, f"{name} {suffix}")
            node.SetAttribute(MODEL_ATTRIBUTE, persistence.model_to_json(model))
        task.update(1.0, "Done")
        return node
