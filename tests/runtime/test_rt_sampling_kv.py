"""The sampler, KV slot tables, page prefaulting and the pipeline's pending sends (no processes)."""
from __future__ import annotations

import torch

from seesaw.runtime.kv_cache import slot_table
from seesaw.runtime.sampling import sample
from seesaw.schedule.batch import SamplingParams

def test_slot_table_follows_block_tables():
    t = slot_table([[3, 1], [0]], [6, 2], page_size=4)
    assert t.tolist() == [[12, 13, 14, 15, 4, 5], [0, 1, 1, 1, 1, 1]]


def test_sampler_greedy_seeded_and_top_p():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0]] * 3)
    assert sample(logits, [SamplingParams()] * 3, [0, 0, 0]) == [1, 1, 1]
    p = SamplingParams(temperature=1.0, top_p=1.0, seed=5)
    draws = [sample(logits[:1], [p], [i])[0] for i in range(50)]
    assert draws == [sample(logits[:1], [p], [i])[0] for i in range(50)]  # reproducible per (seed, index)
    assert len(set(draws)) > 1
    nucleus = SamplingParams(temperature=1.0, top_p=0.5, seed=5)  # token 1 alone holds > 50%
    assert {sample(logits[:1], [nucleus], [i])[0] for i in range(50)} == {1}


def test_prefault_writes_the_low_pages_of_every_layer(tmp_path):
    """CPU KV pages are faulted in at start-up: the first ``num_pages`` pages of every layer's K and V hold
    zeros afterwards (capped at the cache size), and the host buffer is all zeros."""
    from seesaw.runtime.kv_cache import HostKVBuffer, PagedKVCache

    kv = PagedKVCache((2, 5), kv_heads=2, head_dim=4, num_pages=6, page_size=4, dtype=torch.float32,
                      device=torch.device("cpu"))
    for t in kv.k + kv.v:
        t.fill_(7.0)
    nbytes = kv.prefault(3)
    assert nbytes == 2 * 3 * (3 * 4) * 2 * 4 * 4  # K and V, 3 layers, 12 slots, 2 heads x 4 dims, fp32
    for t in kv.k + kv.v:
        assert t[:12].eq(0).all() and t[12:].eq(7).all()
    assert kv.prefault(100) == 2 * 3 * 24 * 2 * 4 * 4  # capped at the 6 pages
    host = HostKVBuffer.create(str(tmp_path / "kv"), layers=2, kv_heads=2, tokens=8, head_dim=4)
    host.tensor.fill_(3.0)
    host.prefault()
    assert host.tensor.eq(0).all()


def test_flush_keeps_the_latest_sends_in_flight():
    """A stage waits for its older sends only: ``flush(keep=1)`` completes all but the newest, ``flush()``
    every one (before a transition)."""
    from seesaw.runtime.program import PhaseProgram

    class Work:
        def __init__(self):
            self.done = False

        def wait(self):
            self.done = True

    class Holder:
        pending: list

    h = Holder()
    works = [Work() for _ in range(3)]
    h.pending = list(works)
    PhaseProgram.flush(h, keep=1)
    assert [w.done for w in works] == [True, True, False] and h.pending == [works[2]]
    PhaseProgram.flush(h)
    assert works[2].done and h.pending == []
