"""The phantom's tissue table: labels, names, colours and the true value of every parameter.

Units:
    t2w         relative T2-weighted signal (proton density x T2 weighting), arbitrary scanner units
    s0          DWI signal at b = 0 s/mm^2, arbitrary scanner units
    adc         apparent diffusion coefficient, mm^2/s
    ivim_f      IVIM pseudo-diffusion (perfusion) fraction, 0..1 (0 = no perfusion term)
    ivim_dstar  IVIM pseudo-diffusion coefficient D*, mm^2/s
    s_pre       DCE signal before contrast arrival, arbitrary scanner units
    amplitude   DCE enhancement amplitude A (relative enhancement, dimensionless)
    tau_in      DCE wash-in time constant, s
    tau_out     DCE wash-out time constant, s
    colour      RGB, 0..255

DCE model (relative enhancement, t0 = bolus arrival, s = t - t0)::

    E(t) = A * (1 - exp(-s / tau_in)) * exp(-s / tau_out)   for s >= 0, else 0
    S(t) = s_pre * (1 + E(t))

Exact derived truths, with k = 1/tau_in + 1/tau_out:

    iAUC_T = integral_0^T E ds = A * (tau_out * (1 - exp(-T/tau_out)) - (1 - exp(-k T)) / k)   [s]
    time to peak (after t0) = tau_in * ln(1 + tau_out / tau_in)                                 [s]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

IAUC_WINDOW_S = 60.0
"""The window (s after bolus arrival) of the reference iAUC ("iAUC60")."""


@dataclass(frozen=True)
class Tissue:
    """One labelled tissue and its true MRI parameters (units in the module docstring)."""

    label: int
    name: str
    colour: tuple[int, int, int]
    t2w: float
    s0: float
    adc: float
    s_pre: float
    amplitude: float
    tau_in: float
    tau_out: float
    ivim_f: float = 0.0
    ivim_dstar: float = 0.0

    def iauc(self, window_s: float = IAUC_WINDOW_S) -> float:
        """Exact integral of E(t) over [t0, t0 + window_s], in relative-enhancement seconds."""
        if self.amplitude == 0.0 or window_s <= 0.0:
            return 0.0
        k = 1.0 / self.tau_in + 1.0 / self.tau_out
        wash_out = self.tau_out * -math.expm1(-window_s / self.tau_out)
        wash_in = -math.expm1(-k * window_s) / k
        return self.amplitude * (wash_out - wash_in)

    @property
    def iauc60(self) -> float:
        return self.iauc(IAUC_WINDOW_S)

    @property
    def time_to_peak(self) -> float | None:
        """Time (s) from bolus arrival to peak enhancement; None for a non-enhancing tissue."""
        if self.amplitude == 0.0:
            return None
        return self.tau_in * math.log1p(self.tau_out / self.tau_in)

    @property
    def peak_enhancement(self) -> float:
        """Maximum relative enhancement E (dimensionless)."""
        ttp = self.time_to_peak
        if ttp is None:
            return 0.0
        return self.amplitude * -math.expm1(-ttp / self.tau_in) * math.exp(-ttp / self.tau_out)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["colour"] = list(self.colour)
        out["iauc60"] = self.iauc60
        out["time_to_peak_s"] = self.time_to_peak
        out["peak_enhancement"] = self.peak_enhancement
        return out


BACKGROUND, BODY_WALL, LIVER, LEFT_KIDNEY, RIGHT_KIDNEY, SPINE, TUMOUR_RIM, TUMOUR_CORE = range(8)

# Background has A = 0 and unit time constants only so that the formulas stay defined.
TISSUES: tuple[Tissue, ...] = (
    #      label         name               colour          t2w     s0     adc     s_pre  A     tau_in tau_out
    Tissue(BACKGROUND, "background", (0, 0, 0), 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0),
    Tissue(BODY_WALL, "body wall", (230, 190, 140), 700.0, 600.0, 1.4e-3, 650.0, 0.30, 60.0, 1200.0),
    Tissue(LIVER, "liver", (221, 130, 101), 400.0, 550.0, 1.1e-3, 520.0, 0.90, 25.0, 600.0),
    Tissue(LEFT_KIDNEY, "left kidney", (185, 102, 83), 1000.0, 1000.0, 2.0e-3, 380.0, 3.00, 6.0, 60.0),
    Tissue(RIGHT_KIDNEY, "right kidney", (205, 122, 103), 1000.0, 1000.0, 2.0e-3, 380.0, 3.00, 6.0, 60.0),
    Tissue(SPINE, "spine", (241, 214, 145), 550.0, 500.0, 0.5e-3, 450.0, 0.35, 20.0, 400.0),
    Tissue(TUMOUR_RIM, "tumour rim", (255, 140, 0), 820.0, 900.0, 0.7e-3, 330.0, 1.50, 12.0, 300.0),
    Tissue(TUMOUR_CORE, "tumour core", (128, 0, 160), 1500.0, 1400.0, 2.4e-3, 260.0, 0.05, 120.0, 3000.0),
)

N_LABELS = len(TISSUES)
TUMOUR_LABELS = (TUMOUR_RIM, TUMOUR_CORE)
LABELS: dict[str, int] = {t.name: t.label for t in TISSUES}
assert all(t.label == index for index, t in enumerate(TISSUES))


def tissue(label: int) -> Tissue:
    """The :class:`Tissue` with this label value."""
    return TISSUES[int(label)]
