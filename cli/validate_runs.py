"""Runs of ``seesaw-validate`` (see ``cli/validate.py``): which layout pairs to run, their plans, and one
timed run of the runtime per plan with its step records."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from seesaw.cli.common import CommandError
from seesaw.ir.errors import InputError


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


def run_plan(exec_plan, folder: Path, requests, eos_ids: set[int], progress=None) -> tuple[dict, list[dict]]:
    """Serve ``requests`` (``(prompt ids, output length)``, EOS ignored) under ``exec_plan`` after one short
    warm-up request; returns ``RunMetrics.as_dict()`` and the step records of the timed run. Raises
    CommandError when a worker fails or an output length differs from its request's."""
    from seesaw.runtime.engine import Engine, WorkerError  # noqa: PLC0415
    from seesaw.runtime.scheduler import Sequence  # noqa: PLC0415

    try:
        with Engine(exec_plan, str(folder)) as engine:
            engine.generate([Sequence(-1, requests[0][0][:8], 2, ignore_eos=True)], eos_ids)
            seqs = [Sequence(i, ids, n, ignore_eos=True) for i, (ids, n) in enumerate(requests)]
            _, m = engine.generate(seqs, eos_ids, progress)
    except WorkerError as e:
        raise CommandError(str(e)) from None
    wrong = [s.index for s, (_, n) in zip(seqs, requests) if s.finish_reason != "length" or len(s.output) != n]
    if wrong:
        raise CommandError(f"requests {wrong[:5]} did not finish at their requested length")
    return m.as_dict(), m.steps
