"""Planning entry point: cost tables -> search (CP-SAT or exhaustive) -> :class:`SeesawPlan`."""
from __future__ import annotations

from typing import Literal

from seesaw.ir import ModelConfig
from seesaw.ir.errors import InputError
from seesaw.planner.cost.model import NS, CostModel
from seesaw.planner.decision import (MemoryUse, PhaseBreakdown, PhaseLayout, Prediction, SeesawPlan,
                                     SolverInfo, StaticPlan)
from seesaw.planner.hardware import Cluster
from seesaw.planner.optimize import cpsat, exhaustive
from seesaw.planner.optimize.objective import evaluate_seesaw, evaluate_static
from seesaw.planner.optimize.space import PAGE_SIZE_TOKENS, SearchOptions, SearchSpace, to_stage_layers
from seesaw.planner.optimize.terms import (PhaseTerms, decode_terms, host_buffer_max_tokens, prefill_terms,
                                           stage_of, static_terms)
from seesaw.planner.workload import Workload

Search = Literal["cpsat", "exhaustive"]


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


def _kv_capacity_tokens(cost: CostModel, pre: PhaseTerms, dec: PhaseTerms, pc, dc) -> int:
    """Largest decode-layout KV cache (tokens per replica, whole pages) the chosen plan leaves room for."""
    cap = cost.device_capacity_bytes
    per_tok = cost.memory_terms(dec.layout.tp).kv_bytes_per_token_layer
    best = None
    for g in range(dec.layout.replica_size):
        sp, sd = stage_of(g, pre.layout), stage_of(g, dec.layout)
        free = cap - max(pre.busy_bytes(sp, pc[sp]), dec.busy_bytes(sd, dc[sd]))
        tokens = free // (dc[sd] * per_tok)
        best = tokens if best is None else min(best, tokens)
    return max(dec.kv_tokens, best // PAGE_SIZE_TOKENS * PAGE_SIZE_TOKENS)


def _memory(cost: CostModel, busy: int, kv: int, weights: int, host_w: int, host_kv: int) -> MemoryUse:
    return MemoryUse(
        weights_bytes=weights, kv_cache_bytes=kv, workspace_bytes=busy - weights,
        reserve_bytes=int(cost.cluster.gpu.runtime_reserve_gb * 1e9),
        capacity_bytes=int(cost.cluster.gpu.memory_bytes),
        host_weights_bytes=host_w, host_kv_buffer_bytes=host_kv,
        host_capacity_bytes=cost.host_capacity_bytes)


def _prediction(cost: CostModel, breakdown: PhaseBreakdown, memory: MemoryUse) -> Prediction:
    w = cost.workload
    total = breakdown.total_s
    return Prediction(breakdown, (w.prompt_tokens + w.output_tokens) / total, w.output_tokens / total, memory)


def _static_plan(cost: CostModel, t: PhaseTerms, counts: tuple[int, ...]) -> StaticPlan:
    ev = evaluate_static(cost, t, counts)
    assert ev is not None
    weights = max(t.weight_bytes(s, n) for s, n in enumerate(counts))
    kv_tokens = _kv_capacity_tokens(cost, t, t, counts, counts)
    bd = PhaseBreakdown(prefill_s=0.0, decode_s=ev.objective_ns / NS, transition_s=0.0, kv_swap_s=0.0, transitions=0)
    mem = _memory(cost, ev.peak_busy_bytes, ev.peak_kv_bytes, weights, 0, 0)
    return StaticPlan(PhaseLayout(t.layout, to_stage_layers(counts)), kv_tokens, t.batch,
                      t.max_batched_tokens, _prediction(cost, bd, mem))


def _min_memory_shortfall(cost: CostModel) -> str:
    """One line saying by how much the model misses the GPUs' memory in its most frugal layout."""
    best = None
    for dp in cost.dp_degrees() or [1]:
        for lay in cost.layouts(dp):
            q, r = divmod(cost.cfg.num_hidden_layers, lay.pp)
            counts = tuple([q + 1] * r + [q] * (lay.pp - r))
            t = decode_terms(cost, lay, max(1, lay.pp))
            need = max(t.busy_bytes(s, n) + n * t.kv_layer_bytes for s, n in enumerate(counts))
            best = need if best is None else min(best, need)
    cap = cost.device_capacity_bytes
    gpu = cost.cluster.gpu
    if best is None:
        return f"no valid layout of {cost.cfg.name} on {cost.cluster.num_gpus}x{gpu.name}"
    return (f"{cost.cfg.name} does not fit on {cost.cluster.num_gpus}x{gpu.name}: the smallest layout needs "
            f"{best / 1e9:.1f} GB per GPU but {cap / 1e9:.1f} GB are usable "
            f"({gpu.memory_gb:g} GB less {gpu.runtime_reserve_gb:g} GB reserve): short by {(best - cap) / 1e9:.1f} GB")


def plan(cfg: ModelConfig, cluster: Cluster, workload: Workload, options: SearchOptions | None = None,
         search: Search = "cpsat", time_limit_s: float = 60.0) -> SeesawPlan:
    """Choose per-phase layouts, stage partitions, buffers, caps and thresholds.

    Raises :class:`InputError` for impossible pins and when the model cannot fit (naming the shortfall).
    """
    options = options or SearchOptions()
    cost = CostModel(cfg, cluster, workload)
    space = SearchSpace(cost, options)
    pre_opts, dec_opts, static_opts = build_options(cost, space)
    if search == "cpsat":
        static_res = cpsat.solve_static(cost, static_opts, time_limit_s)
    else:
        static_res = exhaustive.search_static(cost, static_opts)
    best_static = _static_plan(cost, static_res.pre, static_res.pcounts) if static_res.objective_ns else None
    notes: list[str] = []

    res = None
    statuses = {static_res.status}
    pinned = options.prefill is not None or options.decode is not None
    if not options.static and pre_opts:
        # unpinned, a re-sharding plan is kept only when it beats the best static one: CP-SAT may skip
        # (and prove away) every pair that cannot, which is most of the search on large instances
        beat = static_res.objective_ns if not pinned and static_res.status == "OPTIMAL" else None
        res = (cpsat.solve_seesaw(cost, pre_opts, dec_opts, time_limit_s, upper_bound=beat) if search == "cpsat"
               else exhaustive.search_seesaw(cost, pre_opts, dec_opts))
        statuses.add(res.status)
        if res.objective_ns is None:
            res = None
    if res is None and best_static is None:
        if "UNKNOWN" in statuses:
            raise InputError("--time-limit", f"the solver found no plan within {time_limit_s:g} s; allow more time")
        if options.prefill or options.decode:
            raise InputError("--prefill/--decode", f"no plan with the pinned layouts fits: {_min_memory_shortfall(cost)}")
        raise InputError("model", _min_memory_shortfall(cost))

    use_static = res is None or (
        not pinned and static_res.objective_ns is not None and static_res.objective_ns <= res.objective_ns)
    solver_res = static_res if use_static else res
    status = "OPTIMAL" if statuses <= {"OPTIMAL", "INFEASIBLE"} else "FEASIBLE"
    solver = SolverInfo("cp-sat" if search == "cpsat" else "exhaustive", status,
                        static_res.seconds + (res.seconds if res else 0.0), solver_res.objective_ns)
    if use_static:
        if not options.static:
            notes.append("static: re-sharding does not pay under the cost model; the best plan keeps one layout")
        s = best_static
        return SeesawPlan(prefill=s.phase, decode=s.phase, page_size_tokens=PAGE_SIZE_TOKENS,
                          gpu_kv_tokens=s.gpu_kv_tokens, host_kv_buffer_tokens=0,
                          max_prefill_tokens=s.max_batched_tokens, decode_max_seqs=s.decode_max_seqs,
                          prefill_to_decode_threshold_tokens=0, decode_to_prefill_threshold_tokens=0,
                          prediction=s.prediction, best_static=s, solver=solver, notes=tuple(notes))

    pre, dec, pc, dc = res.pre, res.dec, res.pcounts, res.dcounts
    ev = evaluate_seesaw(cost, pre, dec, pc, dc)
    assert ev is not None and ev.objective_ns == res.objective_ns, "solver and objective disagree"
    if best_static and static_res.objective_ns < res.objective_ns:
        notes.append("pinned layouts predict less throughput than the best static layout")
    resharding = pre.layout != dec.layout
    replica = cluster.num_gpus // pre.layout.dp
    gpn = min(cluster.gpus_per_node, cluster.num_gpus)
    share = gpn / replica
    host_w = int(2 * cost.model_weight_bytes * min(1.0, share)) if resharding else 0
    host_kv = int(ev.host_buffer_tokens * cost.kv_bytes_per_token * share)
    weights = max(max(pre.weight_bytes(s, n) for s, n in enumerate(pc)),
                  max(dec.weight_bytes(s, n) for s, n in enumerate(dc)))
    bd = PhaseBreakdown(ev.prefill_ns / NS, ev.decode_ns / NS, ev.transition_ns / NS, ev.swap_exposed_ns / NS,
                        ev.transitions)
    mem = _memory(cost, ev.peak_busy_bytes, ev.peak_kv_bytes, weights, host_w, host_kv)
    assert ev.host_buffer_tokens <= host_buffer_max_tokens(cost, pre.layout.dp, resharding)
    return SeesawPlan(
        prefill=PhaseLayout(pre.layout, to_stage_layers(pc)),
        decode=PhaseLayout(dec.layout, to_stage_layers(dc)),
        page_size_tokens=PAGE_SIZE_TOKENS,
        gpu_kv_tokens=_kv_capacity_tokens(cost, pre, dec, pc, dc),
        host_kv_buffer_tokens=ev.host_buffer_tokens,
        max_prefill_tokens=pre.batch,
        decode_max_seqs=dec.batch,
        prefill_to_decode_threshold_tokens=ev.prefill_to_decode_threshold_tokens,
        decode_to_prefill_threshold_tokens=0,
        prediction=_prediction(cost, bd, mem),
        best_static=best_static, solver=solver, notes=tuple(notes))
