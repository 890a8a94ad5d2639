"""Per-stage time of one micro-batch of any shape, from the cost model's own op costs, fast enough to time
every step of a simulated run.

A micro-batch is ``T`` new tokens from ``S`` sequences whose attention work is given per part
(:class:`AttentionLoad`: decode sequences, prefill prompts, prefill chunks). Every op but attention sees only
``T`` (or ``S`` for the lm head and its logits all-gather), so its time is tabulated once per layout over a
grid of token counts (every count to 64, then 16 points per doubling) and interpolated linearly: each op's
roofline time is piecewise linear in ``T`` (compute and memory terms are both affine in ``T``; GEMMs at
``F_eff * T / (T + n_half)`` take ``(T + n_half) / F_eff`` per FLOP row), so the interpolation is exact
except within one grid step of a kink (under 1 % apart). Attention is costed per part from its summed
causal query-key pairs and KV tokens with :func:`~seesaw.planner.cost.roofline.kernel_time_s`, the function
the closed form uses; the coefficients come from the IR op itself (probed at two shapes), so no formula is
restated here.

Stage ``s`` of ``n_s`` layers then takes ``n_s * (dense(T) + attention + extra_per_layer) + [s = 0] first(T)
+ [s = last] (norm(T) + head(S)) + send(T) + step overhead``: the stage-time terms of
:class:`~seesaw.planner.cost.model.StageCost`, for one concrete batch instead of a phase's mean batch.
"""
from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from seesaw.ir.layout import Layout
from seesaw.ir.ops import Op, OpKind, PassShape
from seesaw.planner.cost.model import CostModel
from seesaw.planner.cost.roofline import attention_rates, hidden_send_s, ops_time_s, roofline_s, step_overhead_s

_ROW_KINDS = (OpKind.LM_HEAD, OpKind.ALL_GATHER)  # ops whose rows are sequences (last token), not tokens


@dataclass(frozen=True)
class AttentionLoad:
    """Attention work of one part of a micro-batch, summed over its sequences.

    ``pairs``: causal query-key pairs ``sum(q * c - q * (q - 1) / 2)`` (``q`` new tokens attending over a
    context of ``c`` tokens, the new ones included); ``kv_tokens``: ``sum(c)``, the KV tokens read.
    """

    seqs: float
    query_tokens: float
    pairs: float
    kv_tokens: float

    @classmethod
    def decode(cls, seqs: float, context_sum: float) -> AttentionLoad:
        """``seqs`` decode sequences (one new token each) whose contexts sum to ``context_sum`` tokens."""
        return cls(seqs, seqs, context_sum, context_sum)

    @classmethod
    def chunk(cls, new_tokens: int, context_len: int) -> AttentionLoad:
        """One sequence's prefill chunk of ``new_tokens`` tokens ending at ``context_len`` tokens."""
        q, c = new_tokens, context_len
        return cls(1, q, q * c - q * (q - 1) / 2, c)

    @classmethod
    def prompts(cls, num_seqs: int, tokens: int, squares: int) -> AttentionLoad:
        """``num_seqs`` whole prompts of ``tokens`` tokens in all, ``squares = sum(p^2)``."""
        return cls(num_seqs, tokens, (squares + tokens) / 2, tokens)


class _Curve:
    """``fn(x)`` for x >= 0, tabulated on a grid (every integer to 64, then 16 points per doubling, grown on
    demand) and interpolated linearly; ``fn(0) = 0``. Values asked for are memoized."""

    def __init__(self, fn: Callable[[float], float]) -> None:
        self.fn = fn
        self.xs: list[float] = [0.0]
        self.ys: list[float] = [0.0]
        self.memo: dict[float, float] = {}
        self._extend(64)

    def _extend(self, upto: float) -> None:
        x = self.xs[-1]
        while x < upto:
            x = x + 1 if x < 64 else float(round(x * 2 ** (1 / 16)))
            self.xs.append(x)
            self.ys.append(self.fn(x))

    def __call__(self, x: float) -> float:
        y = self.memo.get(x)
        if y is not None:
            return y
        if x <= 0:
            return 0.0
        if x > self.xs[-1]:
            self._extend(x)
        i = bisect.bisect_left(self.xs, x)
        x1, y1 = self.xs[i], self.ys[i]
        if x1 == x:
            y = y1
        else:
            x0, y0 = self.xs[i - 1], self.ys[i - 1]
            y = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        self.memo[x] = y
        return y


class StepTimes:
    """Per-stage forward time (s) of one micro-batch under ``layout`` with PP stage sizes ``counts``.

    Raises ValueError when ``counts`` does not have one entry per PP stage.
    """

    def __init__(self, cost: CostModel, layout: Layout, counts: tuple[int, ...]) -> None:
        if len(counts) != layout.pp:
            raise ValueError(f"{len(counts)} stage sizes for pp={layout.pp}")
        self.layout, self.counts = layout, counts
        cluster, tp = cost.cluster, layout.tp
        g = cost.tp_graph(tp, layout.ep)
        layer = g.layer_ops(0)
        self._attn: list[Op] = [op for op in layer if op.kind == OpKind.ATTENTION]
        dense = [op for op in layer if op.kind != OpKind.ATTENTION]
        post = g.post_ops()

        def tokens_fn(ops: list[Op]) -> Callable[[float], float]:
            return lambda t: ops_time_s(ops, [PassShape(num_seqs=t, query_tokens=1, context_len=1)], tp, cluster)

        self._dense = _Curve(tokens_fn(dense))
        self._first = _Curve(tokens_fn(g.pre_ops()))
        self._norm = _Curve(tokens_fn([op for op in post if op.kind not in _ROW_KINDS]))
        self._head = _Curve(tokens_fn([op for op in post if op.kind in _ROW_KINDS]))
        spans = [cost.boundary_spans_nodes(layout, s) for s in range(layout.pp - 1)]
        self._send_curves = {x: _Curve(lambda t, x=x: hidden_send_s([PassShape(t, 1, 1)], cost.cfg.hidden_size,
                                                                     cluster, x)) for x in set(spans)}
        self._send_of = [spans[s] if s < layout.pp - 1 else None for s in range(layout.pp)]
        self._fixed_s = step_overhead_s(cluster)
        gpu = cluster.gpu
        self._rates = attention_rates(gpu)
        self._seq_s = gpu.attention_seq_overhead_us * 1e-6
        self._op_fixed_s = (gpu.op_overhead_us + gpu.attention_overhead_us) * 1e-6
        self._probes = [self._probe(op, tp, gpu.dtype_bytes) for op in self._attn]
        sends = list(self._send_curves.values())
        self._one_send = sends[0] if len(sends) == 1 else None

    @staticmethod
    def _probe(op: Op, tp: int, dtype_bytes: int) -> tuple[float, float, float]:
        """``(FLOPs per query-key pair, bytes per KV token, bytes per query token)`` of an attention op, read
        off the op's own formulas at two shapes (both are linear in those sums)."""
        one, two = PassShape(1, 1, 1), PassShape(1, 1, 2)
        kv = op.device_bytes(two, tp, dtype_bytes) - op.device_bytes(one, tp, dtype_bytes)
        return op.flops(one, tp), kv, op.device_bytes(one, tp, dtype_bytes) - kv

    def attention_s(self, parts: Sequence[AttentionLoad]) -> float:
        """Attention time (s) of one layer for the parts of a micro-batch (each part one kernel at the
        attention rates, :func:`~seesaw.planner.cost.roofline.attention_rates`, as
        :func:`~seesaw.planner.cost.roofline.compute_op_s` costs them, plus the per-sequence and per-op fixed
        costs)."""
        flops_s, bytes_s, overlap = self._rates
        total = 0.0
        for flops_pair, bytes_kv, bytes_q in self._probes:
            op_s = 0.0
            for p in parts:
                if p.seqs <= 0:
                    continue
                op_s += roofline_s(flops_pair * p.pairs / flops_s, (bytes_kv * p.kv_tokens + bytes_q * p.query_tokens)
                                   / bytes_s, overlap) + self._seq_s * p.seqs
            if op_s:
                total += op_s + self._op_fixed_s
        return total

    def stage_times(self, tokens: float, rows: float, parts: Sequence[AttentionLoad],
                    extra_per_layer_s: Sequence[float] | None = None) -> list[float]:
        """Seconds each stage spends on a micro-batch of ``tokens`` new tokens, ``rows`` sampled sequences
        and attention ``parts``; ``extra_per_layer_s[s]`` adds per-layer time on stage ``s`` (KV swaps)."""
        layer_s = self._dense(tokens) + self.attention_s(parts)
        counts = self.counts
        if len(counts) == 1:
            t = counts[0] * (layer_s + (extra_per_layer_s[0] if extra_per_layer_s else 0.0))
            return [t + self._fixed_s + self._first(tokens) + self._norm(tokens) + self._head(rows)]
        if self._one_send is not None:
            send = self._one_send(tokens)
            out = [n * layer_s + self._fixed_s + send for n in counts[:-1]]
            out.append(counts[-1] * layer_s + self._fixed_s)
        else:
            sends = {x: c(tokens) for x, c in self._send_curves.items()}
            out = [n * layer_s + self._fixed_s + (sends[x] if x is not None else 0.0)
                   for n, x in zip(counts, self._send_of)]
        if extra_per_layer_s:
            out = [t + n * e for t, n, e in zip(out, counts, extra_per_layer_s)]
        out[0] += self._first(tokens)
        out[-1] += self._norm(tokens) + self._head(rows)
        return out


def step_times(cost: CostModel, layout: Layout, counts: tuple[int, ...]) -> StepTimes:
    """The :class:`StepTimes` of ``layout`` and ``counts`` under ``cost``, built once per cost model and kept on
    it: every DP replica of a simulated run (512 on a 4,096-GPU cluster), and every candidate simulated in
    one process, shares the tables instead of rebuilding them."""
    cache = cost.__dict__.setdefault("_step_times", {})
    key = (layout, tuple(counts))
    if key not in cache:
        cache[key] = StepTimes(cost, layout, tuple(counts))
    return cache[key]
