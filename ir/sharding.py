"""Tensor- and expert-parallel shard ranges of checkpoint tensors, and the TP/EP degrees a model allows.

This is the one place that turns a :class:`~seesaw.ir.ops.ShardRule` into index ranges; the cost model
(via :meth:`WeightSpec.local_shape`), codegen's shard maps and the runtime's weight loader all use it.
Rules (Megatron-LM tensor parallelism; KV-head replication as in vLLM's ``QKVParallelLinear``):

- column: dim 0 split into ``tp`` equal parts; row: dim 1 split into ``tp`` equal parts (the tensor's
  ``shard_dim`` instead where it says otherwise: the ``[in, out]``-oriented tensors of AWQ/GPTQ checkpoints);
- vocab: dim 0 in contiguous ranges of ``ceil(n / tp)`` rows (the last rank may hold fewer, or none);
- kv_head: whole heads of ``unit`` rows; when ``tp > heads``, ranks ``h * r .. (h + 1) * r - 1`` with
  ``r = tp / heads`` all hold head ``h``;
- replicated, and 1-D row-parallel tensors (a row-parallel layer's bias, added after the all-reduce):
  the whole tensor on every rank;
- an expert's tensor under ``ep``-way expert parallelism (``WeightSpec.ep > 1``): held only by its expert group
  (:func:`expert_range`), split by the rules above over that group's ``tp / ep`` ranks; other ranks hold an
  empty slice ``(dim, 0, 0)``.
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
    if weight.expert is not None and weight.ep > 1:  # expert parallelism: one expert group holds the tensor
        start, stop = expert_range(weight.experts, tp_rank, tp, weight.ep)
        if not start <= weight.expert < stop:
            return weight.shard_dim, 0, 0  # not held: an empty slice
        etp = tp // weight.ep
        tp_rank, tp = tp_rank % etp, etp
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


def holds(weight: WeightSpec, tp_rank: int, tp: int) -> bool:
    """Whether rank ``tp_rank`` of a ``tp``-way group holds any of ``weight``: false only for an expert's tensor
    outside the rank's expert group (:func:`shard_range` gives it an empty slice). Raises as :func:`shard_range`."""
    rng = shard_range(weight, tp_rank, tp)
    return rng is None or rng[2] > rng[1]


def expert_range(experts: int, tp_rank: int, tp: int, ep: int) -> tuple[int, int]:
    """``[start, stop)``: the experts rank ``tp_rank`` of a ``tp``-way group holds under ``ep``-way expert
    parallelism (group ``tp_rank // (tp / ep)`` of ``ep`` contiguous groups, as vLLM places experts without a
    placement map); all ``experts`` when ``ep == 1``. Raises ValueError when ``ep`` divides neither ``tp`` nor
    ``experts``, or the rank is outside the group."""
    if ep < 1 or tp % ep or experts % ep:
        raise ValueError(f"ep={ep} must divide tp={tp} and the {experts} experts")
    if not 0 <= tp_rank < tp:
        raise ValueError(f"tp_rank {tp_rank} outside a tp={tp} group")
    per = experts // ep
    group = tp_rank // (tp // ep)
    return group * per, (group + 1) * per


def tp_problem(cfg: "ModelConfig", tp: int, ep: int = 1) -> str | None:
    """Why ``cfg`` cannot run ``tp``-way tensor parallel with ``ep``-way expert parallelism inside the TP group,
    or None when it can (see :func:`check_tp`)."""
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        return f"{tp!r} is not a positive integer"
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    if ep != 1:
        if not cfg.is_moe:
            return f"ep={ep} needs a mixture of experts ({cfg.name} is dense)"
        if isinstance(ep, bool) or not isinstance(ep, int) or ep < 1 or tp % ep:
            return f"ep={ep} must divide tp={tp}"
        if cfg.num_experts % ep:
            return f"ep={ep} must divide num_experts={cfg.num_experts}"
    etp = tp // ep
    ffn, ffn_name = ((cfg.moe_intermediate_size, "moe_intermediate_size") if cfg.is_moe and
                     cfg.architecture != "MixtralForCausalLM" else (cfg.intermediate_size, "intermediate_size"))
    if heads % tp:
        return f"tp={tp} must divide num_attention_heads={heads}"
    if ffn % etp:
        return (f"tp={tp} must divide {ffn_name}={ffn}" if ep == 1 else
                f"tp/ep={etp} must divide {ffn_name}={ffn}")
    if kv % tp and tp % kv:
        return f"tp={tp} must divide num_key_value_heads={kv} or be a multiple of it"
    return quant_tp_problem(cfg, tp, ep)  # quantization blocks and groups must not be cut


def valid_tp_degrees(cfg: "ModelConfig") -> list[int]:
    """Every ``tp`` that :func:`check_tp` accepts for ``cfg`` with some ``ep`` (a mixture of experts' TP degree
    may need its experts split by expert parallelism), ascending (all divide the query heads)."""
    heads = cfg.num_attention_heads
    return [t for t in range(1, heads + 1) if heads % t == 0 and valid_ep_degrees(cfg, t)]


def valid_ep_degrees(cfg: "ModelConfig", tp: int) -> list[int]:
    """Every ``ep`` that :func:`tp_problem` accepts with ``tp`` for ``cfg``, ascending (``[1]`` or ``[]`` for a
    dense model)."""
    if not cfg.is_moe:
        return [1] if tp_problem(cfg, tp) is None else []
    return [e for e in range(1, tp + 1) if tp % e == 0 and tp_problem(cfg, tp, e) is None]


def check_tp(cfg: "ModelConfig", tp: int, ep: int = 1) -> None:
    """Raise :class:`InputError` (field ``tp``, or ``ep`` for a problem only expert parallelism has) unless ``tp``
    divides the attention heads and each expert group's FFN width, and either divides the KV heads or is a multiple
    of them (KV heads then replicated); ``ep`` must divide ``tp`` and the experts."""
    problem = tp_problem(cfg, tp, ep)
    if problem is not None and ep != 1 and tp_problem(cfg, tp) is None:  # the split of the experts is the problem
        valid = ", ".join(map(str, valid_ep_degrees(cfg, tp)))
        raise InputError("ep", f"{problem} (valid with tp={tp} for {cfg.name}: {valid or 'none'})")
    if problem is not None and ep == 1 and valid_ep_degrees(cfg, tp):
        eps = ", ".join(map(str, valid_ep_degrees(cfg, tp)))
        raise InputError("tp", f"{problem}; expert parallelism avoids the cut (valid ep with "
                               f"tp={tp}: {eps})")
    if problem is not None:
        valid = ", ".join(map(str, valid_tp_degrees(cfg)))
        raise InputError("tp", f"{problem} (valid for {cfg.name}: {valid})")
