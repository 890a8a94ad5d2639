"""Forward passes of the runtime as calibration samples: the IR ops one micro-batch runs, as the cost model
charges them.

A timed step of the runtime (a prefill or decode micro-batch of one stage holding the whole model, on one
rank or on the ``tp`` ranks of a TP group) is turned into a :class:`~seesaw.planner.calibration.fit.ForwardSample`
whose ops are exactly the terms :meth:`CostModel.stage_cost <seesaw.planner.cost.model.CostModel.stage_cost>`
sums for that batch: every compute op of ``pre_ops`` + ``layer_ops(i)`` for each layer + ``post_ops`` of the
graph ``apply_tp(build_graph(cfg), tp)``, each with ``Op.flops(shape, tp)`` / ``Op.device_bytes(shape, tp,
dtype)`` as :func:`~seesaw.planner.cost.roofline.compute_op_s` takes them:

- linear -> a ``gemm`` sample of ``rows = op.tokens(merged shape)``, the lm head an ``lm_head`` one;
- attention -> one ``attention`` sample with FLOPs and bytes summed over the per-sequence
  :class:`PassShape` parts and ``seqs`` = the number of sequences (``compute_op_s`` costs each part with
  ``kernel_time_s`` and adds them; summing FLOPs and bytes first gives the same time whenever every part
  is on the same side of the roofline (decode parts all have about the same FLOPs per byte) or
  ``compute_memory_overlap`` is 0, and otherwise, when a batch mixes memory-bound short prompts with
  compute-bound long ones, a time shorter by ``overlap * (min(sum c, sum m) - sum min(c, m))``);
- every other op -> an ``elementwise`` sample on the merged shape (``merge_parts``).

At ``tp > 1`` the collectives of the pass (all-reduce after the attention output and MLP down projections,
all-gather of the logits) are kept as ``(kind, nbytes)`` pairs, ``nbytes = op.comm_bytes(merge_parts(parts),
dtype)`` exactly as :func:`~seesaw.planner.cost.roofline.comm_op_s` sizes them (per rank for an all-reduce, the
gathered total for an all-gather); at TP 1 there are none.

The ops of a model's layers repeat, so each distinct op (and collective) is stored once with the number of
times it runs.

:func:`in_run_op_samples` turns the runtime's per-instruction timings of the same passes
(``Engine(time_ops=True)``) into op samples of those very ops: each op costed at its shape inside a real
pass, with the caches the other ops leave it and the memory traffic of the other ranks, which timing it
alone does not see (CPU, 2026-11-21: RMSNorm 53 us in a decode pass of 16 sequences against 12 us alone, the
lm head 1.2x).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from seesaw.ir import ModelConfig, ModelGraph, OpKind, PassShape, apply_tp, build_graph
from seesaw.planner.cost.roofline import GEMM_KINDS, gemm_rows, merge_parts
from seesaw.planner.calibration.fit import ForwardSample, OpSample
from seesaw.planner.validation.predict import step_parts

_LAYER_PREFIX = re.compile(r"^layers\.\d+\.")


def forward_graph(cfg: ModelConfig, tp: int = 1) -> ModelGraph:
    """The model's op graph at ``tp`` (what one rank of a TP group holding every layer runs; TP 1: one rank
    holding the whole model)."""
    return apply_tp(build_graph(cfg), tp)


def _graph_tp(graph: ModelGraph, tp: int) -> None:
    applied = graph.g.graph.get("tp", 1)
    if applied != tp:
        raise ValueError(f"the graph is split for tp {applied}, the forward pass asks for tp {tp}")


def forward_ops(graph: ModelGraph, parts: Sequence[PassShape], dtype_bytes: int, tp: int = 1
                ) -> tuple[tuple[OpSample, ...], tuple[int, ...], tuple[tuple[str, float], ...], tuple[int, ...]]:
    """The distinct compute ops of one forward pass over ``parts`` on one rank of a ``tp``-way layout
    (``graph`` = :func:`forward_graph` at that ``tp``; see the module docstring) and how many times each
    runs, then the distinct collectives ``(kind, nbytes)`` (``all_reduce`` | ``all_gather``; none at TP 1)
    and how many times each runs. Ops that cost nothing (no FLOPs, no bytes) are left out, as
    ``compute_op_s`` charges them nothing, not even ``op_overhead_us``."""
    _graph_tp(graph, tp)
    layers = graph.cfg.num_hidden_layers
    ops = graph.pre_ops() + [op for i in range(layers) for op in graph.layer_ops(i)] + graph.post_ops()
    live = [p for p in parts if p.num_seqs > 0]
    merged = merge_parts(parts)
    counts: dict[OpSample, int] = {}
    comms: dict[tuple[str, float], int] = {}
    for op in ops:
        if op.is_comm:
            if tp > 1 and op.kind in (OpKind.ALL_REDUCE, OpKind.ALL_GATHER):
                key = (op.kind.value, op.comm_bytes(merged, dtype_bytes))
                comms[key] = comms.get(key, 0) + 1
            continue
        label = _LAYER_PREFIX.sub("", op.name)
        if op.kind is OpKind.ATTENTION:
            sample = OpSample("attention", sum(op.flops(p, tp) for p in live),
                              sum(op.device_bytes(p, tp, dtype_bytes) for p in live),
                              0.0, seqs=sum(p.num_seqs for p in live), label=label)
        else:
            kind = ("lm_head" if op.kind is OpKind.LM_HEAD else "gemm") if op.kind in GEMM_KINDS else "elementwise"
            sample = OpSample(kind, op.flops(merged, tp), op.device_bytes(merged, tp, dtype_bytes), 0.0,
                              rows=gemm_rows(op, merged), label=label)
        if sample.flops == 0 and sample.nbytes == 0:
            continue
        counts[sample] = counts.get(sample, 0) + 1
    return tuple(counts), tuple(counts.values()), tuple(comms), tuple(comms.values())


def forward_sample(graph: ModelGraph, kind: str, context_lens: Sequence[int], seconds: float,
                   dtype_bytes: int, label: str = "", tp: int = 1) -> ForwardSample:
    """A :class:`ForwardSample` of a recorded step: ``kind`` prefill | decode, each sequence's prompt length
    (prefill) or context length including the new token (decode), measured ``seconds``, on a ``tp``-way
    layout (``graph`` split for that ``tp``, :func:`forward_graph`). The parts are those ``seesaw-validate``
    replays the step with (:func:`seesaw.planner.validation.predict.step_parts`)."""
    if kind not in ("prefill", "decode") or not context_lens:
        raise ValueError(f"a forward sample needs kind prefill or decode and sequences, got {kind!r}, {context_lens!r}")
    parts = step_parts(kind, context_lens)
    ops, counts, comms, comm_counts = forward_ops(graph, parts, dtype_bytes, tp)
    seqs = len(context_lens)
    tokens = sum(context_lens) if kind == "prefill" else seqs
    if not label:
        lo, hi = min(context_lens), max(context_lens)
        span = f"{lo}" if lo == hi else f"{lo}-{hi}"
        label = f"{'' if tp == 1 else f'tp{tp} '}{kind} {seqs} seq{'s' if seqs != 1 else ''}, {tokens} tok, " \
                f"{'prompt' if kind == 'prefill' else 'context'} {span}"
    return ForwardSample(kind, ops, seconds, label, seqs=seqs, tokens=tokens, counts=counts,
                         context_lens=tuple(int(n) for n in context_lens), tp=tp, comms=comms,
                         comm_counts=comm_counts)


def in_run_op_samples(graph: ModelGraph, records: Sequence[dict], dtype_bytes: int, tp: int = 1,
                      per_pass: int = 0) -> list[OpSample]:
    """Op samples from instruction timings inside the runtime's forward passes (``RunMetrics.op_times``).

    Each record ``{"mode": prefill | decode, "context_lens", "ops": [[instruction name, seconds], ...]}`` is
    one micro-batch on one rank of a ``tp``-way layout (``graph`` split for that ``tp``, the rank holding every
    layer). Its compute instructions are matched by name to the ops :func:`forward_ops` gives for the same
    batch (``layers.{i}.`` stripped, so one op of every layer shares a label), and each distinct op becomes
    one :class:`OpSample` with ``in_run`` set: the IR's FLOPs and bytes of one call (``dtype_bytes`` per element)
    and the mean time in seconds of its calls in that pass (one per layer). Collectives, send/recv and sampling are left out (not compute ops of
    the IR). ``per_pass``: keep every ``per_pass``-th record of each (rank, mode) only (0 or 1: all), to bound
    the fit's size. Raises ValueError when a record's mode is neither prefill nor decode.
    """
    _graph_tp(graph, tp)
    step = max(1, per_pass)
    seen: dict[tuple, int] = {}
    out: list[OpSample] = []
    for rec in records:
        mode = rec["mode"]
        if mode not in ("prefill", "decode"):
            raise ValueError(f"an op-timing record needs mode prefill or decode, got {mode!r}")
        key = (rec.get("rank"), mode)
        seen[key] = seen.get(key, -1) + 1
        if seen[key] % step or not rec["context_lens"]:
            continue
        ops, _, _, _ = forward_ops(graph, step_parts(mode, rec["context_lens"]), dtype_bytes, tp)
        by_label = {op.label: op for op in ops}
        times: dict[str, list[float]] = {}
        for name, seconds in rec["ops"]:
            label = _LAYER_PREFIX.sub("", name)
            if label in by_label:
                times.setdefault(label, []).append(float(seconds))
        seqs = len(rec["context_lens"])
        for label, ts in times.items():
            op = by_label[label]
            out.append(OpSample(op.kind, op.flops, op.nbytes, sum(ts) / len(ts), op.rows, op.seqs,
                                f"in-run {mode} {seqs} seq{'s' if seqs != 1 else ''} {label}", in_run=True))
    return out
