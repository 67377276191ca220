"""Outcome prediction: data checks, nested-CV models with bootstrap CIs, model cards, survival analysis,
SHAP (shapiq) and Grad-CAM (captum) explanations. Qt-free; see README.md in this folder."""
