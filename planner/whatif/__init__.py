"""What-if analysis: plan over clusters and swept cluster / workload fields; recommend a cluster for a
deadline and / or budget."""
from seesaw.planner.whatif.recommend import Candidate, candidates, closest, recommend
from seesaw.planner.whatif.run import Row, run_whatif, write_csv
from seesaw.planner.whatif.sweep import Sweep, apply_point, parse_sweep

__all__ = ["Candidate", "Row", "Sweep", "apply_point", "candidates", "closest", "parse_sweep", "recommend",
           "run_whatif", "write_csv"]
