"""Collective micro-benchmarks for ``seesaw-calibrate``: spawned ranks, gloo on CPU, NCCL on CUDA.

For each world size ``torch.multiprocessing.spawn`` starts that many ranks (``file://`` rendezvous in a
temporary folder, one torch thread per rank as the runtime's ``SEESAW_THREADS_PER_RANK`` default, one GPU per
rank on CUDA). Rank 0 reports the median of single ``all_reduce`` calls per message size (each call
synchronised on CUDA); at world 2 also send/recv ping-pong, one-way time = median round trip / 2. Rank 0 also
reports the memory the runtime itself holds once the process group is up: resident set size on CPU (after
``import torch`` and gloo init), ``total - free`` device memory on CUDA (context + NCCL buffers, and anything
else on that GPU).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

MiB = 2**20
ALLREDUCE_SIZES = (4, 4096, 64 * 1024, MiB, 4 * MiB, 16 * MiB)
SENDRECV_SIZES = (4, 64 * 1024, MiB, 16 * MiB)
QUICK_ALLREDUCE_SIZES = (4, 64 * 1024, MiB, 16 * MiB)
QUICK_SENDRECV_SIZES = (4, MiB, 16 * MiB)


@dataclass(frozen=True)
class CommTiming:
    """A timed collective (fields as :class:`seesaw.planner.calibration.fit.CommSample`)."""

    kind: str  # all_reduce | send_recv
    world: int
    nbytes: float
    seconds: float
    label: str = ""


def _calls(nbytes: int, quick: bool) -> int:
    if nbytes >= 4 * MiB:
        return 5 if quick else 9
    if nbytes >= MiB:
        return 15 if quick else 40
    return 60 if quick else 200


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _worker(rank: int, world: int, backend: str, init_path: str, out_path: str, quick: bool) -> None:
    torch.set_num_threads(max(1, int(os.environ.get("SEESAW_THREADS_PER_RANK", "1"))))
    cuda = backend == "nccl"
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{init_path}", rank=rank, world_size=world,
                            timeout=_dt.timedelta(seconds=120))

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def timed(fn, calls: int) -> float:
        for _ in range(3):
            fn()
        sync()
        dist.barrier()
        times = []
        for _ in range(calls):  # median of single calls: robust to other load on a shared machine
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    timings = []
    for nbytes in QUICK_ALLREDUCE_SIZES if quick else ALLREDUCE_SIZES:
        x = torch.ones(max(1, nbytes // 4), device=device)
        t = timed(lambda: dist.all_reduce(x), _calls(nbytes, quick))
        timings.append(("all_reduce", nbytes, t))
    if world == 2:
        for nbytes in QUICK_SENDRECV_SIZES if quick else SENDRECV_SIZES:
            x = torch.ones(max(1, nbytes // 4), device=device)

            def ping() -> None:
                if rank == 0:
                    dist.send(x, 1)
                    dist.recv(x, 1)
                else:
                    dist.recv(x, 0)
                    dist.send(x, 0)
            timings.append(("send_recv", nbytes, timed(ping, _calls(nbytes, quick)) / 2))
    if cuda:
        free, total = torch.cuda.mem_get_info(device)
        reserve = total - free
    else:
        reserve = _rss_bytes()
    dist.barrier()
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump({"timings": timings, "reserve_bytes": reserve}, f)
    dist.destroy_process_group()


def measure_world(world: int, device_type: str = "cpu", quick: bool = False) -> tuple[list[CommTiming], int]:
    """Spawn ``world`` ranks; rank 0's collective timings and its runtime memory (bytes).

    Raises RuntimeError when CUDA has fewer than ``world`` devices, or when a rank fails (its error text).
    """
    backend = "nccl" if device_type == "cuda" else "gloo"
    if backend == "nccl" and torch.cuda.device_count() < world:
        raise RuntimeError(f"world size {world} needs {world} GPUs, this machine has {torch.cuda.device_count()}")
    with tempfile.TemporaryDirectory() as tmp:
        init_path, out_path = os.path.join(tmp, "init"), os.path.join(tmp, "out.json")
        mp.spawn(_worker, args=(world, backend, init_path, out_path, quick), nprocs=world, join=True)
        with open(out_path) as f:
            result = json.load(f)
    out = []
    for kind, nbytes, seconds in result["timings"]:
        size = f"{nbytes} B" if nbytes < 1024 else (f"{nbytes // 1024} KiB" if nbytes < MiB else f"{nbytes // MiB} MiB")
        out.append(CommTiming(kind, world, float(nbytes), seconds, f"{kind} world {world} {size}"))
    return out, int(result["reserve_bytes"])
