"""Slicer's translation functions, with a pass-through fallback where ``slicer.i18n`` is absent.

Module files use them as Slicer's scripted-module template does (``_`` and ``translate``)::

    from virtualbiopsy_slicer.i18n import tr as _
    from virtualbiopsy_slicer.i18n import translate

``tr`` is Slicer's own function, re-exported unchanged: it takes its translation context from the
file of its caller, so strings keep the context of the module file that holds them. The fallback
(Slicer before 5.4, the slicer-core wheel the headless tests use) returns the text as given.
"""

from __future__ import annotations

try:
    from slicer.i18n import tr, translate
except ImportError:  # no translations: the source text is the text shown

    def tr(text: str) -> str:
        return text

    def translate(context: str, text: str) -> str:
        return text


__all__ = ["tr", "translate"]
