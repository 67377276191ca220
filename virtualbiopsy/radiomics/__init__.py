"""Radiomics with pyradiomics: presets, extraction on SimpleITK images, the IBSI compliance report,
cohort batches and voxel-based feature maps (see README.md in this folder).

Modules (none imports ``slicer`` or VTK, so cohort workers stay light):
    extraction     presets, :class:`ExtractionParameters`, ``extract_case`` (the one extraction function)
    ibsi           the IBSI digital phantom run through the extraction and compared with its references
    batch          manifest CSV -> features table, worker processes, per-case errors, resumable
    feature_maps   one feature computed around every voxel of a region, with progress and cancel
"""
