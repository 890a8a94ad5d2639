"""CPU ranks: keep the activation memory of a step committed, as a GPU's caching allocator does.

On CPU torch allocates activations with the C library's ``malloc``. glibc's defaults hand memory back to
the OS and take it again every step: blocks above the (dynamic, at most 32 MB) mmap threshold are fresh
``mmap``s freed with ``munmap``, and free memory at the top of the heap above the trim threshold is
returned with ``brk``. Every page taken again is first written through a page fault that zeroes it. On
this project's 2-core VM a 2,597-token prefill of the even-heads validation model's shape faulted about
207,000 pages (800 MB) in every step, and steps ran 1.15x slower than with the memory kept
(``python bench/host_allocator.py --busy``); whole dp2 runs went from 838-892 to 962-968 tokens/s
(``python bench/host_allocator_runs.py``). A GPU runtime has neither cost: the CUDA caching allocator keeps
freed blocks and vLLM sizes its activation memory at start-up with a profiling forward pass.

:func:`retain_freed_memory` makes glibc keep what it has (``mallopt``: no trimming, no per-block mmaps) and
:func:`prefault` commits a workspace at start-up, sized by :func:`prefill_workspace_bytes`, so that the
steps the cost model predicts run on committed memory. Neither does anything off glibc (returns False / 0).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

import torch

# mallopt parameters, glibc <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1  # mallopt takes a C int

# Fresh heap a prefill step touches, over the per-token estimate of prefill_workspace_bytes: the first step
# of bench/host_allocator.py (2,597 tokens of the even-heads validation model's shape, fp32) faulted in
# 100-137 MB under retain_freed_memory alone, 1.25-1.7x its 80 MB estimate (the allocator's free blocks are
# not all reused in place). Rounded up.
WORKSPACE_MARGIN = 2.0


def _libc():
    """The process's C library when it is glibc (``mallopt`` and ``gnu_get_libc_version`` present), else None."""
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None)
        lib.gnu_get_libc_version  # noqa: B018 (probe: glibc only)
        return lib
    except (OSError, AttributeError):
        return None


def retain_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory in the process: ``M_TRIM_THRESHOLD`` of 2^31 - 1 bytes
    (free heap top under 2 GiB is never returned with ``brk``) and ``M_MMAP_MAX`` of 0 (large blocks come
    from the heap, not from a fresh ``mmap`` each). ``SEESAW_HOST_ALLOCATOR=default`` leaves glibc's
    defaults. Call after the long-lived buffers (weights, KV cache) are allocated, so only the serving-time
    working set is held this way. Returns True when both settings were accepted, False when the C library
    is not glibc or the defaults were asked for. The process's resident memory then stays at its peak
    working set."""
    lib = _libc()
    if lib is None or os.environ.get("SEESAW_HOST_ALLOCATOR", "retain") == "default":
        return False
    lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(lib.mallopt(_M_TRIM_THRESHOLD, _INT_MAX)) and bool(lib.mallopt(_M_MMAP_MAX, 0))


def prefill_workspace_bytes(max_tokens: int, hidden: int, intermediate: int, q_dim: int, kv_dim: int,
                            dtype_bytes: int) -> int:
    """Bytes of heap to commit at start-up for prefill micro-batches of up to ``max_tokens`` tokens.

    Per token, one decoder layer's live activations on this rank: 4 of ``[hidden]`` (residual, normed input,
    attention output, projection output), 3 of ``[intermediate]`` (gate, up, their product) and the Q, K, V
    projections (``q_dim + 2 * kv_dim``: local heads times head dim), all of ``dtype_bytes``; times
    :data:`WORKSPACE_MARGIN` for the allocator's spread (measured, see there).
    """
    per_token = (4 * hidden + 3 * intermediate + q_dim + 2 * kv_dim) * dtype_bytes
    return int(max(0, max_tokens) * per_token * WORKSPACE_MARGIN)


def prefault(nbytes: int) -> float:
    """Commit ``nbytes`` of heap now: allocate, write every page, free (kept by :func:`retain_freed_memory`).
    Returns the seconds it took (0.0 for ``nbytes <= 0``)."""
    if nbytes <= 0:
        return 0.0
    start = time.perf_counter()
    block = torch.empty(nbytes, dtype=torch.uint8)
    block.fill_(0)
    del block
    return time.perf_counter() - start
