"""Benchmark: simulating the likely-slowest DP replicas against stepping through every replica (not a test).

    python bench/replica_sampling.py [--model llama-2-70b] [--workload sharegpt] [--clusters 512xH100-SXM ...]

For each cluster the planner's plan is made as usual (its simulation samples replicas above
``planner/simulate/replicas.ALL_REPLICAS_UP_TO``); then the chosen plan (under this project's runtime) and the
best static layout (under the baseline engine, with its tuned knobs) are simulated both ways in this process.
Prints per system: replicas stepped through / in all, simulated wall time (s) both ways, their ratio, and the
simulation's own time both ways.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import replace

from rich.console import Console
from rich.table import Table

from seesaw.ir import load_model_config
from seesaw.planner.cost.model import CostModel
from seesaw.planner.hardware import load_cluster
from seesaw.planner.hardware.engines import get_engine
from seesaw.planner.optimize.rank import counts_of
from seesaw.planner.optimize.solve import plan
from seesaw.planner.simulate import EngineKnobs, EnginePlan, RuntimePlan, simulate_engine, simulate_runtime
from seesaw.planner.workload import load_workload

CLUSTERS = ("256xA10", "512xH100-SXM", "4096xH100-SXM")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-2-70b")
    ap.add_argument("--workload", default="sharegpt")
    ap.add_argument("--clusters", nargs="*", default=list(CLUSTERS))
    args = ap.parse_args()
    cfg = load_model_config(args.model)
    wl = load_workload(args.workload)
    engine = get_engine("vllm")
    t = Table(title=f"sampled vs every replica: {cfg.name}, {wl.name} ({wl.num_requests} requests)")
    for col in ("cluster", "system", "layout", "replicas simulated", "wall s (sampled)", "wall s (every)",
                "sampled / every", "sim s (sampled)", "sim s (every)"):
        t.add_column(col)
    for spec in args.clusters:
        cl = load_cluster(spec)
        cost = CostModel(cfg, cl, wl, engine)
        p = plan(cfg, cl, wl)
        runs = []
        if not p.is_static:
            rp = RuntimePlan(p.prefill.layout, counts_of(p.prefill.stage_layers), p.decode.layout,
                             counts_of(p.decode.stage_layers), p.gpu_kv_tokens, p.host_kv_buffer_tokens,
                             p.page_size_tokens, p.max_prefill_tokens, p.decode_max_seqs,
                             p.prefill_to_decode_threshold_tokens, p.decode_to_prefill_threshold_tokens)
            runs.append(("seesaw", f"{p.prefill.layout}->{p.decode.layout}",
                         lambda s, rp=rp: simulate_runtime(cost, rp, sample=s)))
        bs = p.best_static
        if bs is not None and bs.max_batched_tokens is not None:
            knobs = EngineKnobs.defaults(engine, cl.gpu, wl.max_seq_len)
            knobs = replace(knobs, max_num_seqs=bs.decode_max_seqs, max_num_batched_tokens=bs.max_batched_tokens,
                            gpu_memory_utilization=bs.gpu_memory_utilization or knobs.gpu_memory_utilization)
            ep = EnginePlan(bs.phase.layout, counts_of(bs.phase.stage_layers), knobs,
                            bs.gpu_kv_tokens // knobs.block_size)
            runs.append((f"static ({engine.name})", str(bs.phase.layout),
                         lambda s, ep=ep: simulate_engine(cost, ep, engine, sample=s)))
        for system, layout, fn in runs:
            sampled, t_s = _timed(lambda: fn(True))
            every, t_e = _timed(lambda: fn(False))
            t.add_row(spec, system, layout, f"{sampled.replicas_simulated} / {sampled.replicas}",
                      f"{sampled.wall_s:,.1f}", f"{every.wall_s:,.1f}", f"{sampled.wall_s / every.wall_s:.4f}",
                      f"{t_s:.2f}", f"{t_e:.2f}")
    Console(width=180).print(t)


if __name__ == "__main__":
    main()
