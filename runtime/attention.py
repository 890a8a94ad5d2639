"""Attention backend (torch SDPA): prefill over the batch's own K/V, decode over the paged cache.

Every SDPA call gets 4-D ``[batch, heads, tokens, d]`` tensors: on CPU, torch 2.x dispatches 3-D inputs to
the unfused "math" path (scores materialised, softmax, a matmul each), 4-D ones to the fused flash kernel;
``python bench/attention_sdpa.py`` measures the difference (one core: prefill 3.3-4.8x, paged decode 1.3-2.1x).

Shapes: ``q [T, heads_q, d]``, ``k, v [T, heads_kv, d]`` (this rank's heads). Grouped-query attention maps
query head ``h`` to KV head ``h // (heads_q / heads_kv)``, as Hugging Face's ``repeat_kv``. The runtime calls
:func:`prefill_attention` and :func:`paged_decode_attention`; :func:`decode_attention` is the padded-batch
variant (one SDPA call over gathered contexts) kept as a backend for devices where one large call beats a
per-sequence loop. A Triton paged kernel can replace :func:`paged_decode_attention` behind its signature.
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
        out[start:start + n] = F.scaled_dot_product_attention(qs[None], ks[None], vs[None], is_causal=True, scale=scale,
                                                              enable_gqa=gqa)[0].transpose(0, 1)
        start += n
    return out


def decode_attention(q: torch.Tensor, k_ctx: torch.Tensor, v_ctx: torch.Tensor, context_lens: torch.Tensor,
                     scale: float) -> torch.Tensor:
    """One new token per sequence over its cached context.

    ``q [B, heads_q, d]``; ``k_ctx, v_ctx [B, L, heads_kv, d]`` gathered from the paged cache (padded to the
    longest context ``L``); ``context_lens [B]`` valid lengths (including the new token). Returns
    ``[B, heads_q, d]``.
    """
    mask = torch.arange(k_ctx.shape[1], device=q.device).unsqueeze(0) < context_lens.unsqueeze(1)
    out = F.scaled_dot_product_attention(q.unsqueeze(2), k_ctx.permute(0, 2, 1, 3), v_ctx.permute(0, 2, 1, 3),
                                         attn_mask=mask[:, None, None, :], scale=scale,
                                         enable_gqa=q.shape[1] != k_ctx.shape[2])
    return out.squeeze(2)


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           contexts: list[tuple[int, int] | torch.Tensor], scale: float) -> torch.Tensor:
    """Decode attention straight from the paged cache, one sequence at a time (no padding).

    ``k_cache, v_cache [slots, heads_kv, d]`` (in the compute dtype, or FP8, read up-cast); ``contexts[i]`` is either ``(first_slot, length)`` when the
    sequence's slots are one contiguous range (read as a view, no copy) or a tensor of its slots (gathered
    with ``index_select``). Returns ``[B, heads_q, d]``.
    """
    out = torch.empty_like(q)
    gqa = q.shape[1] != k_cache.shape[1]
    for i, c in enumerate(contexts):
        if isinstance(c, tuple):
            k, v = k_cache[c[0]:c[0] + c[1]], v_cache[c[0]:c[0] + c[1]]
        else:
            k, v = torch.index_select(k_cache, 0, c), torch.index_select(v_cache, 0, c)
        if k.dtype != q.dtype:  # an FP8 cache: attention runs in the compute dtype
            k, v = k.to(q.dtype), v.to(q.dtype)
        out[i] = F.scaled_dot_product_attention(q[i, None, :, None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
                                                scale=scale, enable_gqa=gqa)[0, :, 0]
    return out
