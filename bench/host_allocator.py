"""Micro-benchmark (not a test): a CPU rank's prefill steps with glibc's default ``malloc`` against the
runtime's setting (:mod:`seesaw.runtime.host_allocator`: freed memory kept, workspace committed at start-up).

A prefill forward of the even-heads validation model's shape (16 layers, hidden 512, intermediate 1,536,
8 query / 4 KV heads of 64, fp32, random weights) over 8 prompts of ShareGPT-like lengths (2,597 tokens,
causal SDPA per prompt), one thread, each setting (glibc's defaults; freed memory kept; kept and the
workspace committed) in a fresh spawned process as a worker is, every setting twice, interleaved; with ``--busy`` a second process runs the same steps at the same time
on the other core (as the other rank of a dp2 run). Prints per configuration the start-up commit time, the
first step, the median of the next steps, and the minor page faults (``getrusage``) of each.

    python bench/host_allocator.py [--busy]
"""
import resource
import statistics
import sys
import time

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

LAYERS, HIDDEN, INTER, HEADS, KV_HEADS, HEAD_DIM = 16, 512, 1536, 8, 4, 64
PROMPTS = [322, 114, 970, 1015, 26, 30, 108, 12]  # 2,597 tokens
STEPS = 6


def _layer_weights(g: torch.Generator) -> dict:
    def w(o, i):
        return torch.randn(o, i, generator=g) * 0.02
    return {"q": w(HEADS * HEAD_DIM, HIDDEN), "k": w(KV_HEADS * HEAD_DIM, HIDDEN), "v": w(KV_HEADS * HEAD_DIM, HIDDEN),
            "o": w(HIDDEN, HEADS * HEAD_DIM), "gate": w(INTER, HIDDEN), "up": w(INTER, HIDDEN),
            "down": w(HIDDEN, INTER)}


def _forward(x: torch.Tensor, layers: list) -> torch.Tensor:
    """One prefill pass: per layer RMSNorm, Q/K/V, causal SDPA per prompt (4-D, GQA), O, RMSNorm, SiLU MLP."""
    for w in layers:
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        q, k, v = F.linear(h, w["q"]), F.linear(h, w["k"]), F.linear(h, w["v"])
        outs, at = [], 0
        for n in PROMPTS:
            qi = q[at:at + n].view(n, HEADS, HEAD_DIM).transpose(0, 1).unsqueeze(0)
            ki = k[at:at + n].view(n, KV_HEADS, HEAD_DIM).transpose(0, 1).unsqueeze(0)
            vi = v[at:at + n].view(n, KV_HEADS, HEAD_DIM).transpose(0, 1).unsqueeze(0)
            o = F.scaled_dot_product_attention(qi, ki, vi, is_causal=True, enable_gqa=True)
            outs.append(o.squeeze(0).transpose(0, 1).reshape(n, HEADS * HEAD_DIM))
            at += n
        x = x + F.linear(torch.cat(outs), w["o"])
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        x = x + F.linear(F.silu(F.linear(h, w["gate"])) * F.linear(h, w["up"]), w["down"])
    return x


def _run(mode: str, out) -> None:
    from seesaw.runtime import host_allocator
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    layers = [_layer_weights(g) for _ in range(LAYERS)]
    tokens = sum(PROMPTS)
    commit_s = 0.0
    if mode != "default" and host_allocator.retain_freed_memory() and mode == "commit":
        commit_s = host_allocator.prefault(host_allocator.prefill_workspace_bytes(
            4096, HIDDEN, INTER, HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, 4))
    steps, faults = [], []
    with torch.inference_mode():
        for _ in range(STEPS):
            x = torch.randn(tokens, HIDDEN, generator=g)
            f0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            _forward(x, layers)
            steps.append(time.perf_counter() - t0)
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    out.put((commit_s, steps, faults))


def measure(mode: str, busy: bool) -> tuple:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_run, args=(mode, q)) for _ in range(2 if busy else 1)]
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    return results[0]


def main() -> None:
    busy = "--busy" in sys.argv
    modes = {"default": "glibc default", "retain": "retained", "commit": "retained + committed"}
    rows = {m: [] for m in modes}
    for _ in range(2):
        for mode in modes:
            rows[mode].append(measure(mode, busy))
    print(f"prefill of {sum(PROMPTS)} tokens, {LAYERS} layers, one thread{', other core busy' if busy else ''}")
    print(f"{'allocator':<22}{'commit s':>10}{'first s':>10}{'warm s':>10}{'first/warm':>12}{'faults first':>14}"
          f"{'faults warm':>13}")
    firsts, warms = {}, {}
    for mode, label in modes.items():
        for commit_s, steps, faults in rows[mode]:
            warm = statistics.median(steps[1:])
            print(f"{label:<22}{commit_s:>10.3f}{steps[0]:>10.3f}{warm:>10.3f}{steps[0] / warm:>12.2f}"
                  f"{faults[0]:>14,}{int(statistics.median(faults[1:])):>13,}")
        firsts[mode] = statistics.median(r[1][0] for r in rows[mode])
        warms[mode] = statistics.median(statistics.median(r[1][1:]) for r in rows[mode])
    for mode in ("retain", "commit"):
        print(f"default / {modes[mode]}: first step {firsts['default'] / firsts[mode]:.2f}x, "
              f"warm steps {warms['default'] / warms[mode]:.2f}x")


if __name__ == "__main__":
    main()
