"""The analytic cost model evaluated on the IR (DESIGN.md section 4), as integer tables for the search.

Everything the optimizer needs about a layout is linear in the PP stage sizes ``n_s`` (layers in stage
``s``) once the batch shape is fixed:

- stage time (ns)      = ``n_s * layer_ns + first_ns*[s == 0] + last_ns*[s == pp-1] + send_ns[s] + fixed_ns``
- stage weights (B)    = ``n_s * layer_weight_bytes + first/last extras``
- stage KV (B/token)   = ``n_s * kv_bytes_per_token_layer``
- reload / swap times  = ``n_s * per-layer ns`` (host link per GPU)

so the same integers feed CP-SAT's linear constraints and the exhaustive search's evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

from seesaw.ir import ModelConfig, ModelGraph, build_graph
from seesaw.ir.layout import Layout
from seesaw.ir.ops import PassShape
from seesaw.ir.passes import apply_tp
from seesaw.ir.sharding import valid_ep_degrees, valid_tp_degrees
from seesaw.planner.cost.roofline import hidden_send_s, ops_time_s, step_overhead_s
from seesaw.planner.cost.schedule import DecodeSchedule, PrefillBatches, decode_schedule, prefill_batches
from seesaw.planner.hardware import Cluster
from seesaw.planner.workload import Workload

NS = 1_000_000_000


def to_ns(seconds: float) -> int:
    """Seconds -> integer nanoseconds (rounded up so a positive cost never becomes 0)."""
    return int(math.ceil(seconds * NS - 1e-6)) if seconds > 0 else 0


@dataclass(frozen=True)
class StageCost:
    """Integer time terms (ns) of one forward pass of one micro-batch, see module docstring."""

    layer_ns: int
    first_ns: int
    last_ns: int
    send_ns: tuple[int, ...]  # per stage boundary s -> s+1
    fixed_ns: int = 0  # per micro-batch on every stage (profile's step_overhead_us)

    def stage_ns(self, stage: int, layers: int) -> int:
        pp = len(self.send_ns) + 1
        extra = self.fixed_ns + (self.send_ns[stage] if stage < pp - 1 else 0)
        if stage == 0:
            extra += self.first_ns
        if stage == pp - 1:
            extra += self.last_ns
        return layers * self.layer_ns + extra


@dataclass(frozen=True)
class MemoryTerms:
    """Per-rank byte counts of a TP degree (DESIGN.md section 4 memory model)."""

    layer_weight_bytes: int  # one decoder layer's shard
    first_weight_bytes: int  # embedding shard (stage 0)
    last_weight_bytes: int  # final norm + lm head shard (last stage; tied embeddings counted again)
    tied_weight_bytes: int  # shard of a tied embedding/lm-head tensor (held once when pp == 1)
    kv_bytes_per_token_layer: int  # K and V of one token in one layer on this rank
    act_bytes_per_token: int  # peak live activations of one layer per token
    logits_bytes_per_seq: int  # fp32 logits of one sequence's last token on this rank


@dataclass(frozen=True)
class ReplicaWork:
    """One DP replica's share of the workload (token totals rounded up)."""

    requests: int
    prompt_tokens: int
    output_tokens: int
    prefill_seq_len: float  # token-weighted mean prompt length sum(p^2)/sum(p): sets attention FLOPs
    decode_context_len: float  # time-weighted mean context of a running sequence
    max_prompt_len: int


class CostModel:
    """Cost tables for one (model, cluster, workload).

    Raises :class:`seesaw.ir.errors.InputError` (via the IR) for impossible TP degrees.
    """

    def __init__(self, cfg: ModelConfig, cluster: Cluster, workload: Workload, engine=None) -> None:
        """``engine``: the serving engine of the static baseline (an
        :class:`~seesaw.planner.hardware.engines.EngineSpec`), whose host time per step the static closed form
        charges; None charges none."""
        self.cfg = cfg
        self.cluster = cluster
        self.workload = workload
        self.engine = engine
        self.graph: ModelGraph = build_graph(cfg)
        self.dtype_bytes = cluster.gpu.dtype_bytes

    # ---- layouts -------------------------------------------------------------------------------
    @cached_property
    def tp_degrees(self) -> list[int]:
        """TP degrees the model's heads allow that fit inside one node."""
        gpn = self.cluster.gpus_per_node
        return [t for t in valid_tp_degrees(self.cfg) if t <= gpn and gpn % t == 0]

    def layouts(self, dp: int) -> list[Layout]:
        """All (dp, tp, pp, ep) layouts with this dp on the cluster's GPUs (pp <= layers; ep: every expert-parallel
        degree the model allows with tp, 1 for a dense model)."""
        n = self.cluster.num_gpus
        if n % dp:
            return []
        replica = n // dp
        return [
            Layout(dp, tp, replica // tp, ep)
            for tp in self.tp_degrees
            if replica % tp == 0 and replica // tp <= self.cfg.num_hidden_layers
            for ep in valid_ep_degrees(self.cfg, tp)
        ]

    #: The representative batches that pick a phase's expert-parallel degree (:meth:`candidate_layouts`).
    EP_PICK_PREFILL_TOKENS = 4096
    EP_PICK_DECODE_SEQS = 128

    def candidate_layouts(self, dp: int, phase: str = "static") -> list[Layout]:
        """The layouts of :meth:`layouts` the search considers for ``phase`` (``prefill``, ``decode`` or
        ``static``): per ``(dp, tp, pp)`` one ``ep``, the one whose decoder layer this model times fastest at a
        representative batch of the phase (:attr:`EP_PICK_PREFILL_TOKENS` prompt tokens, :attr:`EP_PICK_DECODE_SEQS`
        decoding sequences, their sum for ``static``, where only the layouts the model's serving engine runs
        count: :meth:`EngineSpec.runs_layout`; ties to the smaller ``ep``). The variants differ by a few
        percent (the busiest group's excess and the EP kernel's rate against the activation rows a group gathers)
        or by the TP degrees only EP allows; keeping them all would fill the simulated shortlist with near-copies
        of one layout. A pinned layout may still name any of :meth:`layouts`. Raises ValueError for another
        ``phase``."""
        if phase not in ("prefill", "decode", "static"):
            raise ValueError(f"phase must be prefill, decode or static, got {phase!r}")
        groups: dict[tuple[int, int, int], list[Layout]] = {}
        for lay in self.layouts(dp):
            if phase == "static" and self.engine is not None and not self.engine.runs_layout(lay.tp, lay.ep):
                continue  # the static baseline is a layout its engine can run
            groups.setdefault((lay.dp, lay.tp, lay.pp), []).append(lay)
        work = self.replica_work(dp)
        parts = {"prefill": prefill_part(work, self.EP_PICK_PREFILL_TOKENS),
                 "decode": decode_part(work, self.EP_PICK_DECODE_SEQS)}
        chosen = ("prefill", "decode") if phase == "static" else (phase,)

        def layer_ns(lay: Layout) -> tuple[int, int]:
            return sum(self.stage_cost(lay, (parts[p],)).layer_ns for p in chosen), lay.ep

        return [opts[0] if len(opts) == 1 else min(opts, key=layer_ns) for opts in groups.values()]

    def dp_degrees(self) -> list[int]:
        return [d for d in range(1, self.cluster.num_gpus + 1) if self.cluster.num_gpus % d == 0 and self.layouts(d)]

    # ---- workload --------------------------------------------------------------------------------
    @lru_cache(maxsize=None)
    def replica_work(self, dp: int) -> ReplicaWork:
        w = self.workload
        sq = sum(p * p for p in w.prompt_lens)
        return ReplicaWork(
            requests=math.ceil(w.num_requests / dp),
            prompt_tokens=math.ceil(w.prompt_tokens / dp),
            output_tokens=math.ceil(w.output_tokens / dp),
            prefill_seq_len=sq / w.prompt_tokens,
            decode_context_len=w.decode_mean_context_len,
            max_prompt_len=w.max_prompt_len,
        )

    @lru_cache(maxsize=None)
    def prefill_batches(self, dp: int, budget_tokens: int) -> PrefillBatches:
        """Prefill batches of the replica with the most of them under a budget of ``budget_tokens`` per
        batch (:func:`~seesaw.planner.cost.schedule.prefill_batches` over its round-robin share)."""
        return max((prefill_batches(w.prompt_lens, budget_tokens) for w in self._replica_shares(dp)),
                   key=lambda b: (b.batches, b.tokens))

    @lru_cache(maxsize=None)
    def decode_schedule(self, dp: int, seqs: int) -> DecodeSchedule:
        """Decode steps of the slowest replica with ``seqs`` running sequences at most
        (:func:`~seesaw.planner.cost.schedule.decode_schedule` over its round-robin share of the requests,
        as the runtime deals them)."""
        return max((decode_schedule(w.output_lens, seqs) for w in self._replica_shares(dp)),
                   key=lambda s: (s.steps, s.seq_steps))

    @lru_cache(maxsize=None)
    def _replica_shares(self, dp: int) -> list[Workload]:
        """Each replica's requests, dealt round-robin as the runtime deals them (:meth:`Workload.split`;
        with more replicas than requests, the replicas that get one)."""
        return self.workload.split(min(dp, self.workload.num_requests))

    # ---- per-TP graph terms ----------------------------------------------------------------------
    @lru_cache(maxsize=None)
    def tp_graph(self, tp: int, ep: int = 1) -> ModelGraph:
        """The IR with ``tp``-way tensor parallelism (``ep``-way expert parallelism inside it) applied: each rank's
        ops and collectives."""
        return apply_tp(self.graph, tp, ep)

    @lru_cache(maxsize=None)
    def memory_terms(self, tp: int, ep: int = 1) -> MemoryTerms:
        """Per-rank byte counts under ``tp``-way TP with ``ep``-way EP (rank 0's: every expert group holds as
        many experts)."""
        g = self.tp_graph(tp, ep)
        d = self.dtype_bytes
        cfg = self.cfg
        kv_heads_rank = max(1, cfg.num_key_value_heads // tp)
        layers = cfg.num_hidden_layers  # the mean layer: a checkpoint may leave some layers' modules unquantized
        return MemoryTerms(
            layer_weight_bytes=-(-sum(g.layer_weight_bytes(i, tp, d) for i in range(layers)) // layers),
            first_weight_bytes=sum(op.weight_bytes(tp, d) for op in g.pre_ops()),
            last_weight_bytes=sum(op.weight_bytes(tp, d) for op in g.post_ops()),
            tied_weight_bytes=self._tied_bytes(g, tp),
            kv_bytes_per_token_layer=2 * kv_heads_rank * cfg.head_dim * (cfg.kv_cache_dtype_bytes or d),
            act_bytes_per_token=d * (2 * cfg.hidden_size + 3 * cfg.intermediate_size // tp),
            logits_bytes_per_seq=4 * math.ceil(cfg.vocab_size / tp),
        )

    def _tied_bytes(self, g: ModelGraph, tp: int) -> int:
        pre = {w.name: w for op in g.pre_ops() for w in op.weights}
        shared = [w for op in g.post_ops() for w in op.weights if w.name in pre]
        return sum(w.local_bytes(tp, self.dtype_bytes) for w in shared)

    @lru_cache(maxsize=None)
    def stage_cost(self, layout: Layout, parts: tuple[PassShape, ...]) -> StageCost:
        """Integer stage-time terms of one micro-batch made of ``parts`` under ``layout``."""
        g = self.tp_graph(layout.tp, layout.ep)
        layer_s = ops_time_s(g.layer_ops(0), parts, layout.tp, self.cluster)
        first_s = ops_time_s(g.pre_ops(), parts, layout.tp, self.cluster)
        last_s = ops_time_s(g.post_ops(), parts, layout.tp, self.cluster)
        sends = tuple(
            to_ns(hidden_send_s(parts, self.cfg.hidden_size, self.cluster, self.boundary_spans_nodes(layout, s)))
            for s in range(layout.pp - 1)
        )
        return StageCost(to_ns(layer_s), to_ns(first_s), to_ns(last_s), sends, to_ns(step_overhead_s(self.cluster)))

    def boundary_spans_nodes(self, layout: Layout, stage: int) -> bool:
        """Whether any replica's send from ``stage`` to ``stage + 1`` crosses a node boundary."""
        gpn = self.cluster.gpus_per_node
        for dp_rank in range(layout.dp):
            for tp_rank in range(layout.tp):
                a = layout.rank(dp_rank, stage, tp_rank)
                b = layout.rank(dp_rank, stage + 1, tp_rank)
                if a // gpn != b // gpn:
                    return True
        return False

    # ---- host link -------------------------------------------------------------------------------
    def host_ns(self, nbytes: float) -> int:
        """Host<->device copy time (ns) of ``nbytes`` over one GPU's host link."""
        return to_ns(self.cluster.host_to_device_s(nbytes))

    def stage_weight_bytes(self, layout: Layout, counts: tuple[int, ...]) -> list[int]:
        """Weight bytes one rank of each PP stage holds under ``layout`` with ``counts`` layers per stage
        (embedding on stage 0, final norm and lm head on the last; a tied tensor once when pp == 1)."""
        mem = self.memory_terms(layout.tp, layout.ep)
        last = len(counts) - 1
        return [n * mem.layer_weight_bytes + (mem.first_weight_bytes if s == 0 else 0)
                + (mem.last_weight_bytes if s == last else 0) - (mem.tied_weight_bytes if last == 0 else 0)
                for s, n in enumerate(counts)]

    def reload_s(self, layout: Layout, counts: tuple[int, ...]) -> float:
        """Seconds to switch *to* ``layout``: every rank copies its weight shard from host memory, so the
        largest stage's shard over one GPU's host link (DESIGN.md section 1)."""
        return max(self.cluster.host_to_device_s(b) for b in self.stage_weight_bytes(layout, counts))

    @property
    def model_weight_bytes(self) -> int:
        """Bytes of all weights (quantized tensors in their stored dtypes, the rest in the GPU's dtype)."""
        return self.graph.weight_bytes(dtype_bytes=self.dtype_bytes)

    @property
    def kv_bytes_per_token(self) -> int:
        """KV bytes of one token over all layers and heads (the host buffer's unit), in the KV-cache dtype."""
        c = self.cfg
        return c.num_hidden_layers * self.graph.kv_bytes_per_token_per_layer(self.dtype_bytes)

    @property
    def device_capacity_bytes(self) -> int:
        """Usable device memory per GPU: the budgeted share of the capacity less the runtime reserve
        (:attr:`GPUSpec.budget_bytes`)."""
        return self.cluster.gpu.budget_bytes

    @property
    def host_capacity_bytes(self) -> int:
        return int(self.cluster.host_memory_gb * 1e9)


def prefill_part(work: ReplicaWork, tokens: float) -> PassShape:
    """A prefill batch of ``tokens`` prompt tokens (sequences at the token-weighted mean length)."""
    s = work.prefill_seq_len
    return PassShape(num_seqs=tokens / s, query_tokens=s, context_len=s)


def decode_part(work: ReplicaWork, seqs: float) -> PassShape:
    """One decode step of ``seqs`` sequences at the workload's mean running context."""
    return PassShape(num_seqs=seqs, query_tokens=1, context_len=work.decode_context_len)
