"""From a search point (layouts, batches, stage partitions) to a full plan with its closed-form prediction.

A Seesaw point becomes a :class:`SeesawPlan` (host buffer, thresholds, device KV capacity, memory use);
a static point a :class:`StaticPlan` (the vLLM-style baseline). The predictions here are the closed form's
(:mod:`seesaw.planner.optimize.objective`); :mod:`seesaw.planner.optimize.rank` replaces them with
simulated ones.
"""
from __future__ import annotations

from seesaw.planner.cost.model import NS, CostModel
from seesaw.planner.decision import (MemoryUse, PhaseBreakdown, PhaseLayout, Prediction, SeesawPlan,
                                     SolverInfo, StaticPlan)
from seesaw.planner.optimize.objective import evaluate_seesaw, evaluate_static
from seesaw.planner.optimize.space import PAGE_SIZE_TOKENS, to_stage_layers
from seesaw.planner.optimize.terms import PhaseTerms, host_buffer_max_tokens, stage_of

Point = tuple[int, PhaseTerms, PhaseTerms, tuple[int, ...], tuple[int, ...]]  # objective, pre, dec, pc, dc


def kv_capacity_tokens(cost: CostModel, pre: PhaseTerms, dec: PhaseTerms, pc, dc) -> int:
    """Largest decode-layout KV cache (tokens per replica, whole pages) the chosen plan leaves room for."""
    cap = cost.device_capacity_bytes
    per_tok = cost.memory_terms(dec.layout.tp, dec.layout.ep).kv_bytes_per_token_layer
    best = None
    for g in range(dec.layout.replica_size):
        sp, sd = stage_of(g, pre.layout), stage_of(g, dec.layout)
        free = cap - max(pre.busy_bytes(sp, pc[sp]), dec.busy_bytes(sd, dc[sd]))
        tokens = free // (dc[sd] * per_tok)
        best = tokens if best is None else min(best, tokens)
    return max(dec.kv_tokens, best // PAGE_SIZE_TOKENS * PAGE_SIZE_TOKENS)


def memory_use(cost: CostModel, busy: int, kv: int, weights: int, host_w: int, host_kv: int) -> MemoryUse:
    """Peak device memory of the fullest GPU and host memory per node (bytes)."""
    return MemoryUse(
        weights_bytes=weights, kv_cache_bytes=kv, workspace_bytes=busy - weights,
        reserve_bytes=int(cost.cluster.gpu.runtime_reserve_gb * 1e9),
        capacity_bytes=int(cost.cluster.gpu.memory_bytes),
        host_weights_bytes=host_w, host_kv_buffer_bytes=host_kv,
        host_capacity_bytes=cost.host_capacity_bytes)


def closed_form_prediction(cost: CostModel, breakdown: PhaseBreakdown, memory: MemoryUse) -> Prediction:
    """Throughput of the whole workload over ``breakdown``'s total time."""
    w = cost.workload
    total = breakdown.total_s
    return Prediction(breakdown, (w.prompt_tokens + w.output_tokens) / total, w.output_tokens / total, memory)


def static_plan(cost: CostModel, point: Point) -> StaticPlan:
    """The static (chunked-prefill, one layout) plan of a static search point."""
    _, t, _, counts, _ = point
    ev = evaluate_static(cost, t, counts)
    assert ev is not None
    weights = max(t.weight_bytes(s, n) for s, n in enumerate(counts))
    kv_tokens = kv_capacity_tokens(cost, t, t, counts, counts)
    bd = PhaseBreakdown(prefill_s=0.0, decode_s=ev.objective_ns / NS, transition_s=0.0, kv_swap_s=0.0, transitions=0)
    mem = memory_use(cost, ev.peak_busy_bytes, ev.peak_kv_bytes, weights, 0, 0)
    return StaticPlan(PhaseLayout(t.layout, to_stage_layers(counts)), kv_tokens, t.batch,
                      t.max_batched_tokens, closed_form_prediction(cost, bd, mem))


def seesaw_plan(cost: CostModel, point: Point, best_static: StaticPlan | None, solver: SolverInfo,
                notes: tuple[str, ...] = ()) -> SeesawPlan:
    """The phase-split plan of a Seesaw search point: buffer and threshold from the cycle count, device
    KV capacity from the memory left, host memory per node."""
    objective, pre, dec, pc, dc = point
    ev = evaluate_seesaw(cost, pre, dec, pc, dc)
    assert ev is not None and ev.objective_ns == objective, "solver and objective disagree"
    cluster = cost.cluster
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
    mem = memory_use(cost, ev.peak_busy_bytes, ev.peak_kv_bytes, weights, host_w, host_kv)
    assert ev.host_buffer_tokens <= host_buffer_max_tokens(cost, pre.layout.dp, resharding)
    return SeesawPlan(
        prefill=PhaseLayout(pre.layout, to_stage_layers(pc)),
        decode=PhaseLayout(dec.layout, to_stage_layers(dc)),
        page_size_tokens=PAGE_SIZE_TOKENS,
        gpu_kv_tokens=kv_capacity_tokens(cost, pre, dec, pc, dc),
        host_kv_buffer_tokens=ev.host_buffer_tokens,
        max_prefill_tokens=pre.batch,
        decode_max_seqs=dec.batch,
        prefill_to_decode_threshold_tokens=ev.prefill_to_decode_threshold_tokens,
        decode_to_prefill_threshold_tokens=0,
        prediction=closed_form_prediction(cost, bd, mem),
        best_static=best_static, solver=solver, notes=notes)


def as_static_choice(s: StaticPlan, solver: SolverInfo, notes: tuple[str, ...]) -> SeesawPlan:
    """The plan when the best choice keeps one layout: no host buffer, the engine's knobs as the caps."""
    return SeesawPlan(prefill=s.phase, decode=s.phase, page_size_tokens=PAGE_SIZE_TOKENS,
                      gpu_kv_tokens=s.gpu_kv_tokens, host_kv_buffer_tokens=0,
                      max_prefill_tokens=s.max_batched_tokens, decode_max_seqs=s.decode_max_seqs,
                      prefill_to_decode_threshold_tokens=0, decode_to_prefill_threshold_tokens=0,
                      prediction=s.prediction, best_static=s, solver=solver, notes=notes)


def layout_need_bytes(cost: CostModel, lay) -> int:
    """Bytes the fullest GPU needs in ``lay`` with near-even stages and the smallest decode batch (one
    sequence per micro-batch): weights, workspace and that batch's KV cache."""
    from seesaw.planner.optimize.terms import decode_terms  # noqa: PLC0415

    q, r = divmod(cost.cfg.num_hidden_layers, lay.pp)
    counts = tuple([q + 1] * r + [q] * (lay.pp - r))
    t = decode_terms(cost, lay, max(1, lay.pp))
    return max(t.busy_bytes(s, n) + n * t.kv_layer_bytes for s, n in enumerate(counts))


def _usable(cost: CostModel) -> str:
    gpu = cost.cluster.gpu
    return (f"{cost.device_capacity_bytes / 1e9:.1f} GB usable per GPU: {gpu.memory_fraction:g} of {gpu.memory_gb:g} GB "
            f"less {gpu.runtime_reserve_gb:g} GB reserve")


def min_memory_shortfall(cost: CostModel) -> str:
    """One line saying by how much the model misses the GPUs' memory in its most frugal layout."""
    needs = [layout_need_bytes(cost, lay) for dp in cost.dp_degrees() or [1] for lay in cost.layouts(dp)]
    gpu = cost.cluster.gpu
    if not needs:
        return f"no valid layout of {cost.cfg.name} on {cost.cluster.num_gpus}x{gpu.name}"
    best, cap = min(needs), cost.device_capacity_bytes
    return (f"{cost.cfg.name} does not fit on {cost.cluster.num_gpus}x{gpu.name}: the smallest layout needs "
            f"{best / 1e9:.1f} GB per GPU, short by {(best - cap) / 1e9:.1f} GB ({_usable(cost)})")


def pinned_shortfall(cost: CostModel, pins: dict[str, object]) -> str:
    """Why no plan keeps the pinned layouts (``{"--prefill": layout, ...}``): each pin that cannot hold the
    model even at the smallest batch, by how much; otherwise the pair together (the decode layout's KV cache
    must also fit beside the prefill layout's weights on every GPU)."""
    cap = cost.device_capacity_bytes
    short = [f"{field} {lay}: {cost.cfg.name} needs {need / 1e9:.1f} GB per GPU, short by {(need - cap) / 1e9:.1f} GB"
             for field, lay in pins.items() if lay is not None
             for need in [layout_need_bytes(cost, lay)] if need > cap]
    if short:
        return "; ".join(short) + f" ({_usable(cost)})"
    return (f"{' and '.join(f'{f} {lay}' for f, lay in pins.items() if lay is not None)} each fit alone, but no "
            f"batch sizes and stages keep the prefill weights and the decode KV cache within memory ({_usable(cost)})")
