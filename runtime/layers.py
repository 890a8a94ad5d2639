"""Per-rank math of the decoder ops (no communication: collectives are separate plan instructions).

Tensor conventions: a batch is flattened over tokens, ``x: [T, hidden]``; projections of one rank hold
its TP shard (column-parallel: output rows ``[out/tp, in]``; row-parallel: input columns ``[out, in/tp]``),
as in Megatron-LM / vLLM's ``ColumnParallelLinear`` and ``RowParallelLinear``. Formulas follow the Hugging
Face Llama / Qwen2 / Qwen3 modeling code (RMSNorm in float32, rotate-half RoPE).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x [T, in] @ weight[out, in].T (+ bias [out]) -> [T, out]``."""
    return F.linear(x, weight, bias)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim (HF ``LlamaRMSNorm``): ``x / sqrt(mean(x^2) + eps) * weight``."""
    dtype = x.dtype
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(dtype)


def vocab_parallel_embedding(ids: torch.Tensor, weight: torch.Tensor, vocab_start: int) -> torch.Tensor:
    """Rows of this rank's vocabulary slice ``[vocab_start, vocab_start + V_local)``; other ids give zeros,
    so an all-reduce over the TP group completes the lookup. ``ids [T] -> [T, hidden]``."""
    local = ids - vocab_start
    valid = (local >= 0) & (local < weight.shape[0])
    out = F.embedding(local.clamp(0, weight.shape[0] - 1), weight)
    return out * valid.unsqueeze(-1).to(out.dtype)


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SwiGLU activation ``silu(gate) * up`` (both ``[T, intermediate/tp]``)."""
    return F.silu(gate) * up


class Rope:
    """Rotary position embedding tables (HF ``rope_type`` default, ``linear`` and ``llama3``).

    ``inv_freq`` follows ``transformers.modeling_rope_utils``; llama3 scaling per Meta's Llama 3.1 recipe
    (low/high frequency factors, original max positions).
    """

    def __init__(self, head_dim: int, theta: float, scaling: dict | None = None) -> None:
        inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
        if kind == "linear":
            inv = inv / float(scaling["factor"])
        elif kind == "llama3":
            factor = float(scaling["factor"])
            low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
            old = float(scaling["original_max_position_embeddings"])
            wavelen = 2 * math.pi / inv
            low_wl, high_wl = old / low, old / high
            scaled = torch.where(wavelen > low_wl, inv / factor, inv)
            smooth = (old / wavelen - low) / (high - low)
            mid = (1 - smooth) * scaled / factor + smooth * scaled
            is_mid = (wavelen >= high_wl) & (wavelen <= low_wl)
            inv = torch.where(is_mid, mid, scaled)
        elif kind not in ("default", None):
            raise ValueError(f"rope_type '{kind}' is not supported (default, linear, llama3)")
        self.inv_freq = inv

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions [T] -> cos, sin [T, head_dim]``."""
        freqs = positions.float().unsqueeze(-1) * self.inv_freq.to(positions.device)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x [T, heads, head_dim]`` rotated by ``cos, sin [T, head_dim]``."""
    return x * cos.unsqueeze(1) + _rotate_half(x) * sin.unsqueeze(1)


def route(x: torch.Tensor, gate: torch.Tensor, top_k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixture-of-experts routing: ``(weights [T, k], experts [T, k])`` of ``x [T, hidden]`` under router weight
    ``gate [E, hidden]``: softmax over all experts in float32, the ``top_k`` largest, renormalized to sum to 1 when
    ``normalize``, cast back to ``x``'s dtype (transformers' ``MixtralTopKRouter`` / ``Qwen3MoeTopKRouter``)."""
    probs = torch.softmax(torch.nn.functional.linear(x, gate).float(), dim=-1)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(x.dtype), experts


def moe_experts(x: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor,
                shards: Mapping[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Sum over each token's routed experts of ``weight * down(silu(gate(x)) * up(x))``: ``x [T, hidden]``,
    ``weights``/``experts [T, k]`` from :func:`route`, ``shards[e] = (gate [f, hidden], up [f, hidden],
    down [hidden, f])`` this rank's slices of expert ``e`` (``f``: its share of the expert's width); an expert
    not in ``shards`` (held by another expert group under expert parallelism) is skipped. Under TP or EP the
    result is this rank's partial sum (an all-reduce completes it), as a row-parallel down projection's."""
    out = torch.zeros_like(x)
    for e in torch.unique(experts).tolist():
        if e not in shards:
            continue
        tok, slot = torch.where(experts == e)
        g, u, d = shards[e]
        h = x[tok]
        y = torch.nn.functional.linear(silu_mul(torch.nn.functional.linear(h, g), torch.nn.functional.linear(h, u)), d)
        out.index_add_(0, tok, y * weights[tok, slot, None])
    return out
