"""Fit-Cluster-Fit tumour habitats from DWI (and DCE) MRI, on numpy arrays (no scene, no Qt).

* :mod:`~virtualbiopsy.habitats.pipeline`: :func:`run_fit_cluster_fit` and its parameters;
* :mod:`~virtualbiopsy.habitats.clustering`: uncertainty exclusion and clustering into habitats;
* :mod:`~virtualbiopsy.habitats.refit`: mean signal per habitat, refit, confidence intervals;
* :mod:`~virtualbiopsy.habitats.dce`: bolus arrival, iAUC60, time to peak, wash-in slope;
* :mod:`~virtualbiopsy.habitats.cohort`: Mann-Whitney U with effect sizes across a cohort;
* :mod:`~virtualbiopsy.habitats.figures`: signal-vs-b, habitat map and enhancement-curve PNGs;
* :mod:`~virtualbiopsy.habitats.dro`: digital reference objects with known habitat ADCs.

The voxel fits themselves are :mod:`virtualbiopsy.diffusion`; the MRML side is
:mod:`virtualbiopsy.logic.fit_cluster_fit`. See README.md in this folder for the method, its
validation and its limits.
"""
