"""Micro-benchmark (not a test): the runtime's attention (`seesaw.runtime.attention`) against the same SDPA
calls made with 3-D tensors, as the runtime made them before 2026-11-21.

On CPU, torch's SDPA sends 3-D ``[heads, tokens, d]`` inputs to the unfused math path (the scores
``[heads, q, k]`` materialised, softmax, two matmuls) and 4-D ``[1, heads, tokens, d]`` ones to the fused
flash kernel. One thread, the even-heads model's shapes (8 query / 4 KV heads, head dim 64): prefill of one
prompt of 256 and 1,024 tokens, decode of 16 sequences at 64, 256 and 1,024 tokens of context.

    python bench/attention_sdpa.py
"""
import statistics
import time

import torch
import torch.nn.functional as F

from seesaw.runtime.attention import paged_decode_attention, prefill_attention

HQ, HKV, D, SCALE = 8, 4, 64, 0.125


def prefill_3d(q, k, v, seq_lens, scale):
    out, start = torch.empty_like(q), 0
    for n in seq_lens:
        qs, ks, vs = (t[start:start + n].transpose(0, 1) for t in (q, k, v))
        out[start:start + n] = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale,
                                                              enable_gqa=True).transpose(0, 1)
        start += n
    return out


def decode_3d(q, k_cache, v_cache, contexts, scale):
    out = torch.empty_like(q)
    for i, (first, n) in enumerate(contexts):
        k, v = k_cache[first:first + n], v_cache[first:first + n]
        out[i] = F.scaled_dot_product_attention(q[i].unsqueeze(1), k.transpose(0, 1), v.transpose(0, 1),
                                                scale=scale, enable_gqa=True).squeeze(1)
    return out


def median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"{'case':<34} {'3-D (math) ms':>14} {'runtime ms':>11} {'speed-up':>9} {'max |diff|':>11}")
    for n in (256, 1024):
        q, k, v = torch.randn(n, HQ, D), torch.randn(n, HKV, D), torch.randn(n, HKV, D)
        old = median_ms(lambda: prefill_3d(q, k, v, [n], SCALE), 7)
        new = median_ms(lambda: prefill_attention(q, k, v, [n], SCALE), 7)
        diff = (prefill_3d(q, k, v, [n], SCALE) - prefill_attention(q, k, v, [n], SCALE)).abs().max().item()
        print(f"{f'prefill, 1 prompt of {n}':<34} {old:14.2f} {new:11.2f} {old / new:8.1f}x {diff:11.1e}")
    for ctx in (64, 256, 1024):
        seqs = 16
        k_cache, v_cache = torch.randn(seqs * ctx, HKV, D), torch.randn(seqs * ctx, HKV, D)
        q = torch.randn(seqs, HQ, D)
        contexts = [(i * ctx, ctx) for i in range(seqs)]
        old = median_ms(lambda: decode_3d(q, k_cache, v_cache, contexts, SCALE), 21)
        new = median_ms(lambda: paged_decode_attention(q, k_cache, v_cache, contexts, SCALE), 21)
        diff = (decode_3d(q, k_cache, v_cache, contexts, SCALE)
                - paged_decode_attention(q, k_cache, v_cache, contexts, SCALE)).abs().max().item()
        print(f"{f'decode, {seqs} seqs x {ctx} context':<34} {old:14.2f} {new:11.2f} {old / new:8.1f}x {diff:11.1e}")


if __name__ == "__main__":
    main()
