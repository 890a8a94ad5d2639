"""Executes one rank's program of one phase (the plan's ordered instruction list) on a micro-batch.

The plan lists, per rank, the ops in execution order (embedding, norms, projections, RoPE, attention,
collectives with their group, send/recv with their peer, lm head, sample). Data flows through named
registers following the decoder's fixed structure (the IR's op roles): ``x`` is the residual stream,
``h`` the normalized input of a block, ``q/k/v``, ``attn``, ``gate/up/act``, ``route`` (a mixture of experts'
top-k weights and experts) and ``out`` the latest block output that an all-reduce completes and a residual
add consumes.
"""
from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from seesaw.codegen.plan import Instruction, RankPlan
from seesaw.ir.config import ModelConfig
from seesaw.runtime import layers
from seesaw.runtime.attention import paged_decode_attention, prefill_attention
from seesaw.schedule.batch import ForwardBatch
from seesaw.runtime.kv_cache import HostKVBuffer, PagedKVCache, slot_table
from seesaw.runtime.sampling import sample


@dataclass
class RankContext:
    """Everything a rank's program needs besides the batch."""

    cfg: ModelConfig
    rope: layers.Rope
    weights: dict[str, torch.Tensor]  # this phase's shards, on the device
    groups: dict[int, object]  # phase-local process-group id -> torch ProcessGroup
    tp_rank: int
    kv: PagedKVCache  # decode-layout cache (resident across phases)
    host: HostKVBuffer | None
    device: torch.device
    dtype: torch.dtype
    comm_stats: dict | None = None


def _context(pages: list[int], length: int, page_size: int, slots: torch.Tensor):
    """``(first_slot, length)`` when the pages holding ``length`` tokens are consecutive, else the slots."""
    used = -(-length // page_size)
    if all(pages[j + 1] == pages[j] + 1 for j in range(used - 1)):
        return (pages[0] * page_size, length)
    return slots


class _Regs:
    __slots__ = ("x", "h", "residual", "q", "k", "v", "attn", "gate", "up", "act", "out", "logits", "tokens",
                 "cos", "sin", "ids", "ctx_slots", "new_slots", "lens", "last", "contexts", "route")

    def __init__(self) -> None:
        for s in self.__slots__:
            setattr(self, s, None)


_EXPERT = re.compile(r"\.experts\.(\d+)\.")


def _expert_index(name: str) -> int:
    """The expert a checkpoint tensor of a mixture of experts belongs to (``...experts.{j}.w1.weight`` -> j)."""
    m = _EXPERT.search(name)
    if m is None:
        raise ValueError(f"{name} is not an expert's tensor")
    return int(m.group(1))


class PhaseProgram:
    """A compiled program: one closure per instruction.

    ``op_times``: when a list, every :meth:`forward` appends ``{"mode", "context_lens", "ops": [[instruction
    name, seconds], ...]}``, each instruction timed alone (on CUDA with a device synchronize around it), for
    ``seesaw-calibrate``'s in-run op timings.
    """

    def __init__(self, rank_plan: RankPlan, ctx: RankContext, op_times: list | None = None) -> None:
        self.plan = rank_plan
        self.ctx = ctx
        self.op_times = op_times
        cfg = ctx.cfg
        self.d = cfg.head_dim
        self.eps = cfg.rms_norm_eps
        self.scale = self.d ** -0.5
        emb = rank_plan.weight_shards.get("model.embed_tokens.weight")
        self.vocab_start = emb.start if emb is not None else 0
        self.kv_heads = self.kv_head_slice(rank_plan, cfg)
        self.pending: list = []
        self.steps: list[Callable[[_Regs, ForwardBatch], None]] = [self._compile(i) for i in rank_plan.program]

    @staticmethod
    def kv_head_slice(rank_plan: RankPlan, cfg: ModelConfig) -> slice:
        """The global KV heads this rank holds (from its k_proj shard), for the host buffer."""
        shards = rank_plan.weight_shards
        name = next((n for n in shards if n.endswith("self_attn.k_proj.weight")), None)
        sl = shards.get(name) if name else None
        if sl is None:
            return slice(0, cfg.num_key_value_heads)
        return slice(sl.start // cfg.head_dim, sl.stop // cfg.head_dim)

    # -- compilation ------------------------------------------------------------------------------------
    def _w(self, ins: Instruction) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A linear's weight and bias (an FP8 linear also lists its scales, consumed when its weight was loaded)."""
        w = self.ctx.weights[ins.weights[0]]
        b = next((self.ctx.weights[n] for n in ins.weights[1:] if n.endswith(".bias")), None)
        return w, b

    def _compile(self, ins: Instruction) -> Callable[[_Regs, ForwardBatch], None]:
        op, role = ins.op, ins.name.rsplit(".", 1)[-1]
        ctx = self.ctx
        if op == "embedding":
            w = ctx.weights[ins.weights[0]]

            def run(r, b):
                r.x = r.out = layers.vocab_parallel_embedding(r.ids, w, self.vocab_start)
            return run
        if op == "all_reduce":
            group = ctx.groups[ins.group]

            def run(r, b):
                dist.all_reduce(r.out, group=group)
            return run
        if op == "rmsnorm":
            w = ctx.weights[ins.weights[0]]
            if role in ("q_norm", "k_norm"):
                reg = role[0]

                def run(r, b):
                    setattr(r, reg, layers.rmsnorm(getattr(r, reg), w, self.eps))
                return run
            if role == "norm":  # final norm
                def run(r, b):
                    r.h = layers.rmsnorm(r.x, w, self.eps)
                return run

            def run(r, b):
                r.residual = r.x
                r.h = layers.rmsnorm(r.x, w, self.eps)
            return run
        if op == "linear":
            return self._compile_linear(ins, role)
        if op == "rope":
            def run(r, b):
                r.q = layers.apply_rope(r.q, r.cos, r.sin)
                r.k = layers.apply_rope(r.k, r.cos, r.sin)
            return run
        if op == "attention":
            return self._compile_attention(ins.layer)
        if op == "residual_add":
            def run(r, b):
                r.x = r.residual + r.out
            return run
        if op == "silu_mul":
            def run(r, b):
                r.act = layers.silu_mul(r.gate, r.up)
            return run
        if op == "router":
            gate, cfg = ctx.weights[ins.weights[0]], ctx.cfg

            def run(r, b):
                r.route = layers.route(r.h, gate, cfg.num_experts_per_tok, cfg.norm_topk_prob)
            return run
        if op == "moe_experts":
            # the projections' weights in expert order; a quantized checkpoint's scales (listed after each weight)
            # were consumed when the weights were loaded dequantized and are not among the loaded tensors
            # (under expert parallelism only the experts this rank's expert group holds are listed; the others'
            # outputs come from their groups through the all-reduce that follows)
            held = [n for n in ins.weights if n in ctx.weights]
            shards = {_expert_index(held[i]): tuple(ctx.weights[n] for n in held[i:i + 3])
                      for i in range(0, len(held), 3)}  # expert -> (gate, up, down)

            def run(r, b):
                r.out = layers.moe_experts(r.h, *r.route, shards)
            return run
        if op == "lm_head":
            w = ctx.weights[ins.weights[0]]

            def run(r, b):
                r.logits = layers.linear(r.h[r.last], w)
            return run
        if op == "all_gather":
            group = ctx.groups[ins.group]
            vocab = ctx.cfg.vocab_size

            def run(r, b):
                size = dist.get_world_size(group)
                width = -(-vocab // size)
                local = r.logits
                if local.shape[1] < width:
                    local = torch.nn.functional.pad(local, (0, width - local.shape[1]))
                parts = [torch.empty_like(local) for _ in range(size)]
                dist.all_gather(parts, local.contiguous(), group=group)
                r.logits = torch.cat(parts, dim=1)[:, :vocab]
            return run
        if op == "sample":
            def run(r, b):
                r.tokens = sample(r.logits.float(), b.sampling, b.sample_index)
            return run
        if op == "send":
            peer = ins.peer

            def run(r, b):
                self.pending.append(dist.isend(r.x.contiguous(), dst=peer))
            return run
        if op == "recv":
            peer = ins.peer

            def run(r, b):
                r.x = torch.empty(b.num_tokens, ctx.cfg.hidden_size, dtype=ctx.dtype, device=ctx.device)
                dist.recv(r.x, src=peer)
            return run
        raise ValueError(f"instruction op '{op}' ({ins.name}) is not supported by this runtime")

    def _compile_linear(self, ins: Instruction, role: str):
        w, bias = self._w(ins)
        d = self.d
        if role in ("q_proj", "k_proj", "v_proj"):
            def run(r, b):
                setattr(r, role[0], layers.linear(r.h, w, bias).view(r.h.shape[0], -1, d))
            return run
        src = {"o_proj": "attn", "down_proj": "act"}.get(role)
        if src is not None:  # row-parallel: a replicated bias is added once, before the all-reduce
            bias = bias if self.ctx.tp_rank == 0 else None

            def run(r, b):
                inp = getattr(r, src)
                r.out = layers.linear(inp.reshape(inp.shape[0], -1), w, bias)
            return run
        if role in ("gate_proj", "up_proj"):
            def run(r, b):
                setattr(r, role.split("_")[0], layers.linear(r.h, w, bias))
            return run
        raise ValueError(f"linear '{ins.name}' has no known role")

    def _compile_attention(self, layer: int):
        ctx = self.ctx

        def run(r, b):
            if b.mode == "prefill":
                r.attn = prefill_attention(r.q, r.k, r.v, [len(t) for t in b.tokens], self.scale)
                self._store_prefill_kv(layer, r, b)
            else:
                ctx.kv.write(layer, r.new_slots, r.k, r.v)
                i = layer - ctx.kv.start
                r.attn = paged_decode_attention(r.q, ctx.kv.k[i], ctx.kv.v[i], r.contexts, self.scale)
        return run

    def _store_prefill_kv(self, layer: int, r: _Regs, b: ForwardBatch) -> None:
        ctx = self.ctx
        start = 0
        for i, toks in enumerate(b.tokens):
            n = len(toks)
            k, v = r.k[start:start + n], r.v[start:start + n]
            if b.buffer_starts is not None:
                nbytes = ctx.host.write(layer, self.kv_heads, b.buffer_starts[i], k, v)
                if ctx.comm_stats is not None:
                    ctx.comm_stats["kv_swap_out_bytes"] = ctx.comm_stats.get("kv_swap_out_bytes", 0) + nbytes
            else:
                ctx.kv.write(layer, r.ctx_slots[i, :n], k, v)
            start += n

    # -- execution --------------------------------------------------------------------------------------
    def forward(self, b: ForwardBatch) -> tuple[list[int] | None, torch.Tensor | None]:
        """Run the program on one micro-batch: ``(sampled tokens, logits [B, vocab] or None)`` on the
        sampling rank (logits only when ``b.return_logits``), ``(None, None)`` elsewhere."""
        r = _Regs()
        ids = [t for toks in b.tokens for t in toks]
        r.ids = torch.tensor(ids, device=self.ctx.device)
        if b.mode == "prefill":
            pos = [p for toks in b.tokens for p in range(len(toks))]
        else:
            pos = [n - 1 for n in b.context_lens]
        dev = self.ctx.device
        r.cos, r.sin = self.ctx.rope.cos_sin(torch.tensor(pos, device=dev), self.ctx.dtype)
        r.last = torch.tensor(list(itertools.accumulate(len(t) for t in b.tokens)), device=dev) - 1
        if b.block_tables is not None:  # paged cache: slots of every position, built once per micro-batch
            r.ctx_slots = slot_table(b.block_tables, b.context_lens, b.page_size, dev)
            r.lens = torch.tensor(b.context_lens, device=dev)
            r.new_slots = r.ctx_slots.gather(1, (r.lens - 1).unsqueeze(1)).squeeze(1)
            if b.mode == "decode":
                r.contexts = [_context(t, n, b.page_size, r.ctx_slots[i, :n]) for i, (t, n) in
                              enumerate(zip(b.block_tables, b.context_lens))]
        if self.op_times is None:
            for step in self.steps:
                step(r, b)
        else:
            self._timed(r, b)
        logits = r.logits.float().cpu() if (b.return_logits and r.tokens is not None) else None
        return r.tokens, logits

    def _timed(self, r: _Regs, b: ForwardBatch) -> None:
        """Run the program timing each instruction (see the class docstring)."""
        cuda = self.ctx.device.type == "cuda"
        sync = (lambda: torch.cuda.synchronize(self.ctx.device)) if cuda else (lambda: None)
        ops = []
        sync()
        for ins, step in zip(self.plan.program, self.steps):
            start = time.perf_counter()
            step(r, b)
            sync()
            ops.append([ins.name, time.perf_counter() - start])
        self.op_times.append({"mode": b.mode, "context_lens": list(b.context_lens), "ops": ops})

    def flush(self, keep: int = 0) -> None:
        """Wait for outstanding sends but the ``keep`` most recent (each holds its tensor until done).

        A gloo send completes only once the peer has posted the matching receive, i.e. started that
        micro-batch; waiting for it right after each micro-batch kept a PP stage from starting its next
        micro-batch while the next stage was still busy (pp2 decode: 8% of a rank's time in this wait).
        Between micro-batches the worker keeps the latest send in flight; before a transition it waits for all.
        """
        while len(self.pending) > keep:
            self.pending.pop(0).wait()
