"""Steps of ``virtualbiopsy demo`` (:mod:`virtualbiopsy.demo`) that drive a module's Logic on the sample study.

They sit above :mod:`virtualbiopsy.logic`, as the command line does, so that the domain packages
(``prediction``, ``signature``, ...) never import the logic layer.

* :mod:`~virtualbiopsy.demo_steps.outcome`: the OutcomePredictor step.
"""
