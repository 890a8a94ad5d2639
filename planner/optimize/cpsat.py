"""OR-Tools CP-SAT formulation of the Seesaw and static planning problems.

Decision variables per (dp, prefill layout, decode layout) pair: Boolean selections of the prefill
batch (tokens) ``y_i`` and the decode batch cap (sequences) ``x_j`` over tabulated grids, integer PP stage
sizes ``n[phase, s]`` (uneven allowed), the host KV buffer ``H``, per-GPU memory (prefill busy, decode
busy, decode-layout KV), reload, swap and transition times. Every expression restates
``objective.evaluate_seesaw`` / ``evaluate_static`` exactly, so the optimum equals exhaustive search's.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from ortools.sat.python import cp_model

from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.optimize.cpsat_run import solve_model
from seesaw.planner.optimize.objective import evaluate_seesaw, evaluate_static
from seesaw.planner.optimize.result import SearchResult
from seesaw.planner.optimize.terms import PhaseTerms, host_buffer_max_tokens, stage_of

_STATUS = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE", cp_model.INFEASIBLE: "INFEASIBLE",
           cp_model.MODEL_INVALID: "MODEL_INVALID", cp_model.UNKNOWN: "UNKNOWN"}


class _Partitions:
    """Stage-size variables ``n[s]`` (>= 1 layer each, summing to the layer count) per (tag, layout)."""

    def __init__(self, model: cp_model.CpModel, num_layers: int) -> None:
        self.model, self.num_layers, self.vars = model, num_layers, {}

    def get(self, tag: str, layout: Layout) -> list[cp_model.IntVar]:
        key = (tag, layout)
        if key not in self.vars:
            hi = self.num_layers - layout.pp + 1
            n = [self.model.NewIntVar(1, hi, f"n_{tag}_{layout}_{s}") for s in range(layout.pp)]
            self.model.Add(sum(n) == self.num_layers)
            self.vars[key] = n
        return self.vars[key]


def _stage_bound(t: PhaseTerms, num_layers: int) -> int:
    st = t.stage
    return num_layers * st.layer_ns + st.first_ns + st.last_ns + max(st.send_ns, default=0) + st.fixed_ns


def _add_phase_time(model, parts: _Partitions, tag: str, opts: list[tuple[cp_model.IntVar, PhaseTerms]],
                    num_layers: int) -> cp_model.IntVar:
    """``T >= coef * max_s(stage time)`` under the selected option; returns T."""
    m_hi = max(_stage_bound(t, num_layers) for _, t in opts)
    t_hi = max(t.coef * _stage_bound(t, num_layers) for _, t in opts)
    stage_max = model.NewIntVar(0, m_hi, f"M_{tag}")
    total = model.NewIntVar(0, t_hi, f"T_{tag}")
    for sel, t in opts:
        n = parts.get(tag, t.layout)
        st = t.stage
        for s in range(t.pp):
            extra = (st.first_ns if s == 0 else 0) + (st.last_ns if t.last(s) else 0) + \
                (st.send_ns[s] if s < t.pp - 1 else 0) + st.fixed_ns
            model.Add(stage_max >= n[s] * st.layer_ns + extra).OnlyEnforceIf(sel)
        model.Add(total >= t.coef * stage_max).OnlyEnforceIf(sel)
    return total


def _least_times_last(model: cp_model.CpModel, choices, partition, times) -> None:
    """Search order: the batch options, then the stage sizes, then every time variable at its least value.

    The time variables are only bounded from below; left to the default search, one worker may fix one
    above its bound and then walk the objective down one nanosecond per solution (see
    :mod:`seesaw.planner.optimize.cpsat_run`, which also tries the default order).
    """
    model.AddDecisionStrategy(choices, cp_model.CHOOSE_FIRST, cp_model.SELECT_MAX_VALUE)
    model.AddDecisionStrategy(partition, cp_model.CHOOSE_MIN_DOMAIN_SIZE, cp_model.SELECT_MIN_VALUE)
    model.AddDecisionStrategy(times, cp_model.CHOOSE_FIRST, cp_model.SELECT_MIN_VALUE)


def _busy_expr(t: PhaseTerms, s: int, n: cp_model.IntVar):
    const = t.ws_fixed_bytes + t.end_weight_bytes(s) + (t.ws_last_bytes if t.last(s) else 0)
    return n * (t.layer_weight_bytes + t.ws_layer_bytes) + const


def _exact_objective(solver: cp_model.CpSolver, status: int, exact) -> tuple[int, int]:
    """``(status, objective)`` of the incumbent, the objective being ``objective.evaluate_*`` of the point.

    Every time variable is only bounded from below, so at an optimum the model's objective equals the
    exact one, but a FEASIBLE incumbent (time limit reached) may carry slack: its model objective is only an
    upper bound. The exact value is what the plan reports and what later pairs must beat. Should CP-SAT's
    optimum ever differ from the exact value (large coefficients), the status drops to FEASIBLE.

    Raises:
        AssertionError: the chosen point does not fit in memory under the reference objective (a
            formulation bug, not an input error).
    """
    assert exact is not None, "CP-SAT chose a point that does not fit under the reference objective"
    if status == cp_model.OPTIMAL and exact.objective_ns != round(solver.ObjectiveValue()):
        status = cp_model.FEASIBLE
    return status, exact.objective_ns


def _stage_lower_bound(t: PhaseTerms, num_layers: int) -> int:
    """A stage time no partition can beat: the mean over stages, and stage 0 / last with one layer."""
    st = t.stage
    mean = -(-(num_layers * st.layer_ns + st.first_ns + st.last_ns + sum(st.send_ns)) // t.pp)
    return st.fixed_ns + max(mean, st.layer_ns + st.first_ns, st.layer_ns + st.last_ns)


def _replica_bytes(t: PhaseTerms, num_layers: int, kv: bool) -> int:
    """Bytes one TP rank column of a replica needs summed over all stages, whatever the partition:
    sum_s busy(s, n_s) (+ n_s * KV) with sum_s n_s = layers."""
    ends = sum(t.end_weight_bytes(s) for s in range(t.pp))
    per_layer = t.layer_weight_bytes + t.ws_layer_bytes + (t.kv_layer_bytes if kv else 0)
    return num_layers * per_layer + t.pp * t.ws_fixed_bytes + t.ws_last_bytes + ends


def _pair_fits(cost: CostModel, pre: PhaseTerms, dec: PhaseTerms) -> bool:
    """Necessary condition for a batch pair to fit: total memory over the replica's GPUs (any partition).

    Summing the per-GPU constraints over all ``tp * pp`` GPUs: ``tp_p * sum_s busy_p + tp_d * sum_s KV_d
    <= GPUs * capacity`` and ``tp_d * sum_s (busy_d + KV_d) <= GPUs * capacity``.
    """
    layers, cap, gpus = cost.cfg.num_hidden_layers, cost.device_capacity_bytes, pre.layout.replica_size
    kv = dec.layout.tp * layers * dec.kv_layer_bytes
    return (pre.layout.tp * _replica_bytes(pre, layers, False) + kv <= gpus * cap
            and dec.layout.tp * _replica_bytes(dec, layers, True) <= gpus * cap)


def _solve_pair(cost: CostModel, pre_opts: list[PhaseTerms], dec_opts: list[PhaseTerms], time_limit_s: float,
                upper_bound: int | None):
    """CP-SAT over one (prefill layout, decode layout) pair: batch choices, partitions, buffer, memory."""
    model = cp_model.CpModel()
    num_layers = cost.cfg.num_hidden_layers
    cap = cost.device_capacity_bytes
    dp = pre_opts[0].layout.dp
    same = pre_opts[0].layout == dec_opts[0].layout
    resharding = not same
    parts = _Partitions(model, num_layers)
    pkey, dkey = "p", ("p" if same else "d")  # one layout keeps one partition
    ys = [(model.NewBoolVar(f"y_{t.batch}"), t) for t in pre_opts]
    xs = [(model.NewBoolVar(f"x_{t.batch}"), t) for t in dec_opts]
    model.AddExactlyOne([v for v, _ in ys])
    model.AddExactlyOne([v for v, _ in xs])
    for sel_y, tp_ in ys:  # redundant aggregate memory cuts (see _pair_fits)
        for sel_x, td in xs:
            if not _pair_fits(cost, tp_, td):
                model.AddBoolOr([sel_y.Not(), sel_x.Not()])
    n_pre = parts.get(pkey, pre_opts[0].layout)
    n_dec = parts.get(dkey, dec_opts[0].layout)

    # Per-GPU memory: prefill busy + decode-layout KV <= capacity and decode busy + KV <= capacity, for each
    # distinct (prefill stage, decode stage) a GPU position holds, stated per selected batch pair.
    stage_pairs = sorted({(stage_of(g, pre_opts[0].layout), stage_of(g, dec_opts[0].layout))
                          for g in range(cost.cluster.num_gpus // dp)})
    for sel_x, td in xs:
        for sd in sorted({sd for _, sd in stage_pairs}):
            kv = n_dec[sd] * td.kv_layer_bytes
            model.Add(_busy_expr(td, sd, n_dec[sd]) + kv <= cap).OnlyEnforceIf(sel_x)
        for sel_y, tp_ in ys:
            for sp, sd in stage_pairs:
                model.Add(_busy_expr(tp_, sp, n_pre[sp]) + n_dec[sd] * td.kv_layer_bytes <= cap
                          ).OnlyEnforceIf([sel_y, sel_x])

    t_pre = _add_phase_time(model, parts, pkey, ys, num_layers)
    t_dec = _add_phase_time(model, parts, dkey, xs, num_layers)

    def reload_and_swap(tag: str, n, opts):
        t0 = opts[0][1]
        r_hi = num_layers * t0.reload_layer_ns + t0.reload_first_ns + t0.reload_last_ns
        w_hi = num_layers * t0.swap_layer_ns
        reload = model.NewIntVar(0, r_hi, f"R_{tag}")
        swap = model.NewIntVar(0, w_hi, f"S_{tag}")
        for s in range(t0.pp):
            if resharding:
                model.Add(reload >= n[s] * t0.reload_layer_ns + t0.end_reload_ns(s))
            model.Add(swap >= n[s] * t0.swap_layer_ns)
        return reload, swap, r_hi, w_hi

    r_pre, s_out, rp_hi, so_hi = reload_and_swap("p", n_pre, ys)
    r_dec, s_in, rd_hi, si_hi = reload_and_swap("d", n_dec, xs)

    # Host buffer and cycles: C * (theta_p - theta_d) >= P with theta_p + B_p <= H <= H_max. The objective
    # grows with C, so per prefill batch option C = ceil(P / (H_max - B_p)), a constant; transitions cost
    # C * R_d + (C - 1) * R_p, linear in the reload times (both 0 when one layout serves both phases).
    prompt = cost.replica_work(dp).prompt_tokens
    h_max = host_buffer_max_tokens(cost, dp, resharding)
    buffer = model.NewIntVar(0, max(0, h_max), "host_kv_buffer_tokens")
    trans = model.NewIntVar(0, (rp_hi + rd_hi) * prompt, "transition_ns")
    for sel, t in ys:
        room = h_max - t.batch
        if room < 1:
            model.Add(sel == 0)
            continue
        c = -(-prompt // room)
        model.Add(buffer >= t.batch + -(-prompt // c)).OnlyEnforceIf(sel)
        if resharding:
            model.Add(trans >= c * r_dec + (c - 1) * r_pre).OnlyEnforceIf(sel)
    e_out = model.NewIntVar(0, so_hi, "swap_out_exposed")
    e_in = model.NewIntVar(0, si_hi, "swap_in_exposed")
    model.Add(e_out >= s_out - t_pre)
    model.Add(e_in >= s_in - t_dec)
    objective = t_pre + t_dec + trans + e_out + e_in
    if upper_bound is not None:
        model.Add(objective < upper_bound)  # only strictly better pairs are of interest
    _least_times_last(model, [v for v, _ in ys] + [v for v, _ in xs], [*n_pre, *n_dec],
                      [t_pre, t_dec, r_pre, r_dec, s_out, s_in, buffer, trans, e_out, e_in])
    model.Minimize(objective)

    status, solver = solve_model(model, time_limit_s)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, None
    pre = next(t for sel, t in ys if solver.Value(sel))
    dec = next(t for sel, t in xs if solver.Value(sel))
    pc = tuple(solver.Value(n) for n in n_pre)
    dc = tuple(solver.Value(n) for n in n_dec)
    status, objective_ns = _exact_objective(solver, status, evaluate_seesaw(cost, pre, dec, pc, dc))
    return status, (objective_ns, pre, dec, pc, dc)


#: Subproblems solved side by side (at most one per core), each CP-SAT model with one worker; a batch's
#: subproblems all see the bound known before it, so the result does not depend on which finishes first.
SUBPROBLEM_THREADS = 2


def _solve_in_bound_order(subproblems, solve, time_limit_s: float, upper_bound: int | None = None,
                          keep: int = 1) -> SearchResult:
    """Solve ``(lower_bound, key, data)`` subproblems in bound order; ``solve(data, time_left,
    incumbent)`` returns ``(status, (objective, pre, dec, pcounts, dcounts) | None)``. Keeps the ``keep``
    best subproblem optima; stops once a bound reaches the worst of them (when ``keep`` are known), or
    ``upper_bound`` before that (nothing left can beat it). Each subproblem gets at most
    :data:`~seesaw.planner.optimize.cpsat_run.SUBPROBLEM_LIMIT_S` of CP-SAT's deterministic time (and the
    wall time left); up to :data:`SUBPROBLEM_THREADS` are solved at once. OPTIMAL when every subproblem
    solved was proven optimal or infeasible within its limit (INFEASIBLE when none beats ``upper_bound``)."""
    start = time.perf_counter()
    top: list = []
    proven = True
    order = sorted(subproblems, key=lambda p: p[:2])
    workers = max(1, min(SUBPROBLEM_THREADS, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:  # CP-SAT releases the GIL: subproblems solve side by side
        i = 0
        while i < len(order):
            bound = top[-1][0] if len(top) >= keep else upper_bound
            batch = []
            while i < len(order) and len(batch) < workers:
                lb, _, data = order[i]
                if bound is not None and lb >= bound:
                    i = len(order)  # sorted by bound: nothing later can beat it either
                    break
                batch.append(data)
                i += 1
            if not batch:
                break
            left = time_limit_s - (time.perf_counter() - start)
            if left <= 0:
                proven = False
                break
            for status, sol in pool.map(lambda d: solve(d, left, bound), batch):
                if status not in (cp_model.OPTIMAL, cp_model.INFEASIBLE):
                    proven = False
                if sol is not None:
                    top = sorted([*top, sol], key=lambda s: s[0])[:keep]
    seconds = time.perf_counter() - start
    if not top:
        return SearchResult("INFEASIBLE" if proven else "UNKNOWN", seconds, None)
    return SearchResult("OPTIMAL" if proven else "FEASIBLE", seconds, *top[0], candidates=tuple(top))


def solve_seesaw(cost: CostModel, prefill_opts: dict[int, list[PhaseTerms]],
                 decode_opts: dict[int, list[PhaseTerms]], time_limit_s: float = 60.0,
                 upper_bound: int | None = None, keep: int = 1) -> SearchResult:
    """Minimize the Seesaw objective over the given options (keyed by dp).

    The layout pair (dp, prefill layout, decode layout) is a small discrete set, so the problem is split
    exactly into one CP-SAT model per pair, solved in order of a valid lower bound (mean stage time,
    no transitions) and skipped once the bound reaches the incumbent. The result is OPTIMAL when every
    pair solved was proven optimal (or infeasible) within the time limit. ``upper_bound`` (ns): only
    plans strictly below it are of interest (the best static plan's objective); INFEASIBLE when none is.
    ``keep``: how many layout pairs' optima to return as candidates (the bound then prunes against the
    worst of them).
    """
    num_layers = cost.cfg.num_hidden_layers
    pairs = []
    for dp in sorted(prefill_opts):
        by_p: dict[Layout, list[PhaseTerms]] = {}
        by_d: dict[Layout, list[PhaseTerms]] = {}
        for t in prefill_opts[dp]:
            by_p.setdefault(t.layout, []).append(t)
        for t in decode_opts.get(dp, []):
            by_d.setdefault(t.layout, []).append(t)
        for lp, po in by_p.items():
            for ld, do in by_d.items():
                p_lb = {id(t): t.coef * _stage_lower_bound(t, num_layers) for t in po}
                d_lb = {id(t): t.coef * _stage_lower_bound(t, num_layers) for t in do}
                fits = [p_lb[id(a)] + d_lb[id(b)] for a in po for b in do if _pair_fits(cost, a, b)]
                if fits:
                    pairs.append((min(fits), f"{lp}/{ld}", (po, do)))
    return _solve_in_bound_order(
        pairs, lambda data, left, ub: _solve_pair(cost, data[0], data[1], left, ub), time_limit_s, upper_bound,
        keep)


def _solve_layout_static(cost: CostModel, opts: list[PhaseTerms], time_limit_s: float, upper_bound: int | None):
    """CP-SAT over one static layout: batch cap selection and stage partition."""
    model = cp_model.CpModel()
    num_layers = cost.cfg.num_hidden_layers
    cap = cost.device_capacity_bytes
    parts = _Partitions(model, num_layers)
    sels = [(model.NewBoolVar(f"z_{t.batch}"), t) for t in opts]
    model.AddExactlyOne([v for v, _ in sels])
    n = parts.get("s", opts[0].layout)
    for sel, t in sels:
        for s in range(t.pp):
            model.Add(_busy_expr(t, s, n[s]) + n[s] * t.kv_layer_bytes <= cap).OnlyEnforceIf(sel)
    total = _add_phase_time(model, parts, "s", sels, num_layers)
    if upper_bound is not None:
        model.Add(total < upper_bound)
    _least_times_last(model, [v for v, _ in sels], n, [total])
    model.Minimize(total)
    status, solver = solve_model(model, time_limit_s)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, None
    t = next(t for sel, t in sels if solver.Value(sel))
    counts = tuple(solver.Value(v) for v in n)
    status, objective_ns = _exact_objective(solver, status, evaluate_static(cost, t, counts))
    return status, (objective_ns, t, t, counts, counts)


def solve_static(cost: CostModel, opts: list[PhaseTerms], time_limit_s: float = 30.0, keep: int = 1) -> SearchResult:
    """Minimize the static (single layout, chunked prefill) objective over ``opts``: one CP-SAT model per
    layout, in order of a valid lower bound, pruned against the ``keep``-th best layout (as
    :func:`solve_seesaw`)."""
    num_layers = cost.cfg.num_hidden_layers
    by_layout: dict[Layout, list[PhaseTerms]] = {}
    for t in opts:
        if _replica_bytes(t, num_layers, True) * t.layout.tp <= t.layout.replica_size * cost.device_capacity_bytes:
            by_layout.setdefault(t.layout, []).append(t)
    order = [(min(t.coef * _stage_lower_bound(t, num_layers) for t in v), str(k), v) for k, v in by_layout.items()]
    return _solve_in_bound_order(
        order, lambda data, left, ub: _solve_layout_static(cost, data, left, ub), time_limit_s, keep=keep)
