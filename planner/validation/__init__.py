"""Predicted against measured: per-step predictions from the cost model and the error statistics of
``seesaw-validate``."""
