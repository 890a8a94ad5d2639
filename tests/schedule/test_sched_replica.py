"""The shared replica scheduler's bookkeeping (no processes)."""
from __future__ import annotations

from seesaw.schedule.allocators import PageAllocator
from seesaw.schedule.replica import Policy, ReplicaScheduler, Sequence

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
            sched.on_tokens(act, {i: token for mb in act.micro_batches for i in mb.seq_ids})
        elif act.kind == "transition":
            sched.on_transition_done()


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
    sched.on_tokens(act, {0: 1})
    assert sched.next_action().kind == "decode"  # no pages for request 1 until request 0 finishes


def test_pp_keeps_one_micro_batch_per_stage_in_flight_and_drains_before_switching():
    """pp=2: two prefill batches in flight, then (after the switch) two disjoint decode groups in flight;
    the switch waits until the pipeline is empty."""
    pol = _policy(max_prefill_tokens=5, prefill_to_decode_threshold_tokens=20, decode_max_seqs=4,
                  prefill_pp=2, decode_pp=2)
    sched = ReplicaScheduler(pol, PageAllocator(num_pages=16, page_size=4), buffer_tokens=20, eos_ids=set())
    for i in range(4):
        sched.add(Sequence(i, [1] * 5, max_tokens=3))
    a, b = sched.next_action(), sched.next_action()
    assert (a.kind, b.kind) == ("prefill", "prefill") and sched.next_action().kind == "wait"
    assert a.micro_batches[0].seq_ids == [0] and b.micro_batches[0].seq_ids == [1]
    sched.on_tokens(a, {0: 7})
    c = sched.next_action()
    assert c.kind == "prefill" and c.micro_batches[0].seq_ids == [2]
    sched.on_tokens(b, {1: 7})
    sched.on_tokens(c, {2: 7})
    d = sched.next_action()
    assert d.kind == "prefill"
    assert sched.next_action().kind == "wait"  # buffer full: the switch waits for d
    sched.on_tokens(d, {3: 7})
    t = sched.next_action()
    assert t.kind == "transition" and t.target == "decode"
    assert sched.next_action().kind == "wait"
    sched.on_transition_done()
    g1, g2 = sched.next_action(), sched.next_action()
    assert (g1.kind, g2.kind) == ("decode", "decode")
    ids1, ids2 = g1.micro_batches[0].seq_ids, g2.micro_batches[0].seq_ids
    assert len(ids1) == len(ids2) == 2 and not set(ids1) & set(ids2)
    assert sched.next_action().kind == "wait"
    sched.on_tokens(g1, {i: 7 for i in ids1})
    g3 = sched.next_action()  # group 1 goes again while group 2 is still in flight
    assert g3.kind == "decode" and g3.micro_batches[0].seq_ids == ids1
    kinds = _drive_pending(sched, [g2, g3])
    assert kinds.count("transition") == 0
    assert sorted(s.index for s in sched.finished) == [0, 1, 2, 3]
    assert all(len(s.output) == 3 for s in sched.finished)


def _drive_pending(sched: ReplicaScheduler, pending: list) -> list[str]:
    """Answer in-flight actions oldest first, issuing whatever the scheduler allows in between."""
    kinds = []
    while True:
        while True:
            act = sched.next_action()
            if act.kind in ("wait", "done"):
                break
            kinds.append(act.kind)
            pending.append(act)
        if not pending:
            return kinds
        act = pending.pop(0)
        if act.kind == "transition":
            sched.on_transition_done()
        else:
            sched.on_tokens(act, {i: 7 for mb in act.micro_batches for i in mb.seq_ids})


def test_replica_left_in_decode_transitions_to_prefill_first():
    """A scheduler created for workers that hold the decode layout (a previous run ended there) switches
    them back before prefilling; without re-sharding there is nothing to switch."""
    for resharding, first in ((True, "transition"), (False, "prefill")):
        sched = ReplicaScheduler(_policy(resharding=resharding), PageAllocator(8, 4), buffer_tokens=16,
                                 eos_ids=set(), phase="decode")
        sched.add(Sequence(0, [1] * 5, max_tokens=2))
        act = sched.next_action()
        assert act.kind == first and sched.phase == "prefill"
        if first == "transition":
            assert act.target == "prefill"



def test_thresholds_that_would_switch_phases_without_decoding_are_refused():
    import pytest

    with pytest.raises(ValueError, match="must be below the prefill->decode threshold"):
        _policy(prefill_to_decode_threshold_tokens=10, decode_to_prefill_threshold_tokens=10)
    _policy(use_buffer=False, prefill_to_decode_threshold_tokens=0, decode_to_prefill_threshold_tokens=0)
