"""Scheduler bookkeeping (no processes) and the sampler."""
from __future__ import annotations

import torch

from seesaw.runtime.batch import SamplingParams
from seesaw.runtime.kv_cache import BufferAllocator, PageAllocator, slot_table
from seesaw.runtime.sampling import sample
from seesaw.runtime.scheduler import Policy, ReplicaScheduler, Sequence


def _policy(**kw) -> Policy:
    base = dict(resharding=True, use_buffer=True, max_prefill_tokens=16, decode_max_seqs=2,
                prefill_to_decode_threshold_tokens=12, decode_to_prefill_threshold_tokens=0, prefill_pp=1, decode_pp=1)
    return Policy(**{**base, **kw})


def _drive(sched: ReplicaScheduler, token: int = 7) -> list[str]:
    """Run the scheduler to completion, answering every forward with ``token``; returns action kinds."""
    kinds = []
    while True:
        act = sched.next_action()
        kinds.append(act.kind)
        if act.kind == "done":
            return kinds
        if act.kind in ("prefill", "decode"):
            sched.on_tokens(act.kind, {i: token for mb in act.micro_batches for i in mb.seq_ids})


def test_buffered_policy_cycles_and_completes_everything():
    sched = ReplicaScheduler(_policy(), PageAllocator(num_pages=4, page_size=4), buffer_tokens=16, eos_ids=set())
    for i in range(6):
        sched.add(Sequence(i, [1] * 5, max_tokens=3))
    kinds = _drive(sched)
    assert sorted(s.index for s in sched.finished) == list(range(6))
    assert all(len(s.output) == 3 and s.finish_reason == "length" for s in sched.finished)
    assert kinds.count("transition") >= 3  # the 16-token buffer holds 3 prompts of 5: several cycles
    assert sched.buffer.used == 0 and len(sched.pages.free) == 4


def test_requests_that_can_never_fit_are_refused_up_front():
    sched = ReplicaScheduler(_policy(), PageAllocator(num_pages=8, page_size=4), buffer_tokens=16, eos_ids=set())
    sched.add(Sequence(0, [1] * 30, max_tokens=4))  # 34 tokens > 32 cache slots
    sched.add(Sequence(1, [1] * 17, max_tokens=1))  # fits the cache, but the prompt exceeds the host buffer
    assert [s.finish_reason for s in sched.finished] == ["error", "error"]
    assert "device KV cache" in sched.finished[0].error and "host KV buffer" in sched.finished[1].error
    assert sched.next_action().kind == "done"


def test_eos_stops_unless_ignored():
    sched = ReplicaScheduler(_policy(use_buffer=False, resharding=False), PageAllocator(8, 4), 0, eos_ids={7})
    sched.add(Sequence(0, [1, 2], max_tokens=5))
    sched.add(Sequence(1, [1, 2], max_tokens=5, ignore_eos=True))
    _drive(sched, token=7)
    by = {s.index: s for s in sched.finished}
    assert by[0].output == [7] and by[0].finish_reason == "stop"
    assert by[1].output == [7] * 5 and by[1].finish_reason == "length"


def test_page_budget_makes_requests_wait_in_the_direct_policy():
    sched = ReplicaScheduler(_policy(use_buffer=False, resharding=False, decode_max_seqs=8), PageAllocator(2, 4), 0,
                             eos_ids=set())
    for i in range(3):
        sched.add(Sequence(i, [1, 2, 3], max_tokens=2))  # 5 tokens = 2 pages each: one at a time
    act = sched.next_action()
    assert act.kind == "prefill" and [mb.seq_ids for mb in act.micro_batches] == [[0]]
    sched.on_tokens("prefill", {0: 1})
    assert sched.next_action().kind == "decode"  # no pages for request 1 until request 0 finishes


def test_buffer_allocator_merges_holes():
    b = BufferAllocator(10)
    a, c, d = b.allocate(4), b.allocate(3), b.allocate(3)
    assert (a, c, d) == (0, 4, 7) and b.allocate(1) is None
    b.release(a, 4)
    b.release(c, 3)
    assert b.allocate(7) == 0


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
