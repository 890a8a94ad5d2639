"""Micro-benchmarks of the device this process runs on, for ``seesaw-calibrate`` (torch; no planner import).

Every timed op is the runtime's own code (:mod:`seesaw.runtime.layers`, :mod:`seesaw.runtime.attention`) on
this rank's shard shapes taken from the IR graph, and every timing carries the FLOPs and bytes the IR charges
for it (``Op.flops`` / ``Op.device_bytes`` at the runtime dtype), so the planner can fit its cost model to
them (:mod:`seesaw.planner.calibration.fit`). Timings are medians of single calls after warm-up; on CUDA each
call is timed with CUDA events.

- GEMMs (``layers.linear``) over the model's linear shapes (q/k/v/o, gate/up/down per TP shard, lm head) at
  decode and prefill row counts, with COLD weights: each call uses the next of enough weight copies to
  exceed a multiple of the last-level cache, as a forward pass streams every layer's weights from DRAM/HBM;
- weight streaming: a GEMV over a matrix larger than 100 MB (``memory_gb_per_s``) and a hot GEMM at the
  largest prefill shape (the peak-ish FLOP rate, ``bf16_tflops``);
- elementwise ops (RMSNorm, RoPE on q and k, SiLU-mul, residual add) at several token counts: the fixed
  per-op dispatch cost;
- attention: causal prefill (``prefill_attention``) and one-token decode straight from a paged cache
  (``paged_decode_attention``, contiguous contexts) over several lengths and sequence counts;
- host <-> device copies, pageable and (CUDA only) pinned; on CPU a memcpy between two host tensors.

Collectives are in :mod:`seesaw.runtime.microbench_comm` (spawned ranks).
"""
from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from seesaw.ir import ModelConfig, Op, OpKind, PassShape, ShardRule, WeightSpec, build_graph
from seesaw.runtime import layers
from seesaw.runtime.attention import paged_decode_attention, prefill_attention

MiB = 2**20
DECODE_ROWS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64)
PREFILL_ROWS = (128, 256, 512, 1024, 2048)
QUICK_DECODE_ROWS = (1, 4, 16, 64)
QUICK_PREFILL_ROWS = (256, 1024)


@dataclass(frozen=True)
class OpTiming:
    """A timed compute op (fields as :class:`seesaw.planner.calibration.fit.OpSample`): ``kind`` gemm | lm_head |
    elementwise | attention, the IR's ``flops`` and ``nbytes``, median ``seconds``, GEMM ``rows``,
    attention ``seqs``."""

    kind: str
    flops: float
    nbytes: float
    seconds: float
    rows: float | None = None
    seqs: int = 0
    label: str = ""


@dataclass(frozen=True)
class CopyTiming:
    """A timed host <-> device copy of ``nbytes`` (``kind`` pinned | pageable)."""

    kind: str
    nbytes: float
    seconds: float
    label: str = ""


@dataclass(frozen=True)
class Settings:
    """What to measure. ``quick`` shrinks every sweep and repetition count (well under a minute on CPU)."""

    tps: tuple[int, ...] = (1,)
    quick: bool = False
    repeats: int | None = None  # timed calls per measurement (default 7, quick 3; tiny ops 10x more)

    @property
    def decode_rows(self) -> tuple[int, ...]:
        return QUICK_DECODE_ROWS if self.quick else DECODE_ROWS

    @property
    def prefill_rows(self) -> tuple[int, ...]:
        return QUICK_PREFILL_ROWS if self.quick else PREFILL_ROWS

    @property
    def reps(self) -> int:
        return self.repeats or (3 if self.quick else 7)


def runtime_dtype(device: torch.device) -> torch.dtype:
    """The runtime's compute dtype: float32 on CPU, bfloat16 on CUDA."""
    return torch.float32 if device.type == "cpu" else torch.bfloat16


def last_level_cache_bytes(device: torch.device) -> int:
    """Largest cache in bytes: the CPU's last level (sysfs) or the GPU's L2; 32 MiB when unknown."""
    if device.type == "cuda":
        return int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)) or 32 * MiB
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip().upper()
        mult = {"K": 2**10, "M": MiB, "G": 2**30}.get(text[-1:], 1)
        try:
            sizes.append(int(text.rstrip("KMG")) * mult)
        except ValueError:
            continue
    return max(sizes, default=32 * MiB)


def median_time_s(fn: Callable[[int], object], repeats: int, device: torch.device, warmup: int = 2) -> float:
    """Median seconds of ``fn(i)`` over ``repeats`` calls after ``warmup`` calls (``i`` counts all calls,
    so ``fn`` can rotate over inputs). CUDA calls are timed with events, each synchronised."""
    for i in range(warmup):
        fn(i)
    times = []
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    for i in range(warmup, warmup + repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(i)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1e-3)
        else:
            t0 = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


class Bench:
    """Runs the compute and copy measurements for one model config on one device."""

    def __init__(self, cfg: ModelConfig, device: torch.device, settings: Settings) -> None:
        self.cfg, self.device, self.s = cfg, device, settings
        self.dtype = runtime_dtype(device)
        self.dtype_bytes = torch.finfo(self.dtype).bits // 8
        self.cold_bytes = max(4 * last_level_cache_bytes(device), 64 * MiB)
        self.graph = build_graph(cfg)

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, dtype=self.dtype)

    def _copies(self, base: torch.Tensor, share: int = 1) -> list[torch.Tensor]:
        """``base`` and clones of it, enough that ``share`` such lists together exceed the cold size."""
        nbytes = max(1, base.numel() * base.element_size() * share)
        return [base] + [base.clone() for _ in range(max(1, min(256, math.ceil(self.cold_bytes / nbytes))) - 1)]

    def _timing(self, kind: str, op: Op, shape: PassShape, tp: int, seconds: float, label: str,
                rows: int | None = None) -> OpTiming:
        return OpTiming(kind, op.flops(shape, tp), op.device_bytes(shape, tp, self.dtype_bytes), seconds,
                        rows=rows, seqs=shape.num_seqs if kind == "attention" else 0, label=label)

    # -- GEMMs ----------------------------------------------------------------------------------------------
    def gemm_ops(self) -> list[tuple[Op, int, str]]:
        """``(op, tp, label)`` per distinct local linear shape of layer 0 and the lm head, per TP degree."""
        shapes: dict[tuple, tuple[Op, int, list[str]]] = {}
        for tp in self.s.tps:
            for op in [*self.graph.layer_ops(0), self.graph.op("lm_head")]:
                if op.kind in (OpKind.LINEAR, OpKind.LM_HEAD):
                    key = (tp, op.kind, tuple(w.local_shape(tp) for w in op.weights))
                    shapes.setdefault(key, (op, tp, []))[2].append(op.name.rsplit(".", 1)[-1])
        return [(op, tp, f"{'/'.join(names)} tp{tp}") for op, tp, names in shapes.values()]

    def gemm_steps(self) -> Iterator[tuple[str, Callable[[], list[OpTiming]]]]:
        """One step per GEMM shape: cold-weight timings at every row count that applies to the op."""
        for op, tp, label in self.gemm_ops():
            rows = self.s.decode_rows + (() if op.kind is OpKind.LM_HEAD else self.s.prefill_rows)
            yield f"GEMM {label}", lambda op=op, tp=tp, label=label, rows=rows: self._gemm(op, tp, label, rows)

    def _gemm(self, op: Op, tp: int, label: str, rows: tuple[int, ...]) -> list[OpTiming]:
        ws = self._copies(self._rand(*op.weights[0].local_shape(tp)))
        bias = self._rand(op.weights[1].local_shape(tp)[0]) if len(op.weights) > 1 else None
        out = []
        for r in rows:
            x = self._rand(r, ws[0].shape[1])
            reps = self.s.reps * (4 if r <= 64 else 1)
            t = median_time_s(lambda i: layers.linear(x, ws[i % len(ws)], bias), reps, self.device)
            kind = "lm_head" if op.kind is OpKind.LM_HEAD else "gemm"
            out.append(self._timing(kind, op, PassShape(r, 1, 1), tp, t, f"{label} rows {r}", rows=r))
        return out

    def stream(self, rows: int = 1) -> OpTiming:
        """GEMV of one row (GEMM of ``rows`` rows: a decode step's shape) over a cold ``[out, hidden]`` matrix of
        at least 128 MB (and 4x the cache)."""
        h = self.cfg.hidden_size
        out_rows = math.ceil(max(128e6, self.cold_bytes) / (h * self.dtype_bytes))
        op = Op("stream", OpKind.LINEAR, None, (WeightSpec("stream.weight", (out_rows, h), ShardRule.COLUMN),),
                {"in": h, "out": out_rows})
        w, x = self._rand(out_rows, h), self._rand(rows, h)
        t = median_time_s(lambda i: layers.linear(x, w), self.s.reps + 2, self.device)
        mb = out_rows * h * self.dtype_bytes / 1e6
        kind = "GEMV" if rows == 1 else f"GEMM rows {rows}"
        return self._timing("gemm", op, PassShape(rows, 1, 1), 1, t, f"{kind} {out_rows}x{h} ({mb:.0f} MB)", rows=rows)

    def peak(self) -> OpTiming:
        """Hot-weight GEMM at the largest prefill row count and the widest tp-1 MLP shape: the peak-ish rate."""
        op = self.graph.op("layers.0.up_proj")
        r = max(self.s.prefill_rows)
        w, x = self._rand(*op.weights[0].local_shape(1)), self._rand(r, self.cfg.hidden_size)
        t = median_time_s(lambda i: layers.linear(x, w), self.s.reps + 2, self.device)
        return self._timing("gemm", op, PassShape(r, 1, 1), 1, t, f"up_proj hot rows {r}", rows=r)

    # -- elementwise and attention --------------------------------------------------------------------------
    def elementwise(self, tp: int = 1) -> list[OpTiming]:
        """RMSNorm, RoPE (q and k), SiLU-mul and residual add of layer 0 at small token counts (1-64): the
        per-op dispatch cost. Larger counts run from cache far faster than the weight-streaming bandwidth
        the cost model charges, so they would only blur the fit."""
        cfg, d = self.cfg, self.cfg.head_dim
        hq = -(-cfg.num_attention_heads // tp)
        hkv = -(-cfg.num_key_value_heads // tp)
        rope = layers.Rope(d, cfg.rope_theta)
        ops = {op.kind: op for op in self.graph.layer_ops(0)}
        tokens = (1, 16) if self.s.quick else (1, 4, 16, 64)
        out = []
        for t in tokens:
            x, y = self._rand(t, cfg.hidden_size), self._rand(t, cfg.hidden_size)
            norm_w = self._rand(cfg.hidden_size)
            f = cfg.intermediate_size // tp
            gate, up = self._rand(t, f), self._rand(t, f)
            q, k = self._rand(t, hq, d), self._rand(t, hkv, d)
            cos, sin = rope.cos_sin(torch.arange(t, device=self.device), self.dtype)
            calls = {
                OpKind.RMSNORM: lambda i: layers.rmsnorm(x, norm_w, cfg.rms_norm_eps),
                OpKind.RESIDUAL_ADD: lambda i: x + y,
                OpKind.SILU_MUL: lambda i: layers.silu_mul(gate, up),
                OpKind.ROPE: lambda i: (layers.apply_rope(q, cos, sin), layers.apply_rope(k, cos, sin)),
            }
            reps = self.s.reps * 10
            for kind, fn in calls.items():
                secs = median_time_s(fn, reps, self.device)
                out.append(self._timing("elementwise", ops[kind], PassShape(t, 1, 1), tp, secs,
                                        f"{kind.value} tokens {t}"))
        return out

    def attention(self, tp: int = 1) -> list[OpTiming]:
        """Causal prefill over one or several sequences, and decode from a cold paged cache."""
        cfg, d = self.cfg, self.cfg.head_dim
        hq, hkv = -(-cfg.num_attention_heads // tp), -(-cfg.num_key_value_heads // tp)
        op, scale = self.graph.op("layers.0.attention"), d ** -0.5
        if self.s.quick:
            prefill, decode = [(1, 32), (1, 256), (4, 64), (1, 1024)], [(1, 256), (16, 128), (16, 1024)]
        else:
            prefill = [(n, s) for n in (1, 4) for s in (16, 32, 64, 128, 512)] + [(1, 1024), (1, 2048)]
            decode = [(b, c) for b in (1, 8, 32) for c in (64, 512, 2048)]
        out = []
        for n, s in prefill:
            q, k, v = self._rand(n * s, hq, d), self._rand(n * s, hkv, d), self._rand(n * s, hkv, d)
            t = median_time_s(lambda i: prefill_attention(q, k, v, [s] * n, scale), self.s.reps * 2, self.device)
            out.append(self._timing("attention", op, PassShape.prefill(n, s), tp, t, f"prefill {n}x{s} tp{tp}"))
        for b, c in decode:
            kc, vc = self._copies(self._rand(b * c, hkv, d), 2), self._copies(self._rand(b * c, hkv, d), 2)
            q = self._rand(b, hq, d)
            contexts = [(i * c, c) for i in range(b)]
            t = median_time_s(lambda i: paged_decode_attention(q, kc[i % len(kc)], vc[i % len(vc)], contexts, scale),
                              self.s.reps * 2, self.device)
            out.append(self._timing("attention", op, PassShape.decode(b, c), tp, t, f"decode {b}x{c} tp{tp}"))
        return out

    # -- host copies ----------------------------------------------------------------------------------------
    def copies(self) -> list[CopyTiming]:
        """Host -> device and device -> host copies (pageable, and pinned on CUDA); on CPU one memcpy
        between two host tensors (the bytes copied once, as ``Cluster.host_to_device_s`` counts them)."""
        big = self.cold_bytes if self.device.type == "cpu" else 64 * MiB  # CPU: beyond the caches
        sizes = (big // 4, big) if self.s.quick else (big // 4, big, 2 * big)
        out = []
        for nbytes in sizes:
            n = nbytes // 4
            reps = self.s.reps + 2
            if self.device.type == "cpu":
                src, dst = torch.randn(n), torch.empty(n)
                t = median_time_s(lambda i: dst.copy_(src), reps, self.device)
                out.append(CopyTiming("pageable", nbytes, t, f"memcpy {nbytes / MiB:g} MiB"))
                continue
            dev = torch.empty(n, device=self.device)
            for kind in ("pageable", "pinned"):
                host = torch.randn(n, pin_memory=kind == "pinned")
                for label, fn in (("h2d", lambda i: dev.copy_(host, non_blocking=True)),
                                  ("d2h", lambda i: host.copy_(dev, non_blocking=True))):
                    t = median_time_s(fn, reps, self.device)
                    out.append(CopyTiming(kind, nbytes, t, f"{label} {kind} {nbytes / MiB:g} MiB"))
        return out


def set_threads() -> int:
    """Set torch's intra-op threads as a runtime rank does (``SEESAW_THREADS_PER_RANK``, default 1);
    returns the previous count so a caller can restore it."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(os.environ.get("SEESAW_THREADS_PER_RANK", "1"))))
    return old
