"""The runtime's batching replayed on a trace: prefill packing and continuous-batching decode steps."""
from __future__ import annotations

import math

import pytest
from helpers.instances import tiny_cluster, tiny_model, tiny_workload
from hypothesis import given
from hypothesis import strategies as st

from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import CostModel
from seesaw.planner.cost.schedule import decode_schedule, prefill_batches
from seesaw.planner.optimize.terms import decode_terms, prefill_terms


def naive_decode_steps(output_lens: list[int], slots: int) -> int:
    """Step-by-step reference: admit FIFO into free slots, then every running sequence decodes one token."""
    waiting = [o - 1 for o in output_lens if o > 1]
    running: list[int] = []
    steps = 0
    while waiting or running:
        while waiting and len(running) < slots:
            running.append(waiting.pop(0))
        running = [r - 1 for r in running]
        running = [r for r in running if r > 0]
        steps += 1
    return steps


def test_one_wave_runs_as_long_as_its_longest_request():
    # 16 requests in 16 slots start together: the phase lasts the longest output (minus the prefill token)
    lens = [32] * 12 + [20, 8, 1, 30]
    s = decode_schedule(lens, 16)
    assert s.steps == 31
    assert s.seq_steps == 12 * 31 + 19 + 7 + 0 + 29
    assert s.mean_batch == pytest.approx(s.seq_steps / 31)


def test_one_slot_runs_requests_back_to_back():
    assert decode_schedule([5, 3, 1, 4], 1).steps == 4 + 2 + 0 + 3


def test_nothing_to_decode():
    s = decode_schedule([1, 1], 4)
    assert (s.steps, s.seq_steps, s.mean_batch) == (0, 0, 0.0)


def test_bad_slots():
    with pytest.raises(ValueError, match="slots"):
        decode_schedule([3], 0)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=60), st.integers(1, 12))
def test_decode_steps_match_step_by_step_simulation(lens, slots):
    s = decode_schedule(lens, slots)
    assert s.steps == naive_decode_steps(lens, slots)
    # list-scheduling bounds: never better than full batches or the longest request, never worse than both
    longest = max(lens) - 1
    assert max(longest, math.ceil(s.seq_steps / slots)) <= s.steps <= math.ceil(s.seq_steps / slots) + longest


def test_prefill_packs_whole_prompts_in_order():
    # the runtime's packing of replica 0 of the validation workload (budget 1015): 421 | 970 | 1011 | 195
    b = prefill_batches([16, 83, 322, 970, 49, 41, 156, 12, 18, 735, 49, 16, 10, 4, 91, 25], 1015)
    assert (b.batches, b.tokens) == (4, 2597)
    assert b.mean_tokens == pytest.approx(2597 / 4)


def test_prompt_longer_than_the_budget_runs_alone():
    assert prefill_batches([10, 500, 10], 100).batches == 3
    assert prefill_batches([10, 20, 30], 1000).batches == 1


def test_bad_budget():
    with pytest.raises(ValueError, match="budget_tokens"):
        prefill_batches([3], 0)


@given(st.lists(st.integers(1, 300), min_size=1, max_size=50), st.integers(1, 600))
def test_prefill_batches_bounds(lens, budget):
    b = prefill_batches(lens, budget)
    assert b.tokens == sum(lens)
    assert b.batches <= len(lens)
    if max(lens) <= budget:  # no batch passes the budget (an over-long prompt runs alone and may)
        assert b.batches >= math.ceil(sum(lens) / budget)


def test_phase_terms_use_the_schedule():
    wl = tiny_workload(n=40, max_prompt=300, max_output=120)
    cost = CostModel(tiny_model(), tiny_cluster(1.0, 4.0), wl)
    lay = Layout(2, 1, 2)
    d = decode_terms(cost, lay, 8)
    sched = max((decode_schedule(w.output_lens, 8) for w in wl.split(2)), key=lambda s: (s.steps, s.seq_steps))
    assert d.coef == sched.steps * 2
    p = prefill_terms(cost, lay, 512)
    packed = max((prefill_batches(w.prompt_lens, 512) for w in wl.split(2)), key=lambda b: (b.batches, b.tokens))
    assert p.coef == packed.batches + 2 - 1


def test_static_prefill_only_work_spreads_prompts_over_chunked_steps():
    # outputs of one token: no decode step, but chunked prefill still needs ceil(P / q) steps
    from seesaw.planner.optimize.terms import static_terms
    from seesaw.planner.workload import Workload

    wl = Workload("prefill-only", (100,) * 40, (1,) * 40)
    cost = CostModel(tiny_model(), tiny_cluster(1.0, 4.0), wl)
    t = static_terms(cost, Layout(1, 1, 4), 8)
    q = math.ceil(8 * 4000 / 40)
    assert t.coef == math.ceil(4000 / q) * 4
    assert t.max_batched_tokens == 8 + q
