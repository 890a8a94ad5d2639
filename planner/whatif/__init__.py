"""What-if analysis: plan over clusters and swept cluster / workload fields."""
from seesaw.planner.whatif.run import Row, run_whatif, write_csv
from seesaw.planner.whatif.sweep import Sweep, apply_point, parse_sweep

__all__ = ["Row", "Sweep", "apply_point", "parse_sweep", "run_whatif", "write_csv"]
