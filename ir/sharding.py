"""Tensor-parallel shard ranges of checkpoint tensors, and the TP degrees a model allows.

This is the one place that turns a :class:`~seesaw.ir.ops.ShardRule` into index ranges; the cost model
(via :meth:`WeightSpec.local_shape`), codegen's shard maps and the runtime's weight loader all use it.
Rules (Megatron-LM tensor parallelism; KV-head replication as in vLLM's ``QKVParallelLinear``):

- column: dim 0 split into ``tp`` equal parts; row: dim 1 split into ``tp`` equal parts (the tensor's
  ``shard_dim`` instead where it says otherwise: the ``[in, out]``-oriented tensors of AWQ/GPTQ checkpoints);
- vocab: dim 0 in contiguous ranges of ``ceil(n / tp)`` rows (the last rank may hold fewer, or none);
- kv_head: whole heads of ``unit`` rows; when ``tp > heads``, ranks ``h * r .. (h + 1) * r - 1`` with
  ``r = tp / heads`` all hold head ``h``;
- replicated, and 1-D row-parallel tensors (a row-parallel layer's bias, added after the all-reduce):
  the whole tensor on every rank.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from seesaw.ir.errors import InputError
from seesaw.ir.ops import ShardRule, WeightSpec
from seesaw.ir.quant import quant_tp_problem

if TYPE_CHECKING:
    from seesaw.ir.config import ModelConfig


def _even(weight: WeightSpec, dim: int, tp_rank: int, tp: int) -> tuple[int, int, int]:
    n = weight.shape[dim]
    if n % tp:
        raise InputError("tp", f"{weight.name} dim {dim} of size {n} is not divisible by tp={tp}")
    part = n // tp
    return dim, tp_rank * part, (tp_rank + 1) * part


def shard_range(weight: WeightSpec, tp_rank: int, tp: int) -> tuple[int, int, int] | None:
    """``(dim, start, stop)``: the slice ``tensor.narrow(dim, start, stop - start)`` rank ``tp_rank`` of a
    ``tp``-way group holds, or ``None`` when it holds the whole tensor (replicated).

    Raises ValueError for ``tp < 1`` or a rank outside ``[0, tp)``; :class:`InputError` (field ``tp``)
    when the tensor cannot be split that way (size not divisible, or KV heads neither divisible by nor
    dividing ``tp``).
    """
    if tp < 1 or not 0 <= tp_rank < tp:
        raise ValueError(f"tp_rank {tp_rank} outside a tp={tp} group")
    rule = weight.shard
    if rule is ShardRule.REPLICATED or (rule is ShardRule.ROW and len(weight.shape) == 1):
        return None
    if rule in (ShardRule.COLUMN, ShardRule.ROW):
        return _even(weight, weight.shard_dim, tp_rank, tp)
    if rule is ShardRule.VOCAB:
        n = weight.shape[0]
        part = -(-n // tp)
        start = min(n, tp_rank * part)
        return 0, start, min(n, start + part)
    if rule is ShardRule.KV_HEAD:
        dim, n, unit = weight.shard_dim, weight.shape[weight.shard_dim], weight.unit
        if n % unit:
            raise InputError("tp", f"{weight.name} dim {dim} of size {n} is not whole heads of {unit}")
        heads = n // unit
        if tp <= heads:
            if heads % tp:
                raise InputError("tp", f"tp={tp} does not divide the {heads} KV heads of {weight.name}")
            per = heads // tp
            return dim, tp_rank * per * unit, (tp_rank + 1) * per * unit
        if tp % heads:
            raise InputError("tp", f"tp={tp} is not a multiple of the {heads} KV heads of {weight.name}")
        head = tp_rank // (tp // heads)
        return dim, head * unit, (head + 1) * unit
    raise ValueError(f"unknown shard rule {rule!r}")  # pragma: no cover


def tp_problem(cfg: "ModelConfig", tp: int) -> str | None:
    """Why ``cfg`` cannot run ``tp``-way tensor parallel, or None when it can (see :func:`check_tp`)."""
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        return f"{tp!r} is not a positive integer"
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    ffn, ffn_name = ((cfg.moe_intermediate_size, "moe_intermediate_size") if cfg.is_moe and
                     cfg.architecture != "MixtralForCausalLM" else (cfg.intermediate_size, "intermediate_size"))
    if heads % tp:
        return f"tp={tp} must divide num_attention_heads={heads}"
    if ffn % tp:
        return f"tp={tp} must divide {ffn_name}={ffn}"
    if kv % tp and tp % kv:
        return f"tp={tp} must divide num_key_value_heads={kv} or be a multiple of it"
    return quant_tp_problem(cfg, tp)  # quantization blocks and groups must not be cut


def valid_tp_degrees(cfg: "ModelConfig") -> list[int]:
    """Every ``tp`` that :func:`check_tp` accepts for ``cfg``, ascending (all divide the query heads)."""
    heads = cfg.num_attention_heads
    return [t for t in range(1, heads + 1) if heads % t == 0 and tp_problem(cfg, t) is None]


def check_tp(cfg: "ModelConfig", tp: int) -> None:
    """Raise :class:`InputError` (field ``tp``) unless ``tp`` divides the attention heads and the FFN
    width, and either divides the KV heads or is a multiple of them (KV heads then replicated)."""
    problem = tp_problem(cfg, tp)
    if problem is not None:
        valid = ", ".join(map(str, valid_tp_degrees(cfg)))
        raise InputError("tp", f"{problem} (valid for {cfg.name}: {valid})")
