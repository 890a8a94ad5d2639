"""The final ranking: the search's best candidates, simulated request by request over the trace.

The closed form (what CP-SAT minimizes) takes every step at the phase's mean batch, so it cannot see a
decode batch that the device cache caps below its cap, the drain at the end of each cycle, or an engine
that preempts. The planner therefore keeps the search's best layout choices and simulates each:

- a Seesaw candidate under this project's runtime (:func:`~seesaw.planner.simulate.simulate_runtime`: the
  runtime's own scheduler, so the plan is predicted as ``seesaw-run`` will execute it);
- a static candidate under the baseline engine (:func:`~seesaw.planner.simulate.simulate_engine`), first
  with the engine's default knobs, then, for the best layouts, with the knobs a user would tune: a
  coordinate search over ``max_num_seqs`` and ``max_num_batched_tokens`` (halving or doubling each while the
  simulated time improves, at most two moves a direction).

Every prediction keeps the closed form's total time beside the simulated one. Candidates are simulated in
parallel, one process per core (``SEESAW_PLAN_WORKERS`` overrides; 1 keeps everything in this process).
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace

from seesaw.ir.errors import InputError
from seesaw.planner.cost.model import CostModel
from seesaw.planner.decision import PhaseBreakdown, Prediction, SeesawPlan, StaticPlan
from seesaw.planner.hardware.engines import EngineSpec
from seesaw.planner.simulate import EngineKnobs, EnginePlan, RuntimePlan, SimRun, engine_kv_blocks
from seesaw.planner.simulate import simulate_engine, simulate_runtime
from seesaw.planner.workload import Workload

_JOB: tuple = ()  # (function, cost model): what forked workers run, inherited at fork


def _run_job(item):
    fn, cost = _JOB
    return fn(cost, item)


def parallel_map(fn, cost: CostModel, items: list) -> list:
    """``[fn(cost, x) for x in items]``, spread over forked worker processes (one per core, at most one per
    item; ``SEESAW_PLAN_WORKERS`` overrides the count) where the platform forks, else in this process."""
    global _JOB
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        workers = min(len(items), int(os.environ.get("SEESAW_PLAN_WORKERS", cores)))
    except ValueError:
        raise InputError("SEESAW_PLAN_WORKERS", f"must be an integer, got {os.environ['SEESAW_PLAN_WORKERS']!r}") from None
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [fn(cost, x) for x in items]
    _JOB = (fn, cost)
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run_job, items))
    finally:
        _JOB = ()


#: ``max_num_seqs`` and ``max_num_batched_tokens`` bounds of the knob search.
SEQS_RANGE = (8, 4096)
TOKENS_RANGE = (512, 65536)


def counts_of(stage_layers) -> tuple[int, ...]:
    """Layers per stage from ``(start, stop)`` ranges."""
    return tuple(b - a for a, b in stage_layers)


def _prediction(cost: CostModel, run: SimRun, closed: Prediction, breakdown: PhaseBreakdown) -> Prediction:
    return Prediction(breakdown, run.tokens_per_s, run.output_tokens_per_s, closed.memory, method="simulated",
                      closed_form_s=closed.breakdown.total_s)


def simulate_seesaw_plan(cost: CostModel, plan: SeesawPlan,
                         stop_after_s: float | None = None) -> tuple[SeesawPlan, SimRun] | None:
    """``plan`` with its prediction simulated under the runtime (phase times as the engine charges them;
    KV copies are inside the phases, as the workers make them); None when it cannot finish within
    ``stop_after_s``."""
    rp = RuntimePlan(plan.prefill.layout, counts_of(plan.prefill.stage_layers), plan.decode.layout,
                     counts_of(plan.decode.stage_layers), plan.gpu_kv_tokens, plan.host_kv_buffer_tokens,
                     plan.page_size_tokens, plan.max_prefill_tokens, plan.decode_max_seqs,
                     plan.prefill_to_decode_threshold_tokens, plan.decode_to_prefill_threshold_tokens)
    run = simulate_runtime(cost, rp, stop_after_s)
    if run.stopped:
        return None
    bd = PhaseBreakdown(run.prefill_s, run.decode_s, run.transition_s, 0.0, run.transitions)
    return replace(plan, prediction=_prediction(cost, run, plan.prediction, bd)), run


#: A trace of more than twice this many requests screens its candidates on its first this many (the shipped
#: traces are shuffled), and simulates only the ``FINALISTS`` fastest of them over the whole trace; the
#: screening stops a candidate once it is slower than the first ``FINALISTS`` (:func:`screen`).
SCREEN_REQUESTS = 3000
FINALISTS = 2


def screening_cost(cost: CostModel) -> CostModel | None:
    """The cost model of the trace's first :data:`SCREEN_REQUESTS` requests (None for a short trace)."""
    w = cost.workload
    if w.num_requests <= 2 * SCREEN_REQUESTS:
        return None
    n = SCREEN_REQUESTS
    return CostModel(cost.cfg, cost.cluster, Workload(f"{w.name} (first {n})", w.prompt_lens[:n], w.output_lens[:n]),
                     cost.engine)


def screen(run, cost: CostModel, items: list, keep: int, wall_of) -> list:
    """``[run(cost, x, None) for x in items]`` as far as it decides the ``keep`` fastest: the first ``keep``
    items (the search's best by the closed form) run to the end, then the rest, each stopped (``run``
    returns None) once its clock passes the slowest of those; one stopped could not be among the ``keep``
    fastest. ``wall_of(result)``: a result's simulated wall time (s)."""
    head = parallel_map(lambda c, x: run(c, x, None), cost, items[:keep])
    walls = [wall_of(h) for h in head if h is not None]
    stop = max(walls) if len(walls) >= keep else None
    return head + parallel_map(lambda c, x: run(c, x, stop), cost, items[keep:])


def rank_seesaw(cost: CostModel, plans: list[SeesawPlan], beat_s: float | None = None) -> list[SeesawPlan]:
    """The candidates simulated (in parallel), fastest first; each simulation stops once it passes
    ``beat_s`` (the best static plan's time), so only the ones that finish are kept. A long trace screens
    the candidates on its first requests first (:func:`screening_cost`)."""
    screen_cost = screening_cost(cost)
    if screen_cost is not None and len(plans) > FINALISTS:
        first = screen(simulate_seesaw_plan, screen_cost, plans, FINALISTS, lambda got: got[1].wall_s)
        order = sorted((i for i, got in enumerate(first) if got is not None), key=lambda i: first[i][1].wall_s)
        plans = [plans[i] for i in order[:FINALISTS]]
    done = parallel_map(lambda c, p: simulate_seesaw_plan(c, p, beat_s), cost, plans)
    return sorted((got[0] for got in done if got is not None), key=lambda q: q.prediction.breakdown.total_s)


@dataclass(frozen=True)
class TunedStatic:
    """A static layout under the engine with the knobs found for it."""

    knobs: EngineKnobs
    kv_blocks: int
    run: SimRun
    tried: int  # simulations run


def _engine_run(cost: CostModel, static: StaticPlan, engine: EngineSpec, knobs: EngineKnobs,
                stop_after_s: float | None = None) -> tuple[int, SimRun] | None:
    """Simulated run of the static layout with ``knobs``; None when the engine could not start (its KV cache
    would not hold the longest request, as vLLM refuses ``max_model_len`` beyond it) or the run passes
    ``stop_after_s``."""
    counts = counts_of(static.phase.stage_layers)
    blocks = engine_kv_blocks(cost, static.phase.layout, counts, knobs, engine.memory_fraction_of)
    if blocks * knobs.block_size < cost.workload.max_seq_len:
        return None
    run = simulate_engine(cost, EnginePlan(static.phase.layout, counts, knobs, blocks), engine, stop_after_s)
    return None if run.stopped else (blocks, run)


def tune_static(cost: CostModel, static: StaticPlan, engine: EngineSpec, search: bool = True,
                start: TunedStatic | None = None, stop_after_s: float | None = None,
                max_model_len: int | None = None) -> TunedStatic | None:
    """The engine's default knobs on ``static``'s layout (or ``start``, already simulated) and, with
    ``search``, the coordinate search of the module docstring (each try stops once it is slower than the
    best so far); None when even the defaults cannot start or pass ``stop_after_s``."""
    if start is None:
        knobs = EngineKnobs.defaults(engine, cost.cluster.gpu, max_model_len or cost.workload.max_seq_len)
        first = _engine_run(cost, static, engine, knobs, stop_after_s)
        if first is None:
            return None
        start = TunedStatic(knobs, *first, tried=1)
    best = (start.knobs, start.kv_blocks, start.run)
    tried = start.tried
    if search:
        for field, (lo, hi) in (("max_num_seqs", SEQS_RANGE), ("max_num_batched_tokens", TOKENS_RANGE)):
            for factor in (0.5, 2.0):
                moved = False
                for _ in range(2):
                    cur = best[0]
                    value = int(getattr(cur, field) * factor)
                    nxt = replace(cur, **{field: value})
                    longest = max_model_len or cost.workload.max_seq_len
                    if (not lo <= value <= hi or nxt.max_num_batched_tokens < nxt.max_num_seqs
                            or (not nxt.enable_chunked_prefill and nxt.max_num_batched_tokens < longest)):
                        break
                    tried += 1
                    got = _engine_run(cost, static, engine, nxt, best[2].wall_s)
                    if got is None or got[1].wall_s >= best[2].wall_s * (1 - 1e-3):
                        break
                    best, moved = (nxt, *got), True
                if moved:
                    break  # this direction improved: the other is not tried
    knobs, blocks, run = best
    return TunedStatic(knobs, blocks, run, tried)


def simulated_static(cost: CostModel, static: StaticPlan, tuned: TunedStatic, engine: EngineSpec) -> StaticPlan:
    """``static`` with the tuned knobs and their simulated prediction."""
    bd = PhaseBreakdown(0.0, tuned.run.wall_s, 0.0, 0.0, 0)
    return replace(static, gpu_kv_tokens=tuned.kv_blocks * tuned.knobs.block_size,
                   decode_max_seqs=tuned.knobs.max_num_seqs, max_batched_tokens=tuned.knobs.max_num_batched_tokens,
                   gpu_memory_utilization=tuned.knobs.gpu_memory_utilization, engine=engine.name,
                   prediction=_prediction(cost, tuned.run, static.prediction, bd))


def rank_static(cost: CostModel, statics: list[StaticPlan], engine: EngineSpec, tune: int = 3) -> list[StaticPlan]:
    """Every static candidate simulated with the engine's defaults, the ``tune`` best of those tuned (both in
    parallel); fastest first. Candidates whose engine cannot start are dropped. A long trace does both on its
    first requests (:func:`screening_cost`) and simulates only the tuned ones over the whole trace."""
    screen_cost = screening_cost(cost)
    longest = cost.workload.max_seq_len  # the whole trace's, also when screening on its first requests
    if screen_cost is None:
        screen_cost = cost
        defaults = parallel_map(lambda c, s: tune_static(c, s, engine, search=False, max_model_len=longest), cost,
                                statics)
    else:  # only the tuned ones go on to the whole trace: the others may stop early
        defaults = screen(lambda c, s, stop: tune_static(c, s, engine, search=False, stop_after_s=stop,
                                                         max_model_len=longest),
                          screen_cost, statics, tune, lambda t: t.run.wall_s)
    first = sorted(((s, t) for s, t in zip(statics, defaults) if t is not None), key=lambda st: st[1].run.wall_s)
    tuned = parallel_map(lambda c, st: tune_static(c, st[0], engine, search=True, start=st[1], max_model_len=longest),
                         screen_cost, first[:tune])
    if screen_cost is cost:
        out = [simulated_static(cost, s, t, engine) for (s, _), t in zip(first, tuned)]
        out += [simulated_static(cost, s, t, engine) for s, t in first[tune:]]
    else:
        full = parallel_map(lambda c, st: _engine_run(c, st[0], engine, st[1].knobs),
                            cost, [(s, t) for (s, _), t in zip(first, tuned)])
        out = [simulated_static(cost, s, TunedStatic(t.knobs, *got, tried=t.tried + 1), engine)
               for (s, _), t, got in zip(first, tuned, full) if got is not None]
    return sorted(out, key=lambda s: s.prediction.breakdown.total_s)
