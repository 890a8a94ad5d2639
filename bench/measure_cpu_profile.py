"""Measure the ``cpu`` device profile of the hardware catalog on this machine.

The ``cpu`` "device" is one CPU process per rank (torch 2.13 CPU build, ``torch.set_num_threads(1)``,
torch.distributed gloo between ranks; DESIGN.md section 7). This script measures, single-threaded:

- fp32 matmul rate at a prefill-like shape (SmolLM2-135M MLP up-projection: 512 tokens x 576 @ 576 x 1536)
  -> ``bf16_tflops`` (the entry's field for dense FLOP/s at its runtime dtype, fp32 here);
- weight-streaming bandwidth of a large matrix-vector product (how decode reads weights) ->
  ``memory_gb_per_s`` (a plain copy's read + write rate is printed beside it: it overstates what a GEMV
  gets);
- host <-> "device" copy rate (the same memcpy, counting bytes copied once) -> ``host_link_gb_per_s``;
- gloo all_reduce between spawned processes (``file://`` init): near-empty-message time at several world
  sizes, fitted to ``alpha(n) = collective_launch_us + gpu_link_latency_us * (n - 1)``, and the ring
  bandwidth at large messages at world 2 -> ``gpu_link_gb_per_s``;
- resident memory of a rank after ``import torch`` and gloo init -> ``runtime_reserve_gb``.

Usage: ``.venv/bin/python bench/measure_cpu_profile.py [--world-sizes 2,3,4] [--runs 3] [--quick]``. Prints each
figure and a YAML snippet to paste into ``planner/hardware/catalog.yaml``. Takes about a minute.
Numbers are medians of repeated runs; on a shared 2-core machine expect +-20 % between runs.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

GB = 1e9  # decimal gigabyte, the unit of every *_gb / *_gb_per_s field in the catalog


def _median_time_s(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_matmul_flops(m: int = 512, k: int = 576, n: int = 1536, repeats: int = 30) -> float:
    """Achieved fp32 FLOP/s of ``[m, k] @ [k, n]`` (2*m*k*n FLOPs per call), one thread."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    t = _median_time_s(lambda: torch.mm(a, b, out=out), repeats)
    return 2.0 * m * k * n / t


def measure_copy(nbytes: int = 256 * 2**20, repeats: int = 10) -> tuple[float, float]:
    """``(memory_bytes_per_s, memcpy_bytes_per_s)`` from copying an ``nbytes`` fp32 tensor.

    Memory bandwidth counts read + write traffic (``2 * nbytes / t``), as the roofline's ``bytes / B_hbm``
    does; the memcpy rate counts bytes copied once (``nbytes / t``), as a host -> device transfer does.
    """
    src = torch.randn(nbytes // 4)
    dst = torch.empty_like(src)
    t = _median_time_s(lambda: dst.copy_(src), repeats)
    return 2.0 * nbytes / t, nbytes / t


def measure_weight_read(rows: int = 49152, cols: int = 576, repeats: int = 10) -> float:
    """Bytes/s of weights streamed by a matrix-vector product ``[1, cols] @ W[rows, cols]^T`` (fp32, one
    thread): the rate at which a decode step reads weights, the roofline's ``bytes / B_hbm`` term. The
    default shape is SmolLM2's lm head (113 MB, far larger than the caches)."""
    w = torch.randn(rows, cols)
    x = torch.randn(1, cols)
    t = _median_time_s(lambda: torch.nn.functional.linear(x, w), repeats)
    return rows * cols * 4 / t


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _gloo_worker(rank: int, world: int, init_path: str, out_path: str, sizes: list[int], quick: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_path}", rank=rank, world_size=world,
                            timeout=_dt.timedelta(seconds=60))
    result: dict[str, object] = {"rss_bytes": _rss_bytes(), "allreduce_s": {}}
    for nbytes in sizes:
        x = torch.ones(max(1, nbytes // 4))
        calls = 9 if nbytes >= 16 * 2**20 else (100 if quick else 400)
        for _ in range(3):
            dist.all_reduce(x)
        dist.barrier()
        times = []
        for _ in range(calls):  # median of single calls: robust to other load on a shared machine
            t0 = time.perf_counter()
            dist.all_reduce(x)
            times.append(time.perf_counter() - t0)
        result["allreduce_s"][str(x.numel() * 4)] = statistics.median(times)
    if world == 2:  # send/recv ping-pong, one-way time = median round trip / 2
        x = torch.ones(1)
        dist.barrier()
        times = []
        for _ in range(100 if quick else 400):
            t0 = time.perf_counter()
            if rank == 0:
                dist.send(x, 1)
                dist.recv(x, 1)
            else:
                dist.recv(x, 0)
                dist.send(x, 0)
            times.append(time.perf_counter() - t0)
        result["sendrecv_s"] = statistics.median(times) / 2
    dist.barrier()
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


def measure_gloo(world: int, sizes: list[int], quick: bool) -> dict:
    """Spawn ``world`` gloo ranks; rank 0's timings: ``{"allreduce_s": {bytes: s}, "rss_bytes", ...}``."""
    with tempfile.TemporaryDirectory() as tmp:
        init_path, out_path = os.path.join(tmp, "init"), os.path.join(tmp, "out.json")
        mp.spawn(_gloo_worker, args=(world, init_path, out_path, sizes, quick), nprocs=world, join=True)
        with open(out_path) as f:
            return json.load(f)


def _median_runs(runs: list[dict]) -> dict:
    """Per-figure median over repeated :func:`measure_gloo` results (same keys in each)."""
    out = {"rss_bytes": max(r["rss_bytes"] for r in runs),
           "allreduce_s": {k: statistics.median(r["allreduce_s"][k] for r in runs) for k in runs[0]["allreduce_s"]}}
    if "sendrecv_s" in runs[0]:
        out["sendrecv_s"] = statistics.median(r["sendrecv_s"] for r in runs)
    return out


def fit_alpha(points: dict[int, float]) -> tuple[float, float]:
    """Least-squares ``(launch_s, latency_s)`` with ``alpha(n) = launch + latency * (n - 1)``.

    ``points`` maps world size to small-message all_reduce time (s). Both results clamped at >= 0;
    with one point, the whole time is the launch term.
    """
    xs = [n - 1 for n in points]
    ys = list(points.values())
    if len(xs) < 2:
        return ys[0], 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    latency = max(0.0, slope)
    launch = max(0.0, my - latency * mx)
    return launch, latency


def main() -> None:
    """Measure and print the figures and the catalog YAML snippet."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world-sizes", default="2,3,4", help="gloo world sizes for the alpha fit")
    parser.add_argument("--runs", type=int, default=3, help="gloo runs per world size (median taken)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for smoke tests)")
    args = parser.parse_args()
    worlds = sorted({int(w) for w in args.world_sizes.split(",")} | {2})
    torch.set_num_threads(1)

    flops = measure_matmul_flops(repeats=10 if args.quick else 30)
    copy_bw, memcpy_bw = measure_copy(64 * 2**20 if args.quick else 256 * 2**20, 5 if args.quick else 10)
    mem_bw = measure_weight_read(repeats=3 if args.quick else 10)
    small, big = 4, [2**20, 16 * 2**20] if args.quick else [2**20, 16 * 2**20, 64 * 2**20]
    gloo = {w: _median_runs([measure_gloo(w, [small] + (big if w == 2 else []), args.quick)
                             for _ in range(max(1, args.runs))]) for w in worlds}

    alpha = {w: g["allreduce_s"][str(small)] for w, g in gloo.items()}
    launch_s, latency_s = fit_alpha(alpha)
    alpha2 = launch_s + latency_s
    bws = []
    for nbytes_s, t in gloo[2]["allreduce_s"].items():
        nbytes = int(nbytes_s)
        if nbytes >= 16 * 2**20:  # ring at n=2 moves 2*(n-1)/n = 1 x bytes per rank
            bws.append(nbytes / max(t - alpha2, 1e-9))
    link_bw = max(bws)
    rss = max(g["rss_bytes"] for g in gloo.values())
    total_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    print(f"torch {torch.__version__}, {os.cpu_count()} cores, RAM {total_ram / GB:.1f} GB, 1 thread/rank")
    print(f"matmul fp32 512x576 @ 576x1536: {flops / 1e9:.1f} GFLOP/s")
    print(f"weight streaming (GEMV 49152x576 fp32): {mem_bw / GB:.2f} GB/s; copy read+write: {copy_bw / GB:.2f} GB/s; "
          f"memcpy rate: {memcpy_bw / GB:.2f} GB/s")
    for w, t in alpha.items():
        print(f"gloo all_reduce 4 B, world {w}: {t * 1e6:.0f} us")
    print(f"  fit alpha(n) = {launch_s * 1e6:.0f} us + {latency_s * 1e6:.0f} us * (n-1)")
    for nbytes_s, t in gloo[2]["allreduce_s"].items():
        if int(nbytes_s) >= 2**20:
            print(f"gloo all_reduce {int(nbytes_s) / 2**20:g} MiB, world 2: {t * 1e3:.2f} ms")
    print(f"  ring bandwidth (world 2, >= 16 MiB): {link_bw / GB:.2f} GB/s")
    print(f"gloo send/recv 4 B one-way, world 2: {gloo[2]['sendrecv_s'] * 1e6:.0f} us")
    print(f"rank resident memory after gloo init: {rss / GB:.2f} GB")
    today = _dt.date.today().isoformat()
    src = f"measured by bench/measure_cpu_profile.py on {today}, {os.cpu_count()}-core machine"
    print("\n# YAML snippet: measured fields of the cpu entry in planner/hardware/catalog.yaml")
    print(f"  bf16_tflops: {flops / 1e12:.4f}  # achieved fp32 matmul rate, 1 thread")
    print(f"  memory_gb_per_s: {mem_bw / GB:.2f}  # weights streamed by a large GEMV")
    print(f"  host_link_gb_per_s: {memcpy_bw / GB:.2f}  # memcpy, bytes copied")
    print(f"  gpu_link_gb_per_s: {link_bw / GB:.2f}  # gloo ring all_reduce, world 2")
    print(f"  gpu_link_latency_us: {latency_s * 1e6:.0f}")
    print(f"  collective_launch_us: {launch_s * 1e6:.0f}")
    print(f"  runtime_reserve_gb: {rss / GB:.2f}  # resident memory of a rank after gloo init")
    print(f"  source: {{compute: \"{src}\", links: \"{src}\", latency: \"{src}\", reserve: \"{src}\"}}")

if __name__ == "__main__":
    main()
