"""DICOM in and out: find and read MR series (3D, DWI with each vendor's b-value tags, DCE with its
frame times) onto the library's voxel grids, and write the sample study as DICOM MR series.

    series      find the series of a folder or file list, choose one, read it as volumes
    diffusion   the b-value and gradient direction of one DICOM instance or frame, by vendor
    phantom     the sample study written as classic MR series (T2w, DWI, DCE) with known truth

Headers and pixel data are read with pydicom (its pixel-data plugins decode compressed transfer
syntaxes); volumes are built with highdicom (``get_volume_from_series``, enhanced multi-frame
``Image.get_volume``), Siemens mosaics with nibabel's DICOM wrappers. Written by hand here only
the grouping of a series into frames (by b-value / direction or by time) and the checks that name
what is wrong with a series: none of those libraries does either.
"""
