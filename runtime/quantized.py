"""Quantized checkpoints in the runtime: FP8 weights are dequantized to the compute dtype when a rank loads its
shard; INT4 plans and checkpoints are refused (no INT4 kernels yet).

An FP8 linear's checkpoint holds the e4m3 ``weight`` and its scale, named as the checkpoint format names it
(:mod:`seesaw.ir.quant`): ``weight_scale_inv`` per ``block_size`` block (``fp8`` with ``weight_block_size``),
``weight_scale`` per tensor (``[]`` or ``[1]``) or per output channel (``[out, 1]``). The dequantized weight is
``weight * scale``, each element times the scale of its block, row or tensor, as transformers'
``Fp8Dequantize`` and vLLM's loaders compute it. A rank reads only its slice of the weight and the scales that
cover it. Activations are not quantized (``input_scale`` is read by no one): the rank computes in its own dtype
on the dequantized weights, so its tokens equal those of the unquantized model with these weights.
"""
from __future__ import annotations

from typing import Any

import torch

from seesaw.ir.errors import InputError

#: Last name component of the tensors that only serve to dequantize a weight (never loaded on their own).
SCALE_SUFFIXES = frozenset({"weight_scale", "weight_scale_inv", "input_scale"})


def is_scale(name: str) -> bool:
    """Whether checkpoint tensor ``name`` is a quantization scale (``...proj.weight_scale``, ...)."""
    return name.rsplit(".", 1)[-1] in SCALE_SUFFIXES


def scale_name(weight: str, names) -> str | None:
    """The scale tensor of FP8 weight ``weight`` (``X.weight``) among ``names``, or None when the weight is
    stored unquantized (``X.weight_scale_inv`` is looked for first, then ``X.weight_scale``)."""
    if not weight.endswith(".weight"):
        return None
    base = weight[: -len(".weight")]
    return next((n for n in (f"{base}.weight_scale_inv", f"{base}.weight_scale") if n in names), None)


def dequantize(weight: torch.Tensor, scale: torch.Tensor, block_size: tuple[int, int] | None,
               rows: tuple[int, int], cols: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """``weight * scale`` in ``dtype`` for a slice of an FP8 weight.

    ``weight``: the slice, rows ``[rows[0], rows[1])`` and columns ``[cols[0], cols[1])`` of the full tensor;
    ``scale``: the full scale tensor (one element: per tensor; ``[out, 1]``: per output channel; else one per
    ``block_size = (bn, bk)`` block, shape ``[ceil(out / bn), ceil(in / bk)]``). Raises ValueError when the
    scale's shape fits none of these.
    """
    x = weight.to(torch.float32)
    s = scale.to(torch.float32)
    if s.numel() == 1:
        return (x * s.reshape(())).to(dtype)
    if block_size is None:
        if s.dim() != 2 or s.shape[1] != 1:
            raise ValueError(f"scale of shape {list(s.shape)} is neither per tensor nor per output channel")
        return (x * s[rows[0]:rows[1]]).to(dtype)
    bn, bk = block_size
    r = torch.arange(rows[0], rows[1]) // bn
    c = torch.arange(cols[0], cols[1]) // bk
    if s.dim() != 2 or (r.numel() and int(r[-1]) >= s.shape[0]) or (c.numel() and int(c[-1]) >= s.shape[1]):
        raise ValueError(f"scale of shape {list(s.shape)} does not cover {block_size} blocks of the weight")
    return (x * s[r][:, c]).to(dtype)


def check_runnable(fingerprint: dict[str, Any], source: str | None = None, field: str = "model.fingerprint") -> None:
    """Refuse INT4 weights (AWQ, GPTQ, compressed-tensors W4A16) before any work: the planner plans them, this
    runtime has no INT4 kernels yet. ``fingerprint``: a plan's or a checkpoint's
    (:meth:`~seesaw.ir.config.ModelConfig.fingerprint`). Raises :class:`InputError` (one line)."""
    q = fingerprint.get("quantization")
    if isinstance(q, dict) and q.get("weight_bits") == 4:
        raise InputError(f"{field}.quantization", f"'{q.get('method')}' INT4 weights cannot run on seesaw-run yet "
                         "(no INT4 kernels; FP8 and unquantized checkpoints run): run the plan's layout on an engine "
                         "that has them (seesaw-plan emit PLAN --engine vllm)", source)
