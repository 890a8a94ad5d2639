"""Scheduler-side bookkeeping of KV space: device cache pages and host buffer token ranges.

Both keep their free space as sorted runs ``[start, start + length)``, so an allocation or a release costs
``O(runs)`` (fragments, at most the number of live sequences plus one), not ``O(pages)``: the planner's
simulator replays a whole trace (15k requests, caches of thousands of pages) through the very allocators
the runtime uses.
"""
from __future__ import annotations

import bisect


class _Runs:
    """Sorted, merged free runs: ``starts[i]`` and ``lengths[i]``."""

    def __init__(self, size: int) -> None:
        self.starts: list[int] = [0] if size > 0 else []
        self.lengths: list[int] = [size] if size > 0 else []
        self.free = max(0, size)

    def take_first_fit(self, length: int) -> int | None:
        """Start of the lowest run holding ``length`` units, taken from its low end; None when none does."""
        for i, n in enumerate(self.lengths):
            if n >= length:
                start = self.starts[i]
                if n == length:
                    del self.starts[i], self.lengths[i]
                else:
                    self.starts[i] += length
                    self.lengths[i] -= length
                self.free -= length
                return start
        return None

    def take_lowest(self, count: int) -> list[tuple[int, int]]:
        """The ``count`` lowest free units (``count <= free``), as the runs ``(start, length)`` they form."""
        runs: list[tuple[int, int]] = []
        left = count
        while left:
            start, n = self.starts[0], self.lengths[0]
            k = min(n, left)
            runs.append((start, k))
            left -= k
            if k == n:
                del self.starts[0], self.lengths[0]
            else:
                self.starts[0] += k
                self.lengths[0] -= k
        self.free -= count
        return runs

    def give_back(self, start: int, length: int) -> None:
        """Return ``[start, start + length)`` (not free now), merging with neighbouring runs."""
        i = bisect.bisect_left(self.starts, start)
        merge_left = i > 0 and self.starts[i - 1] + self.lengths[i - 1] == start
        merge_right = i < len(self.starts) and start + length == self.starts[i]
        if merge_left and merge_right:
            self.lengths[i - 1] += length + self.lengths[i]
            del self.starts[i], self.lengths[i]
        elif merge_left:
            self.lengths[i - 1] += length
        elif merge_right:
            self.starts[i] = start
            self.lengths[i] += length
        else:
            self.starts.insert(i, start)
            self.lengths.insert(i, length)
        self.free += length


class PageAllocator:
    """Free pages of the device KV cache of one replica (every rank of it mirrors the same page table).

    Allocation prefers one run of consecutive pages (first fit), so a sequence's cache is usually one
    contiguous slot range that attention can read without a gather; it falls back to the lowest free pages.
    """

    def __init__(self, num_pages: int, page_size: int) -> None:
        self.page_size = page_size
        self.num_pages = num_pages
        self._runs = _Runs(num_pages)
        self._held: dict[int, list[tuple[int, int]]] = {}  # first page -> runs of a scattered allocation

    @property
    def num_free(self) -> int:
        """Free pages now."""
        return self._runs.free

    @property
    def free(self) -> list[int]:
        """The free page numbers, ascending (``O(pages)``: for tests and reports)."""
        return [p for s, n in zip(self._runs.starts, self._runs.lengths) for p in range(s, s + n)]

    def pages_for(self, tokens: int) -> int:
        """Pages that hold ``tokens`` tokens."""
        return -(-tokens // self.page_size)

    def can_allocate_total(self, tokens: int) -> bool:
        """Whether ``tokens`` could ever fit (all pages free)."""
        return self.pages_for(tokens) <= self.num_pages

    def can_allocate(self, tokens: int) -> bool:
        """Whether ``tokens`` fit in the pages free now."""
        return self.pages_for(tokens) <= self._runs.free

    def allocate(self, tokens: int) -> list[int]:
        """Pages for ``tokens`` tokens; raises MemoryError when fewer pages are free."""
        n = self.pages_for(tokens)
        if n > self._runs.free:
            raise MemoryError(f"need {n} KV pages, {self._runs.free} free")
        start = self._runs.take_first_fit(n)
        if start is not None:
            return list(range(start, start + n))
        runs = self._runs.take_lowest(n)
        self._held[runs[0][0]] = runs
        return [p for s, k in runs for p in range(s, s + k)]

    def release(self, pages: list[int]) -> None:
        """Free ``pages`` (as :meth:`allocate` returned them), one run of consecutive pages at a time."""
        if not pages:
            return
        runs = self._held.pop(pages[0], None)
        if runs is None or sum(k for _, k in runs) != len(pages):
            runs = []
            i = 0
            while i < len(pages):
                j = i + 1
                while j < len(pages) and pages[j] == pages[j - 1] + 1:
                    j += 1
                runs.append((pages[i], j - i))
                i = j
        for start, k in runs:
            self._runs.give_back(start, k)


class BufferAllocator:
    """First-fit allocation of contiguous token ranges in the host KV buffer."""

    def __init__(self, tokens: int) -> None:
        self.capacity = tokens
        self._runs = _Runs(tokens)

    @property
    def used(self) -> int:
        """Tokens held now."""
        return self.capacity - self._runs.free

    def allocate(self, length: int) -> int | None:
        """Start of a free range of ``length`` tokens, or None when no hole is large enough."""
        return self._runs.take_first_fit(length)

    def release(self, start: int, length: int) -> None:
        """Free the range ``[start, start + length)``."""
        self._runs.give_back(start, length)
