"""Collectives, host copies and the per-micro-batch overhead: the linear fits of ``seesaw-calibrate``.

Split out of :mod:`seesaw.planner.calibration.fit` (whose docstring describes all the fits); the names are
re-exported there. Each fit evaluates the cost model's own functions (``Cluster.allreduce_s``,
``Cluster.send_recv_s``, ``Cluster.host_to_device_s``, ``step_overhead_s``) on candidate parameters.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import lsq_linear

from seesaw.ir.errors import InputError
from seesaw.planner.cost.roofline import step_overhead_s
from seesaw.planner.hardware.catalog import GB, GPUSpec
from seesaw.planner.hardware.cluster import Cluster, build_cluster
from seesaw.planner.calibration.fit import (CommSample, CopySample, ForwardSample, Residual, StepSample,
                                        _check_positive, _stderr, forward_time_s)

# -- collectives and host copies ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CommParams:
    """Alpha-beta terms: ``collective_launch_us``, ``link_latency_us`` per ring hop, ``link_gb_per_s``
    (achieved, so ``link_efficiency`` 1)."""

    collective_launch_us: float
    link_latency_us: float
    link_gb_per_s: float


@dataclass(frozen=True)
class CommFit:
    """Fitted alpha-beta terms, residuals, standard errors keyed by :class:`CommParams` field (free ones)."""

    params: CommParams
    residuals: tuple[Residual, ...]
    stderr: dict[str, float]
    free: tuple[str, ...] = ("collective_launch_us", "link_latency_us", "link_gb_per_s")


@dataclass(frozen=True)
class CopyFit:
    """Achieved host <-> device bandwidth (1e9 B/s) of one kind of host memory, residuals, standard error."""

    kind: str
    host_link_gb_per_s: float
    residuals: tuple[Residual, ...]
    stderr_gb_per_s: float


def comm_cluster(world: int, launch_s: float, latency_s: float, s_per_byte: float,
                 host_s_per_byte: float = 1e-10) -> Cluster:
    """A one-node cluster of ``world`` ranks whose link has exactly these alpha-beta terms (efficiency 1)."""
    gpu = GPUSpec(name="fit", memory_gb=1.0, bf16_tflops=1.0, memory_gb_per_s=1.0, link="gloo",
                  gpu_link_gb_per_s=1.0 / (s_per_byte * GB), gpu_link_latency_us=latency_s * 1e6,
                  collective_launch_us=launch_s * 1e6, host_link_gb_per_s=1.0 / (host_s_per_byte * GB),
                  link_efficiency=1.0, gpus_per_node=world)
    return build_cluster(gpu, world, "fit", "fit")


def comm_time_s(sample: CommSample, cluster: Cluster) -> float:
    """Predicted seconds of a collective: ``Cluster.allreduce_s`` or ``Cluster.send_recv_s``."""
    if sample.kind == "all_reduce":
        return cluster.allreduce_s(sample.nbytes, sample.world)
    return cluster.send_recv_s(sample.nbytes)


def _comm_predict(samples: Sequence[CommSample], x: np.ndarray) -> np.ndarray:
    worlds = {s.world for s in samples} | {2}
    clusters = {w: comm_cluster(w, *x) for w in worlds}
    return np.array([comm_time_s(s, clusters[s.world]) for s in samples])


def fit_comm(samples: Sequence[CommSample]) -> CommFit:
    """Non-negative linear least squares (relative residuals) of launch, per-hop latency and bandwidth.

    With all-reduces at one world size only (e.g. 2), launch and per-hop latency cannot be told apart: the
    launch is held at 0 and the latency takes the whole fixed term. Needs two or more message sizes, else
    InputError.
    """
    samples = list(samples)
    _check_positive(samples, "comm samples")
    if any(s.world < 2 for s in samples):
        raise InputError("comm samples", "every collective needs a world size >= 2")
    measured = np.array([s.seconds for s in samples])
    one_world = len({s.world for s in samples}) < 2
    full = (lambda v: np.array([0.0, v[0], v[1]])) if one_world else (lambda v: v)
    x, err = _linear_fit(lambda v: _comm_predict(samples, full(v)), measured,
                         np.array([1e-5, 1e-9] if one_world else [1e-5, 1e-5, 1e-9]),
                         np.array([0.0, 1e-15] if one_world else [0.0, 0.0, 1e-15]), "comm samples",
                         "need two or more message sizes")
    x, err = full(x), (np.array([np.nan, *err]) if one_world else err)
    predicted = _comm_predict(samples, x)
    table = tuple(Residual(s.kind, s.label, s.seconds, p) for s, p in zip(samples, predicted))
    params = CommParams(x[0] * 1e6, x[1] * 1e6, 1.0 / (x[2] * GB))
    stderr = {"collective_launch_us": err[0] * 1e6, "link_latency_us": err[1] * 1e6,
              "link_gb_per_s": params.link_gb_per_s * err[2] / x[2]}
    free = tuple(k for k in stderr if not (one_world and k == "collective_launch_us"))
    return CommFit(params, table, {k: v for k, v in stderr.items() if k in free}, free)


# -- collectives inside the runtime's TP forward passes -----------------------------------------------------
@dataclass(frozen=True)
class ForwardLinkFit:
    """``collective_launch_us`` and ``link_gb_per_s`` fitted to timed TP forward passes of the runtime (the
    per-hop ``link_latency_us`` held at the micro-benchmark figure), residuals of the whole passes (group
    ``forward tp``), standard errors keyed by field (bandwidth 0 when held), the TP degrees of the passes,
    and whether the bandwidth was held at the micro-benchmark figure (see :func:`fit_forward_links`)."""

    collective_launch_us: float
    link_latency_us: float
    link_gb_per_s: float
    residuals: tuple[Residual, ...]
    stderr: dict[str, float]
    tps: tuple[int, ...] = ()
    bandwidth_held: bool = False


def forward_comm_s(sample: ForwardSample, cluster: Cluster) -> float:
    """Seconds of the collectives of a TP forward pass on ``cluster``: ``Cluster.allreduce_s`` /
    ``Cluster.allgather_s`` of each ``(kind, nbytes)`` over ``sample.tp`` ranks, times its count (what
    ``comm_op_s`` charges inside ``stage_cost``); 0 at TP 1."""
    if sample.tp == 1:
        return 0.0
    total = 0.0
    for (kind, nbytes), n in zip(sample.comms, sample.comm_op_counts):
        if kind == "all_reduce":
            total += n * cluster.allreduce_s(nbytes, sample.tp)
        elif kind == "all_gather":
            total += n * cluster.allgather_s(nbytes, sample.tp)
        else:
            raise ValueError(f"unknown collective {kind!r} in forward sample '{sample.label}'")
    return total


def forward_tp_time_s(sample: ForwardSample, gpu: GPUSpec, cluster: Cluster) -> float:
    """Predicted seconds of a timed forward pass: its compute (``forward_time_s`` on ``gpu``) plus its
    collectives on ``cluster``'s links (:func:`forward_comm_s`)."""
    return forward_time_s(sample, gpu) + forward_comm_s(sample, cluster)


def fit_forward_links(samples: Sequence[ForwardSample], gpu: GPUSpec, latency_s: float,
                      held_s_per_byte: float | None = None, hold_bandwidth: bool = False) -> ForwardLinkFit:
    """Collective launch (s, >= 0) and seconds per byte (> 0) of the link, fitted to timed TP forward passes
    of the runtime: each pass is predicted by :func:`forward_tp_time_s` with its compute on ``gpu`` (the
    kernel terms and ``step_overhead_us`` already fitted) and its collectives on ``comm_cluster(tp, launch,
    latency_s, s_per_byte)``, the per-hop ``latency_s`` held (from :func:`fit_comm`); relative residuals on
    the whole pass time (``_linear_fit``). Inside a step every collective also waits for its partner ranks
    to be scheduled, which isolated micro-benchmarks do not see: this fit puts that into the launch and
    bandwidth terms. InputError without TP samples or when the message sizes cannot separate the two.

    When the fitted seconds per byte ends at its lower bound (the passes' messages too small for their byte
    term to show: a bandwidth of 1e6 GB/s) and ``held_s_per_byte`` is given (the micro-benchmark figure),
    the bandwidth is held there instead and only the launch is fitted (``bandwidth_held``). With
    ``hold_bandwidth`` it is held there from the start (``held_s_per_byte`` required): the passes then fit the
    launch only."""
    samples = list(samples)
    if not samples or any(s.tp < 2 or not s.comms for s in samples):
        raise InputError("forward tp samples", "the link fit needs forward passes at tp >= 2 with collectives")
    _check_positive(samples, "forward tp samples")
    compute = np.array([forward_time_s(s, gpu) for s in samples])
    measured = np.array([s.seconds for s in samples])
    tps = {s.tp for s in samples}

    def predict(v: np.ndarray) -> np.ndarray:
        clusters = {t: comm_cluster(t, float(v[0]), latency_s, float(v[1])) for t in tps}
        return compute + np.array([forward_comm_s(s, clusters[s.tp]) for s in samples])

    if hold_bandwidth and held_s_per_byte is None:
        raise ValueError("hold_bandwidth needs held_s_per_byte")
    held = hold_bandwidth
    if not held:
        x, err = _linear_fit(predict, measured, np.array([1e-5, 1e-9]), np.array([0.0, 1e-15]),
                             "forward tp samples", "need passes with different collective sizes")
        held = held_s_per_byte is not None and x[1] <= 1e-15 * (1 + 1e-6)
    if held:
        x1, err1 = _linear_fit(lambda v: predict(np.array([v[0], held_s_per_byte])), measured, np.array([1e-5]),
                               np.array([0.0]), "forward tp samples", "need a pass with collectives")
        x, err = np.array([x1[0], held_s_per_byte]), np.array([err1[0], 0.0])
    table = tuple(Residual("forward tp", s.label, s.seconds, p) for s, p in zip(samples, predict(x)))
    bw = 1.0 / (x[1] * GB)
    return ForwardLinkFit(x[0] * 1e6, latency_s * 1e6, bw, table,
                          {"collective_launch_us": err[0] * 1e6, "link_gb_per_s": bw * err[1] / x[1]},
                          tuple(sorted(tps)), bool(held))


def fit_copy(samples: Sequence[CopySample]) -> CopyFit:
    """Least-squares host link bandwidth (``Cluster.host_to_device_s``) of samples of one kind."""
    samples = list(samples)
    if not samples:
        raise InputError("copy samples", "the host copy fit needs at least one sample")
    kinds = {s.kind for s in samples}
    if len(kinds) > 1:
        raise InputError("copy samples", f"fit one kind of host memory at a time, got {', '.join(sorted(kinds))}")
    _check_positive(samples, "copy samples")
    measured = np.array([s.seconds for s in samples])

    def predict(v: np.ndarray) -> np.ndarray:
        cluster = comm_cluster(2, 0.0, 0.0, 1e-9, host_s_per_byte=float(v[0]))
        return np.array([cluster.host_to_device_s(s.nbytes) for s in samples])

    x, err = _linear_fit(predict, measured, np.array([1e-10]), np.array([1e-16]), "copy samples",
                         "need a copy of more than 0 bytes")
    table = tuple(Residual(f"copy {s.kind}", s.label, s.seconds, p) for s, p in zip(samples, predict(x)))
    bw = 1.0 / (x[0] * GB)
    return CopyFit(samples[0].kind, bw, table, bw * err[0] / x[0])


# -- per-micro-batch overhead --------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepFit:
    """``step_overhead_us``: the median fixed part of the micro-batch round trips (what the cost model's
    constant per-micro-batch term can hold), ``setup_us`` the same figure for the worker-side set-up alone;
    per mode the Theil-Sen slope in microseconds per sequence, whether it is clearly non-zero (then it was
    taken out of the fixed parts; the cost model has no such term, so it is only reported), and the
    residuals of the constant model."""

    step_overhead_us: float
    setup_us: float
    slope_us_per_seq: dict[str, float]
    slope_clear: dict[str, bool]
    residuals: tuple[Residual, ...]


def _fixed_parts(samples: Sequence[StepSample], values: np.ndarray) -> tuple[float, dict, dict]:
    """Median over samples of ``value - slope * seqs`` with each mode's Theil-Sen slope (the median of the
    pairwise slopes) where it is clearly non-zero: every pairwise slope of that sign, and the change it
    makes across the mode's batch sizes above 10 % of the mode's median value. Else the slope counts as 0."""
    slopes, clear = {}, {}
    fixed = values.copy()
    for mode in dict.fromkeys(s.mode for s in samples):
        idx = [i for i, s in enumerate(samples) if s.mode == mode]
        pairs = [(values[j] - values[i]) / (samples[j].seqs - samples[i].seqs)
                 for a, i in enumerate(idx) for j in idx[a + 1:] if samples[j].seqs != samples[i].seqs]
        b = float(np.median(pairs)) if pairs else 0.0
        span = max(samples[i].seqs for i in idx) - min(samples[i].seqs for i in idx)
        clear[mode] = bool(pairs) and (all(p > 0 for p in pairs) or all(p < 0 for p in pairs)) and \
            abs(b) * span > 0.1 * float(np.median(values[idx]))
        slopes[mode] = b * 1e6
        if clear[mode]:
            fixed[idx] -= b * np.array([samples[i].seqs for i in idx], dtype=float)
    return float(np.median(fixed)), slopes, clear


def fit_step(samples: Sequence[StepSample]) -> StepFit:
    """``step_overhead_us`` as the median fixed part of the timed micro-batches (see :func:`_fixed_parts`),
    at least 0; residuals through ``step_overhead_s`` of the cost model. InputError without samples."""
    samples = list(samples)
    if not samples:
        raise InputError("step samples", "the step-overhead fit needs at least one sample")
    _check_positive(samples, "step samples")
    constant, slopes, clear = _fixed_parts(samples, np.array([s.seconds for s in samples]))
    setup, _, _ = _fixed_parts(samples, np.array([s.setup_s for s in samples]))
    overhead_us = max(0.0, constant * 1e6)
    gpu = GPUSpec(name="fit", memory_gb=1.0, bf16_tflops=1.0, memory_gb_per_s=1.0, step_overhead_us=overhead_us)
    predicted = step_overhead_s(build_cluster(gpu, 1, "fit", "fit"))
    table = tuple(Residual("step", s.label, s.seconds, predicted) for s in samples)
    return StepFit(overhead_us, max(0.0, setup * 1e6), slopes, clear, table)


def _linear_fit(predict: Callable[[np.ndarray], np.ndarray], measured: np.ndarray, ref: np.ndarray,
                lower: np.ndarray, group: str, hint: str) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``|predict(x) / measured - 1|`` over ``x >= lower`` for a ``predict`` linear in ``x``;
    returns ``(x, standard errors of x)``.

    The design matrix is ``predict``'s differences at ``ref`` (step = ``ref``); linearity is checked at
    ``3 * ref``. Columns are normalised before ``lsq_linear``. InputError when the samples cannot
    determine every parameter (rank-deficient design).
    """
    n = len(ref)
    if len(measured) < n:
        raise InputError(group, f"{n} parameters need at least {n} samples, got {len(measured)}")
    base = predict(ref)
    cols = []
    for j in range(n):
        x = ref.copy()
        x[j] += ref[j]
        cols.append((predict(x) - base) / ref[j])
    a = np.column_stack(cols)
    offset = base - a @ ref
    check = 3 * ref
    if not np.allclose(predict(check), a @ check + offset, rtol=1e-6, atol=1e-15):
        raise RuntimeError("the cost function is not linear in the fitted parameters")  # pragma: no cover
    w = a / measured[:, None]
    norms = np.linalg.norm(w, axis=0)
    if np.any(norms == 0) or np.linalg.matrix_rank(w / norms) < n:
        raise InputError(group, f"the samples cannot determine all {n} parameters: {hint}")
    sol = lsq_linear(w / norms, 1.0 - offset / measured, bounds=(lower * norms, np.inf), method="bvls")
    return sol.x / norms, _stderr(w / norms, sol.fun) / norms
