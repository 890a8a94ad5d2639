"""The discrete search space shared by CP-SAT and exhaustive search.

Layouts are the (dp, tp, pp) factorizations of the GPU count, each with every expert-parallel degree a mixture of
experts allows inside its TP groups (TP inside a node, heads divisible by TP,
``pp <= layers``); batch sizes come from fixed geometric grids, so both searches see exactly the same
candidates and the same integer cost tables.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from seesaw.ir.errors import InputError
from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel

#: Decode running-batch candidates (sequences per DP replica).
DECODE_SEQS_GRID = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)
#: Largest prefill batch considered (tokens).
MAX_PREFILL_TOKENS = 65536
#: KV cache page size (tokens), as vLLM's default block size.
PAGE_SIZE_TOKENS = 16


@dataclass(frozen=True)
class SearchOptions:
    """User restrictions: pinned layouts (dp inferred), forbidding re-sharding."""

    prefill: Layout | None = None
    decode: Layout | None = None
    static: bool = False


def _fill_pin(pin: Layout | None, num_gpus: int, field: str) -> Layout | None:
    """A pinned layout written without dp (``pp8``) gets dp = GPUs / (tp * pp)."""
    if pin is None:
        return None
    if pin.dp == 1 and num_gpus % pin.replica_size == 0:
        pin = Layout(num_gpus // pin.replica_size, pin.tp, pin.pp, pin.ep)
    if pin.world_size != num_gpus:
        raise InputError(field, f"layout {pin} uses {pin.world_size} GPUs but the cluster has {num_gpus}")
    return pin


@dataclass
class SearchSpace:
    """Candidate layouts per phase and batch grids for one cost model."""

    cost: CostModel
    options: SearchOptions

    def __post_init__(self) -> None:
        n = self.cost.cluster.num_gpus
        self.prefill_pin = _fill_pin(self.options.prefill, n, "--prefill")
        self.decode_pin = _fill_pin(self.options.decode, n, "--decode")
        if self.prefill_pin and self.decode_pin and self.prefill_pin.dp != self.decode_pin.dp:
            raise InputError("--prefill/--decode", f"dp must be equal in both phases ({self.prefill_pin} vs {self.decode_pin})")
        for pin, field in ((self.prefill_pin, "--prefill"), (self.decode_pin, "--decode")):
            if pin and pin not in self.cost.layouts(pin.dp):
                raise InputError(field, self._why_invalid(pin))
        if self.options.static and self.prefill_pin and self.decode_pin and self.prefill_pin != self.decode_pin:
            raise InputError("--static", "forbids re-sharding but --prefill and --decode differ")

    def _why_invalid(self, layout: Layout) -> str:
        cfg = self.cost.cfg
        gpn = self.cost.cluster.gpus_per_node
        if layout.tp > gpn or gpn % layout.tp:
            return f"layout {layout}: tp={layout.tp} does not fit in a node of {gpn} GPUs"
        if layout.pp > cfg.num_hidden_layers:
            return f"layout {layout}: pp={layout.pp} exceeds the model's {cfg.num_hidden_layers} layers"
        from seesaw.ir.sharding import tp_problem, valid_ep_degrees  # noqa: PLC0415

        problem = tp_problem(cfg, layout.tp, layout.ep)
        if problem is not None:  # the IR's own reason (heads, FFN width, KV heads, quantization blocks)
            eps = valid_ep_degrees(cfg, layout.tp) if cfg.is_moe and layout.ep == 1 else []
            hint = (f"; expert parallelism avoids it (e.g. {Layout(layout.dp, layout.tp, layout.pp, eps[0])})"
                    if eps else "")
            return f"layout {layout}: {problem}{hint}"
        return (f"layout {layout}: tp={layout.tp} must divide the attention heads ({cfg.num_attention_heads}), "
                f"intermediate size ({cfg.intermediate_size}) and fit the KV heads ({cfg.num_key_value_heads})")

    def dp_degrees(self) -> list[int]:
        pins = [p.dp for p in (self.prefill_pin, self.decode_pin) if p]
        return [d for d in self.cost.dp_degrees() if not pins or d in pins]

    def prefill_layouts(self, dp: int) -> list[Layout]:
        if self.prefill_pin:
            return [self.prefill_pin] if self.prefill_pin.dp == dp else []
        if self.options.static and self.decode_pin:
            return [self.decode_pin] if self.decode_pin.dp == dp else []
        return self.cost.candidate_layouts(dp, "prefill")

    def decode_layouts(self, dp: int) -> list[Layout]:
        if self.decode_pin:
            return [self.decode_pin] if self.decode_pin.dp == dp else []
        if self.options.static and self.prefill_pin:
            return [self.prefill_pin] if self.prefill_pin.dp == dp else []
        return self.cost.candidate_layouts(dp, "decode")

    def static_layouts(self, dp: int) -> list[Layout]:
        """Single-layout candidates. The best static plan is the baseline vLLM would run, so pins do not
        restrict it, except under ``--static``, where a pinned layout is the plan itself."""
        if self.options.static:
            pin = self.prefill_pin or self.decode_pin
            if pin:
                return [pin] if pin.dp == dp else []
        return self.cost.candidate_layouts(dp, "static")

    def prefill_tokens_grid(self, dp: int) -> list[int]:
        """Prefill batch sizes (tokens): powers of two from the longest prompt up to the replica's total."""
        work = self.cost.replica_work(dp)
        lo = max(work.max_prompt_len, 128)
        grid = []
        t = 1 << math.ceil(math.log2(lo))
        if t != lo:
            grid.append(lo)
        while t <= MAX_PREFILL_TOKENS:
            grid.append(t)
            if t >= work.prompt_tokens:
                break
            t *= 2
        return grid

    def decode_seqs_grid(self, dp: int, pp: int) -> list[int]:
        """Decode batch caps (sequences) with at least one sequence per PP micro-batch."""
        work = self.cost.replica_work(dp)
        grid = [b for b in DECODE_SEQS_GRID if pp <= b <= work.requests]
        if work.requests < DECODE_SEQS_GRID[-1] and work.requests >= pp and work.requests not in grid:
            grid.append(work.requests)
        return grid


def compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """Every way to split ``total`` layers into ``parts`` contiguous stages of >= 1 layer (in order)."""
    if parts == 1:
        return [(total,)]
    out = []
    for first in range(1, total - parts + 2):
        for rest in compositions(total - first, parts - 1):
            out.append((first, *rest))
    return out


def near_even_partitions(total: int, parts: int, spread: int = 2) -> list[tuple[int, ...]]:
    """Coarse partition grid for large instances: end stages take ``even +- spread`` layers and the
    middle stages share the rest as evenly as possible."""
    if parts == 1:
        return [(total,)]
    even = total / parts
    ends = range(max(1, math.floor(even) - spread), math.ceil(even) + spread + 1)
    seen = set()
    for first in ends:
        for last in ends:
            mid_total = total - first - last
            mids = parts - 2
            if mids == 0:
                if mid_total == 0:
                    seen.add((first, last))
                continue
            if mid_total < mids:
                continue
            q, r = divmod(mid_total, mids)
            mid = tuple([q + 1] * r + [q] * (mids - r))
            seen.add((first, *mid, last))
    return sorted(seen)


def to_stage_layers(counts: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Layer counts per stage -> ``(start, stop)`` ranges."""
    out, start = [], 0
    for n in counts:
        out.append((start, start + n))
        start += n
    return tuple(out)
