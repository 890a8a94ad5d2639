"""Calibration samples: what ``seesaw-calibrate`` measured, as the fits of :mod:`seesaw.planner.calibration.fit`
and :mod:`seesaw.planner.calibration.fit_links` take it (timed ops, collectives, host copies, micro-batch round
trips, forward passes of the runtime), and the residual of a fitted prediction against a measurement.

No torch: the measurements come from ``seesaw.runtime.microbench*`` and the runtime's own runs.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from seesaw.ir.errors import InputError

OpKindName = Literal["gemm", "lm_head", "elementwise", "attention"]
GEMM_SAMPLE_KINDS = ("gemm", "lm_head")  # kinds costed as GEMMs (rows, packing)


# -- samples ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpSample:
    """One timed compute op: ``flops`` FLOPs and ``nbytes`` bytes of memory traffic (as the IR's
    ``Op.flops`` / ``Op.device_bytes`` count them) in ``seconds``. ``rows``: a GEMM's rows (tokens);
    ``seqs``: sequences of an attention op. ``in_run``: timed inside a forward pass of the runtime (the mean
    over the layers of one pass, :func:`seesaw.planner.calibration.forward.in_run_op_samples`), not alone."""

    kind: OpKindName
    flops: float
    nbytes: float
    seconds: float
    rows: float | None = None
    seqs: int = 0
    label: str = ""
    in_run: bool = False


@dataclass(frozen=True)
class CommSample:
    """One timed collective: an all-reduce of ``nbytes`` per rank over ``world`` ranks, or a one-way
    send/recv of ``nbytes`` (``world`` 2), in ``seconds``."""

    kind: Literal["all_reduce", "send_recv"]
    world: int
    nbytes: float
    seconds: float
    label: str = ""


@dataclass(frozen=True)
class CopySample:
    """One timed host <-> device copy of ``nbytes`` (``pinned`` or ``pageable`` host memory)."""

    kind: Literal["pinned", "pageable"]
    nbytes: float
    seconds: float
    label: str = ""


@dataclass(frozen=True)
class StepSample:
    """One timed micro-batch outside its ops: the scheduler's round trip of a ``forward`` command of ``seqs``
    sequences (``tokens`` query tokens, ``mode`` prefill | decode) and its ``tokens`` reply, including the
    worker's per-micro-batch set-up, in ``seconds``; ``setup_s`` is the worker-side part."""

    mode: str
    seqs: int
    tokens: int
    seconds: float
    setup_s: float = 0.0
    label: str = ""


@dataclass(frozen=True)
class ForwardSample:
    """One timed forward pass of the runtime: a micro-batch of ``seqs`` sequences and ``tokens`` query
    tokens (``kind`` prefill | decode; ``context_lens`` each sequence's prompt or context length), from the
    scheduler's issue to its reply, in ``seconds``. ``ops``: the compute ops it ran as :class:`OpSample`
    (their ``seconds`` unused), ``counts`` how many times each ran (a model's layers repeat the same ops;
    empty: once each). ``tp``: the ranks of the TP group that ran it (1: one rank holding the whole model);
    ``ops`` are then one rank's shards and ``comms`` the collectives of the pass as ``(kind, nbytes)``
    (``all_reduce`` bytes per rank, ``all_gather`` the gathered total, as ``comm_op_s`` sizes them),
    ``comm_counts`` how many times each ran. Built from the IR by
    :func:`seesaw.planner.calibration.forward.forward_sample`."""

    kind: Literal["prefill", "decode"]
    ops: tuple[OpSample, ...]
    seconds: float
    label: str = ""
    seqs: int = 0
    tokens: int = 0
    counts: tuple[int, ...] = ()
    context_lens: tuple[int, ...] = ()
    tp: int = 1
    comms: tuple[tuple[str, float], ...] = ()
    comm_counts: tuple[int, ...] = ()

    @property
    def op_counts(self) -> tuple[int, ...]:
        return self.counts or (1,) * len(self.ops)

    @property
    def comm_op_counts(self) -> tuple[int, ...]:
        return self.comm_counts or (1,) * len(self.comms)


@dataclass(frozen=True)
class Residual:
    """Measured against predicted seconds of one sample; ``error = predicted / measured - 1``."""

    group: str
    label: str
    measured_s: float
    predicted_s: float

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1.0


def residual_summary(residuals: Sequence[Residual]) -> dict[str, tuple[int, float, float]]:
    """Per group: ``(samples, RMS relative error, max |relative error|)``, groups in first-seen order."""
    groups: dict[str, list[float]] = {}
    for r in residuals:
        groups.setdefault(r.group, []).append(r.error)
    return {g: (len(e), math.sqrt(sum(x * x for x in e) / len(e)), max(abs(x) for x in e))
            for g, e in groups.items()}


def _check_positive(samples: Sequence, group: str) -> None:
    for s in samples:
        if not (s.seconds > 0 and math.isfinite(s.seconds)):
            raise InputError(group, f"sample '{s.label or s}' has a non-positive time {s.seconds!r}")
