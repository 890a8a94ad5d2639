"""End-to-end experiments: running the runtime and setting its measurements beside the planner's predictions.

The work behind ``seesaw-calibrate --checkpoint`` (:mod:`~seesaw.experiments.calibration_runs`: the runtime's
forward passes as calibration samples), ``seesaw-validate`` (:mod:`~seesaw.experiments.validation_runs`: the
layout pairs, their plans and timed runs) and ``seesaw-bench`` (:mod:`~seesaw.experiments.bench_runs`: the
requests, the Seesaw, static and transformers runs). This package sits at the top of the dependency order,
beside ``seesaw.cli``: it drives ``seesaw.runtime`` and reads ``seesaw.planner`` and ``seesaw.codegen``, so
neither of those has to know the other; the CLI modules only parse arguments and print.
"""
