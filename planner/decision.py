"""What the optimizer decides: the planner's output, and codegen's input.

Token counts are per data-parallel replica unless a name says otherwise. Times are seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from seesaw.ir.layout import Layout


@dataclass(frozen=True)
class PhaseLayout:
    """A phase's layout plus its PP stage partition.

    ``stage_layers[i] = (start, stop)``: stage ``i`` runs decoder layers ``start <= layer < stop``; stage 0
    also holds the embedding, the last stage the final norm and the lm head. Stages are contiguous and
    cover ``0..num_layers``; they may be uneven.
    """

    layout: Layout
    stage_layers: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class PhaseBreakdown:
    """Predicted time of the whole workload by phase (seconds, all DP replicas in parallel)."""

    prefill_s: float
    decode_s: float
    transition_s: float
    kv_swap_s: float  # swap-out/in time not hidden behind compute
    transitions: int

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s + self.transition_s + self.kv_swap_s


@dataclass(frozen=True)
class MemoryUse:
    """Peak device memory of the fullest GPU, bytes, and host memory per node, bytes."""

    weights_bytes: int
    kv_cache_bytes: int
    workspace_bytes: int
    reserve_bytes: int
    capacity_bytes: int
    host_weights_bytes: int
    host_kv_buffer_bytes: int
    host_capacity_bytes: int

    @property
    def device_total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.workspace_bytes + self.reserve_bytes


@dataclass(frozen=True)
class Prediction:
    """Predicted whole-workload throughput (tokens/s over all replicas).

    ``method``: "simulated" (request-level simulation of the engine over the trace) or "closed-form" (the
    search's objective); ``closed_form_s``: the closed form's total time (s) beside a simulated prediction.
    """

    breakdown: PhaseBreakdown
    tokens_per_s: float  # (prompt + output tokens) / total time
    output_tokens_per_s: float
    memory: MemoryUse
    method: str = "closed-form"
    closed_form_s: float | None = None

    @property
    def gap_vs_closed_form(self) -> float | None:
        """``simulated / closed-form - 1`` of the total time (None for a closed-form prediction)."""
        if self.closed_form_s is None or not self.closed_form_s:
            return None
        return self.breakdown.total_s / self.closed_form_s - 1.0


@dataclass(frozen=True)
class StaticPlan:
    """Best single-layout plan (what vLLM runs): chunked prefill mixed into decode steps.

    ``decode_max_seqs`` / ``max_batched_tokens`` / ``gpu_memory_utilization`` are the engine's
    ``max_num_seqs`` / ``max_num_batched_tokens`` / ``gpu_memory_utilization`` (tuned by simulation when the
    prediction is simulated); ``engine`` names the engine they are for.
    """

    phase: PhaseLayout
    gpu_kv_tokens: int
    decode_max_seqs: int
    max_batched_tokens: int  # chunked-prefill token budget per step
    prediction: Prediction
    gpu_memory_utilization: float | None = None
    engine: str = "vllm"


@dataclass(frozen=True)
class SolverInfo:
    name: str  # "cp-sat" or "exhaustive"
    status: str  # OPTIMAL, FEASIBLE, INFEASIBLE, ...
    seconds: float
    objective: int | None = None  # the integer objective the solver minimized (ns)


@dataclass(frozen=True)
class SeesawPlan:
    """Re-sharding plan: prefill and decode layouts (same dp), buffers, caps and thresholds.

    ``static`` is True when re-sharding was forbidden or the best plan uses one layout for both phases.
    """

    prefill: PhaseLayout
    decode: PhaseLayout
    page_size_tokens: int
    gpu_kv_tokens: int  # decode-layout paged cache capacity per DP replica
    host_kv_buffer_tokens: int  # per DP replica
    max_prefill_tokens: int  # tokens per prefill batch
    decode_max_seqs: int  # running sequences cap per DP replica
    prefill_to_decode_threshold_tokens: int  # switch to decode once the host buffer holds this many
    decode_to_prefill_threshold_tokens: int  # switch back once it has drained to this many
    prediction: Prediction
    best_static: StaticPlan | None
    solver: SolverInfo
    notes: tuple[str, ...] = field(default=())

    @property
    def is_static(self) -> bool:
        return self.prefill == self.decode
