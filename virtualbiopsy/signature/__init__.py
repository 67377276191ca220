"""Cohort feature tables -> signature: reduction, exploration, ComBat harmonisation, deep features.

Pure numeric work on pandas DataFrames (one row per case, one column per feature); the
RadiomicsBiomarkers logic wraps it for Table nodes. See README.md in this folder.
"""

from virtualbiopsy.signature.persistence import load_model, save_model

__all__ = ["load_model", "save_model"]
