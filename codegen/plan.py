"""The static execution plan: a versioned pydantic model, written to disk as JSON (DESIGN.md section 3).

The plan is the only contract between planning and execution: the runtime reads this document (and the
IR's sharding rules) and recomputes nothing. Every model forbids extra fields so that a typo in a
hand-edited plan is a validation error, not a silently ignored key.

Conventions:

* Token counts are per data-parallel replica unless a name says otherwise; times are seconds; sizes are
  bytes unless the name ends in ``_gb`` (decimal gigabytes, 1e9 bytes).
* Ranks follow :class:`seesaw.ir.layout.Layout`: ``rank = dp_rank*(pp*tp) + pp_rank*tp + tp_rank``.
* Layer ranges are half-open ``[start, stop)``.
* Process-group ids are per phase: ``prefill.process_groups`` and ``decode.process_groups`` each number
  their groups ``0..n-1`` in the order every rank must create them.
* A phase lists every rank's plan (``ranks_listed: "all"``), or, on a large cluster, only the ranks of DP
  replica 0 (``"first-replica"``): every replica runs the same programs on the same shards, so the plan of
  rank ``d*(pp*tp) + r`` is replica 0's rank ``r`` moved to replica ``d`` (its rank, ``dp_rank``, send/recv
  peers and process groups shifted by ``d*(pp*tp)`` ranks). Read a rank's plan with
  :meth:`PhasePlan.rank_plan`, which does that expansion.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_serializer

from seesaw.ir.layout import Layout

SCHEMA_VERSION = "1.3"
"""Version of the plan format written by this code; readers refuse a newer major/minor version."""

HOST_BUFFER_LAYOUT = "[layers, 2, kv_heads, tokens, head_dim]"
"""Shape order of the layout-independent host KV buffer (DESIGN.md section 1, tiered KV buffering)."""

OpName = Literal[
    "embedding", "rmsnorm", "linear", "rope", "attention", "silu_mul", "residual_add", "lm_head",
    "all_reduce", "all_gather", "send", "recv", "sample", "router", "moe_experts",
]
"""Instruction opcodes a runtime worker must implement."""

COLLECTIVE_OPS: frozenset[str] = frozenset({"all_reduce", "all_gather"})
P2P_OPS: frozenset[str] = frozenset({"send", "recv"})


class _Strict(BaseModel):
    """Base: unknown keys are errors (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid")


class LayoutSpec(_Strict):
    """A phase's parallel layout ``(dp, tp, pp)``; ``dp*tp*pp`` is the number of GPUs. ``ep`` (a divisor of
    ``tp``, 1 when absent): the expert groups each TP group splits a mixture of experts' experts over
    (:mod:`seesaw.ir.layout`)."""

    dp: int = Field(ge=1)
    tp: int = Field(ge=1)
    pp: int = Field(ge=1)
    ep: int = Field(default=1, ge=1)

    @property
    def layout(self) -> Layout:
        """The :class:`~seesaw.ir.layout.Layout` this spec writes (ValueError when ``ep`` does not divide ``tp``)."""
        return Layout(self.dp, self.tp, self.pp, self.ep)

    def __str__(self) -> str:
        """The layout's name, as the planner writes it (``pp2``, ``dp2tp4``, ``tp8ep8``)."""
        return str(self.layout)


class ProcessGroup(_Strict):
    """A communication group to create (``torch.distributed.new_group(ranks)``), in ``id`` order."""

    id: int = Field(ge=0)
    kind: Literal["tp", "pp", "dp"]
    ranks: list[int]


class ShardSlice(_Strict):
    """The slice ``[start, stop)`` along dimension ``dim`` of a checkpoint tensor that a rank holds."""

    dim: int = Field(ge=0)
    start: int = Field(ge=0)
    stop: int = Field(ge=0)


class Instruction(_Strict):
    """One step of a rank's program.

    ``group`` is the phase-local process-group id (collectives only); ``peer`` the global rank on the
    other end (``send``/``recv`` only); ``weights`` the checkpoint tensor names the op reads, each of
    which appears in the rank's ``weight_shards``.
    """

    op: OpName
    name: str
    layer: int | None = None
    group: int | None = None
    peer: int | None = None
    weights: list[str] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _drop_empty(self, handler: Any) -> dict[str, Any]:
        # Unset optional fields are left out of the file: a 70B plan has ~10^4 instructions per phase.
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None and v != []}


class RankPlan(_Strict):
    """What one rank holds and runs in one phase.

    ``weight_shards`` maps checkpoint tensor name -> slice held, or ``None`` for the whole (replicated)
    tensor. ``layers`` is the stage's decoder-layer range ``[start, stop)``.
    """

    rank: int = Field(ge=0)
    dp_rank: int = Field(ge=0)
    pp_rank: int = Field(ge=0)
    tp_rank: int = Field(ge=0)
    layers: tuple[int, int]
    weight_shards: dict[str, ShardSlice | None]
    program: list[Instruction]


class PhasePlan(_Strict):
    """One phase (prefill or decode): layout, stage partition, groups, and the ranks' plans.

    ``ranks_listed``: ``"all"`` (``ranks`` holds all ``dp*tp*pp`` ranks) or ``"first-replica"`` (``ranks``
    holds DP replica 0's ``tp*pp`` ranks; :meth:`rank_plan` expands the others). ``process_groups`` always
    lists every group of every replica.
    """

    layout: LayoutSpec
    stage_layers: list[tuple[int, int]]
    process_groups: list[ProcessGroup]
    ranks: list[RankPlan]
    ranks_listed: Literal["all", "first-replica"] = "all"
    _group_cache: dict[tuple[int, ...], int] | None = PrivateAttr(default=None)

    def rank_plan(self, rank: int) -> RankPlan:
        """The plan of global ``rank`` (``0 <= rank < dp*tp*pp``), expanded from replica 0's in the
        ``"first-replica"`` form. Raises IndexError for a rank outside the layout."""
        if self.ranks_listed == "all":
            return self.ranks[rank]
        per_replica = self.layout.tp * self.layout.pp
        if not 0 <= rank < per_replica * self.layout.dp:
            raise IndexError(f"rank {rank} is outside layout {self.layout}")
        dp_rank, local = divmod(rank, per_replica)
        first = self.ranks[local]
        if dp_rank == 0:
            return first
        shift = dp_rank * per_replica
        group_of = self._group_ids()
        ids = {g.id: group_of[tuple(r + shift for r in g.ranks)] for g in self.process_groups
               if g.ranks and max(g.ranks) < per_replica}
        program = [ins.model_copy(update={"group": None if ins.group is None else ids[ins.group],
                                          "peer": None if ins.peer is None else ins.peer + shift})
                   for ins in first.program]
        return first.model_copy(update={"rank": rank, "dp_rank": dp_rank, "program": program})

    def _group_ids(self) -> dict[tuple[int, ...], int]:
        if self._group_cache is None:
            self._group_cache = {tuple(g.ranks): g.id for g in self.process_groups}
        return self._group_cache


class ModelInfo(_Strict):
    """The model: ``fingerprint`` (architecture + dims + dtype) must match the checkpoint's."""

    name: str
    fingerprint: dict[str, Any]
    num_parameters: int = Field(ge=0)
    weight_bytes: int = Field(ge=0)


class KVPlan(_Strict):
    """KV cache sizing.

    ``gpu_pages_per_rank = ceil(gpu_kv_tokens_per_replica / page_size_tokens)``: under the decode layout
    every rank of a replica holds pages for all of the replica's tokens (its layers and head slice).
    ``kv_bytes_per_token = layers * 2 * kv_heads * head_dim * dtype_bytes`` for the whole model
    (DESIGN.md section 4).
    """

    page_size_tokens: int = Field(ge=1)
    gpu_kv_tokens_per_replica: int = Field(ge=0)
    gpu_pages_per_rank: int = Field(ge=0)
    host_buffer_tokens_per_replica: int = Field(ge=0)
    host_buffer_layout: Literal["[layers, 2, kv_heads, tokens, head_dim]"] = HOST_BUFFER_LAYOUT
    kv_bytes_per_token: int = Field(ge=0)


class SchedulePlan(_Strict):
    """Scheduler policy. ``static``: one layout, chunked prefill with ``max_batched_tokens`` per step."""

    max_prefill_tokens: int = Field(ge=0)
    decode_max_seqs: int = Field(ge=0)
    prefill_to_decode_threshold_tokens: int = Field(ge=0)
    decode_to_prefill_threshold_tokens: int = Field(ge=0)
    static: bool
    max_batched_tokens: int | None = None


class MemoryPrediction(_Strict):
    """Peak memory of the fullest GPU (bytes) and host memory per node (bytes)."""

    weights_bytes: int
    kv_cache_bytes: int
    workspace_bytes: int
    reserve_bytes: int
    capacity_bytes: int
    device_total_bytes: int
    host_weights_bytes: int
    host_kv_buffer_bytes: int
    host_capacity_bytes: int


class PredictionPlan(_Strict):
    """Predicted whole-workload time (seconds) and throughput (tokens/s over all replicas).

    ``method``: "simulated" (request-level simulation over the trace) or "closed-form" (the search's
    objective); ``closed_form_total_s``: the closed form's time beside a simulated prediction.
    """

    total_s: float
    prefill_s: float
    decode_s: float
    transition_s: float
    kv_swap_s: float
    transitions: int = Field(ge=0)
    tokens_per_s: float
    output_tokens_per_s: float
    memory: MemoryPrediction
    method: Literal["simulated", "closed-form"] = "closed-form"
    closed_form_total_s: float | None = None


class BestStatic(_Strict):
    """The best single-layout alternative, its predicted throughput and the serving engine's knobs it was
    predicted with (vLLM's names; tuned by simulation when the prediction is simulated)."""

    dp: int = Field(ge=1)
    tp: int = Field(ge=1)
    pp: int = Field(ge=1)
    ep: int = Field(default=1, ge=1)
    predicted_tokens_per_s: float
    engine: str = "vllm"
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None


class SolverSummary(_Strict):
    name: str
    status: str
    seconds: float


class Breakdown(_Strict):
    """Predicted time by phase, seconds (all DP replicas in parallel)."""

    prefill_s: float
    decode_s: float
    transition_s: float
    kv_swap_s: float
    transitions: int = Field(ge=0)


class Summary(_Strict):
    """A flat digest for humans and scripts; must agree with the phases (checked by validation)."""

    prefill: LayoutSpec
    decode: LayoutSpec
    host_kv_buffer_tokens: int
    gpu_kv_tokens: int
    max_prefill_tokens: int
    decode_max_seqs: int
    predicted_tokens_per_s: float
    predicted_output_tokens_per_s: float
    prediction_method: Literal["simulated", "closed-form"] = "closed-form"
    closed_form_tokens_per_s: float | None = None
    simulation_gap: float | None = None  # simulated total time / closed-form total time - 1
    best_static: BestStatic | None
    speedup_vs_best_static: float | None
    solver: SolverSummary
    static: bool
    breakdown: Breakdown
    memory_per_gpu_gb: float


class ExecutionPlan(_Strict):
    """The whole plan file. Write with :meth:`to_json`, read with ``seesaw.codegen.validate_plan_file``."""

    schema_version: str = SCHEMA_VERSION
    generator: str
    model: ModelInfo
    cluster: dict[str, Any]
    workload: dict[str, Any]
    prefill: PhasePlan
    decode: PhasePlan
    kv: KVPlan
    schedule: SchedulePlan
    prediction: PredictionPlan
    summary: Summary

    def to_json(self, *, indent: int | None = None) -> str:
        """The plan as JSON text (compact unless ``indent`` is given)."""
        return self.model_dump_json(indent=indent)

    def phase(self, name: Literal["prefill", "decode"]) -> PhasePlan:
        """``prefill`` or ``decode`` by name."""
        return self.prefill if name == "prefill" else self.decode

