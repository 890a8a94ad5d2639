"""Micro-benchmark (not a test): decode attention over a padded paged-cache gather -- SDPA over expanded
GQA heads, grouped matmuls, and SDPA with ``enable_gqa`` on the padded batch (``runtime.attention.decode_attention``) -- and the cache gather
(advanced indexing vs ``index_select``), one thread, SmolLM2's head shapes (9 query / 3 KV heads).

    python bench/decode_attention.py
"""
import torch, time
import torch.nn.functional as F
from seesaw.runtime.attention import decode_attention


def grouped(q, k, v, lens, scale):
    b, hq, d = q.shape
    hkv = k.shape[2]
    qg = q.view(b, hkv, hq // hkv, d)
    sc = torch.matmul(qg, k.permute(0, 2, 3, 1)) * scale
    pad = torch.arange(k.shape[1]).unsqueeze(0) >= lens.unsqueeze(1)
    sc = sc.masked_fill(pad[:, None, None, :], float("-inf"))
    return torch.matmul(torch.softmax(sc, -1), v.permute(0, 2, 1, 3)).reshape(b, hq, d)

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
print("max |diff| of padded SDPA (enable_gqa) vs expanded heads, grouped matmuls vs it:", (a - b).abs().max().item(), (grouped(q, k, v, lens, 0.125) - b).abs().max().item())
for name, f in (("sdpa over expanded heads", old), ("grouped matmuls", grouped), ("sdpa enable_gqa, padded batch", decode_attention)):
    t = time.perf_counter()
    for _ in range(200): f(q, k, v, lens, 0.125)
    print(name, f"{(time.perf_counter() - t) / 200 * 1e3:.3f} ms")
cache = torch.randn(20000, hkv, d); idx = torch.randint(0, 20000, (B, L))
for name, f in (("index", lambda: cache[idx]), ("index_select", lambda: torch.index_select(cache, 0, idx.flatten()).view(B, L, hkv, d))):
    t = time.perf_counter()
    for _ in range(200): f()
    print(name, f"{(time.perf_counter() - t) / 200 * 1e3:.3f} ms")
