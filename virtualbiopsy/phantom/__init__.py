"""The seeded synthetic paediatric abdominal MRI study (T2w, DWI, DCE) and its ground truth.

A ~5-year-old child's abdomen with a lobulated left suprarenal neuroblastoma (viable rim and
necrotic core) is defined analytically in RAS millimetres (+x patient Right, +y Anterior,
+z Superior); :func:`generate_study` voxelises it with partial volume on a fine T2 grid and a
coarser DWI/DCE grid, simulates the signals with bias field and Rician noise, and returns a
:class:`SampleStudy` whose :meth:`SampleStudy.truth` lists every true value. The same seed always
gives bit-identical images. See ``README.md`` in this folder for the models and values.
"""

from virtualbiopsy.phantom.anatomy import Anatomy
from virtualbiopsy.phantom.grid import Grid
from virtualbiopsy.phantom.signals import (
    BiasField,
    add_rician_noise,
    dce_enhancement,
    dce_signal,
    dwi_signal,
    t2w_signal,
    to_int16,
    tumour_texture,
)
from virtualbiopsy.phantom.study import GENERATOR_VERSION, SampleStudy, generate_study
from virtualbiopsy.phantom.tissues import (
    BACKGROUND,
    BODY_WALL,
    IAUC_WINDOW_S,
    LABELS,
    LEFT_KIDNEY,
    LIVER,
    N_LABELS,
    RIGHT_KIDNEY,
    SPINE,
    TISSUES,
    TUMOUR_CORE,
    TUMOUR_LABELS,
    TUMOUR_RIM,
    Tissue,
    tissue,
)

__all__ = [
    "Anatomy", "BiasField", "Grid", "SampleStudy", "Tissue", "generate_study", "tissue",
    "add_rician_noise", "dce_enhancement", "dce_signal", "dwi_signal", "t2w_signal", "to_int16",
    "tumour_texture", "GENERATOR_VERSION", "IAUC_WINDOW_S", "LABELS", "N_LABELS", "TISSUES",
    "TUMOUR_LABELS", "BACKGROUND", "BODY_WALL", "LIVER", "LEFT_KIDNEY", "RIGHT_KIDNEY", "SPINE",
    "TUMOUR_RIM", "TUMOUR_CORE",
]
