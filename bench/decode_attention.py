"""Micro-benchmark (not a test): decode attention over a padded paged-cache gather, SDPA with expanded
GQA heads vs the runtime's grouped matmuls, one thread, SmolLM2's head shapes (9 query / 3 KV heads).

    python bench/decode_attention.py
"""
import torch, time
import torch.nn.functional as F
from seesaw.runtime.attention import decode_attention
torch.set_num_threads(1)
B, hq, hkv, d, L = 16, 9, 3, 64, 400
q = torch.randn(B, hq, d); k = torch.randn(B, L, hkv, d); v = torch.randn(B, L, hkv, d)
lens = torch.randint(100, L, (B,))
def old(q, k, v, lens, scale):
    g = hq // hkv
    kk = k.permute(0, 2, 1, 3).repeat_interleave(g, 1); vv = v.permute(0, 2, 1, 3).repeat_interleave(g, 1)
    mask = torch.arange(L).unsqueeze(0) < lens.unsqueeze(1)
    return F.scaled_dot_product_attention(q.unsqueeze(2), kk, vv, attn_mask=mask[:, None, None, :], scale=scale).squeeze(2)
a = old(q, k, v, lens, 0.125); b = decode_attention(q, k, v, lens, 0.125)
print("max diff", (a - b).abs().max().item())
for name, f in (("old sdpa+repeat", old), ("grouped matmul", decode_attention)):
    t = time.perf_counter()
    for _ in range(200): f(q, k, v, lens, 0.125)
    print(name, f"{(time.perf_counter() - t) / 200 * 1e3:.3f} ms")
