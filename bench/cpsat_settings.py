"""Benchmark: CP-SAT settings on the planner's subproblems (not a test).

    python bench/cpsat_settings.py [--models llama-2-70b ...] [--clusters 8xA10 ...] [--workload sharegpt]

For each (model, cluster), solves the static and the Seesaw problem once with the portfolio of
:mod:`seesaw.planner.optimize.cpsat_run` and once with each of its settings alone (the whole subproblem
budget for that one setting), and prints per setting: instances proven optimal (or infeasible), instances
whose best objective is worse than the best any setting found, and the total wall time.
"""
from __future__ import annotations

import argparse
import itertools
import time

from rich.console import Console
from rich.table import Table

from seesaw.ir import load_model_config
from seesaw.planner.cost.model import CostModel
from seesaw.planner.hardware import load_cluster
from seesaw.planner.optimize import cpsat, cpsat_run
from seesaw.planner.optimize.solve import build_options
from seesaw.planner.optimize.space import SearchOptions, SearchSpace
from seesaw.planner.workload import load_workload

MODELS = ("llama-2-70b", "llama-3-8b", "codellama-34b", "llama-3-15b")
CLUSTERS = ("8xA10", "8xL4", "8xH100-SXM", "64xA10", "64xH100-SXM", "4xL4")


def _run(cost, options, settings) -> tuple[bool, tuple, float]:
    cpsat_run.SETTINGS = settings
    pre, dec, static = options
    start = time.perf_counter()
    s = cpsat.solve_static(cost, static, 60.0, keep=5)
    r = cpsat.solve_seesaw(cost, pre, dec, 60.0, keep=10)
    proven = s.status in ("OPTIMAL", "INFEASIBLE") and r.status in ("OPTIMAL", "INFEASIBLE")
    return proven, (s.objective_ns, r.objective_ns), time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--clusters", nargs="*", default=list(CLUSTERS))
    ap.add_argument("--workload", default="sharegpt")
    args = ap.parse_args()
    portfolio = cpsat_run.SETTINGS
    variants = {"portfolio": portfolio}
    variants.update({f"presolve={p} lin={lv} order={o}": ((p, lv, o),) for p, lv, o in portfolio})
    tally = {name: [0, 0, 0.0] for name in variants}
    wl = load_workload(args.workload)
    instances = list(itertools.product(args.models, args.clusters))
    for model, cluster in instances:
        cost = CostModel(load_model_config(model), load_cluster(cluster), wl)
        options = build_options(cost, SearchSpace(cost, SearchOptions()))
        got = {name: _run(cost, options, settings) for name, settings in variants.items()}
        best = tuple(min((g[1][k] for g in got.values() if g[1][k] is not None), default=None) for k in (0, 1))
        for name, (proven, objectives, wall_s) in got.items():
            tally[name][0] += proven
            tally[name][1] += objectives != best
            tally[name][2] += wall_s
    cpsat_run.SETTINGS = portfolio
    t = Table(title=f"CP-SAT settings over {len(instances)} instances ({wl.name})")
    for col in ("settings", "proven", "worse than the best found", "wall s (total)"):
        t.add_column(col)
    for name, (proven, worse, wall_s) in tally.items():
        t.add_row(name, f"{proven}/{len(instances)}", str(worse), f"{wall_s:.1f}")
    Console(width=120).print(t)


if __name__ == "__main__":
    main()
