"""Figures (matplotlib, no display needed) and the short HTML report the pipeline writes."""
