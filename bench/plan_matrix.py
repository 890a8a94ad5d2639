"""Plan every shipped model on the reference clusters and print what the planner chose (not a test).

    python bench/plan_matrix.py [--workload sharegpt] [--clusters 8xA10 8xL4 8xA100-SXM-80GB 8xH100-SXM]
                                [--markdown]

One row per (model, cluster): the prefill and decode layouts, predicted total and output tokens/s, the
best static layout and its prediction, the predicted speedup, the fullest GPU's memory, and the solver's
status and time. A model that cannot fit gets its one-line reason.
"""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from seesaw.ir import list_examples, load_model_config
from seesaw.ir.errors import InputError
from seesaw.planner.hardware import load_cluster
from seesaw.planner.optimize.solve import plan
from seesaw.planner.workload import load_workload

CLUSTERS = ("8xA10", "8xL4", "8xA100-SXM-80GB", "8xH100-SXM")
COLUMNS = ("model", "cluster", "prefill", "decode", "tok/s", "out tok/s", "best static", "static tok/s",
           "speedup", "GB/GPU", "transitions", "solver")


def rows(models, clusters, workload):
    for name in models:
        cfg = load_model_config(name)
        for spec in clusters:
            cl = load_cluster(spec)
            try:
                p = plan(cfg, cl, workload)
            except InputError as e:
                yield (name, spec, "does not fit", str(e.problem), *[""] * (len(COLUMNS) - 4))
                continue
            s = p.best_static
            pred = p.prediction
            yield (name, spec, str(p.prefill.layout), str(p.decode.layout), f"{pred.tokens_per_s:,.0f}",
                   f"{pred.output_tokens_per_s:,.0f}", str(s.phase.layout) if s else "-",
                   f"{s.prediction.tokens_per_s:,.0f}" if s else "-",
                   f"{pred.tokens_per_s / s.prediction.tokens_per_s:.2f}x" if s else "-",
                   f"{pred.memory.device_total_bytes / 1e9:.1f}", str(pred.breakdown.transitions),
                   f"{p.solver.status} {p.solver.seconds:.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="sharegpt")
    ap.add_argument("--clusters", nargs="*", default=list(CLUSTERS))
    ap.add_argument("--models", nargs="*", default=None)
    ap.add_argument("--markdown", action="store_true", help="print a markdown table instead")
    args = ap.parse_args()
    wl = load_workload(args.workload)
    models = args.models or list_examples()
    if args.markdown:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "---|" * len(COLUMNS))
        for r in rows(models, args.clusters, wl):
            print("| " + " | ".join(r) + " |", flush=True)
        return
    t = Table(title=f"seesaw-plan on {wl.name} ({wl.num_requests} requests)")
    for c in COLUMNS:
        t.add_column(c)
    for r in rows(models, args.clusters, wl):
        t.add_row(*r)
    Console(width=160).print(t)


if __name__ == "__main__":
    main()
