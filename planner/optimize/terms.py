"""Integer cost terms of one phase choice (layout + batch), shared by CP-SAT and exhaustive search.

All times are integer nanoseconds and all memory integer bytes, per DP replica / per GPU. A phase's
cost under a PP stage partition ``counts`` (layers per stage) is linear in each ``counts[s]``; the
functions here evaluate it, and ``cpsat.py`` states the very same expressions as linear constraints.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel, StageCost, decode_part, prefill_part, to_ns


@dataclass(frozen=True)
class PhaseTerms:
    """One phase under one layout and batch size.

    ``time = coef * max_s stage.stage_ns(s, counts[s])``; stage ``s`` holds
    ``counts[s] * layer_weight_bytes`` (+ first/last extras) of weights and ``ws_fixed_bytes +
    counts[s] * ws_layer_bytes`` (+ ``ws_last_bytes`` on the last stage) of workspace; decode-layout KV
    is ``counts[s] * kv_layer_bytes`` per GPU.
    """

    layout: Layout
    batch: int  # prefill: tokens per batch; decode / static: running sequences
    stage: StageCost
    coef: int  # stage-times per phase (prefill: batches + pp - 1; decode: steps * pp)
    layer_weight_bytes: int
    first_weight_bytes: int
    last_weight_bytes: int
    ws_fixed_bytes: int
    ws_layer_bytes: int
    ws_last_bytes: int
    kv_tokens: int  # decode/static: GPU KV tokens needed by the running batch (0 for prefill)
    kv_layer_bytes: int  # kv_tokens * KV bytes per token per layer on one rank
    reload_layer_ns: int  # host->device copy of one layer's shard
    reload_first_ns: int
    reload_last_ns: int
    tied_weight_bytes: int  # counted once when one stage holds both ends (pp == 1)
    reload_tied_ns: int
    swap_layer_ns: int  # KV swap (out for prefill, in for decode) of all prompt tokens, per layer
    max_batched_tokens: int = 0  # static: chunked-prefill token budget per step

    @property
    def pp(self) -> int:
        return self.layout.pp

    def last(self, s: int) -> bool:
        return s == self.layout.pp - 1

    def stage_time_ns(self, counts: tuple[int, ...]) -> int:
        return max(self.stage.stage_ns(s, n) for s, n in enumerate(counts))

    def time_ns(self, counts: tuple[int, ...]) -> int:
        return self.coef * self.stage_time_ns(counts)

    def end_weight_bytes(self, s: int) -> int:
        """Embedding / lm-head bytes on stage ``s`` (a tied tensor once when one stage holds both)."""
        first, last = s == 0, self.last(s)
        return ((self.first_weight_bytes if first else 0) + (self.last_weight_bytes if last else 0)
                - (self.tied_weight_bytes if first and last else 0))

    def end_reload_ns(self, s: int) -> int:
        first, last = s == 0, self.last(s)
        return ((self.reload_first_ns if first else 0) + (self.reload_last_ns if last else 0)
                - (self.reload_tied_ns if first and last else 0))

    def weight_bytes(self, s: int, n: int) -> int:
        return n * self.layer_weight_bytes + self.end_weight_bytes(s)

    def busy_bytes(self, s: int, n: int) -> int:
        """Weights plus workspace of stage ``s`` (KV cache excluded)."""
        return (self.weight_bytes(s, n) + self.ws_fixed_bytes + n * self.ws_layer_bytes
                + (self.ws_last_bytes if self.last(s) else 0))

    def reload_ns(self, counts: tuple[int, ...]) -> int:
        return max(n * self.reload_layer_ns + self.end_reload_ns(s) for s, n in enumerate(counts))

    def swap_ns(self, counts: tuple[int, ...]) -> int:
        return max(counts) * self.swap_layer_ns


def _common(cost: CostModel, layout: Layout) -> dict:
    mem = cost.memory_terms(layout.tp, layout.ep)
    return dict(
        layer_weight_bytes=mem.layer_weight_bytes,
        first_weight_bytes=mem.first_weight_bytes,
        last_weight_bytes=mem.last_weight_bytes,
        reload_layer_ns=cost.host_ns(mem.layer_weight_bytes),
        reload_first_ns=cost.host_ns(mem.first_weight_bytes),
        reload_last_ns=cost.host_ns(mem.last_weight_bytes),
        tied_weight_bytes=mem.tied_weight_bytes,
        reload_tied_ns=cost.host_ns(mem.tied_weight_bytes),
    )


def prefill_terms(cost: CostModel, layout: Layout, tokens: int) -> PhaseTerms:
    """Prefill in batches of at most ``tokens`` prompt tokens, pipelined over ``pp`` stages.

    Time = ``(batches + pp - 1)`` stage-times of the mean batch (pipeline fill and drain once, DESIGN.md 8),
    with the batches the runtime packs from the trace's whole prompts (:meth:`CostModel.prefill_batches`).
    Workspace (sized for a full batch): activations of the batch plus its KV before swap-out (prefill
    layout) plus last-token logits.
    """
    work = cost.replica_work(layout.dp)
    mem = cost.memory_terms(layout.tp, layout.ep)
    packed = cost.prefill_batches(layout.dp, tokens)
    part = prefill_part(work, packed.mean_tokens)
    seqs = math.ceil(tokens / work.prefill_seq_len)
    return PhaseTerms(
        layout=layout, batch=tokens,
        stage=cost.stage_cost(layout, (part,)),
        coef=packed.batches + layout.pp - 1,
        ws_fixed_bytes=tokens * mem.act_bytes_per_token,
        ws_layer_bytes=tokens * mem.kv_bytes_per_token_layer,
        ws_last_bytes=seqs * mem.logits_bytes_per_seq,
        kv_tokens=0, kv_layer_bytes=0,
        swap_layer_ns=cost.host_ns(work.prompt_tokens * mem.kv_bytes_per_token_layer),
        **_common(cost, layout),
    )


def decode_terms(cost: CostModel, layout: Layout, seqs: int) -> PhaseTerms:
    """Decode with at most ``seqs`` running sequences split into ``pp`` micro-batches.

    Steps and mean batch from :meth:`CostModel.decode_schedule` (continuous batching over the trace, the
    drain included); each step runs ``pp`` micro-batches of ``mean batch / pp`` sequences through the
    slowest stage. Memory is sized for the full batch: KV ``ceil(seqs * mean context)`` tokens, workspace
    of ``ceil(seqs / pp)`` sequences.
    """
    work = cost.replica_work(layout.dp)
    mem = cost.memory_terms(layout.tp, layout.ep)
    micro = math.ceil(seqs / layout.pp)
    kv_tokens = math.ceil(seqs * work.decode_context_len)
    sched = cost.decode_schedule(layout.dp, seqs)
    return PhaseTerms(
        layout=layout, batch=seqs,
        stage=cost.stage_cost(layout, (decode_part(work, sched.mean_batch / layout.pp),)),
        coef=sched.steps * layout.pp,
        ws_fixed_bytes=micro * mem.act_bytes_per_token,
        ws_layer_bytes=0,
        ws_last_bytes=micro * mem.logits_bytes_per_seq,
        kv_tokens=kv_tokens, kv_layer_bytes=kv_tokens * mem.kv_bytes_per_token_layer,
        swap_layer_ns=cost.host_ns(work.prompt_tokens * mem.kv_bytes_per_token_layer),
        **_common(cost, layout),
    )


def static_terms(cost: CostModel, layout: Layout, seqs: int) -> PhaseTerms:
    """Single layout with chunked prefill (vLLM): up to ``seqs`` sequences decode each step beside a prompt
    chunk of up to ``q = ceil(seqs * P / D)`` tokens, the chunk that keeps the batch full in steady state
    (the optimally tuned chunk size, DESIGN.md 8). Steps: the decode schedule of :func:`decode_terms`
    (continuous batching over the trace, the drain included), or ``ceil(P / q)`` when prefill needs more
    (short outputs); each step carries the mean decode batch and ``P / steps`` prompt tokens, and the
    engine's host time for that many requests (``cost.engine``, when given).
    """
    work = cost.replica_work(layout.dp)
    mem = cost.memory_terms(layout.tp, layout.ep)
    pp = layout.pp
    sched = cost.decode_schedule(layout.dp, seqs)
    q = math.ceil(seqs * work.prompt_tokens / max(1, work.output_tokens))
    steps = max(sched.steps, math.ceil(work.prompt_tokens / q))
    micro_seqs = math.ceil(seqs / pp)
    micro_q = math.ceil(q / pp)
    parts = (decode_part(work, sched.seq_steps / steps / pp), prefill_part(work, work.prompt_tokens / steps / pp))
    kv_tokens = math.ceil(seqs * work.decode_context_len)
    stage = cost.stage_cost(layout, parts)
    if cost.engine is not None:  # the engine's host time per step, on the first stage (it issues the step)
        rows = parts[0].num_seqs + parts[1].num_seqs
        stage = replace(stage, first_ns=stage.first_ns + to_ns(cost.engine.host_s(rows)))
    return PhaseTerms(
        layout=layout, batch=seqs,
        stage=stage,
        coef=steps * pp,
        ws_fixed_bytes=(micro_seqs + micro_q) * mem.act_bytes_per_token,
        ws_layer_bytes=0,
        ws_last_bytes=micro_seqs * mem.logits_bytes_per_seq,
        kv_tokens=kv_tokens, kv_layer_bytes=kv_tokens * mem.kv_bytes_per_token_layer,
        swap_layer_ns=0,
        max_batched_tokens=seqs + q,
        **_common(cost, layout),
    )


def host_buffer_max_tokens(cost: CostModel, dp: int, resharding: bool) -> int:
    """Largest host KV buffer (tokens per replica) that host memory allows.

    Per node: the host copies of both layouts' weight shards (about 2x the model per node when a node
    holds whole replicas, Seesaw paper / DESIGN.md 1; none when not re-sharding) plus the buffers of the
    replica share it hosts. Returns a negative number when even the weights do not fit.
    """
    cl = cost.cluster
    gpn = min(cl.gpus_per_node, cl.num_gpus)
    replica = cl.num_gpus // dp
    weights = 2 * cost.model_weight_bytes if resharding else 0
    host_w = weights if replica <= gpn else math.ceil(weights * gpn / replica)
    free = cost.host_capacity_bytes - host_w
    if free < 0:
        return -1
    return free * replica // (cost.kv_bytes_per_token * gpn)


def stage_of(position: int, layout: Layout) -> int:
    """PP stage of GPU ``position`` (0 .. tp*pp-1) inside its replica."""
    return position // layout.tp
