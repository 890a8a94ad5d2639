"""Planning entry point: cost tables -> search (CP-SAT or exhaustive) -> simulation of the best candidates ->
:class:`SeesawPlan`.

The search minimizes the closed form and keeps the best point of each of the best layout choices (10 layout
pairs, 5 static layouts by default); :mod:`seesaw.planner.optimize.rank` then simulates those over the trace
and the plan is the fastest simulated one, its prediction the simulated run beside the closed form.
``simulate=False`` keeps the closed form alone (its best point is the plan).
"""
from __future__ import annotations

from typing import Callable, Literal

from seesaw.ir import ModelConfig
from seesaw.ir.errors import InputError
from seesaw.planner.cost.model import CostModel
from seesaw.planner.decision import SeesawPlan, SolverInfo
from seesaw.planner.hardware import Cluster
from seesaw.planner.hardware.engines import get_engine
from seesaw.planner.optimize import cpsat, exhaustive
from seesaw.planner.optimize.candidates import (as_static_choice, min_memory_shortfall, pinned_shortfall, seesaw_plan,
                                                static_plan)
from seesaw.planner.optimize.rank import rank_seesaw, rank_static
from seesaw.planner.optimize.space import SearchOptions, SearchSpace
from seesaw.planner.optimize.terms import PhaseTerms, decode_terms, prefill_terms, static_terms
from seesaw.planner.workload import Workload

Search = Literal["cpsat", "exhaustive"]
SEESAW_CANDIDATES = 10  # layout pairs simulated
STATIC_CANDIDATES = 5  # static layouts simulated


def build_options(cost: CostModel, space: SearchSpace):
    """Tabulate every candidate: prefill / decode terms keyed by dp, and static terms."""
    pre: dict[int, list[PhaseTerms]] = {}
    dec: dict[int, list[PhaseTerms]] = {}
    static: list[PhaseTerms] = []
    for dp in space.dp_degrees():
        pre[dp] = [prefill_terms(cost, lay, b) for lay in space.prefill_layouts(dp)
                   for b in space.prefill_tokens_grid(dp)]
        dec[dp] = [decode_terms(cost, lay, b) for lay in space.decode_layouts(dp)
                   for b in space.decode_seqs_grid(dp, lay.pp)]
    for dp in cost.dp_degrees():
        static += [static_terms(cost, lay, b) for lay in space.static_layouts(dp)
                   for b in space.decode_seqs_grid(dp, lay.pp)]
    pre = {dp: v for dp, v in pre.items() if v and dec.get(dp)}
    dec = {dp: dec[dp] for dp in pre}
    return pre, dec, static


def plan(cfg: ModelConfig, cluster: Cluster, workload: Workload, options: SearchOptions | None = None,
         search: Search = "cpsat", time_limit_s: float = 60.0, simulate: bool = True,
         engine: str = "vllm", on_step: Callable[[str], None] | None = None) -> SeesawPlan:
    """Choose per-phase layouts, stage partitions, buffers, caps and thresholds.

    ``engine``: the serving engine the static baseline is simulated as (:mod:`seesaw.planner.hardware.engines`).
    ``on_step``: called with a short description as each step starts (tabulating, searching, simulating).
    Raises :class:`InputError` for impossible pins, an unknown engine, and when the model cannot fit (naming
    the shortfall).
    """
    step = on_step or (lambda _what: None)
    options = options or SearchOptions()
    engine_spec = get_engine(engine)
    cost = CostModel(cfg, cluster, workload, engine_spec)
    space = SearchSpace(cost, options)
    step("tabulating the cost of every layout")
    pre_opts, dec_opts, static_opts = build_options(cost, space)
    step(f"searching {len(static_opts)} static options" + (f" and {sum(map(len, pre_opts.values()))} x "
         f"{sum(map(len, dec_opts.values()))} re-sharding options" if pre_opts and not options.static else ""))
    keep_static = STATIC_CANDIDATES if simulate else 1
    keep_seesaw = SEESAW_CANDIDATES if simulate else 1
    if search == "cpsat":
        static_res = cpsat.solve_static(cost, static_opts, time_limit_s, keep=keep_static)
    else:
        static_res = exhaustive.search_static(cost, static_opts, keep=keep_static)
    statics = [static_plan(cost, c) for c in static_res.candidates]
    notes: list[str] = []

    res = None
    statuses = {static_res.status}
    pinned = options.prefill is not None or options.decode is not None
    if not options.static and pre_opts:
        # without simulation, a re-sharding plan is kept only when it beats the best static one, so CP-SAT
        # may skip (and prove away) every pair that cannot, which is most of the search on large instances
        beat = (static_res.objective_ns if not simulate and not pinned and static_res.status == "OPTIMAL"
                else None)
        res = (cpsat.solve_seesaw(cost, pre_opts, dec_opts, time_limit_s, upper_bound=beat, keep=keep_seesaw)
               if search == "cpsat" else exhaustive.search_seesaw(cost, pre_opts, dec_opts, keep=keep_seesaw))
        statuses.add(res.status)
        if res.objective_ns is None:
            res = None
    # a pin is a constraint: without a plan that keeps it, never replaced by the best static layout
    if res is None and (not statics or (pinned and not options.static)):
        if "UNKNOWN" in statuses:
            raise InputError("--time-limit", f"the solver found no plan within {time_limit_s:g} s; allow more time")
        if pinned:
            raise InputError("--prefill/--decode", "no plan keeps the pinned layouts: "
                             + pinned_shortfall(cost, {"--prefill": space.prefill_pin, "--decode": space.decode_pin}))
        raise InputError("model", min_memory_shortfall(cost))

    status = "OPTIMAL" if statuses <= {"OPTIMAL", "INFEASIBLE"} else "FEASIBLE"
    seconds = static_res.seconds + (res.seconds if res else 0.0)
    if simulate and statics:
        step(f"simulating {len(statics)} static and {len(res.candidates) if res else 0} re-sharding candidates "
             f"over {workload.num_requests:,} requests")
        # only engines that can start count as a baseline (none: vLLM would refuse every layout)
        statics = rank_static(cost, statics, engine_spec)
    best_static = statics[0] if statics else None
    seesaws = []
    if res is not None:
        solver = SolverInfo("cp-sat" if search == "cpsat" else "exhaustive", status, seconds, res.objective_ns)
        seesaws = [seesaw_plan(cost, c, best_static, solver) for c in res.candidates]
        if simulate:
            beat = None if pinned or best_static is None else best_static.prediction.breakdown.total_s
            seesaws = rank_seesaw(cost, seesaws, beat)
    best = seesaws[0] if seesaws else None
    use_static = best is None or (not pinned and best_static is not None
                                  and best_static.prediction.breakdown.total_s <= best.prediction.breakdown.total_s)
    how = "simulation" if simulate else "the cost model"
    if use_static:
        if not options.static:
            notes.append(f"static: re-sharding does not pay under {how}; the best plan keeps one layout")
        solver = SolverInfo("cp-sat" if search == "cpsat" else "exhaustive", status, seconds, static_res.objective_ns)
        return as_static_choice(best_static, solver, tuple(notes))
    if best_static and best_static.prediction.breakdown.total_s < best.prediction.breakdown.total_s:
        notes.append(f"pinned layouts predict less throughput than the best static layout (by {how})")
    return SeesawPlan(**{**best.__dict__, "best_static": best_static, "notes": tuple(notes)})
