"""Benchmark: planning wall time (not a test). Targets: 70B on 8 GPUs < 5 s, on 64 GPUs (8 nodes of 8)
< 15 s, simulation of the candidates included; on 4,096 GPUs < 30 s with the execution plan written.

    python bench/plan_time.py [--repeat 3] [--model llama-2-70b] [--workload sharegpt] [--no-simulate]

Prints one row per cluster: wall time of the whole `plan()` call (cost tables, CP-SAT for the Seesaw and the
static problem, and the simulation of the best candidates), the time to lower it into the execution plan and
write its JSON (`build_execution_plan` + `to_json`), the solver's own time and status, and the chosen layouts.
"""
from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from seesaw.codegen import build_execution_plan
from seesaw.ir import load_model_config
from seesaw.planner.hardware import load_cluster
from seesaw.planner.optimize.solve import plan
from seesaw.planner.workload import load_workload

CLUSTERS = ("8xA10", "8xL4", "8xH100-SXM", "64xA10", "64xH100-SXM", "4096xH100-SXM")
TARGET_S = {8: 5.0, 64: 15.0, 4096: 30.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-2-70b")
    ap.add_argument("--workload", default="sharegpt")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--clusters", nargs="*", default=list(CLUSTERS))
    ap.add_argument("--no-simulate", action="store_true", help="the closed form alone")
    args = ap.parse_args()
    cfg = load_model_config(args.model)
    wl = load_workload(args.workload)
    t = Table(title=f"planning time: {cfg.name}, {wl.name} ({wl.num_requests} requests), median of {args.repeat}")
    for col in ("cluster", "wall s (median)", "wall s (max)", "lower + JSON s", "solver s", "status", "target s",
                "prefill", "decode"):
        t.add_column(col)
    for spec in args.clusters:
        cl = load_cluster(spec)
        walls, lowers = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            p = plan(cfg, cl, wl, simulate=not args.no_simulate)
            walls.append(time.perf_counter() - start)
            start = time.perf_counter()
            build_execution_plan(cfg, p, cl, wl).to_json()
            lowers.append(time.perf_counter() - start)
        target = TARGET_S.get(cl.num_gpus)
        t.add_row(spec, f"{statistics.median(walls):.2f}", f"{max(walls):.2f}", f"{statistics.median(lowers):.2f}",
                  f"{p.solver.seconds:.2f}",
                  p.solver.status, f"{target:g}" if target else "-", str(p.prefill.layout), str(p.decode.layout))
    Console(width=160).print(t)


if __name__ == "__main__":
    main()
