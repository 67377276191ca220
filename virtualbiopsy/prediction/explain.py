"""Explanations: SHAP values per patient and per cohort (shapiq), Grad-CAM maps of an image CNN (captum).

SHAP (Shapley values of the features for one patient's prediction) is computed with ``shapiq``;
the ``shap`` package is never used: it depends on the PyPI package ``slicer``, which replaces
slicer-core's ``slicer`` module and breaks Slicer's MRML classes.

* Tree models (random forest, gradient boosting): shapiq's ``TreeExplainer`` (index ``"SV"``,
  exact TreeSHAP) on the trees, fed with the pipeline's preprocessed input. Imputation, scaling and
  selection act feature by feature, so a value attributed to a preprocessed feature is that raw
  feature's; features the pipeline dropped get 0. Output: the probability of the explained class
  (random forest) or its log-odds (gradient boosting: the boosted trees add up in log-odds).
* Other models (logistic regression, SVM, Cox): shapiq's model-agnostic ``TabularExplainer``
  (index ``"SV"``, KernelSHAP with the marginal imputer) on the whole pipeline. The background is the
  model's stored k-means centres of the training features (no patient rows are stored). With up to
  11 features the budget covers all 2^n coalitions, so the values are the exact interventional
  Shapley values; with more features KernelSHAP samples ``budget`` coalitions (seeded).
  Output: the probability of the explained class, or the Cox prognostic index.

Grad-CAM (captum's :class:`~captum.attr.LayerGradCam`, torch only) highlights where a CNN looks.
The bundled CNN is a DEMO: a tiny 3D network trained in seconds on synthetic noise images in which
half contain a bright blob; it is not a clinical model. :func:`grad_cam` works for any 3D CNN and
layer the caller provides.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from virtualbiopsy.errors import DependencyError, ImageDimensionError, InputError
from virtualbiopsy.prediction.data import BINARY, TIME_TO_EVENT
from virtualbiopsy.progress import as_task


@dataclass
class ShapValues:
    values: pd.DataFrame  # one row per case (index: case id), one column per model feature
    data: pd.DataFrame  # the feature values that were explained (same shape)
    base_value: float  # expected model output over the background / training data
    prediction: np.ndarray  # the model output explained, per case (= base_value + row sum)
    output: str  # what the values add up to, in words
    method: str
    classes: tuple = ()  # the endpoint's classes (none for time-to-event), to name them in figures

    def to_frame(self, key: str = "case_id") -> pd.DataFrame:
        """One row per case: id, model output, base value, then one SHAP column per feature."""
        frame = self.values.add_prefix("shap_")
        frame.insert(0, "base_value", self.base_value)
        frame.insert(0, "model_output", self.prediction)
        frame.insert(0, key, self.values.index.astype(str))
        return frame.reset_index(drop=True)


def ranking(shap: ShapValues) -> pd.DataFrame:
    """Features by mean |SHAP| over the explained cases (the cohort-level importance)."""
    mean_abs = shap.values.abs().mean(axis=0).sort_values(ascending=False)
    return pd.DataFrame({"feature": mean_abs.index, "mean_abs_shap": mean_abs.to_numpy(),
                         "rank": np.arange(1, len(mean_abs) + 1)})


def _class_index(model, class_index: int | None) -> int | None:
    if model.kind == TIME_TO_EVENT:
        return None
    n_classes = len(model.endpoint.classes)
    index = (n_classes - 1) if class_index is None else int(class_index)
    if not 0 <= index < n_classes:
        raise InputError(f"Class index {index} is out of range for classes {model.endpoint.classes}.")
    return index


def _output_name(model, index: int | None, log_odds: bool = False) -> str:
    if model.kind == TIME_TO_EVENT:
        return "prognostic index (log partial hazard)"
    label = f"{model.endpoint.column} = {model.endpoint.classes[index]}"
    if log_odds:  # boosting adds up raw scores: log-odds for two classes, the softmax input for more
        return f"log-odds of {label}" if model.kind == BINARY else f"raw score (softmax input) of {label}"
    return f"P({label})"


def _import_shapiq():
    try:
        import shapiq
    except ImportError as error:
        raise DependencyError("SHAP explanations need the 'shapiq' package (never 'shap'); install it.") from error
    return shapiq


def explain(model, X: pd.DataFrame, case_ids=None, *, class_index: int | None = None, max_cases: int | None = None,
            seed: int = 0, budget: int = 2048, progress=None) -> ShapValues:
    """SHAP values of ``model`` (a :class:`~virtualbiopsy.prediction.models.TrainedModel`) for the rows of ``X``.

    ``class_index`` picks the explained class (default: the positive / last class);
    ``max_cases`` explains a seeded random subset (for a cohort ranking on large tables).
    """
    from virtualbiopsy.prediction.models import TREE_MODELS
    from virtualbiopsy.prediction.threads import single_threaded

    task = as_task(progress)
    X = X[model.features].astype(float).reset_index(drop=True)
    ids = [str(c) for c in (case_ids if case_ids is not None else range(1, len(X) + 1))]
    if max_cases is not None and len(X) > max_cases:
        rows = np.sort(np.random.default_rng(seed).choice(len(X), max_cases, replace=False))
        X, ids = X.iloc[rows].reset_index(drop=True), [ids[r] for r in rows]
    if len(X) == 0:
        raise InputError("There is no case to explain.")
    index = _class_index(model, class_index)
    run = _explain_trees if model.name in TREE_MODELS else _explain_agnostic
    values, base, prediction, output, method = single_threaded(run)(model, X, index, seed, budget, task)
    frame = pd.DataFrame(values, columns=model.features, index=pd.Index(ids, name=model.key))
    classes = tuple(model.endpoint.classes) if model.kind != TIME_TO_EVENT else ()
    return ShapValues(frame, X.set_axis(frame.index), float(base), np.asarray(prediction, float), output, method,
                      classes)


def _explain_trees(model, X, index, seed, budget, task):
    shapiq = _import_shapiq()
    from shapiq.explainer.tree.conversion.sklearn import convert_sklearn_tree

    from virtualbiopsy.prediction.models import selected_features

    pipeline = model.pipeline
    estimator = pipeline.named_steps["model"]
    Xt = pipeline[:-1].transform(X.to_numpy(float))
    kept = [model.features.index(f) for f in selected_features(pipeline, model.features)]
    if model.name == "random_forest":
        explainer = shapiq.TreeExplainer(estimator, max_order=1, min_order=1, index="SV", class_index=index)
        prediction = estimator.predict_proba(Xt)[:, index]
        output, log_odds = _output_name(model, index), False
    else:  # gradient boosting: the regression trees of the explained class, scaled by the learning rate
        column = 0 if model.kind == BINARY else index
        trees = [convert_sklearn_tree(tree, scaling=estimator.learning_rate)
                 for tree in estimator.estimators_[:, column]]
        explainer = shapiq.TreeExplainer(trees, max_order=1, min_order=1, index="SV")
        raw = estimator.decision_function(Xt)
        prediction = raw if raw.ndim == 1 else raw[:, index]
        output, log_odds = _output_name(model, index, log_odds=True), True
    values = np.zeros((len(X), len(model.features)))
    for row in task.steps(range(len(X)), "SHAP values (TreeSHAP)"):
        explanation = explainer.explain(Xt[row])
        values[row, kept] = explanation.get_n_order_values(1)
    # The trees' expected value; for boosting add the initial log-odds so that base + sum = output.
    base = float(np.mean(prediction - values.sum(axis=1))) if log_odds else float(explainer.baseline_value)
    method = "TreeSHAP, exact (shapiq TreeExplainer, index SV)"
    return values, base, prediction, output, method


def _explain_agnostic(model, X, index, seed, budget, task):
    shapiq = _import_shapiq()
    pipeline = model.pipeline
    if model.kind == TIME_TO_EVENT:
        def function(Z):
            return pipeline.predict(np.asarray(Z, float))
    else:
        def function(Z):
            return pipeline.predict_proba(np.asarray(Z, float))[:, index]
    background = np.asarray(model.background, float)
    n = len(model.features)
    coalitions = min(2**n, int(budget))
    explainer = shapiq.TabularExplainer(model=function, data=background, index="SV", max_order=1, imputer="marginal",
                                        sample_size=len(background), random_state=seed)
    values = np.zeros((len(X), n))
    base = float(np.mean(function(background)))
    for row in task.steps(range(len(X)), "SHAP values (KernelSHAP)"):
        explanation = explainer.explain(X.to_numpy(float)[row], budget=coalitions, random_state=seed)
        values[row] = explanation.get_n_order_values(1)
    exact = coalitions >= 2**n
    method = (f"KernelSHAP over {'all ' if exact else ''}{coalitions} coalitions "
              f"({'exact' if exact else 'approximate'}; shapiq TabularExplainer, marginal imputer, "
              f"{len(background)} background centres)")
    return values, base, function(X.to_numpy(float)), _output_name(model, index), method


# -- Grad-CAM ------------------------------------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError as error:
        raise DependencyError("Grad-CAM needs PyTorch (install the PyTorch extension or 'torch').") from error
    return torch


def synthetic_blobs(n: int, size: int = 24, seed: int = 0, amplitude: float = 3.0):
    """``n`` noise volumes (N(0, 1), ``size``^3, size >= 12), about half with one bright sphere of
    radius 3-4.5 voxels (+``amplitude``).

    Returns images ``[n, 1, size, size, size]`` (float32), labels (1 = blob) and blob masks.
    """
    rng = np.random.default_rng(seed)
    images = rng.normal(0.0, 1.0, (n, 1, size, size, size)).astype(np.float32)
    labels = rng.integers(0, 2, n)
    masks = np.zeros((n, size, size, size), bool)
    zz, yy, xx = np.mgrid[:size, :size, :size]
    for i in np.flatnonzero(labels):
        centre = rng.integers(5, size - 5, 3)
        radius = rng.uniform(3.0, 4.5)
        masks[i] = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2
        images[i, 0][masks[i]] += amplitude
    return images, labels, masks


def blob_cnn():
    """The demo network: two full-resolution 3D conv blocks, global max pooling, two classes (blob / none).

    No pooling between the convolutions keeps the Grad-CAM map at the image's own resolution (with
    a pooled variant the map's mass on the blob varied from 0.3 to 0.95 between training seeds).
    """
    torch = _torch()
    nn = torch.nn
    return nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv3d(8, 16, 3, padding=1), nn.ReLU(),  # index 3: the activations Grad-CAM reads
        nn.AdaptiveMaxPool3d(1), nn.Flatten(), nn.Linear(16, 2),
    )


GRADCAM_LAYER = 3  # index of the last convolution block's ReLU in blob_cnn()


@functools.lru_cache(maxsize=2)
def train_blob_cnn(seed: int = 0, n: int = 120, size: int = 16, epochs: int = 6):
    """Train the demo CNN on :func:`synthetic_blobs` (seeded; a few seconds on one CPU core).

    The network is fully convolutional: trained on ``size``^3 patches, it runs on any image size.
    """
    torch = _torch()
    torch.manual_seed(seed)
    images, labels, _ = synthetic_blobs(n, size, seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    network = blob_cnn()
    optimiser = torch.optim.Adam(network.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, 16):
                batch = order[start:start + 16]
                optimiser.zero_grad()
                loss = torch.nn.functional.cross_entropy(network(x[batch]), y[batch])
                loss.backward()
                optimiser.step()
    finally:
        torch.set_num_threads(threads)
    network.eval()
    return network


def grad_cam(network, image: np.ndarray, target: int = 1, layer=None) -> np.ndarray:
    """Grad-CAM of ``target`` for one 3D ``image`` [k, j, i], upsampled (trilinear) to the image grid.

    Negative evidence is cut (ReLU, as in Grad-CAM); the map is scaled to a maximum of 1 (all
    zeros if the network sees no evidence for ``target``).
    """
    torch = _torch()
    from captum.attr import LayerAttribution, LayerGradCam

    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ImageDimensionError(f"Grad-CAM needs a 3D image; got {image.ndim} dimensions.")
    if min(image.shape) < 4:
        raise ImageDimensionError(f"The image region {image.shape} is too small for the CNN "
                                  "(at least 4 voxels a side).")
    layer = layer if layer is not None else network[GRADCAM_LAYER]
    x = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    cam = LayerGradCam(network, layer).attribute(x, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, tuple(image.shape), "trilinear").detach().numpy()[0, 0]
    cam = np.clip(cam, 0.0, None)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam).astype(np.float32)


def mass_fraction(cam: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total mass inside ``mask`` (0 when the map is empty)."""
    total = float(cam.sum())
    return float(cam[mask].sum()) / total if total > 0 else 0.0


def spill(cam: np.ndarray, mask: np.ndarray, spacing=(1.0, 1.0, 1.0), band_mm: float = 5.0,
          tissues: dict | None = None) -> dict:
    """Where the map's mass lies: its shares (0..1) ``inside`` the ``mask``, in the ``band`` up to ``band_mm``
    outside it and ``beyond_band`` (the three sum to 1); ``tissues`` (name -> mask, e.g. the other
    segments) splits the mass outside ``mask`` by tissue (``unsegmented``: outside every tissue), so
    that ``inside`` and the tissue shares sum to 1 too.

    ``spacing`` is the voxel size in mm along the array's axes (k, j, i). All shares are 0 for an empty map.
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    total = float(cam.sum())
    share = (lambda where: float(cam[where].sum()) / total) if total > 0 else (lambda where: 0.0)  # noqa: E731
    distance = ndimage.distance_transform_edt(~mask, sampling=spacing) if mask.any() else np.full(mask.shape, np.inf)
    band = ~mask & (distance <= band_mm)
    result = {"inside": share(mask), "band": share(band), "beyond_band": share(~mask & ~band), "band_mm": band_mm,
              "tissues": {}}
    if tissues:
        covered = mask.copy()
        for name, where in tissues.items():
            where = np.asarray(where, bool) & ~covered  # a voxel counts once (the first tissue that holds it)
            result["tissues"][str(name)] = share(where)
            covered |= where
        result["tissues"]["unsegmented"] = share(~covered)
    return result


def robust_standardise(values: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD): the demo CNN was trained on unit-noise images."""
    values = np.asarray(values, np.float32)
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median))) * 1.4826
    return (values - median) / (mad if mad > 0 else (values.std() or 1.0))
