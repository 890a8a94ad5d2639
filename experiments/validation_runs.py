"""Runs of ``seesaw-validate`` (see ``cli/validate.py``): which layout pairs to run, their plans, and one
timed run of the runtime per plan with its step records."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from seesaw.ir.errors import CommandError
from seesaw.ir.errors import InputError


DECODE_PROBE_ROWS = 16  # the validation runs' decode batches: 16 sequences per replica
#: A probe below this share of its profile rate marks the machine busy (another job halves a 2-core VM's
#: rates; quiet drift here stayed within about 20 %, docs/calibration.md).
BUSY_RATE = 0.75


@dataclass
class PlannedRun:
    """A layout pair with the planner's decision for it and the lowered execution plan."""

    label: str  # "dp2" for a static layout, "tp2->pp2" for a re-sharding pair
    decision: object  # seesaw.planner.decision.SeesawPlan
    exec_plan: object  # seesaw.codegen.plan.ExecutionPlan
    chosen: bool = False


def pair_label(pre, dec) -> str:
    return str(pre) if pre == dec else f"{pre}->{dec}"


def layout_pairs(cfg, cluster, workload) -> list[tuple[object, object]]:
    """Every static layout ``(L, L)`` and every re-sharding pair ``(A, B)``, ``A != B`` with the same dp,
    over all layouts of the model on the cluster's GPUs (the cost model's layout space)."""
    from seesaw.planner.cost.model import CostModel  # noqa: PLC0415

    cost = CostModel(cfg, cluster, workload)
    pairs = []
    for dp in cost.dp_degrees():
        lays = cost.layouts(dp)
        pairs += [(a, a) for a in lays]
        pairs += [(a, b) for a in lays for b in lays if a != b]
    return pairs


def plan_runs(cfg, cluster, workload, pairs, time_limit_s: float, checkpoint) -> tuple[list[PlannedRun], list[str]]:
    """Plan each pair with its layouts pinned; returns the runs and notes (pairs that do not fit; the
    static chunked-prefill baseline, which this runtime cannot execute as costed). The run with the highest
    predicted throughput is marked chosen: it is the planner's Seesaw choice over these pairs."""
    from seesaw.codegen import build_execution_plan  # noqa: PLC0415
    from seesaw.planner.optimize.solve import plan as make_plan  # noqa: PLC0415
    from seesaw.planner.optimize.space import SearchOptions  # noqa: PLC0415
    from seesaw.runtime.checkpoint import check_fingerprint  # noqa: PLC0415

    runs, notes = [], []
    for pre, dec in pairs:
        label = pair_label(pre, dec)
        try:
            decision = make_plan(cfg, cluster, workload, SearchOptions(prefill=pre, decode=dec), time_limit_s=time_limit_s)
        except InputError as e:
            notes.append(f"{label}: not run ({e.problem})")
            continue
        exec_plan = build_execution_plan(cfg, decision, cluster, workload)
        check_fingerprint(checkpoint, exec_plan.model.fingerprint)
        runs.append(PlannedRun(label, decision, exec_plan))
    if runs:  # the planner's Seesaw search maximizes the same prediction over the same pairs
        max(runs, key=lambda r: r.decision.prediction.tokens_per_s).chosen = True
    static = make_plan(cfg, cluster, workload, SearchOptions(static=True), time_limit_s=time_limit_s)
    if static.host_kv_buffer_tokens == 0:
        notes.append(f"not validated: the planner's static baseline (vLLM-style chunked prefill, best "
                     f"{pair_label(static.prefill.layout, static.decode.layout)} at "
                     f"{static.prediction.tokens_per_s:,.1f} tok/s predicted); this runtime has no chunked "
                     "prefill, so static layouts run phase-split through the host buffer as above")
    return runs, notes


def run_plan(exec_plan, folder: Path, requests, eos_ids: set[int], progress=None,
             time_ops: bool = False) -> tuple[dict, list[dict]]:
    """Serve ``requests`` (``(prompt ids, output length)``, EOS ignored) under ``exec_plan`` after one short
    warm-up request; returns ``RunMetrics.as_dict()`` and the step records of the timed run. With
    ``time_ops`` every instruction of the timed run's forward passes is timed too, returned in the dict as
    ``op_times`` (``RunMetrics.op_times``). Raises CommandError when a worker fails or an output length
    differs from its request's."""
    from seesaw.runtime.engine import Engine, WorkerError  # noqa: PLC0415
    from seesaw.schedule.replica import Sequence  # noqa: PLC0415

    try:
        with Engine(exec_plan, str(folder), time_ops=time_ops) as engine:
            engine.generate([Sequence(-1, requests[0][0][:8], 2, ignore_eos=True)], eos_ids)
            seqs = [Sequence(i, ids, n, ignore_eos=True) for i, (ids, n) in enumerate(requests)]
            _, m = engine.generate(seqs, eos_ids, progress)
    except WorkerError as e:
        raise CommandError(str(e)) from None
    wrong = [s.index for s, (_, n) in zip(seqs, requests) if s.finish_reason != "length" or len(s.output) != n]
    if wrong:
        raise CommandError(f"requests {wrong[:5]} did not finish at their requested length")
    return {**m.as_dict(), **({"op_times": m.op_times} if time_ops else {})}, m.steps


def machine_drift(cfg, gpu) -> tuple[dict, str]:
    """Re-time ``seesaw-calibrate``'s two probes now and compare them with the profile under validation.

    The probes (:meth:`seesaw.runtime.microbench.Bench.stream` and ``.peak``: a cold one-row GEMV over at
    least 128 MB, and the hot ``up_proj`` GEMM of the largest prefill row count, one process, the runtime's
    threads per rank) set the profile's ``memory_gb_per_s`` and ``bf16_tflops`` on CPU. A third probe times a
    decode step's kernel, the same cold matrix with ``DECODE_PROBE_ROWS`` rows, against the profile's cost
    model of it (:func:`seesaw.planner.cost.roofline.kernel_time_s`: packing, overlap and half-rows terms
    included), which neither rate alone shows. A shared machine
    drifts (three calibrations within two hours of 2026-11-21 here: 11.1-14.3 GB/s, 50-81 GFLOP/s fitted), so
    the report states how far the machine is from its profile at validation time. About a second on CPU.
    Returns ``({"stream_gb_per_s", "profile_memory_gb_per_s", "gemm_gflop_per_s", "profile_gemm_gflop_per_s",
    "decode_gemm_s", "profile_decode_gemm_s"}, one-line note)``; rates in 1e9 B/s and 1e9 FLOP/s, times in s.
    """
    import torch  # noqa: PLC0415

    from seesaw.planner.cost.roofline import kernel_time_s  # noqa: PLC0415
    from seesaw.runtime.microbench import Bench, Settings, set_threads  # noqa: PLC0415

    device = torch.device("cuda" if torch.cuda.is_available() and gpu.link != "gloo" else "cpu")
    old = set_threads()
    try:
        bench = Bench(cfg, device, Settings())
        stream, peak, dec = bench.stream(), bench.peak(), bench.stream(DECODE_PROBE_ROWS)
    finally:
        torch.set_num_threads(old)
    now_b, now_f = stream.nbytes / stream.seconds / 1e9, peak.flops / peak.seconds / 1e9
    prof_b, prof_f = gpu.memory_gb_per_s, gpu.peak_flops / 1e9
    dec_prof = kernel_time_s(dec.flops, dec.nbytes, gpu, dec.rows)
    drift = {"stream_gb_per_s": now_b, "profile_memory_gb_per_s": prof_b, "gemm_gflop_per_s": now_f,
             "profile_gemm_gflop_per_s": prof_f, "decode_gemm_s": dec.seconds, "profile_decode_gemm_s": dec_prof}
    slowest = min(now_b / prof_b, now_f / prof_f, dec_prof / dec.seconds)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    drift.update(slowest_rate=slowest, load_average=load, busy=slowest < BUSY_RATE)
    note = (f"machine now against the profile (seesaw-calibrate's probes, timed before the runs): weight "
            f"streaming {now_b:.2f} GB/s (profile {prof_b:.2f}, {100 * (now_b / prof_b - 1):+.0f}%), hot GEMM "
            f"{now_f:.1f} GFLOP/s (profile {prof_f:.1f}, {100 * (now_f / prof_f - 1):+.0f}%), "
            f"{DECODE_PROBE_ROWS}-row GEMM over the cold weights {1e3 * dec.seconds:.1f} ms (profile {1e3 * dec_prof:.1f} ms, "
            f"{100 * (dec_prof / dec.seconds - 1):+.0f}% rate); load average {load:.2f} on {os.cpu_count()} cores")
    if drift["busy"]:
        note += (f". BUSY: a probe runs at {slowest:.0%} of the profile's rate, so this machine is busy or throttled "
                 "now and the errors below measure its state as much as the model: rerun when it is quiet, or "
                 "recalibrate (seesaw-calibrate) for the state it is in")
    return drift, note
