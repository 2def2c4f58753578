"""Policy -> accuracy predictors. Pure algorithm package: never imports ``seernet``.

Import from the modules (``predictor.ensemble.MLPEnsemble``, ``predictor.metrics``, ...):
this file stays empty so that ``predictor.device`` is cheap to import (no scikit-learn).
"""
