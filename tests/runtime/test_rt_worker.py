"""Tests for seesaw.runtime.worker.bind_cpu_rank: which cores a CPU rank is pinned to, and when it is not."""
from __future__ import annotations

import os

import pytest

from seesaw.runtime.worker import bind_cpu_rank

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity (Linux)")


@pytest.fixture
def affinity():
    """This process's cores, restored after the test (bind_cpu_rank pins the calling process)."""
    saved = os.sched_getaffinity(0)
    yield sorted(saved)
    os.sched_setaffinity(0, saved)


def test_last_rank_gets_the_last_block_of_cores(affinity):
    n = len(affinity)
    assert bind_cpu_rank(n - 1, n, 1) == (affinity[-1],)
    assert os.sched_getaffinity(0) == {affinity[-1]}


def test_oversubscribed_ranks_are_not_pinned(affinity):
    """More ranks than cores: no rank is pinned (not some of them)."""
    n = len(affinity)
    assert bind_cpu_rank(0, n + 1, 1) == ()
    assert bind_cpu_rank(0, 1, n + 1) == ()
    assert sorted(os.sched_getaffinity(0)) == affinity


def test_switched_off_by_the_environment(affinity, monkeypatch):
    monkeypatch.setenv("SEESAW_CPU_BIND", "0")
    assert bind_cpu_rank(0, 1, 1) == ()
    assert sorted(os.sched_getaffinity(0)) == affinity
