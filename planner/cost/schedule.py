"""How many steps a replica runs per phase, and how full they are: the runtime's batching on the trace.

Prefill: the scheduler packs waiting prompts in arrival order into a batch until the next one would pass
the token budget (a prompt is never split), so a phase of ``P`` prompt tokens runs more batches than
``ceil(P / budget)``, each less full (:func:`prefill_batches`).

Decode (continuous batching, :func:`decode_schedule`): the runtime's prefill pass samples each request's
first output token, so a request of ``o`` output tokens holds a decode slot for ``o - 1`` steps; a replica
admits waiting requests in arrival (FIFO) order whenever a slot frees, at most ``slots`` running at once.
Simulating those slots over the trace's own output lengths gives the phase's step count exactly, including
the drain at the end, where the batch empties one sequence at a time (DESIGN.md section 8: ``b_eff``
reflects the batch shrinking at the end; the closed form ``ceil(D / slots) + max(o) - mean(o) / 2`` that
this replaces charged every drain step a full batch and over-counted a one-wave phase, where all requests
start together, by ``mean(o) / 2`` steps).
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class DecodeSchedule:
    """Decode steps of one replica and the sequence-steps they serve (``sum(o - 1)`` over its requests)."""

    steps: int
    seq_steps: int

    @property
    def mean_batch(self) -> float:
        """Mean running sequences per step, ``seq_steps / steps`` (0 when nothing decodes)."""
        return self.seq_steps / self.steps if self.steps else 0.0


@dataclass(frozen=True)
class PrefillBatches:
    """Prefill batches of one replica and the prompt tokens they hold."""

    batches: int
    tokens: int

    @property
    def mean_tokens(self) -> float:
        """Mean prompt tokens per batch, ``tokens / batches`` (0 when there is no prompt)."""
        return self.tokens / self.batches if self.batches else 0.0


def prefill_batches(prompt_lens: Sequence[int], budget_tokens: int) -> PrefillBatches:
    """Batches of whole prompts (FIFO, greedy) of at most ``budget_tokens`` tokens each; a prompt longer
    than the budget runs alone. ``O(n)``. Raises ``ValueError`` when ``budget_tokens < 1``."""
    if budget_tokens < 1:
        raise ValueError(f"budget_tokens must be >= 1, got {budget_tokens}")
    batches, filled = 0, 0
    for p in prompt_lens:
        if batches == 0 or filled + p > budget_tokens:
            batches, filled = batches + 1, 0
        filled += p
    return PrefillBatches(batches, sum(prompt_lens))


def decode_schedule(output_lens: Sequence[int], slots: int) -> DecodeSchedule:
    """Steps to decode ``output_lens`` (tokens per request, first one from prefill) with ``slots`` running.

    FIFO admission; a slot that frees at the end of step ``t`` takes the next request from step ``t`` on.
    ``O(n log slots)`` for ``n`` requests. Raises ``ValueError`` when ``slots < 1``.
    """
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    steps = [o - 1 for o in output_lens if o > 1]
    if len(steps) <= slots:
        return DecodeSchedule(max(steps, default=0), sum(steps))
    finish = steps[:slots]  # end step of each running sequence
    heapq.heapify(finish)
    for n in steps[slots:]:
        heapq.heappushpop(finish, finish[0] + n)  # the earliest slot to free takes the next request
    return DecodeSchedule(max(finish), sum(steps))
