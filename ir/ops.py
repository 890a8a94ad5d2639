"""Operator nodes of the graph IR and their per-rank cost terms (FLOPs, memory bytes, message bytes).

The formulas follow the cost-model table of DESIGN.md section 4 (after the Seesaw paper's appendix):

- linear: ``2 * tokens * in * out / tp`` FLOPs; bytes = this rank's weight shard (each tensor in its stored
  dtype: 1 byte per FP8 weight, 0.5 per packed INT4 weight, plus scales) + input read + output written.
- attention (causal): ``4 * d * (h_q / tp) * num_seqs * (q * c - q * (q - 1) / 2)`` FLOPs, where ``q`` is
  the query tokens and ``c`` the context length per sequence (query token ``j`` sees ``c - q + j + 1``
  keys, summed over ``j``); prefill (``q = c = s``) gives ``~2 b s^2 h_q d`` (the table's causal half),
  decode (``q = 1``) gives ``4 b c h_q d``. Bytes = KV read ``num_seqs * c * 2 * h_kv_rank * d *
  kv_bytes`` (``dims["kv_dtype_bytes"]`` of an FP8 KV cache, else ``dtype_bytes``) + Q read + O written.
- lm_head: runs on the last token of each sequence only, so its tokens are ``num_seqs``.
- all_reduce / send / recv message: ``tokens * hidden * dtype_bytes``; all_gather of the lm-head logits:
  ``num_seqs * vocab * dtype_bytes``.

Element-wise ops (rmsnorm, rope, silu_mul, residual_add) are memory-bound; their FLOP counts are small
per-element estimates (stated per op below) that only matter for completeness. Collectives and
send/recv have no device FLOPs or bytes here: their cost is the message size in :meth:`Op.comm_bytes`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class OpKind(str, Enum):
    """What an IR node computes."""

    EMBEDDING = "embedding"
    RMSNORM = "rmsnorm"
    LINEAR = "linear"
    ROPE = "rope"
    ATTENTION = "attention"
    SILU_MUL = "silu_mul"
    RESIDUAL_ADD = "residual_add"
    LM_HEAD = "lm_head"
    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    SEND = "send"
    RECV = "recv"
    ROUTER = "router"
    MOE_EXPERTS = "moe_experts"


COMM_KINDS = frozenset({OpKind.ALL_REDUCE, OpKind.ALL_GATHER, OpKind.SEND, OpKind.RECV})


class ShardRule(str, Enum):
    """How a checkpoint tensor is split over the ``tp`` ranks of a tensor-parallel group (Megatron-LM).

    column: split the output dim (dim 0 of a ``[out, in]`` weight); row: split the input dim (dim 1);
    vocab: split the vocabulary dim 0 in contiguous ceil-sized ranges; replicated: every rank holds all of
    it; kv_head: column-parallel over whole KV heads, and when ``tp`` exceeds the KV heads each head is
    replicated on ``tp / kv_heads`` consecutive ranks (vLLM's ``QKVParallelLinear``).
    """

    COLUMN = "column"
    ROW = "row"
    VOCAB = "vocab"
    REPLICATED = "replicated"
    KV_HEAD = "kv_head"


@dataclass(frozen=True)
class WeightSpec:
    """One checkpoint tensor: its exact Hugging Face name, full shape (elements), and sharding rule.

    ``shard_dim`` is the dimension the rule splits (0 for column/vocab/kv_head, 1 for row, unused for
    replicated; a quantized checkpoint's ``[in, out]``-oriented tensors split the other one). ``unit`` is the
    indivisible block along ``shard_dim`` in rows: ``head_dim`` for kv_head weights and biases, else 1.
    ``dtype``: the stored dtype (:data:`DTYPE_BYTES`) of a tensor not in the model's compute dtype (quantized
    weights, their scales and zero points), else None. A mixture of experts' tensors name their ``expert``
    (index) of ``experts``; ``ep`` is the expert-parallel degree the graph was lowered for (set by
    :func:`~seesaw.ir.passes.apply_tp`): with ``ep > 1`` only one expert group of a TP group holds the tensor,
    split over that group's ``tp / ep`` ranks (:func:`~seesaw.ir.sharding.shard_range`).
    """

    name: str
    shape: tuple[int, ...]
    shard: ShardRule
    shard_dim: int = 0
    unit: int = 1
    dtype: str | None = None
    expert: int | None = None
    experts: int = 0
    ep: int = 1

    @property
    def numel(self) -> int:
        """Elements in the full (unsharded) tensor."""
        return math.prod(self.shape)

    def local_shape(self, tp: int, tp_rank: int = 0) -> tuple[int, ...]:
        """Shape of ``tp_rank``'s shard (rank 0 holds the largest shard under every rule; an expert's tensor
        that ``tp_rank``'s expert group does not hold has size 0 along its ``shard_dim``)."""
        from seesaw.ir.sharding import shard_range  # sharding imports this module

        rng = shard_range(self, tp_rank, tp)
        if rng is None:
            return self.shape
        dim, start, stop = rng
        return tuple(stop - start if i == dim else n for i, n in enumerate(self.shape))

    def local_numel(self, tp: int, tp_rank: int = 0) -> int:
        """Elements in ``tp_rank``'s shard."""
        return math.prod(self.local_shape(tp, tp_rank))

    def element_bytes(self, dtype_bytes: int) -> int:
        """Bytes per stored element: :data:`DTYPE_BYTES` of ``dtype``, or ``dtype_bytes`` (the compute dtype's)
        when it is None."""
        return DTYPE_BYTES[self.dtype] if self.dtype is not None else dtype_bytes

    def local_bytes(self, tp: int = 1, dtype_bytes: int = 2, tp_rank: int = 0) -> int:
        """Bytes of ``tp_rank``'s shard, elements of ``dtype`` (or ``dtype_bytes`` each when it is None)."""
        return self.local_numel(tp, tp_rank) * self.element_bytes(dtype_bytes)


#: Bytes per element of the dtypes a checkpoint tensor may be stored in (``WeightSpec.dtype``).
DTYPE_BYTES: dict[str, int] = {"float8_e4m3fn": 1, "float8_e5m2": 1, "int8": 1, "uint8": 1, "float16": 2,
                               "bfloat16": 2, "float32": 4, "int32": 4, "int64": 8}


@dataclass(frozen=True)
class PassShape:
    """The batch one forward pass processes.

    ``num_seqs`` sequences each contribute ``query_tokens`` new tokens and attend over ``context_len``
    tokens (including the new ones). Prefill: ``query_tokens = context_len = prompt length``. Decode:
    ``query_tokens = 1``, ``context_len`` = current length including the new token.
    """

    num_seqs: int
    query_tokens: int
    context_len: int

    def __post_init__(self) -> None:
        if self.num_seqs < 0 or self.query_tokens < 0 or self.context_len < self.query_tokens:
            raise ValueError(f"invalid pass shape {self}: need 0 <= query_tokens <= context_len")

    @property
    def tokens(self) -> int:
        """Tokens processed by token-parallel ops: ``num_seqs * query_tokens``."""
        return self.num_seqs * self.query_tokens

    @classmethod
    def prefill(cls, num_seqs: int, prompt_len: int) -> "PassShape":
        return cls(num_seqs, prompt_len, prompt_len)

    @classmethod
    def decode(cls, num_seqs: int, context_len: int) -> "PassShape":
        return cls(num_seqs, 1, context_len)


def experts_touched(experts: int, top_k: int, tokens: float) -> float:
    """Expected number of distinct experts that ``tokens`` tokens route to when each picks ``top_k`` of
    ``experts`` uniformly at random: ``E * (1 - (1 - k / E) ** T)`` (a given expert is missed by one token with
    probability ``1 - k/E``). Real routers are skewed towards some experts, so this is an upper bound on the
    experts a decode step reads (an assumption, not a measurement)."""
    if tokens <= 0 or experts <= 0:
        return 0.0
    return experts * (1.0 - (1.0 - top_k / experts) ** tokens)


def local_heads(heads: int, tp: int) -> int:
    """Heads one rank holds: ``heads / tp``, or 1 when ``tp`` exceeds ``heads`` (head replication)."""
    return -(-heads // tp)


@dataclass(frozen=True, eq=False)
class Op:
    """One node of the IR.

    ``name`` is the unique node id; ``layer`` the decoder layer index (None for embedding/final norm/lm
    head); ``weights`` the checkpoint tensors it reads (a linear's bias follows its weight); ``dims`` the
    sizes it needs, by kind: linear ``in``/``out``; embedding and lm_head ``vocab``/``hidden``; rmsnorm
    ``hidden`` (the normalized width) and ``heads`` (1, or the head count of a per-head q/k norm);
    rope/attention ``q_heads``/``kv_heads``/``head_dim``; silu_mul ``intermediate``; residual_add,
    all_reduce, send, recv ``hidden`` (send/recv also ``src_stage``/``dst_stage``); all_gather ``vocab``;
    router ``hidden``/``experts``/``top_k``/``normalize`` (renormalize the top-k weights); moe_experts
    ``hidden``/``experts``/``top_k``/``intermediate`` (each expert's gated FFN width; its weights are the
    experts' gate, up and down projections, in expert order).
    """

    name: str
    kind: OpKind
    layer: int | None = None
    weights: tuple[WeightSpec, ...] = ()
    dims: dict[str, Any] = field(default_factory=dict)

    # -- sizes ------------------------------------------------------------------------------------------
    def tokens(self, shape: PassShape) -> int:
        """Rows this op processes: ``num_seqs`` for lm_head/all_gather (last token only), else tokens."""
        if self.kind in (OpKind.LM_HEAD, OpKind.ALL_GATHER):
            return shape.num_seqs
        return shape.tokens

    def _linear_local(self, tp: int) -> tuple[int, int]:
        """``(out, in)`` of this rank's weight shard (from ``dims`` when the first tensor is packed, INT4)."""
        w, d = self.weights[0], self.dims
        if w.shape == (d.get("out"), d.get("in")) or "out" not in d:
            out_l, in_l = w.local_shape(tp)
            return out_l, in_l
        if w.shard is ShardRule.ROW:
            return d["out"], d["in"] // tp
        if w.shard is ShardRule.KV_HEAD:
            unit = d.get("unit", 1)
            return local_heads(d["out"] // unit, tp) * unit, d["in"]
        return d["out"] // tp, d["in"]

    def _heads(self, tp: int) -> tuple[int, int]:
        return local_heads(self.dims["q_heads"], tp), local_heads(self.dims["kv_heads"], tp)

    def expert_rows(self, shape: PassShape) -> float:
        """moe_experts: mean rows of one touched expert's GEMMs, ``tokens * top_k / experts touched``."""
        t = self.tokens(shape)
        touched = experts_touched(self.dims["experts"], self.dims["top_k"], t)
        return t * self.dims["top_k"] / touched if touched else 0.0

    def _expert_width(self, tp: int) -> float:
        """This rank's share of one expert's FFN width (column-parallel gate/up, row-parallel down): ``ffn / tp``,
        ``ffn / (tp / ep)`` under ``ep``-way expert parallelism."""
        return self.dims["intermediate"] * self.dims.get("ep", 1) / tp

    def _expert_groups(self) -> int:
        """``ep``: the expert groups the experts are split over (1 without expert parallelism)."""
        return self.dims.get("ep", 1)

    # -- cost terms -------------------------------------------------------------------------------------
    def flops(self, shape: PassShape, tp: int = 1) -> float:
        """FLOPs this op costs one rank of a ``tp``-way group for one pass (DESIGN.md section 4).

        moe_experts: each of the ``tokens * top_k`` (token, expert) pairs runs the expert's three projections
        (``2 * 3 * hidden * ffn / tp``), its SiLU-and-multiply (5 per element) and the weighted combine
        (2 per hidden element); under ``ep``-way expert parallelism a rank runs ``1 / ep`` of the pairs (balanced
        routing: the cost model charges the busiest group's excess) at width ``ffn / (tp / ep)``; router:
        ``2 * tokens * hidden * experts`` plus softmax and top-k (~5 per logit).
        """
        t = self.tokens(shape)
        k, d = self.kind, self.dims
        if k is OpKind.MOE_EXPERTS:
            pairs, ffn = t * d["top_k"] / self._expert_groups(), self._expert_width(tp)
            return pairs * (6.0 * d["hidden"] * ffn + 5.0 * ffn + 2.0 * d["hidden"])
        if k is OpKind.ROUTER:
            return t * d["experts"] * (2.0 * d["hidden"] + 5.0)
        if k is OpKind.LINEAR:
            out_l, in_l = self._linear_local(tp)
            return 2.0 * t * in_l * out_l
        if k is OpKind.LM_HEAD:
            return 2.0 * t * d["hidden"] * self.weights[0].local_shape(tp)[0]
        if k is OpKind.ATTENTION:
            hq, _ = self._heads(tp)
            q, c = shape.query_tokens, shape.context_len
            return 4.0 * d["head_dim"] * hq * shape.num_seqs * (q * c - q * (q - 1) / 2)
        if k is OpKind.RMSNORM:  # square, sum, scale, weight multiply: ~4 per element
            return 4.0 * t * d["hidden"] * local_heads(d["heads"], tp)
        if k is OpKind.ROPE:  # x*cos + rotate(x)*sin: 3 per element of q and k
            hq, hkv = self._heads(tp)
            return 3.0 * t * (hq + hkv) * d["head_dim"]
        if k is OpKind.SILU_MUL:  # silu ~4 + multiply 1 per element
            return 5.0 * t * local_heads(d["intermediate"], tp)
        if k is OpKind.RESIDUAL_ADD:
            return 1.0 * t * d["hidden"]
        return 0.0  # embedding (a gather), collectives, send/recv

    def device_bytes(self, shape: PassShape, tp: int = 1, dtype_bytes: int = 2) -> float:
        """Memory traffic (bytes) of one rank: weight shard + activations read/written + KV read.

        Embedding reads only the ``tokens`` looked-up rows, not its whole table. Collectives and
        send/recv return 0 (see :meth:`comm_bytes`).
        """
        t = self.tokens(shape)
        k, d, b = self.kind, self.dims, dtype_bytes
        if k is OpKind.MOE_EXPERTS:  # only the experts the batch routes to are read (experts_touched)
            ep = self._expert_groups()  # a rank holds and reads 1/ep of the experts (whole or tp/ep-way split)
            per_expert = self.weight_bytes(tp, b) / (d["experts"] / ep)
            pairs, ffn = t * d["top_k"] / ep, self._expert_width(tp)
            acts = t * d["hidden"] + pairs * (2 * d["hidden"] + 3 * ffn)  # input, gathered rows, gate/up/act, out
            return experts_touched(d["experts"], d["top_k"], t) / ep * per_expert + float(acts * b)
        if k is OpKind.ROUTER:
            return self.weight_bytes(tp, b) + float(t * (d["hidden"] + d["experts"]) * b)
        if k is OpKind.LINEAR:
            out_l, in_l = self._linear_local(tp)
            return self.weight_bytes(tp, b) + float(t * (in_l + out_l) * b)
        if k is OpKind.LM_HEAD:
            vocab_l = self.weights[0].local_shape(tp)[0]
            return self.weight_bytes(tp, b) + float(t * (d["hidden"] + vocab_l) * b)
        if k is OpKind.EMBEDDING:
            return float(2 * t * d["hidden"] * b)  # rows read + hidden states written
        if k is OpKind.ATTENTION:
            hq, hkv = self._heads(tp)
            kv = shape.num_seqs * shape.context_len * 2 * hkv * d["head_dim"] * d.get("kv_dtype_bytes", b)
            return float(kv + 2 * t * hq * d["head_dim"] * b)  # + Q read + O written
        if k is OpKind.RMSNORM:
            width = d["hidden"] * local_heads(d["heads"], tp)
            return self.weight_bytes(tp, b) + float(2 * t * width * b)
        if k is OpKind.ROPE:
            hq, hkv = self._heads(tp)
            return float(2 * t * (hq + hkv) * d["head_dim"] * b)
        if k is OpKind.SILU_MUL:
            return float(3 * t * local_heads(d["intermediate"], tp) * b)  # gate, up read; product written
        if k is OpKind.RESIDUAL_ADD:
            return float(3 * t * d["hidden"] * b)
        return 0.0

    def comm_bytes(self, shape: PassShape, dtype_bytes: int = 2) -> float:
        """Message size in bytes for all_reduce/send/recv (``tokens * hidden``) and all_gather
        (``num_seqs * vocab``); 0 for compute ops."""
        if self.kind in (OpKind.ALL_REDUCE, OpKind.SEND, OpKind.RECV):
            return float(shape.tokens * self.dims["hidden"] * dtype_bytes)
        if self.kind is OpKind.ALL_GATHER:
            return float(shape.num_seqs * self.dims["vocab"] * dtype_bytes)
        return 0.0

    def weight_bytes(self, tp: int = 1, dtype_bytes: int = 2) -> int:
        """Bytes of this op's weights held by one rank (rank 0, the largest shard): each tensor in its stored
        dtype (:meth:`WeightSpec.local_bytes`), ``dtype_bytes`` per element for those in the compute dtype."""
        return sum(w.local_bytes(tp, dtype_bytes) for w in self.weights)

    @property
    def is_comm(self) -> bool:
        """True for all_reduce, all_gather, send and recv."""
        return self.kind in COMM_KINDS
