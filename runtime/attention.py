"""Attention backend (torch SDPA): prefill over the batch's own K/V, decode over the paged cache.

Shapes: ``q [T, heads_q, d]``, ``k, v [T, heads_kv, d]`` (this rank's heads). Grouped-query attention maps
query head ``h`` to KV head ``h // (heads_q / heads_kv)``, as Hugging Face's ``repeat_kv``. A Triton paged
kernel can replace :func:`decode_attention` behind the same signature (issue 3: "pluggable backend").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def prefill_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seq_lens: list[int],
                      scale: float) -> torch.Tensor:
    """Causal attention of each sequence's prompt over itself. Returns ``[T, heads_q, d]``."""
    gqa = q.shape[1] != k.shape[1]
    out = torch.empty_like(q)
    start = 0
    for n in seq_lens:
        qs = q[start:start + n].transpose(0, 1)  # [h, n, d]
        ks = k[start:start + n].transpose(0, 1)
        vs = v[start:start + n].transpose(0, 1)
        out[start:start + n] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale,
                                                              enable_gqa=gqa).transpose(0, 1)
        start += n
    return out


def decode_attention(q: torch.Tensor, k_ctx: torch.Tensor, v_ctx: torch.Tensor, context_lens: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """One new token per sequence over its cached context.

    ``q [B, heads_q, d]``; ``k_ctx, v_ctx [B, L, heads_kv, d]`` gathered from the paged cache (padded to the
    longest context ``L``); ``context_lens [B]`` valid lengths (including the new token). Returns
    ``[B, heads_q, d]``.
    """
    b, hq, d = q.shape
    hkv = k_ctx.shape[2]
    # grouped matmuls: the query heads of one KV head attend together, no KV expansion
    qg = q.view(b, hkv, hq // hkv, d)
    scores = torch.matmul(qg, k_ctx.permute(0, 2, 3, 1)) * scale  # [B, hkv, g, L]
    pad = torch.arange(k_ctx.shape[1], device=q.device).unsqueeze(0) >= context_lens.unsqueeze(1)
    scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
    return torch.matmul(probs, v_ctx.permute(0, 2, 1, 3)).reshape(b, hq, d)  # [B, hkv, g, d] -> [B, hq, d]
