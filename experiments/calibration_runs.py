"""``seesaw-calibrate --checkpoint``: time the runtime's own forward passes for the kernel fit.

The micro-benchmarks time each op alone; inside a real forward pass the same ops run slower or faster
(caches shared with the other ops, the paged KV cache, dispatch between kernels). This module plans a
data-parallel run of the checkpoint (``Layout(ranks, 1, 1)`` pinned for both phases, one replica per
rank, ``--forward-ranks``: every core on CPU, whose ranks share caches, memory bandwidth and clocks, as ``seesaw-validate`` plans a
static layout), serves a fixed synthetic request set with the runtime :class:`Engine` (warm-up first, EOS
ignored: :func:`seesaw.experiments.validation_runs.run_plan`) and turns every prefill / decode step record without a
KV swap-in into a :class:`~seesaw.planner.calibration.fit.ForwardSample` (its ops from the record's sequence
lengths, :mod:`seesaw.planner.calibration.forward`; measured = the record's ``service_s``: the scheduler's
issue to reply of the micro-batch, which is what ``seesaw-validate`` compares with the cost model).
Every instruction of those passes is timed as well (``Engine(time_ops=True)``) and becomes an in-run op sample
(:func:`seesaw.planner.calibration.forward.in_run_op_samples`). When the heads allow TP over the ranks, the same
request set is then served by one TP group
(``Layout(1, ranks, 1)``) and its steps become TP forward samples: their all-reduces and all-gathers, which
inside a step also wait for the partner rank to be scheduled, fit ``collective_launch_us`` and the link
bandwidth (:func:`seesaw.planner.calibration.fit_links.fit_forward_links`).
"""
from __future__ import annotations

import random
from pathlib import Path

from seesaw.ir.errors import InputError

SEED = 0
PLAN_TIME_LIMIT_S = 10.0
# Prefill batches of at most this many tokens: the request set (about 5,000 prompt tokens) then comes in
# about four passes per replica, from many short prompts to one long one, where the planner's own budget
# packs it into one or two (two prefill samples per rank: too few to fit attention apart from the GEMMs).
PREFILL_BUDGET_TOKENS = 2048
# In-run op samples from every 8th forward pass of each rank and mode: about 450 samples over the ~100
# passes of two ranks, enough to cover every batch shape, few enough to keep the kernel fit under a minute.
IN_RUN_EVERY = 8


def forward_requests(vocab_size: int, context_limit: int, quick: bool,
                     seed: int = SEED) -> list[tuple[list[int], int]]:
    """The calibration request set: ``(prompt ids, output length)`` pairs of random token prompts.

    24 prompts geometrically spread over 16..1024 tokens (8 over 16..256 with ``quick``). The shorter half
    get outputs of 4, 8, .., 48 tokens, the longer half 2, 4, .., 24 (each half's outputs matched to its
    prompts by a seeded shuffle). Prefill steps then batch prompts of mixed lengths, and the decode batch
    shrinks from every sequence to one in two regimes: first large batches mixing long and short contexts,
    then, once the long prompts are done, small batches of short contexts, as served traffic (ShareGPT's
    median prompt is about 100 tokens) mostly is. Batch size and total context vary apart, so the fit can
    tell the per-sequence cost (GEMM rows, attention calls) from the per-token cost (K/V reads). Prompts
    are cut to ``context_limit`` minus the output length.
    """
    n, lo, hi = (8, 16, 256) if quick else (24, 16, 1024)
    rng = random.Random(seed)
    half = n // 2
    short_out = [4 * (i + 1) for i in range(half)]
    long_out = [2 * (i + 1) for i in range(n - half)]
    rng.shuffle(short_out)
    rng.shuffle(long_out)
    outputs = short_out + long_out
    requests = []
    for i, out in enumerate(outputs):
        length = min(round(lo * (hi / lo) ** (i / (n - 1))), context_limit - out)
        if length < 1:
            raise InputError("--checkpoint", f"the model's context limit ({context_limit}) is too short for "
                                             f"calibration requests of {out} output tokens")
        requests.append(([rng.randrange(vocab_size) for _ in range(length)], out))
    return requests


def plan_cluster(device_type: str, base, device_name: str, memory_gb: float, ranks: int = 1):
    """A cluster of ``ranks`` of this device for planning: the ``cpu`` entry on CPU; on CUDA the recognised
    catalog entry ``base``, else a placeholder entry with the device's memory (its rates do not matter:
    the plan pins the layout, and the runtime runs on CUDA for any entry not named ``cpu``)."""
    from seesaw.planner.hardware import GPUSpec, build_cluster, load_cluster  # noqa: PLC0415

    if device_type == "cpu":
        return load_cluster(f"{ranks}xcpu")
    gpu = base or GPUSpec(name=device_name, memory_gb=memory_gb, bf16_tflops=100.0, memory_gb_per_s=1000.0)
    return build_cluster(gpu, ranks, "seesaw-calibrate", "seesaw-calibrate")


def measure_forward(folder: Path, cluster, quick: bool, dtype_bytes: int) -> tuple[list, list]:
    """Serve the calibration requests (:func:`forward_requests`) with the runtime on a data-parallel plan of
    the checkpoint ``folder`` over the cluster's ranks (each replica serves the whole set, so every rank
    computes at once, as the ranks of a multi-rank layout do) and return one ForwardSample per prefill / decode step that
    swapped no KV in, and the in-run op samples of every rank's passes (every ``IN_RUN_EVERY``-th pass per rank
    and mode) (``dtype_bytes``: what the ranks compute in, 4 for fp32 on CPU, 2 for bf16 on CUDA).
    When the checkpoint's heads allow TP over all the ranks (``valid_tp_degrees``), the same request set
    (once, not per replica) is then served by one TP group, ``Layout(1, ranks, 1)`` for both phases, and its
    steps are returned too as ForwardSamples with ``tp = ranks`` (their collectives inside real steps fit the
    link terms). Returns ``(forward samples, in-run op samples)``. Raises CommandError when a worker fails."""
    from seesaw.experiments.bench_runs import eos_token_ids  # noqa: PLC0415
    from seesaw.experiments.validation_runs import run_plan  # noqa: PLC0415
    from seesaw.codegen import build_execution_plan  # noqa: PLC0415
    from seesaw.ir import load_model_config  # noqa: PLC0415
    from seesaw.ir.layout import Layout  # noqa: PLC0415
    from seesaw.ir.sharding import valid_tp_degrees  # noqa: PLC0415
    from seesaw.planner.calibration.forward import forward_graph, forward_sample, in_run_op_samples  # noqa: PLC0415
    from seesaw.planner.optimize.solve import plan as make_plan  # noqa: PLC0415
    from seesaw.planner.optimize.space import SearchOptions  # noqa: PLC0415
    from seesaw.planner.workload import Workload  # noqa: PLC0415
    from seesaw.runtime.checkpoint import Checkpoint, check_fingerprint  # noqa: PLC0415

    ckpt = Checkpoint(folder)
    cfg = load_model_config(folder)
    limit = int(ckpt.config.get("max_position_embeddings", 1 << 30))
    base_requests = forward_requests(cfg.vocab_size, limit, quick)
    ranks = cluster.num_gpus
    eos_ids = eos_token_ids(ckpt.config)

    def serve(layout: Layout, requests: list) -> tuple[list[dict], list[dict]]:
        workload = Workload("calibration", [len(p) for p, _ in requests], [n for _, n in requests])
        decision = make_plan(cfg, cluster, workload, SearchOptions(prefill=layout, decode=layout),
                             time_limit_s=PLAN_TIME_LIMIT_S)
        exec_plan = build_execution_plan(cfg, decision, cluster, workload)
        check_fingerprint(ckpt, exec_plan.model.fingerprint)
        # every replica decodes all its sequences at once, so the decode batch shrinks from all to one
        # whatever cap the planner would choose under the profile being replaced; prefill in several passes
        schedule = exec_plan.schedule.model_copy(update={"decode_max_seqs": -(-len(requests) // layout.dp),
                                                         "max_prefill_tokens": PREFILL_BUDGET_TOKENS})
        exec_plan = exec_plan.model_copy(update={"schedule": schedule})
        metrics, steps = run_plan(exec_plan, folder, requests, eos_ids, time_ops=True)
        return steps, metrics["op_times"]

    def samples(steps: list[dict], tp: int) -> list:
        graph = forward_graph(cfg, tp)
        return [forward_sample(graph, rec["kind"], rec["context_lens"], rec["service_s"], dtype_bytes, tp=tp)
                for rec in steps
                if rec["kind"] in ("prefill", "decode") and rec.get("swap_in_tokens", 0) == 0
                and rec["service_s"] > 0]

    # every data-parallel replica serves the set
    steps, op_times = serve(Layout(ranks, 1, 1), [r for r in base_requests for _ in range(ranks)])
    out = samples(steps, 1)
    in_run = in_run_op_samples(forward_graph(cfg, 1), op_times, dtype_bytes, 1, IN_RUN_EVERY)
    if ranks > 1 and ranks in valid_tp_degrees(cfg):
        steps, op_times = serve(Layout(1, ranks, 1), base_requests)  # one TP group serves the set once
        out += samples(steps, ranks)
        in_run += in_run_op_samples(forward_graph(cfg, ranks), op_times, dtype_bytes, ranks, IN_RUN_EVERY)
    return out, in_run
