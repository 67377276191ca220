"""Steps of ``virtualbiopsy demo`` (:mod:`virtualbiopsy.demo`) that drive a module's Logic on the sample study.

They sit above :mod:`virtualbiopsy.logic`, as the command line does, so that the domain packages
(``prediction``, ``signature``, ...) never import the logic layer. Each returns a :class:`StepOutputs`.

* :mod:`~virtualbiopsy.demo_steps.radiomics`: the RadiomicsBiomarkers step (tumour features, IBSI check).
* :mod:`~virtualbiopsy.demo_steps.fit_cluster_fit`: the FitClusterFit step (habitats from DWI and DCE).
* :mod:`~virtualbiopsy.demo_steps.outcome`: the OutcomePredictor step (models on a synthetic cohort).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StepOutputs:
    """What a demo step wrote and found: files by name, each figure's caption, key numbers, the nodes it
    made, a paragraph for the report, and what only that step has (``extra``)."""

    tables: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, Path] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)  # what each figure shows, keyed like ``figures``
    summary: dict = field(default_factory=dict)  # key numbers for the report
    nodes: dict = field(default_factory=dict)
    text: str = ""
    extra: dict = field(default_factory=dict)
