"""The ``virtualbiopsy`` command line: one sub-command per pipeline step, plus ``demo``."""
