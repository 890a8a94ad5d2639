"""One worker process per rank: process groups of both layouts, host copies of both shard sets, the
resident decode-layout KV cache, and a command loop driven by the scheduler through queues.

Commands (tuples, first item the kind): ``("forward", [ForwardBatch, ...])`` runs the current phase's
program on each micro-batch in order (PP stages overlap across micro-batches: sends are asynchronous);
``("swap_in", [(buffer_start, tokens, pages), ...])`` copies buffered KV into the device cache under the
decode layout; ``("transition", phase)`` drops this phase's device weights and loads the other phase's
shards from the host copies; ``("stats",)``; ``("stop",)``. Errors are reported as ``("error", rank,
message)`` before the process exits non-zero.
"""
from __future__ import annotations

import gc
import os
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from seesaw.codegen.plan import ExecutionPlan, PhasePlan
from seesaw.ir.config import ModelConfig
from seesaw.ir.ops import local_heads
from seesaw.runtime import host_allocator, layers
from seesaw.runtime.checkpoint import Checkpoint
from seesaw.runtime.kv_cache import HostKVBuffer, PagedKVCache, slot_table
from seesaw.runtime.program import PhaseProgram, RankContext
from seesaw.runtime.quantized import is_scale, scale_name


@dataclass
class WorkerConfig:
    """Everything a worker needs, picklable (sent once at spawn)."""

    plan_json: str
    checkpoint: str
    init_method: str
    world_size: int
    device: str  # "cpu" or "cuda"
    dtype: str  # "float32" | "bfloat16" | "float16"
    gpu_pages: int
    host_buffer: dict | None  # HostKVBuffer spec
    collective_timeout_s: float = 60.0
    prefault_pages: int = 0  # CPU: device KV pages to fault in at start-up (PagedKVCache.prefault)
    time_ops: bool = False  # time every instruction of every forward pass (PhaseProgram.op_times)
    kv_dtype: str | None = None  # the KV cache's torch dtype name when not the compute dtype (an FP8 cache)


def _load_shards(ckpt: Checkpoint, phase: PhasePlan, rank: int, dtype: torch.dtype, cache: dict,
                 block_size: tuple[int, int] | None = None) -> dict:
    """Host copies of this rank's shards in ``phase`` (identical (name, slice) pairs shared). An FP8 weight is
    dequantized with its scale (``block_size``: the checkpoint's scale blocks), which is not kept."""
    out = {}
    shards = phase.rank_plan(rank).weight_shards
    for name, sl in shards.items():
        if is_scale(name):
            continue
        key = (name, None if sl is None else (sl.dim, sl.start, sl.stop))
        if key not in cache:
            scale = scale_name(name, shards)
            t = ckpt.read(name, sl, dtype=dtype) if scale is None else ckpt.read_dequantized(name, sl, scale,
                                                                                             block_size, dtype)
            cache[key] = t.pin_memory() if torch.cuda.is_available() and t.device.type == "cpu" else t
        out[name] = cache[key]
    return out


class Worker:
    def __init__(self, rank: int, cfg: WorkerConfig) -> None:
        self.rank = rank
        self.plan = ExecutionPlan.model_validate_json(cfg.plan_json)
        local = int(os.environ.get("LOCAL_RANK", rank))
        self.device = torch.device(f"cuda:{local % max(1, torch.cuda.device_count())}" if cfg.device == "cuda" else "cpu")
        self.dtype = getattr(torch, cfg.dtype)
        backend = "nccl" if cfg.device == "cuda" else "gloo"
        if cfg.device == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():  # under torchrun the launcher's process group already exists
            dist.init_process_group(backend, init_method=cfg.init_method, rank=rank, world_size=cfg.world_size,
                                    timeout=timedelta(seconds=cfg.collective_timeout_s))
        # every rank creates every group of both layouts, in the same order
        self.groups = {ph: {g.id: dist.new_group(g.ranks) for g in self.plan.phase(ph).process_groups}
                       for ph in ("prefill", "decode")}
        ckpt = Checkpoint(cfg.checkpoint)
        self.cfg = ModelConfig.from_hf_dict(ckpt.config, name=self.plan.model.name, source=cfg.checkpoint)
        # transformers < 5 writes "rope_scaling"; >= 5 writes "rope_parameters" (which also holds rope_theta)
        rope_scaling = ckpt.config.get("rope_scaling") or ckpt.config.get("rope_parameters")
        self.rope = layers.Rope(self.cfg.head_dim, self.cfg.rope_theta, rope_scaling)
        cache: dict = {}
        block = self.cfg.quantization.block_size if self.cfg.quantization is not None else None
        self.host_weights = {ph: _load_shards(ckpt, self.plan.phase(ph), rank, self.dtype, cache, block)
                             for ph in ("prefill", "decode")}
        self.host_weight_bytes = sum(t.numel() * t.element_size() for t in cache.values())
        dec = self.plan.decode.rank_plan(rank)
        k_name = next((n for n in dec.weight_shards if n.endswith("self_attn.k_proj.weight")), None)
        k_sl = dec.weight_shards.get(k_name) if k_name else None
        kv_heads = (k_sl.stop - k_sl.start) // self.cfg.head_dim if k_sl else self.cfg.num_key_value_heads
        kv_dtype = getattr(torch, cfg.kv_dtype) if cfg.kv_dtype else self.dtype
        self.kv = PagedKVCache(tuple(dec.layers), kv_heads, self.cfg.head_dim, cfg.gpu_pages,
                               self.plan.kv.page_size_tokens, kv_dtype, self.device)
        self.kv.prefault(cfg.prefault_pages)
        self.host = HostKVBuffer(**cfg.host_buffer) if cfg.host_buffer else None
        self.stats = {"kv_swap_out_bytes": 0, "kv_swap_in_bytes": 0, "transition_bytes": 0}
        self.op_times: list | None = [] if cfg.time_ops else None  # kept across transitions, sent with stats
        self.phase = "prefill"
        self._activate("prefill")
        self.workspace_prefault_s = self._commit_workspace() if self.device.type == "cpu" else 0.0
        # Everything alive now (torch's modules, the plan, the weight dicts) lives as long as the worker: move
        # it out of the collector's generations so the full collections that a step's allocations trigger
        # do not walk it again (they were 3-5% of a CPU rank's step time under perf).
        gc.freeze()

    @property
    def startup_info(self) -> dict:
        """What the rank reports when ready: host bytes of its shard copies, seconds spent committing the
        CPU workspace."""
        return {"host_weight_bytes": self.host_weight_bytes, "workspace_prefault_s": self.workspace_prefault_s}

    def _commit_workspace(self) -> float:
        """CPU: keep freed heap in the process and commit the prefill workspace now (:mod:`host_allocator`),
        after the weights and KV cache are allocated; returns the seconds spent."""
        if not host_allocator.retain_freed_memory():
            return 0.0
        tp, c = self.plan.prefill.layout.tp, self.cfg
        nbytes = host_allocator.prefill_workspace_bytes(
            self.plan.schedule.max_prefill_tokens or self.plan.schedule.max_batched_tokens or 0, c.hidden_size,
            -(-c.intermediate_size // tp), local_heads(c.num_attention_heads, tp) * c.head_dim,
            local_heads(c.num_key_value_heads, tp) * c.head_dim, self.pool.element_size())
        return host_allocator.prefault(nbytes)

    def _activate(self, phase: str) -> int:
        """Copy ``phase``'s shards from the host copies into the device weight pool; returns bytes copied.

        The pool is one allocation sized for the larger layout, made once: a transition is then only the
        host-to-device copies (no allocator work or first-touch page faults), as on a GPU.
        """
        if getattr(self, "program", None) is not None:
            self.program.flush()  # the last micro-batch's send may still be in flight
        self.weights = None
        self.program = None
        host = self.host_weights[phase]
        if getattr(self, "pool", None) is None:
            need = max(sum(t.numel() for t in hw.values()) for hw in self.host_weights.values())
            self.pool = torch.empty(need, dtype=self.dtype, device=self.device)
        weights, offset = {}, 0
        for name, t in host.items():
            view = self.pool[offset:offset + t.numel()].view(t.shape)
            view.copy_(t, non_blocking=True)
            weights[name] = view
            offset += t.numel()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.weights = weights
        self.phase = phase
        rp = self.plan.phase(phase).rank_plan(self.rank)
        ctx = RankContext(self.cfg, self.rope, weights, self.groups[phase], rp.tp_rank, self.kv, self.host,
                          self.device, self.dtype, self.stats)
        self.program = PhaseProgram(rp, ctx, self.op_times)
        return sum(t.numel() * t.element_size() for t in weights.values())

    @property
    def is_sampler(self) -> bool:
        rp = self.plan.phase(self.phase).rank_plan(self.rank)
        return rp.tp_rank == 0 and rp.pp_rank == self.plan.phase(self.phase).layout.pp - 1

    def forward(self, batches) -> list:
        out = []
        with torch.inference_mode():
            for b in batches:
                tokens, logits = self.program.forward(b)
                if self.is_sampler:
                    out.append((b.seq_ids, tokens, logits))
        self.program.flush(keep=1)
        return out

    def swap_in(self, items) -> None:
        """Copy each buffered sequence's KV slice (this rank's decode layers and heads) into its pages."""
        dec = self.plan.decode.rank_plan(self.rank)
        heads = PhaseProgram.kv_head_slice(dec, self.cfg)
        for start, length, pages in items:
            idx = slot_table([pages], [length], self.plan.kv.page_size_tokens, self.device)[0]
            for layer in range(*dec.layers):
                k, v = self.host.read(layer, heads, start, length)
                self.kv.write(layer, idx, k.to(self.device), v.to(self.device))  # the cache's dtype: write casts
                self.stats["kv_swap_in_bytes"] += 2 * k.numel() * k.element_size()


    def handle(self, cmd: tuple):
        """Execute one command; returns the reply tuple ``(kind, rank, payload)`` or None."""
        kind = cmd[0]
        if kind == "forward":
            out = self.forward(cmd[1])
            return ("tokens", self.rank, out) if self.is_sampler else None
        if kind == "swap_in":
            self.swap_in(cmd[1])
            return None
        if kind == "transition":
            start = time.perf_counter()
            nbytes = self._activate(cmd[1])
            self.stats["transition_bytes"] += nbytes
            return ("transition", self.rank, {"seconds": time.perf_counter() - start, "bytes": nbytes})
        if kind == "stats":
            stats = dict(self.stats)
            if self.op_times is not None:
                stats["op_times"] = [dict(rec, rank=self.rank) for rec in self.op_times]
                self.op_times.clear()
            return ("stats", self.rank, stats)
        raise ValueError(f"unknown command '{kind}'")


def bind_cpu_rank(local_rank: int, local_ranks: int, threads: int) -> tuple[int, ...]:
    """Pin a CPU rank to its own cores: ``local_rank``'s block of ``threads`` cores among those this process
    may run on (as ``taskset``/``numactl`` pinning of CPU inference ranks), so ranks do not migrate onto
    each other's cores and share caches and clocks by chance. Returns the cores, or () when not pinned:
    ``SEESAW_CPU_BIND=0``, no ``sched_setaffinity`` (not Linux), or fewer cores than the ``local_ranks``
    ranks of this node need (``local_ranks * threads``: oversubscribed ranks are left to the OS, all alike)."""
    if os.environ.get("SEESAW_CPU_BIND", "1") == "0" or not hasattr(os, "sched_setaffinity"):
        return ()
    cores = sorted(os.sched_getaffinity(0))
    if local_ranks * threads > len(cores):
        return ()
    mine = tuple(cores[local_rank * threads:(local_rank + 1) * threads])
    os.sched_setaffinity(0, mine)
    return mine


def worker_main(rank: int, cfg: WorkerConfig, commands, results) -> None:
    """Process entry point (``torch.multiprocessing`` spawn): serve commands from a queue."""
    threads = max(1, int(os.environ.get("SEESAW_THREADS_PER_RANK", "1")))
    if cfg.device == "cpu":
        bind_cpu_rank(rank, cfg.world_size, threads)  # spawned workers: one node, local rank = rank
    torch.set_num_threads(threads)
    try:
        w = Worker(rank, cfg)
        results.put(("ready", rank, w.startup_info))
        while True:
            cmd = commands.get()
            if cmd[0] == "stop":
                break
            reply = w.handle(cmd)
            if reply is not None:
                results.put(reply)
        dist.destroy_process_group()
    except KeyboardInterrupt:
        pass
    except BaseException as e:  # reported to the scheduler, which names the rank
        msg = f"{type(e).__name__}: {e}"
        results.put(("error", rank, msg, traceback.format_exc()))
        raise SystemExit(1)
