"""Forward passes of the runtime as calibration samples: the IR ops one micro-batch runs, as the cost model
charges them.

A timed step of the runtime (a prefill or decode micro-batch of one rank holding the whole model, TP 1) is
turned into a :class:`~seesaw.planner.hardware.fit.ForwardSample` whose ops are exactly the terms
:meth:`CostModel.stage_cost <seesaw.planner.cost.model.CostModel.stage_cost>` sums for that batch: every
compute op of ``pre_ops`` + ``layer_ops(i)`` for each layer + ``post_ops`` (collectives skipped: there are
none at TP 1), each with ``Op.flops`` / ``Op.device_bytes`` as :func:`~seesaw.planner.cost.roofline.compute_op_s`
takes them:

- linear and lm head -> a ``gemm`` sample of ``rows = op.tokens(merged shape)``;
- attention -> one ``attention`` sample with FLOPs and bytes summed over the per-sequence
  :class:`PassShape` parts and ``seqs`` = the number of sequences (``compute_op_s`` costs each part with
  ``kernel_time_s`` and adds them; summing FLOPs and bytes first gives the same time whenever every part
  is on the same side of the roofline (decode parts all have about the same FLOPs per byte) or
  ``compute_memory_overlap`` is 0, and otherwise, when a batch mixes memory-bound short prompts with
  compute-bound long ones, a time shorter by ``overlap * (min(sum c, sum m) - sum min(c, m))``);
- every other op -> an ``elementwise`` sample on the merged shape (``merge_parts``).

The ops of a model's layers repeat, so each distinct op is stored once with the number of times it runs.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from seesaw.ir import ModelConfig, ModelGraph, OpKind, PassShape, apply_tp, build_graph
from seesaw.planner.cost.roofline import merge_parts
from seesaw.planner.hardware.fit import ForwardSample, OpSample
from seesaw.planner.validation.predict import step_parts

_GEMM_KINDS = {OpKind.LINEAR, OpKind.LM_HEAD}
_LAYER_PREFIX = re.compile(r"^layers\.\d+\.")


def forward_graph(cfg: ModelConfig) -> ModelGraph:
    """The model's op graph at TP 1 (what one rank holding the whole model runs)."""
    return apply_tp(build_graph(cfg), 1)


def forward_ops(graph: ModelGraph, parts: Sequence[PassShape],
                dtype_bytes: int) -> tuple[tuple[OpSample, ...], tuple[int, ...]]:
    """The distinct compute ops of one forward pass over ``parts`` on one TP-1 rank (see the module
    docstring) and how many times each runs. Ops that cost nothing (no FLOPs, no bytes) are left out, as
    ``compute_op_s`` charges them nothing, not even ``op_overhead_us``."""
    layers = graph.cfg.num_hidden_layers
    ops = graph.pre_ops() + [op for i in range(layers) for op in graph.layer_ops(i)] + graph.post_ops()
    live = [p for p in parts if p.num_seqs > 0]
    merged = merge_parts(parts)
    counts: dict[OpSample, int] = {}
    for op in ops:
        if op.is_comm:
            continue
        label = _LAYER_PREFIX.sub("", op.name)
        if op.kind is OpKind.ATTENTION:
            sample = OpSample("attention", sum(op.flops(p, 1) for p in live),
                              sum(op.device_bytes(p, 1, dtype_bytes) for p in live),
                              0.0, seqs=sum(p.num_seqs for p in live), label=label)
        else:
            kind = "gemm" if op.kind in _GEMM_KINDS else "elementwise"
            sample = OpSample(kind, op.flops(merged, 1), op.device_bytes(merged, 1, dtype_bytes), 0.0,
                              rows=op.tokens(merged) if kind == "gemm" else None, label=label)
        if sample.flops == 0 and sample.nbytes == 0:
            continue
        counts[sample] = counts.get(sample, 0) + 1
    return tuple(counts), tuple(counts.values())


def forward_sample(graph: ModelGraph, kind: str, context_lens: Sequence[int], seconds: float,
                   dtype_bytes: int, label: str = "") -> ForwardSample:
    """A :class:`ForwardSample` of a recorded step: ``kind`` prefill | decode, each sequence's prompt length
    (prefill) or context length including the new token (decode), measured ``seconds``. The parts are
    those ``seesaw-validate`` replays the step with (:func:`seesaw.planner.validation.predict.step_parts`)."""
    if kind not in ("prefill", "decode") or not context_lens:
        raise ValueError(f"a forward sample needs kind prefill or decode and sequences, got {kind!r}, {context_lens!r}")
    parts = step_parts(kind, context_lens)
    ops, counts = forward_ops(graph, parts, dtype_bytes)
    seqs = len(context_lens)
    tokens = sum(context_lens) if kind == "prefill" else seqs
    if not label:
        lo, hi = min(context_lens), max(context_lens)
        span = f"{lo}" if lo == hi else f"{lo}-{hi}"
        label = f"{kind} {seqs} seq{'s' if seqs != 1 else ''}, {tokens} tok, " \
                f"{'prompt' if kind == 'prefill' else 'context'} {span}"
    return ForwardSample(kind, ops, seconds, label, seqs=seqs, tokens=tokens, counts=counts,
                         context_lens=tuple(int(n) for n in context_lens))
