"""Calibration: fitting the cost model's hardware terms to measurements.

- :mod:`~seesaw.planner.calibration.samples`: what was measured (timed ops, collectives, host copies,
  micro-batch round trips, forward passes);
- :mod:`~seesaw.planner.calibration.fit` and :mod:`~seesaw.planner.calibration.fit_links`: the fits, each
  through the cost model's own functions;
- :mod:`~seesaw.planner.calibration.forward`: the runtime's forward passes as samples;
- :mod:`~seesaw.planner.calibration.profile`: a catalog entry from the fits (``seesaw-calibrate``);
- :mod:`~seesaw.planner.calibration.aiconfigurator` and :mod:`~seesaw.planner.calibration.aic_profile`:
  NVIDIA AIConfigurator's measured GPU tables as samples, and the catalog terms fitted to them
  (``--from-aiconfigurator``);
- :mod:`~seesaw.planner.calibration.benchmarks`: efficiency terms fitted to end-to-end throughputs
  (``--from-benchmarks``).
"""
