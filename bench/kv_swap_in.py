"""Micro-benchmark (not a test): the runtime's KV swap-in (host buffer -> device pages) into fresh CPU pages
against pages faulted in beforehand (``PagedKVCache.prefault``), the even-heads validation model's KV shape
(16 layers, 4 KV heads of 64, fp32), 32 prompts of 12-1,015 tokens (7,548 tokens, ShareGPT-like lengths),
one thread. Each configuration copies twice: the second copy reuses the now-resident pages.

    python bench/kv_swap_in.py
"""
import os
import tempfile
import time

import torch

from seesaw.runtime.kv_cache import HostKVBuffer, PagedKVCache, host_memory_dir, slot_table

LAYERS, KV_HEADS, HEAD_DIM, PAGE = 16, 4, 64, 16
PROMPTS = [16, 215, 83, 17, 322, 114, 970, 1015, 49, 26, 41, 635, 156, 13, 12, 90] * 2


def swap_in(host: HostKVBuffer, kv: PagedKVCache) -> float:
    """Copy every prompt's KV as ``Worker.swap_in`` does; seconds."""
    start = time.perf_counter()
    token, page = 0, 0
    for n in PROMPTS:
        pages = list(range(page, page + -(-n // PAGE)))
        page += len(pages)
        idx = slot_table([pages], [n], PAGE)[0]
        for layer in range(LAYERS):
            k, v = host.read(layer, slice(0, KV_HEADS), token, n)
            kv.write(layer, idx, k.to(torch.float32), v.to(torch.float32))
        token += n
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    folder = tempfile.mkdtemp(dir=host_memory_dir())
    host = HostKVBuffer.create(os.path.join(folder, "kv"), LAYERS, KV_HEADS, sum(PROMPTS), HEAD_DIM)
    host.tensor.normal_()
    pages = sum(-(-n // PAGE) for n in PROMPTS)
    mb = 2 * LAYERS * KV_HEADS * HEAD_DIM * 4 * sum(PROMPTS) / 1e6
    print(f"swap-in of {sum(PROMPTS):,} tokens ({mb:.0f} MB) into {pages} pages of {PAGE} tokens")
    try:
        times = {}
        for prefault in (False, True):
            kv = PagedKVCache((0, LAYERS), KV_HEADS, HEAD_DIM, 2 * pages, PAGE, torch.float32, torch.device("cpu"))
            if prefault:
                kv.prefault(pages)
            times[prefault] = (swap_in(host, kv), swap_in(host, kv))
            label = "pre-faulted pages" if prefault else "fresh pages      "
            print(f"  {label}: first copy {times[prefault][0] * 1e3:7.1f} ms, again {times[prefault][1] * 1e3:6.1f} ms")
        print(f"  fresh / pre-faulted (first copy): {times[False][0] / times[True][0]:.1f}x")
    finally:
        host.unlink()
        os.rmdir(folder)


if __name__ == "__main__":
    main()
