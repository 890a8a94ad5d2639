"""Page and host-buffer allocators of the shared scheduling policy."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seesaw.schedule.allocators import BufferAllocator, PageAllocator

def test_buffer_allocator_merges_holes():
    b = BufferAllocator(10)
    a, c, d = b.allocate(4), b.allocate(3), b.allocate(3)
    assert (a, c, d) == (0, 4, 7) and b.allocate(1) is None
    b.release(a, 4)
    b.release(c, 3)
    assert b.allocate(7) == 0



class _ListPages:
    """Reference: the free pages as one sorted list, first fit over consecutive runs, else the lowest."""

    def __init__(self, n: int) -> None:
        self.free = list(range(n))

    def allocate(self, n: int) -> list[int]:
        free, run = self.free, 1
        for i in range(len(free)):
            run = run + 1 if i and free[i] == free[i - 1] + 1 else 1
            if run == n:
                pages = free[i - n + 1:i + 1]
                del free[i - n + 1:i + 1]
                return pages
        pages, self.free = free[:n], free[n:]
        return pages

    def release(self, pages: list[int]) -> None:
        self.free = sorted(self.free + pages)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 9)), min_size=1, max_size=60))
def test_page_allocator_matches_the_sorted_list_reference(ops):
    """Run-based bookkeeping hands out exactly the pages a sorted free list would, in any order of
    allocations and releases (the fallback to scattered pages included)."""
    alloc, ref, held = PageAllocator(24, page_size=4), _ListPages(24), []
    for release, n in ops:
        if release and held:
            pages = held.pop(n % len(held))
            alloc.release(pages)
            ref.release(pages)
        elif alloc.can_allocate(n * 4):
            got = alloc.allocate(n * 4)
            assert got == ref.allocate(n)
            held.append(got)
        assert alloc.free == ref.free and alloc.num_free == len(ref.free)


def test_page_allocator_refuses_more_than_is_free():
    alloc = PageAllocator(4, page_size=16)
    alloc.allocate(48)
    assert not alloc.can_allocate(17) and alloc.can_allocate_total(64)
    with pytest.raises(MemoryError, match="need 2 KV pages, 1 free"):
        alloc.allocate(17)


def test_buffer_allocator_first_fit_and_used():
    b = BufferAllocator(12)
    starts = [b.allocate(3) for _ in range(4)]
    assert starts == [0, 3, 6, 9] and b.used == 12
    b.release(3, 3)
    b.release(9, 3)
    assert b.used == 6 and b.allocate(4) is None and b.allocate(3) == 3
