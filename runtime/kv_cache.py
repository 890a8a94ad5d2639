"""KV cache tiers: the paged device cache (decode layout) and the layout-independent host buffer.

- :class:`PagedKVCache` (one per rank): for each of the rank's decode-layout layers, K and V of shape
  ``[num_slots, kv_heads_local, head_dim]`` with ``num_slots = pages * page_size``; a sequence's tokens
  live in the slots its block table names. It stays resident across phases (DESIGN.md section 1).
- :class:`HostKVBuffer`: one tensor ``[layers, 2, kv_heads, tokens, head_dim]`` in shared memory (a
  memory-mapped file every process maps), heads before tokens so a TP rank's share is a contiguous head
  slice. Prefill ranks write their (layer range, head slice); decode ranks read theirs.
  The scheduler's page and buffer-range bookkeeping is :mod:`seesaw.schedule.allocators`.
"""
from __future__ import annotations

import math
import os
import tempfile

import torch


def host_memory_dir() -> str:
    """Folder for the host KV buffer's backing file: ``/dev/shm`` (RAM-backed shared memory) when the system
    has it writable, else the default temporary folder. A file on a disk is written back to the disk as
    prefill fills it and swap-ins can fault its pages in from the disk; the plan costs the buffer as host
    memory."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


class PagedKVCache:
    """Device KV pages of one rank: ``layers`` is its decode-layout layer range ``[start, stop)``."""

    def __init__(self, layers: tuple[int, int], kv_heads: int, head_dim: int, num_pages: int, page_size: int,
                 dtype: torch.dtype, device: torch.device) -> None:
        self.start, self.stop = layers
        self.page_size = page_size
        slots = num_pages * page_size
        # torch.empty: memory is committed as pages are written, not at allocation
        self.k = [torch.empty(slots, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(*layers)]
        self.v = [torch.empty(slots, kv_heads, head_dim, dtype=dtype, device=device) for _ in range(*layers)]

    def prefault(self, num_pages: int) -> int:
        """Write zeros to the first ``num_pages`` pages of every layer (CPU only; returns bytes written).

        CPU memory from ``torch.empty`` is committed by the OS on first write, one page fault per 4 KB page:
        on this machine's VM a swap-in of 7,548 tokens into fresh pages took 2.4x as long as into faulted-in
        ones (235 vs 98 ms, ``bench/kv_swap_in.py``). A GPU's memory is ready when allocated; faulting in the
        pages a run will use at start-up (untimed) gives the CPU the same behaviour. The page allocator is
        first fit, so the low pages are the ones used.
        """
        if not self.k or self.k[0].device.type != "cpu":
            return 0
        slots = min(num_pages * self.page_size, self.k[0].shape[0])
        for t in self.k + self.v:
            t[:slots].zero_()
        return 2 * len(self.k) * slots * self.k[0][0].numel() * self.k[0].element_size()

    def holds(self, layer: int) -> bool:
        return self.start <= layer < self.stop

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store ``k, v [T, kv_heads_local, head_dim]`` at ``slots [T]``."""
        i = layer - self.start
        self.k[i][slots] = k.to(self.k[i].dtype)  # an FP8 cache stores e4m3 / e5m2 values (scale 1, as vLLM's default)
        self.v[i][slots] = v.to(self.v[i].dtype)


class HostKVBuffer:
    """The shared host buffer ``[layers, 2, kv_heads, tokens, head_dim]`` (the compute dtype, or FP8 for an FP8 KV
    cache).

    Backed by a file (``path``) that the scheduler creates and every worker maps with
    ``torch.from_file(shared=True)``, so writes by prefill ranks are visible to decode ranks.
    """

    def __init__(self, path: str, layers: int, kv_heads: int, tokens: int, head_dim: int,
                 dtype: torch.dtype = torch.float32) -> None:
        self.path, self.shape, self.dtype = path, (layers, 2, kv_heads, tokens, head_dim), dtype
        numel = math.prod(self.shape)
        self.tensor = torch.from_file(path, shared=True, size=numel, dtype=dtype).view(self.shape)

    @classmethod
    def create(cls, path: str, layers: int, kv_heads: int, tokens: int, head_dim: int,
               dtype: torch.dtype = torch.float32) -> "HostKVBuffer":
        """Create (sparse) the backing file of the right size, then map it. Safe when several processes
        of a node create the same path: an existing file of that size is kept, not truncated."""
        nbytes = layers * 2 * kv_heads * max(tokens, 1) * head_dim * torch.empty((), dtype=dtype).element_size()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, nbytes)
        finally:
            os.close(fd)
        return cls(path, layers, kv_heads, max(tokens, 1), head_dim, dtype)

    def prefault(self) -> None:
        """Commit the buffer's shared-memory pages now (zeros), not on the first prefill write of each
        4 KB page (see :meth:`PagedKVCache.prefault`): the plan costs the buffer as host memory in place."""
        self.tensor.zero_()

    def spec(self) -> dict:
        layers, _, kv_heads, tokens, head_dim = self.shape
        return dict(path=self.path, layers=layers, kv_heads=kv_heads, tokens=tokens, head_dim=head_dim,
                    dtype=self.dtype)

    def write(self, layer: int, heads: slice, start: int, k: torch.Tensor, v: torch.Tensor) -> int:
        """Swap out ``k, v [T, heads, head_dim]`` of one layer to tokens ``[start, start + T)``; bytes."""
        t = k.shape[0]
        self.tensor[layer, 0, heads, start:start + t] = k.transpose(0, 1).to(self.dtype)
        self.tensor[layer, 1, heads, start:start + t] = v.transpose(0, 1).to(self.dtype)
        return 2 * k.numel() * self.tensor.element_size()

    def read(self, layer: int, heads: slice, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """K, V of tokens ``[start, start + length)`` -> ``[length, heads, head_dim]`` each."""
        k = self.tensor[layer, 0, heads, start:start + length].transpose(0, 1)
        v = self.tensor[layer, 1, heads, start:start + length].transpose(0, 1)
        return k, v

    def close(self) -> None:
        self.tensor = None

    def unlink(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:  # another process of the node removed it first
            pass


def slot_table(block_tables: list[list[int]], lens: list[int], page_size: int,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """Cache slots ``[B, max(lens)]`` of positions ``0 .. lens[i] - 1`` of each sequence (padding
    positions repeat the sequence's last valid slot, so gathers stay in bounds)."""
    width = max(lens)
    pages = max(len(t) for t in block_tables)
    table = torch.tensor([t + [t[-1]] * (pages - len(t)) for t in block_tables], device=device)
    pos = torch.arange(width, device=device).unsqueeze(0).expand(len(lens), width)
    pos = torch.minimum(pos, torch.tensor(lens, device=device).unsqueeze(1) - 1)
    return torch.gather(table, 1, pos // page_size) * page_size + pos % page_size
