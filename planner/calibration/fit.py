"""Fit the cost model's hardware terms to measured timings (the fitting half of ``seesaw-calibrate``).

numpy + scipy only (no torch): the measurements come from ``seesaw.runtime.microbench*`` modules. Four fits,
each evaluating its predictions through the cost model's own functions on a :class:`GPUSpec` /
:class:`Cluster` built from candidate parameters, never through a restatement of the formulas:

- compute ops (:func:`fit_kernels`): :func:`~seesaw.planner.cost.roofline.kernel_time_s` plus the fixed terms
  :func:`~seesaw.planner.cost.roofline.compute_op_s` adds (see :func:`op_time_s`). Eleven parameters: the
  achieved GEMM rate ``F_eff`` and memory bandwidth ``B_eff`` of the roofline (DESIGN.md section 4), Hockney
  and Jesshope's half-performance rows ``matmul_half_rows``, the weight-packing traffic of multi-row GEMMs
  ``matmul_pack_ratio``, ``compute_memory_overlap``, ``op_overhead_us``, ``elementwise_overhead_us`` (the
  further fixed time of an elementwise op: several small kernels, dispatched against cold caches),
  ``attention_seq_overhead_us``, ``attention_efficiency`` and ``attention_memory_efficiency`` (attention
  FLOPs run at ``F_eff * attention_efficiency``, its bytes at ``B_eff * attention_memory_efficiency``), and
  ``lm_head_efficiency`` (both rates of the lm head's GEMM).
  Besides the isolated op timings the fit can take timed forward passes of the runtime
  (:class:`ForwardSample`, predicted by :func:`forward_time_s` as the sum of their ops' times plus the
  per-micro-batch overhead), weighted so that they together weigh as much as the op timings. The
  roofline's ``max``/``min`` make this nonlinear: ``scipy.optimize.least_squares`` (trust-region
  reflective, bounded) from several starting points, on
  log-ratio residuals ``log(predicted / measured)`` (a factor 2 too fast or too slow weigh alike) with a
  soft-L1 loss beyond 10 % (Huber-like: an op the model cannot represent, e.g. a runtime RoPE made of ten
  torch kernels, does not drag the GEMM terms). Any parameter can be held fixed: for GEMMs the
  half-performance term ``2 k n n_half / F`` is proportional to the weight bytes exactly as the memory term
  is, so GEMM timings alone cannot separate ``n_half`` from ``B_eff``, and ``seesaw-calibrate`` pins
  ``B_eff`` to the measured weight-streaming rate.
- collectives (:func:`fit_comm`): ``Cluster.allreduce_s`` and ``Cluster.send_recv_s``, the alpha-beta
  (Hockney) model of DESIGN.md section 4, linear in (launch, per-hop latency, seconds per byte):
  ``scipy.optimize.lsq_linear`` with non-negative bounds.
- host copies (:func:`fit_copy`): ``Cluster.host_to_device_s``, linear in seconds per byte.
- the per-micro-batch overhead (:func:`fit_step`): ``step_overhead_s``, a constant: the median fixed part of
  the timed scheduler <-> worker round trips (each mode's per-sequence slope taken out when clearly non-zero,
  and reported).

The linear fits (collectives, copies, step overhead) live in :mod:`seesaw.planner.calibration.fit_links` and
are re-exported here. Every fit minimises relative residuals (log-ratio for the kernel fit, ``predicted / measured - 1`` for the
linear ones), so a 4-byte message and a 16 MiB one, or a 10 us elementwise op and a 50 ms GEMM, weigh alike.
Linear fits read their design matrix off the cost function itself (differences at a reference point, exact
for a linear model; checked at a second point). Too few (or uninformative) samples raise
:class:`InputError` naming the sample group. :mod:`seesaw.planner.calibration.profile` turns the fits into a
catalog entry.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from seesaw.ir.errors import InputError
from seesaw.planner.cost.roofline import kernel_time_s, step_overhead_s
from seesaw.planner.hardware.catalog import GB, GPUSpec
from seesaw.planner.hardware.cluster import build_cluster
from seesaw.planner.calibration.samples import (  # noqa: F401 (the sample types stay importable from here)
    GEMM_SAMPLE_KINDS, CommSample, CopySample, ForwardSample, OpKindName, OpSample, Residual, StepSample,
    _check_positive, residual_summary)

# -- compute ops --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelParams:
    """The compute terms of a profile: achieved FLOP/s and memory bytes/s (``F_eff``, ``B_eff``) and the
    optional calibrated terms of :class:`GPUSpec` (``matmul_half_rows`` in rows, ``compute_memory_overlap``
    in [0, 1], overheads in microseconds)."""

    flops_per_s: float
    bytes_per_s: float
    matmul_half_rows: float = 0.0
    compute_memory_overlap: float = 1.0
    op_overhead_us: float = 0.0
    attention_seq_overhead_us: float = 0.0
    attention_efficiency: float = 1.0
    attention_memory_efficiency: float = 1.0
    matmul_pack_ratio: float = 0.0
    elementwise_overhead_us: float = 0.0
    lm_head_efficiency: float = 1.0
    attention_overhead_us: float = 0.0

    def spec(self, name: str = "fit", step_overhead_us: float = 0.0) -> GPUSpec:
        """A GPUSpec whose achievable rates are exactly these (peaks = the rates, efficiencies 1), with the
        given per-micro-batch ``step_overhead_us`` (a separate fit, :func:`fit_step`)."""
        return GPUSpec(name=name, memory_gb=1.0, bf16_tflops=self.flops_per_s / 1e12,
                       memory_gb_per_s=self.bytes_per_s / GB, matmul_efficiency=1.0, memory_efficiency=1.0,
                       matmul_half_rows=self.matmul_half_rows, matmul_pack_ratio=self.matmul_pack_ratio,
                       compute_memory_overlap=self.compute_memory_overlap,
                       op_overhead_us=self.op_overhead_us, elementwise_overhead_us=self.elementwise_overhead_us,
                       lm_head_efficiency=self.lm_head_efficiency,
                       attention_seq_overhead_us=self.attention_seq_overhead_us,
                       attention_overhead_us=self.attention_overhead_us,
                       attention_efficiency=self.attention_efficiency,
                       attention_memory_efficiency=self.attention_memory_efficiency, step_overhead_us=step_overhead_us)


KERNEL_PARAMS = ("flops_per_s", "bytes_per_s", "matmul_half_rows", "matmul_pack_ratio", "compute_memory_overlap",
                 "op_overhead_us", "elementwise_overhead_us", "attention_seq_overhead_us", "attention_efficiency",
                 "attention_memory_efficiency", "lm_head_efficiency", "attention_overhead_us")


def op_time_s(sample: OpSample, gpu: GPUSpec) -> float:
    """Predicted seconds of a measured op on ``gpu``: ``kernel_time_s(flops, nbytes, gpu, rows, attention)``
    (rows only for GEMMs; attention ops at ``F_eff * attention_efficiency`` and ``B_eff *
    attention_memory_efficiency``) plus the fixed terms that
    ``compute_op_s`` adds: ``op_overhead_us`` once per op, ``elementwise_overhead_us`` more per elementwise op,
    ``attention_overhead_us`` more per attention op and ``attention_seq_overhead_us`` per sequence of an
    attention op (planner/cost/roofline.py)."""
    t = kernel_time_s(sample.flops, sample.nbytes, gpu, sample.rows if sample.kind in GEMM_SAMPLE_KINDS else None,
                      attention=sample.kind == "attention", lm_head=sample.kind == "lm_head")
    if sample.kind == "attention":
        t += (gpu.attention_seq_overhead_us * sample.seqs + gpu.attention_overhead_us) * 1e-6
    if sample.kind == "elementwise":
        t += gpu.elementwise_overhead_us * 1e-6
    return t + gpu.op_overhead_us * 1e-6


@dataclass(frozen=True)
class KernelFit:
    """Fitted compute terms, which of them were free (the others stay at their defaults), the residuals of
    the op samples and of the forward passes (group ``forward``), each free parameter's standard error
    (same units; from the Jacobian at the solution), and the weight each forward pass had in the fit
    (relative to one op sample; 0 without forward passes)."""

    params: KernelParams
    free: tuple[str, ...]
    residuals: tuple[Residual, ...]
    stderr: dict[str, float]
    forward: tuple[Residual, ...] = ()
    forward_sample_weight: float = 0.0


def forward_time_s(sample: ForwardSample, gpu: GPUSpec) -> float:
    """Predicted seconds of a measured forward pass on ``gpu``: ``op_time_s`` of each of its ops times the
    number of times it runs, plus the per-micro-batch ``step_overhead_s`` (``gpu.step_overhead_us``): the
    sum :meth:`CostModel.stage_cost` makes for one stage holding every layer. Compute only: a TP pass's
    collectives are added by :func:`seesaw.planner.calibration.fit_links.forward_tp_time_s`."""
    ops = sum(n * op_time_s(op, gpu) for op, n in zip(sample.ops, sample.op_counts))
    return ops + step_overhead_s(build_cluster(gpu, 1, "fit", "fit"))


def _forward_design(forward: Sequence[ForwardSample]) -> tuple[list[OpSample], np.ndarray]:
    """The distinct ops of all forward passes and the matrix of how often each pass runs each, so that
    every distinct op is costed once per evaluation: ``predicted ops = counts @ op times``."""
    index: dict[OpSample, int] = {}
    for f in forward:
        for op in f.ops:
            index.setdefault(op, len(index))
    counts = np.zeros((len(forward), len(index)))
    for i, f in enumerate(forward):
        for op, n in zip(f.ops, f.op_counts):
            counts[i, index[op]] += n
    return list(index), counts


F_SCALE = 0.1  # soft-L1 scale of the kernel fit: log-ratio residuals beyond ~10 % count less than squared


def _robust(r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sqrt(w) * psi(r)`` with ``psi(r)^2 = F_SCALE^2 * rho((r / F_SCALE)^2)``, ``rho(z) = 2 (sqrt(1 + z) - 1)``
    (scipy's soft-L1): plain least squares on these minimises ``sum w rho / 2`` exactly as
    ``least_squares(loss="soft_l1", f_scale=F_SCALE)`` minimises ``sum rho / 2``, with per-sample weights
    ``w`` that keep the loss's bend at the same relative error for every sample."""
    z = (r / F_SCALE) ** 2
    return np.sqrt(w) * r * np.sqrt(2.0 / (1.0 + np.sqrt(1.0 + z)))


def fit_kernels(samples: Sequence[OpSample], fixed: dict[str, float] | None = None,
                forward: Sequence[ForwardSample] = (), forward_weight: float = 1.0,
                step_overhead_us: float = 0.0, attention_floor: bool = False) -> KernelFit:
    """Least-squares fit of :class:`KernelParams` to op timings and, optionally, to timed forward passes of
    the runtime (log-ratio residuals, soft-L1 loss with scale 0.1, several starts). ``fixed`` holds
    parameters (by :data:`KERNEL_PARAMS` name) at given values.

    ``forward``: each pass is predicted by :func:`forward_time_s` with the per-micro-batch overhead held at
    ``step_overhead_us`` (from :func:`fit_step`); its residual joins the op residuals with a weight such that
    the forward passes together weigh ``forward_weight`` times as much as all op samples together (each op
    sample weighs 1; 0: reported, not fitted), split equally between the kinds of pass (prefill, decode),
    since a run has far more decode steps than prefill steps.

    ``matmul_half_rows`` is fitted only when GEMMs were timed at two or more row counts,
    ``matmul_pack_ratio`` only when they were timed at one row and at more (otherwise it stays 0),
    ``elementwise_overhead_us`` only when there are elementwise op samples (otherwise it stays 0),
    ``lm_head_efficiency`` only when there are lm head samples (kind ``lm_head``) and other GEMMs (else 1),
    ``attention_seq_overhead_us`` only when attention was timed at two or more sequence counts (as ops, or
    inside forward passes; otherwise they stay 0), ``attention_efficiency`` only when there are attention
    samples with FLOPs and ``attention_memory_efficiency`` only when there are attention samples with bytes
    (otherwise they stay 1), ``attention_overhead_us`` only with ``attention_floor`` and attention samples
    (otherwise 0). Raises InputError when there is no GEMM op sample or fewer samples than free parameters + 1.
    """
    samples = list(samples)
    forward = list(forward)
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(KERNEL_PARAMS)
    if unknown:
        raise ValueError(f"unknown kernel parameters {sorted(unknown)} (known: {', '.join(KERNEL_PARAMS)})")
    if not (forward_weight >= 0 and math.isfinite(forward_weight)):
        raise InputError("forward weight", f"must be a number >= 0, got {forward_weight!r}")
    gemms = [s for s in samples if s.kind in GEMM_SAMPLE_KINDS]
    if not gemms:
        raise InputError("op samples", "the kernel fit needs at least one GEMM sample")
    _check_positive(samples, "op samples")
    _check_positive(forward, "forward samples")
    if any(f.tp != 1 for f in forward):
        raise InputError("forward samples", "the kernel fit takes TP-1 forward passes only (TP passes: "
                                            "fit_forward_links)")
    w_fwd = forward_weight * len(samples) / len(forward) if forward else 0.0
    fitted_fwd = forward if w_fwd > 0 else []
    attention = [s for s in samples if s.kind == "attention"]
    attention += [op for f in fitted_fwd for op in f.ops if op.kind == "attention"]
    free = ["flops_per_s", "bytes_per_s", "compute_memory_overlap", "op_overhead_us"]
    if any(s.kind == "elementwise" for s in samples):
        free.append("elementwise_overhead_us")
    if any(s.kind == "lm_head" for s in samples) and any(s.kind == "gemm" for s in samples):
        free.append("lm_head_efficiency")
    if len({s.rows for s in gemms}) >= 2:
        free.append("matmul_half_rows")
    if any(s.rows == 1 for s in gemms) and any((s.rows or 0) > 1 for s in gemms):
        free.append("matmul_pack_ratio")
    if len({s.seqs for s in attention}) >= 2:
        free.append("attention_seq_overhead_us")
    if any(s.flops > 0 for s in attention):
        free.append("attention_efficiency")
    if attention_floor and attention:
        free.append("attention_overhead_us")
    if any(s.nbytes > 0 for s in attention):
        free.append("attention_memory_efficiency")
    free = [p for p in KERNEL_PARAMS if p in free and p not in fixed]
    if len(samples) + len(fitted_fwd) < len(free) + 1:
        raise InputError("op samples", f"the kernel fit of {len(free)} parameters needs at least "
                         f"{len(free) + 1} samples, got {len(samples) + len(fitted_fwd)}")
    measured = np.array([s.seconds for s in samples])
    fwd_ops, fwd_counts = _forward_design(forward)
    fwd_measured = np.array([f.seconds for f in forward])
    # each kind of pass (prefill, decode) weighs alike in total: decode steps far outnumber prefill steps
    per_kind = {k: sum(1 for f in fitted_fwd if f.kind == k) for k in {f.kind for f in fitted_fwd}}
    fwd_w = [w_fwd * len(fitted_fwd) / (len(per_kind) * per_kind[f.kind]) for f in fitted_fwd]
    weights = np.concatenate([np.ones(len(samples)), np.array(fwd_w, dtype=float)])
    f0 = max(s.flops / s.seconds for s in gemms)
    b0 = max(s.nbytes / s.seconds for s in (gemms if any(s.nbytes for s in gemms) else samples))
    t_min_us = float(measured.min()) * 1e6
    t_ew_us = max((s.seconds for s in samples if s.kind == "elementwise"), default=0.0) * 1e6
    t_min_attn_us = min((s.seconds for s in samples if s.kind == "attention"), default=0.0) * 1e6
    scale = {"flops_per_s": f0, "bytes_per_s": b0}  # x = value / scale for the two rates
    lower = {"flops_per_s": 1e-3, "bytes_per_s": 1e-3, "matmul_half_rows": 0.0, "matmul_pack_ratio": 0.0,
             "compute_memory_overlap": 0.0, "op_overhead_us": 0.0, "elementwise_overhead_us": 0.0,
             "attention_seq_overhead_us": 0.0,
             "attention_efficiency": 1e-4, "attention_memory_efficiency": 1e-3, "lm_head_efficiency": 1e-3,
             "attention_overhead_us": 0.0}
    upper = {"flops_per_s": 1e3, "bytes_per_s": 1e3, "matmul_half_rows": 1e5, "matmul_pack_ratio": 10.0,
             "compute_memory_overlap": 1.0,
             "op_overhead_us": max(t_min_us, 1e-3), "elementwise_overhead_us": max(t_ew_us, 1e-3),
             "attention_seq_overhead_us": np.inf,
             "attention_efficiency": 1.0, "attention_memory_efficiency": 1.0, "lm_head_efficiency": 1.0,
             "attention_overhead_us": max(t_min_attn_us, 1e-3)}

    defaults = {"flops_per_s": f0, "bytes_per_s": b0}

    def params_of(x: np.ndarray) -> KernelParams:
        values = {k: float(v) * scale.get(k, 1.0) for k, v in zip(free, x)}
        return KernelParams(**{**defaults, **fixed, **values})

    def predict(params: KernelParams, with_forward: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Predicted seconds of the op samples and of the forward passes."""
        gpu = params.spec(step_overhead_us=step_overhead_us)
        ops = np.array([op_time_s(s, gpu) for s in samples])
        if not forward or not with_forward:
            return ops, np.zeros(0)
        per_op = np.array([op_time_s(op, gpu) for op in fwd_ops])
        return ops, fwd_counts @ per_op + step_overhead_s(build_cluster(gpu, 1, "fit", "fit"))

    def residuals(x: np.ndarray) -> np.ndarray:
        ops, fwd = predict(params_of(x), bool(fitted_fwd))
        r = np.log(np.concatenate([ops / measured, fwd / fwd_measured[:len(fwd)]]))
        return _robust(r, weights)

    best = None
    for n_half in (2.0, 64.0):
        for overlap in (0.2, 0.8):
            start = {"flops_per_s": 1.0, "bytes_per_s": 1.0, "matmul_half_rows": n_half,
                     "matmul_pack_ratio": 0.2,
                     "compute_memory_overlap": overlap, "op_overhead_us": 0.3 * t_min_us,
                     "elementwise_overhead_us": 0.1 * t_ew_us,
                     "attention_seq_overhead_us": 0.1 * t_min_us, "attention_efficiency": 0.5,
                     "attention_memory_efficiency": 0.5, "lm_head_efficiency": 0.8,
                     "attention_overhead_us": 0.3 * t_min_attn_us}
            x0 = np.array([start[p] for p in free])
            sol = least_squares(residuals, x0, bounds=([lower[p] for p in free], [upper[p] for p in free]),
                                x_scale="jac", method="trf", loss="linear", xtol=1e-12, ftol=1e-12, gtol=1e-12,
                                max_nfev=4000)
            if best is None or sol.cost < best.cost:
                best = sol
    params = params_of(best.x)
    ops, fwd = predict(params)
    table = tuple(Residual(f"in-run {s.kind}" if s.in_run else s.kind, s.label, s.seconds, p)
                  for s, p in zip(samples, ops))
    fwd_table = tuple(Residual("forward", f.label, f.seconds, p) for f, p in zip(forward, fwd))
    err = _stderr(best.jac, best.fun)  # Jacobian and residuals of the weighted soft-L1 transform
    return KernelFit(params, tuple(free), table, {p: e * scale.get(p, 1.0) for p, e in zip(free, err)},
                     fwd_table, w_fwd)


def _stderr(jac: np.ndarray, fun: np.ndarray) -> np.ndarray:
    """Standard errors of least-squares parameters: ``sqrt(diag(s^2 (J^T J)^+))``, ``s^2`` = residual
    variance ``|r|^2 / (samples - parameters)`` (0 when there are no spare samples). With a robust loss
    ``J`` is scipy's loss-weighted Jacobian, so the figure is approximate."""
    m, n = jac.shape
    s2 = float(fun @ fun) / (m - n) if m > n else 0.0
    return np.sqrt(np.abs(np.diag(np.linalg.pinv(jac.T @ jac))) * s2)


# the linear fits live in fit_links.py (this file's size); their names stay importable from here
from seesaw.planner.calibration.fit_links import (  # noqa: E402,F401
    CommFit, CommParams, CopyFit, ForwardLinkFit, StepFit, comm_cluster, comm_time_s, fit_comm, fit_copy,
    fit_forward_links, fit_step, forward_tp_time_s)
