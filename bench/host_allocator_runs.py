"""Benchmark (not a test): whole dp2 runs of a checkpoint on this machine's two CPU ranks with glibc's default
``malloc`` (``SEESAW_HOST_ALLOCATOR=default``) against the runtime's setting (freed heap kept, prefill
workspace committed at start-up: :mod:`seesaw.runtime.host_allocator`), interleaved, on the ShareGPT trace
``seesaw-validate`` uses (32 requests, outputs capped at 32, EOS ignored). Prints per run the tokens/s and
the measured prefill and decode step times over the cost model's prediction for the same steps (catalog
``2xcpu`` profile), then the totals per setting.

    python bench/host_allocator_runs.py ~/.cache/seesaw/random-even-heads [--rounds 3]
"""
import argparse
import os


def main() -> None:
    from seesaw.experiments.bench_runs import build_requests, eos_token_ids
    from seesaw.codegen import build_execution_plan
    from seesaw.ir import load_model_config
    from seesaw.ir.layout import Layout
    from seesaw.planner.cost.model import CostModel
    from seesaw.planner.hardware import load_cluster
    from seesaw.planner.optimize.solve import plan as make_plan
    from seesaw.planner.optimize.space import SearchOptions
    from seesaw.planner.validation.predict import PhaseShape, stage_times_s
    from seesaw.planner.workload import Workload
    from seesaw.runtime.checkpoint import Checkpoint, prepare_checkpoint
    from seesaw.runtime.engine import Engine
    from seesaw.schedule.replica import Sequence

    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    folder = prepare_checkpoint(args.checkpoint)
    ckpt, cfg, cluster = Checkpoint(folder), load_model_config(folder), load_cluster("2xcpu")
    eos = eos_token_ids(ckpt.config)
    reqs, name = build_requests("sharegpt", folder, ckpt.config, 32, None, 32, 0)
    wl = Workload(name, [len(p) for p, _ in reqs], [n for _, n in reqs])
    lay = Layout(2, 1, 1)
    plan = build_execution_plan(cfg, make_plan(cfg, cluster, wl, SearchOptions(prefill=lay, decode=lay),
                                               time_limit_s=10), cluster, wl)
    cost, phase = CostModel(cfg, cluster, wl), PhaseShape(lay, (cfg.num_hidden_layers,))
    totals: dict = {}
    for rnd in range(args.rounds):
        for setting in ("default", "retain"):
            os.environ["SEESAW_HOST_ALLOCATOR"] = setting
            with Engine(plan, str(folder)) as engine:
                engine.generate([Sequence(-1, reqs[0][0][:8], 2, ignore_eos=True)], eos)
                _, m = engine.generate([Sequence(i, ids, n, ignore_eos=True) for i, (ids, n) in enumerate(reqs)], eos)
            ratios = []
            for kind in ("prefill", "decode"):
                steps = [r for r in m.steps if r["kind"] == kind]
                meas = sum(r["service_s"] for r in steps)
                pred = sum(sum(stage_times_s(cost, phase, kind, r["context_lens"])) for r in steps)
                acc = totals.setdefault((setting, kind), [0.0, 0.0])
                acc[0] += meas
                acc[1] += pred
                ratios.append(f"{kind} {meas / pred:.2f}x")
            tps = m.as_dict()["tokens_per_s"]
            totals.setdefault((setting, "tok/s"), []).append(tps)
            print(f"round {rnd + 1} {setting:<8} {tps:7.1f} tok/s  measured/predicted: {', '.join(ratios)}", flush=True)
    for setting in ("default", "retain"):
        tps = totals[(setting, "tok/s")]
        steps = ", ".join(f"{k} {totals[(setting, k)][0] / totals[(setting, k)][1]:.2f}x"
                          for k in ("prefill", "decode"))
        print(f"{setting:<8} tok/s {min(tps):.0f}-{max(tps):.0f}; measured/predicted steps: {steps}")
    d, r = totals[("default", "tok/s")], totals[("retain", "tok/s")]
    print(f"retain / default, mean tok/s: {sum(r) / len(r) / (sum(d) / len(d)):.2f}x")


if __name__ == "__main__":
    main()
