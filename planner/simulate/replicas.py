"""Which DP replicas a simulated run steps through, and what the others add to its counts.

Every DP replica runs the same layout on its round-robin share of the trace (request ``i`` to replica
``i mod dp``, as the runtime and the engines deal them), and the run's wall time is the slowest replica's. The
number of simulated steps grows with ``dp`` (each replica decodes at least as many steps as its longest output),
so on a large cluster (512 replicas of 8 GPUs on 4,096 GPUs) stepping through every replica takes minutes.

Above :data:`ALL_REPLICAS_UP_TO` replicas, only the replicas most likely to be the slowest are stepped through:
the top :data:`PER_KEY` replicas by each of five work measures (summed prompt tokens, summed output tokens,
summed prompt + output tokens, longest output, and KV token-steps ``sum(p * o + o^2 / 2)``: the prefill work,
the decode work when the batch is compute- or step-bound, both, the decode tail when every request of the
replica decodes in one batch, and the KV cache pressure when it is memory-bound), most work first, so a run
that stops at a time bound stops early. The others are counted, not simulated: their requests and tokens (less
the ones the simulator would refuse at admission) enter the totals, so throughput is always the whole trace's
tokens over the slowest simulated replica's wall time. ``bench/replica_sampling.py`` measures the wall-time
difference against stepping through every replica.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

ALL_REPLICAS_UP_TO = 32
PER_KEY = 4


def replica_shares(prompt_lens: Sequence[int], output_lens: Sequence[int], dp: int) -> list[tuple[list[int], list[int]]]:
    """``(prompt_lens, output_lens)`` of each replica's round-robin share (replicas with no request left out)."""
    return [(list(prompt_lens[r::dp]), list(output_lens[r::dp])) for r in range(min(dp, len(prompt_lens)))]


def replicas_to_simulate(shares: list[tuple[list[int], list[int]]], sample: bool = True) -> list[int]:
    """Indices into ``shares`` to step through: all of them (in order) when ``sample`` is False or there are at
    most :data:`ALL_REPLICAS_UP_TO`; else the module docstring's pick, most summed tokens first."""
    n = len(shares)
    if not sample or n <= ALL_REPLICAS_UP_TO:
        return list(range(n))
    keys: list[Callable[[tuple[list[int], list[int]]], float]] = [
        lambda s: sum(s[0]), lambda s: sum(s[1]), lambda s: sum(s[0]) + sum(s[1]), lambda s: max(s[1], default=0),
        lambda s: sum(p * o + o * o / 2 for p, o in zip(*s))]
    picked: set[int] = set()
    for key in keys:
        picked.update(sorted(range(n), key=lambda i: (-key(shares[i]), i))[:PER_KEY])
    return sorted(picked, key=lambda i: (-(sum(shares[i][0]) + sum(shares[i][1])), i))


def counted_only(run, shares: list[tuple[list[int], list[int]]], simulated: list[int],
                 fits: Callable[[int, int], bool]) -> None:
    """Add the replicas not in ``simulated`` to ``run``'s ``requests``, ``refused``, ``prompt_tokens`` and
    ``output_tokens`` (a :class:`~seesaw.planner.simulate.result.SimRun`); ``fits(prompt_len, output_len)``: whether
    the simulator would admit the request (one it refuses adds no token)."""
    skip = set(range(len(shares))) - set(simulated)
    for i in skip:
        for p, o in zip(*shares[i]):
            run.requests += 1
            if fits(p, o):
                run.prompt_tokens += p
                run.output_tokens += o
            else:
                run.refused += 1
    run.replicas += len(shares)
    run.replicas_simulated += len(simulated)
