"""OR-Tools CP-SAT formulation of the Seesaw and static planning problems.

Decision variables (per candidate, Boolean selection over the tabulated layouts x batch sizes):
prefill (layout, tokens per batch) ``y_i``, decode (layout, running-sequence cap) ``x_j`` with the same dp,
integer PP stage sizes ``n[phase, layout, s]``, the per-cycle buffer drain ``delta = theta_p - theta_d``,
the cycle count ``C`` (``C * delta >= P``, a CP-SAT multiplication constraint), per-GPU memory
(prefill busy, decode busy, decode-layout KV), reload and swap times. Every expression restates
``objective.evaluate_seesaw`` / ``evaluate_static`` exactly, so the optimum equals exhaustive search's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ortools.sat.python import cp_model

from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.optimize.terms import PhaseTerms, host_buffer_max_tokens, stage_of

_STATUS = {cp_model.OPTIMAL: "OPTIMAL", cp_model.FEASIBLE: "FEASIBLE", cp_model.INFEASIBLE: "INFEASIBLE",
           cp_model.MODEL_INVALID: "MODEL_INVALID", cp_model.UNKNOWN: "UNKNOWN"}


@dataclass(frozen=True)
class CpSatResult:
    status: str
    seconds: float
    objective_ns: int | None
    pre: PhaseTerms | None = None
    dec: PhaseTerms | None = None
    pcounts: tuple[int, ...] = ()
    dcounts: tuple[int, ...] = ()


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
    return num_layers * t.stage.layer_ns + t.stage.first_ns + t.stage.last_ns + max(t.stage.send_ns, default=0)


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
                (st.send_ns[s] if s < t.pp - 1 else 0)
            model.Add(stage_max >= n[s] * st.layer_ns + extra).OnlyEnforceIf(sel)
        model.Add(total >= t.coef * stage_max).OnlyEnforceIf(sel)
    return total


def _busy_expr(t: PhaseTerms, s: int, n: cp_model.IntVar):
    const = t.ws_fixed_bytes + t.end_weight_bytes(s) + (t.ws_last_bytes if t.last(s) else 0)
    return n * (t.layer_weight_bytes + t.ws_layer_bytes) + const


def _solver(time_limit_s: float) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = time_limit_s
    solver.parameters.num_workers = 1  # deterministic: same inputs give the same plan
    solver.parameters.random_seed = 0
    return solver


def solve_seesaw(cost: CostModel, prefill_opts: dict[int, list[PhaseTerms]],
                 decode_opts: dict[int, list[PhaseTerms]], time_limit_s: float = 60.0) -> CpSatResult:
    """Minimize the Seesaw objective over the given options (keyed by dp). See module docstring."""
    start = time.perf_counter()
    model = cp_model.CpModel()
    num_layers = cost.cfg.num_hidden_layers
    cap = cost.device_capacity_bytes
    parts = _Partitions(model, num_layers)
    ys: list[tuple[cp_model.IntVar, PhaseTerms]] = []
    xs: list[tuple[cp_model.IntVar, PhaseTerms]] = []
    same_lits = []
    dsels = []
    h_hi = max(0, max(host_buffer_max_tokens(cost, dp, r) for dp in prefill_opts for r in (False, True)))
    buffer = model.NewIntVar(0, h_hi, "host_kv_buffer_tokens")

    for dp in sorted(prefill_opts):
        y_dp = [(model.NewBoolVar(f"y_{t.layout}_{t.batch}"), t) for t in prefill_opts[dp]]
        x_dp = [(model.NewBoolVar(f"x_{t.layout}_{t.batch}"), t) for t in decode_opts.get(dp, [])]
        ys += y_dp
        xs += x_dp
        dsel = model.NewBoolVar(f"dp{dp}")
        dsels.append(dsel)
        model.Add(sum(v for v, _ in y_dp) == dsel)
        model.Add(sum(v for v, _ in x_dp) == dsel)
        # layout-level selections and "same layout in both phases"
        u: dict[Layout, list] = {}
        v: dict[Layout, list] = {}
        for sel, t in y_dp:
            u.setdefault(t.layout, []).append(sel)
        for sel, t in x_dp:
            v.setdefault(t.layout, []).append(sel)
        for lay in set(u) & set(v):
            same = model.NewBoolVar(f"same_{lay}")
            model.Add(sum(u[lay]) + sum(v[lay]) == 2).OnlyEnforceIf(same)
            model.Add(sum(u[lay]) + sum(v[lay]) <= 1).OnlyEnforceIf(same.Not())
            for a, b in zip(parts.get("p", lay), parts.get("d", lay)):
                model.Add(a == b).OnlyEnforceIf(same)
            same_lits.append(same)
        # per-GPU memory: max(prefill busy, decode busy) + decode-layout KV <= capacity
        replica = cost.cluster.num_gpus // dp
        for g in range(replica):
            mp = model.NewIntVar(0, cap, f"mp{dp}_{g}")
            md = model.NewIntVar(0, cap, f"md{dp}_{g}")
            kv = model.NewIntVar(0, cap, f"kv{dp}_{g}")
            model.Add(mp + kv <= cap)
            model.Add(md + kv <= cap)
            for sel, t in y_dp:
                s = stage_of(g, t.layout)
                model.Add(mp >= _busy_expr(t, s, parts.get("p", t.layout)[s])).OnlyEnforceIf(sel)
            for sel, t in x_dp:
                s = stage_of(g, t.layout)
                n = parts.get("d", t.layout)[s]
                model.Add(md >= _busy_expr(t, s, n)).OnlyEnforceIf(sel)
                model.Add(kv >= n * t.kv_layer_bytes).OnlyEnforceIf(sel)

    if not ys or not xs:
        return CpSatResult("INFEASIBLE", time.perf_counter() - start, None)
    model.AddExactlyOne(dsels)
    same_any = model.NewBoolVar("same_layout")
    if same_lits:
        model.AddMaxEquality(same_any, same_lits)
    else:
        model.Add(same_any == 0)

    t_pre = _add_phase_time(model, parts, "p", ys, num_layers)
    t_dec = _add_phase_time(model, parts, "d", xs, num_layers)

    # reload (0 when one layout serves both phases) and KV swap
    def reload_and_swap(tag: str, opts):
        r_hi = max(num_layers * t.reload_layer_ns + t.reload_first_ns + t.reload_last_ns for _, t in opts)
        w_hi = max(num_layers * t.swap_layer_ns for _, t in opts)
        reload = model.NewIntVar(0, r_hi, f"R_{tag}")
        swap = model.NewIntVar(0, w_hi, f"S_{tag}")
        for sel, t in opts:
            n = parts.get(tag, t.layout)
            for s in range(t.pp):
                model.Add(reload >= n[s] * t.reload_layer_ns + t.end_reload_ns(s)).OnlyEnforceIf([sel, same_any.Not()])
                model.Add(swap >= n[s] * t.swap_layer_ns).OnlyEnforceIf(sel)
        return reload, swap, w_hi, r_hi

    r_pre, s_out, so_hi, rp_hi = reload_and_swap("p", ys)
    r_dec, s_in, si_hi, rd_hi = reload_and_swap("d", xs)
    # Host buffer and cycles. Per prefill option the cycle count C is a constant of the buffer bound:
    # C * (theta_p - theta_d) >= P with theta_p + B_p <= H <= H_max, and the objective grows with C, so
    # the buffer is as large as host memory allows: C = ceil(P / (H_max - B_p)). Transitions then cost
    # C * R_d + (C - 1) * R_p, linear in the reload times.
    t_hi = (rp_hi + rd_hi) * max(cost.replica_work(dp).prompt_tokens for dp in prefill_opts)
    trans = model.NewIntVar(0, t_hi, "transition_ns")
    for sel, t in ys:
        prompt = cost.replica_work(t.layout.dp).prompt_tokens
        for resharding, lit in ((True, same_any.Not()), (False, same_any)):
            h_max = host_buffer_max_tokens(cost, t.layout.dp, resharding)
            room = h_max - t.batch
            if room < 1:
                model.AddBoolOr([sel.Not(), lit.Not()])
                continue
            c = -(-prompt // room)
            model.Add(buffer <= h_max).OnlyEnforceIf([sel, lit])
            model.Add(buffer >= t.batch + -(-prompt // c)).OnlyEnforceIf([sel, lit])
            if resharding:
                model.Add(trans >= c * r_dec + (c - 1) * r_pre).OnlyEnforceIf([sel, lit])
    e_out = model.NewIntVar(0, so_hi, "swap_out_exposed")
    e_in = model.NewIntVar(0, si_hi, "swap_in_exposed")
    model.Add(e_out >= s_out - t_pre)
    model.Add(e_in >= s_in - t_dec)
    model.Minimize(t_pre + t_dec + trans + e_out + e_in)

    solver = _solver(time_limit_s)
    status = solver.Solve(model)
    seconds = time.perf_counter() - start
    name = _STATUS.get(status, str(status))
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return CpSatResult(name, seconds, None)
    pre = next(t for sel, t in ys if solver.Value(sel))
    dec = next(t for sel, t in xs if solver.Value(sel))
    pc = tuple(solver.Value(n) for n in parts.get("p", pre.layout))
    dc = tuple(solver.Value(n) for n in parts.get("d", dec.layout))
    return CpSatResult(name, seconds, int(solver.ObjectiveValue()), pre, dec, pc, dc)


def solve_static(cost: CostModel, opts: list[PhaseTerms], time_limit_s: float = 30.0) -> CpSatResult:
    """Minimize the static (single layout, chunked prefill) objective over ``opts``."""
    start = time.perf_counter()
    if not opts:
        return CpSatResult("INFEASIBLE", 0.0, None)
    model = cp_model.CpModel()
    num_layers = cost.cfg.num_hidden_layers
    cap = cost.device_capacity_bytes
    parts = _Partitions(model, num_layers)
    sels = [(model.NewBoolVar(f"z_{t.layout}_{t.batch}"), t) for t in opts]
    model.AddExactlyOne(v for v, _ in sels)
    for sel, t in sels:
        n = parts.get("s", t.layout)
        for s in range(t.pp):
            model.Add(_busy_expr(t, s, n[s]) + n[s] * t.kv_layer_bytes <= cap).OnlyEnforceIf(sel)
    total = _add_phase_time(model, parts, "s", sels, num_layers)
    model.Minimize(total)
    solver = _solver(time_limit_s)
    status = solver.Solve(model)
    seconds = time.perf_counter() - start
    name = _STATUS.get(status, str(status))
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return CpSatResult(name, seconds, None)
    t = next(t for sel, t in sels if solver.Value(sel))
    counts = tuple(solver.Value(n) for n in parts.get("s", t.layout))
    return CpSatResult(name, seconds, int(solver.ObjectiveValue()), t, t, counts, counts)
