"""Lower a planner decision (:class:`~seesaw.planner.decision.SeesawPlan`) and the IR into an
:class:`~seesaw.codegen.plan.ExecutionPlan` (DESIGN.md section 3).

For each phase the layout's rank map, process groups, per-rank weight shard maps and per-rank programs
are read from the IR lowered for that phase (:func:`seesaw.ir.passes.lower`): nothing about weight names,
shapes or sharding is re-derived here. Shard ranges come from :func:`seesaw.ir.sharding.shard_range`.

Process groups (ids per phase, created by every rank in id order):

* TP groups first, when ``tp > 1``: one per ``(dp_rank, pp_rank)`` in that order, id
  ``dp_rank * pp + pp_rank``, ranks in ``tp_rank`` order;
* then PP groups, when ``pp > 1``: one per ``(dp_rank, tp_rank)``, ranks in ``pp_rank`` order.

Under expert parallelism (``ep > 1``) a rank's shard map and its ``moe_experts`` instructions list only the
experts its expert group holds (:func:`seesaw.ir.sharding.expert_range`); the one all-reduce after the experts
over the TP group sums every group's part, so no other group is needed.

No DP groups are emitted: inference replicas never communicate. Collectives carry the rank's TP group;
send/recv use global ranks (``peer``), the same ``dp_rank`` and ``tp_rank`` on the neighbouring stage.
"""
from __future__ import annotations

from collections.abc import Mapping
from importlib import metadata
from typing import Any

import networkx as nx

from seesaw.codegen.plan import (
    SCHEMA_VERSION, BestStatic, Breakdown, ExecutionPlan, Instruction, KVPlan, LayoutSpec,
    MemoryPrediction, ModelInfo, PhasePlan, PredictionPlan, ProcessGroup, RankPlan, SchedulePlan,
    ShardSlice, SolverSummary, Summary,
)
from seesaw.ir.config import ModelConfig
from seesaw.ir.errors import InputError
from seesaw.ir.graph import ModelGraph, build_graph
from seesaw.ir.layout import Layout
from seesaw.ir.ops import Op, OpKind, WeightSpec
from seesaw.ir.passes import lower
from seesaw.ir.sharding import holds, shard_range
from seesaw.planner.decision import PhaseLayout, Prediction, SeesawPlan

_GB = 1e9  # memory_per_gpu_gb is in decimal gigabytes


def generator_string() -> str:
    """``"seesaw <installed version>"`` (``"seesaw unknown"`` when the package metadata is absent)."""
    try:
        return f"seesaw {metadata.version('seesaw')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "seesaw unknown"


def process_groups(layout: Layout) -> list[ProcessGroup]:
    """The phase's TP groups then PP groups (see the module docstring for ids and order)."""
    groups: list[ProcessGroup] = []
    if layout.tp > 1:
        for d in range(layout.dp):
            for p in range(layout.pp):
                ranks = [layout.rank(d, p, t) for t in range(layout.tp)]
                groups.append(ProcessGroup(id=len(groups), kind="tp", ranks=ranks))
    if layout.pp > 1:
        for d in range(layout.dp):
            for t in range(layout.tp):
                ranks = [layout.rank(d, p, t) for p in range(layout.pp)]
                groups.append(ProcessGroup(id=len(groups), kind="pp", ranks=ranks))
    return groups


def tp_group_id(layout: Layout, dp_rank: int, pp_rank: int) -> int | None:
    """Id of the TP group of ranks at ``(dp_rank, pp_rank)``, or None when ``tp == 1``."""
    return dp_rank * layout.pp + pp_rank if layout.tp > 1 else None


def stage_program_ops(graph: ModelGraph, stage: int) -> list[Op]:
    """Ops of pipeline stage ``stage`` of a lowered graph, in topological order.

    Ties are broken by node insertion order (the IR's program order), so the order is deterministic and
    equals the IR's program order whenever that is itself topological.
    """
    g = graph.g
    index = {n: i for i, n in enumerate(g.nodes)}
    sub = g.subgraph([n for n, d in g.nodes(data=True) if d["stage"] == stage])
    return [g.nodes[n]["op"] for n in nx.lexicographical_topological_sort(sub, key=index.__getitem__)]


def _stage_weights(ops: list[Op]) -> list[WeightSpec]:
    seen: dict[str, WeightSpec] = {}
    for op in ops:
        for w in op.weights:
            seen.setdefault(w.name, w)
    return list(seen.values())


def _shard(weight: WeightSpec, tp_rank: int, tp: int) -> ShardSlice | None:
    rng = shard_range(weight, tp_rank, tp)
    if rng is None:
        return None
    dim, start, stop = rng
    if start == 0 and stop == weight.shape[dim]:
        return None  # the whole tensor (tp == 1): written as null, like a replicated one
    return ShardSlice(dim=dim, start=start, stop=stop)


def _instruction(op: Op, layout: Layout, dp_rank: int, tp_rank: int, tp_group: int | None) -> Instruction:
    """One rank's instruction for ``op``; a mixture of experts' lists only the expert tensors the rank holds."""
    kind = op.kind
    group = peer = None
    if kind in (OpKind.ALL_REDUCE, OpKind.ALL_GATHER):
        group = tp_group
    elif kind is OpKind.SEND:
        peer = layout.rank(dp_rank, op.dims["dst_stage"], tp_rank)
    elif kind is OpKind.RECV:
        peer = layout.rank(dp_rank, op.dims["src_stage"], tp_rank)
    weights = op.weights if layout.ep == 1 else [w for w in op.weights if holds(w, tp_rank, layout.tp)]
    return Instruction(op=kind.value, name=op.name, layer=op.layer, group=group, peer=peer,
                       weights=[w.name for w in weights])


#: A phase of more ranks than this lists only DP replica 0's ranks (``ranks_listed: "first-replica"``; the
#: runtime expands the others): a 70B model's programs are ~10^3 instructions per rank, so listing all of
#: 4,096 ranks would take minutes to build and gigabytes of JSON.
LIST_ALL_RANKS_UP_TO = 64


def build_phase_plan(cfg: ModelConfig, phase: PhaseLayout, field: str = "phase",
                     list_all: bool | None = None) -> PhasePlan:
    """Lower one phase: rank map, process groups, shard maps and programs of all ``dp*tp*pp`` ranks, or
    of DP replica 0's ranks only (``list_all=False``; default: all up to :data:`LIST_ALL_RANKS_UP_TO` ranks).

    Raises :class:`InputError` (field ``<field>.<ir field>``, e.g. ``decode.tp``) when the IR rejects the
    layout or the stage partition.
    """
    layout = phase.layout
    try:
        graph = lower(cfg, layout, [tuple(s) for s in phase.stage_layers])
    except InputError as err:
        raise InputError(f"{field}.{err.field}", err.problem, err.source) from None
    stages = list(graph.g.graph["stage_layers"])
    last = len(stages) - 1
    stage_ops = [stage_program_ops(graph, s) for s in range(len(stages))]
    stage_weights = [_stage_weights(ops) for ops in stage_ops]
    sample = Instruction(op="sample", name="sample")
    if list_all is None:
        list_all = layout.world_size <= LIST_ALL_RANKS_UP_TO or layout.dp == 1
    ranks: list[RankPlan] = []
    for rank in range(layout.world_size if list_all else layout.tp * layout.pp):
        dp_rank, pp_rank, tp_rank = layout.coords(rank)
        tp_group = tp_group_id(layout, dp_rank, pp_rank)
        program = [_instruction(op, layout, dp_rank, tp_rank, tp_group) for op in stage_ops[pp_rank]]
        if pp_rank == last:
            program.append(sample)
        shards = {w.name: _shard(w, tp_rank, layout.tp) for w in stage_weights[pp_rank]
                  if layout.ep == 1 or holds(w, tp_rank, layout.tp)}
        ranks.append(RankPlan(rank=rank, dp_rank=dp_rank, pp_rank=pp_rank, tp_rank=tp_rank,
                              layers=stages[pp_rank], weight_shards=shards, program=program))
    return PhasePlan(layout=_layout_spec(layout),
                     stage_layers=stages, process_groups=process_groups(layout), ranks=ranks,
                     ranks_listed="all" if list_all else "first-replica")


def _as_dict(obj: Any, method: str, what: str) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    if method == "model_dump":
        data = obj.model_dump(mode="json")
        if "num_gpus" not in data and hasattr(obj, "num_gpus"):
            data["num_gpus"] = int(obj.num_gpus)  # validation checks dp*tp*pp against it
        return data
    if hasattr(obj, method):
        return dict(getattr(obj, method)())
    raise TypeError(f"{what} must be a mapping or have .{method}(), got {type(obj).__name__}")


def _layout_spec(layout: Layout) -> LayoutSpec:
    return LayoutSpec(dp=layout.dp, tp=layout.tp, pp=layout.pp, ep=layout.ep)


def _prediction(pred: Prediction) -> PredictionPlan:
    b, m = pred.breakdown, pred.memory
    memory = MemoryPrediction(
        weights_bytes=m.weights_bytes, kv_cache_bytes=m.kv_cache_bytes, workspace_bytes=m.workspace_bytes,
        reserve_bytes=m.reserve_bytes, capacity_bytes=m.capacity_bytes,
        device_total_bytes=m.device_total_bytes, host_weights_bytes=m.host_weights_bytes,
        host_kv_buffer_bytes=m.host_kv_buffer_bytes, host_capacity_bytes=m.host_capacity_bytes)
    return PredictionPlan(total_s=b.total_s, prefill_s=b.prefill_s, decode_s=b.decode_s,
                          transition_s=b.transition_s, kv_swap_s=b.kv_swap_s, transitions=b.transitions,
                          tokens_per_s=pred.tokens_per_s, output_tokens_per_s=pred.output_tokens_per_s,
                          memory=memory, method=pred.method, closed_form_total_s=pred.closed_form_s)


def _max_batched_tokens(plan: SeesawPlan) -> int | None:
    """Chunked-prefill budget of a static plan: the best static plan's when it is this layout."""
    if not plan.is_static:
        return None
    bs = plan.best_static
    if bs is not None and bs.phase == plan.prefill:
        return bs.max_batched_tokens
    return plan.max_prefill_tokens


def build_summary(plan: SeesawPlan, pred: PredictionPlan) -> Summary:
    """The flat summary of ``plan`` (keys as the planning issue requires)."""
    bs = plan.best_static
    best = speedup = None
    if bs is not None:
        lay = bs.phase.layout
        best = BestStatic(dp=lay.dp, tp=lay.tp, pp=lay.pp, ep=lay.ep, predicted_tokens_per_s=bs.prediction.tokens_per_s,
                          engine=bs.engine, max_num_seqs=bs.decode_max_seqs, max_num_batched_tokens=bs.max_batched_tokens,
                          gpu_memory_utilization=bs.gpu_memory_utilization)
        if bs.prediction.tokens_per_s > 0:
            speedup = plan.prediction.tokens_per_s / bs.prediction.tokens_per_s
    return Summary(
        prefill=_layout_spec(plan.prefill.layout), decode=_layout_spec(plan.decode.layout),
        host_kv_buffer_tokens=plan.host_kv_buffer_tokens, gpu_kv_tokens=plan.gpu_kv_tokens,
        max_prefill_tokens=plan.max_prefill_tokens, decode_max_seqs=plan.decode_max_seqs,
        predicted_tokens_per_s=pred.tokens_per_s, predicted_output_tokens_per_s=pred.output_tokens_per_s,
        prediction_method=pred.method,
        closed_form_tokens_per_s=(pred.tokens_per_s * pred.total_s / pred.closed_form_total_s
                                  if pred.closed_form_total_s else None),
        simulation_gap=plan.prediction.gap_vs_closed_form,
        best_static=best, speedup_vs_best_static=speedup,
        solver=SolverSummary(name=plan.solver.name, status=plan.solver.status, seconds=plan.solver.seconds),
        static=plan.is_static,
        breakdown=Breakdown(prefill_s=pred.prefill_s, decode_s=pred.decode_s, transition_s=pred.transition_s,
                            kv_swap_s=pred.kv_swap_s, transitions=pred.transitions),
        memory_per_gpu_gb=pred.memory.device_total_bytes / _GB,
    )


def build_execution_plan(cfg: ModelConfig, plan: SeesawPlan, cluster: Any, workload: Any, *,
                         graph: ModelGraph | None = None, list_all_ranks: bool | None = None) -> ExecutionPlan:
    """Lower ``plan`` for model ``cfg`` into the static :class:`ExecutionPlan`.

    ``cluster``: a ``seesaw.planner.hardware.Cluster`` (its ``model_dump()`` is stored; ``num_gpus`` is
    added when the dump lacks it) or a plain dict holding ``num_gpus``. ``workload``: a
    ``seesaw.planner.workload.Workload`` (its ``summary()`` is stored) or a dict. ``graph``: the unsharded
    IR of ``cfg`` when the caller already built it (only used for the model's size figures).
    ``list_all_ranks``: list every rank's plan, or DP replica 0's only (default: as :func:`build_phase_plan`).

    Raises :class:`InputError` when the two phases' ``dp`` differ (field ``decode.dp``), the page size is
    not positive (field ``page_size_tokens``), the layouts do
    not use the cluster's GPUs (field ``prefill.layout`` / ``decode.layout``), or the IR rejects a
    layout or stage partition (field ``prefill.tp``, ``decode.stage_layers``, ...).
    """
    if plan.prefill.layout.dp != plan.decode.layout.dp:
        raise InputError("decode.dp", f"decode dp={plan.decode.layout.dp} differs from prefill "
                         f"dp={plan.prefill.layout.dp} (DP must be the same in both phases)")
    if plan.page_size_tokens < 1:
        raise InputError("page_size_tokens", f"must be >= 1, got {plan.page_size_tokens}")
    cluster_dict = _as_dict(cluster, "model_dump", "cluster")
    num_gpus = cluster_dict.get("num_gpus")
    for name, phase in (("prefill", plan.prefill), ("decode", plan.decode)):
        if num_gpus is not None and phase.layout.world_size != num_gpus:
            raise InputError(f"{name}.layout", f"{phase.layout} uses {phase.layout.world_size} GPUs, "
                             f"the cluster has {num_gpus}")
    graph = graph if graph is not None else build_graph(cfg)
    pred = _prediction(plan.prediction)
    kv_per_token = cfg.num_hidden_layers * graph.kv_bytes_per_token_per_layer()
    return ExecutionPlan(
        schema_version=SCHEMA_VERSION,
        generator=generator_string(),
        model=ModelInfo(name=cfg.name, fingerprint=cfg.fingerprint(), num_parameters=graph.num_parameters(),
                        weight_bytes=graph.weight_bytes()),
        cluster=cluster_dict,
        workload=_as_dict(workload, "summary", "workload"),
        prefill=build_phase_plan(cfg, plan.prefill, "prefill", list_all_ranks),
        decode=build_phase_plan(cfg, plan.decode, "decode", list_all_ranks),
        kv=KVPlan(page_size_tokens=plan.page_size_tokens, gpu_kv_tokens_per_replica=plan.gpu_kv_tokens,
                  gpu_pages_per_rank=-(-plan.gpu_kv_tokens // plan.page_size_tokens),
                  host_buffer_tokens_per_replica=plan.host_kv_buffer_tokens, kv_bytes_per_token=kv_per_token),
        schedule=SchedulePlan(max_prefill_tokens=plan.max_prefill_tokens, decode_max_seqs=plan.decode_max_seqs,
                              prefill_to_decode_threshold_tokens=plan.prefill_to_decode_threshold_tokens,
                              decode_to_prefill_threshold_tokens=plan.decode_to_prefill_threshold_tokens,
                              static=plan.is_static, max_batched_tokens=_max_batched_tokens(plan)),
        prediction=pred,
        summary=build_summary(plan, pred),
    )
