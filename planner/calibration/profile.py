"""A hardware profile (a catalog entry) from the calibration fits of :mod:`seesaw.planner.calibration.fit`.

:func:`profile_entry` turns the fitted terms into :class:`GPUSpec` fields: ``bf16_tflops`` /
``memory_gb_per_s`` are peaks (measured, or a recognised GPU's datasheet), the ``*_efficiency`` factors are
fitted achieved / peak, link figures are achieved rates (``link_efficiency`` 1), and every figure group,
``overheads`` included, gets a ``source`` string saying how it was obtained and how well the model fits.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from seesaw.planner.hardware.catalog import GB, GPUSpec
from seesaw.planner.calibration.fit import (
    KERNEL_PARAMS,
    CommFit,
    CopyFit,
    ForwardLinkFit,
    KernelFit,
    Residual,
    StepFit,
    residual_summary,
)


# -- the profile --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceFacts:
    """What a profile needs besides the fits: measured peaks, planning choices, and where figures came from.

    ``peak_flops`` / ``stream_bytes_per_s``: the measured (hot) GEMM rate and weight-streaming bandwidth,
    or a recognised GPU's datasheet figures (``peak_source`` says which); the fitted ``F_eff`` / ``B_eff``
    become ``efficiency = fitted / peak`` (the peak is raised to the fitted rate when that is larger, so
    efficiency stays <= 1). ``base`` supplies the figures of groups that were not measured (e.g. links on
    a one-GPU machine).
    """

    dtype_bytes: Literal[2, 4]
    link: str
    memory_gb: float
    host_memory_gb_per_gpu: float
    gpus_per_node: int
    runtime_reserve_gb: float
    peak_flops: float
    stream_bytes_per_s: float
    measured_by: str
    peak_source: str
    planning_source: str
    reserve_source: str
    base: GPUSpec | None = None
    fixed_note: str = "not fitted"


def _sig(x: float, digits: int = 4) -> float:
    """``x`` to ``digits`` significant digits; below 1e-9 (a parameter at its 0 bound) it is 0."""
    return float(f"{x:.{digits}g}") if abs(x) >= 1e-9 else 0.0


def _rms(fit_residuals: Sequence[Residual]) -> str:
    return "; ".join(f"{g} {n} samples, RMS {rms:.1%}, max {mx:.1%}"
                     for g, (n, rms, mx) in residual_summary(fit_residuals).items())


def step_source(step: StepFit, measured_by: str) -> str:
    """How ``step_overhead_us`` was obtained, with its parts and any per-sequence slope left out."""
    slopes = [f"{m} {step.slope_us_per_seq[m]:.3g} us/sequence" for m, clear in step.slope_clear.items() if clear]
    n, rms, worst = residual_summary(step.residuals)["step"]
    return (f"step_overhead_us measured by {measured_by}: median fixed part of {n} micro-batch round trips "
            f"(scheduler -> worker queue command and reply, spawned process, worker set-up {step.setup_us:.3g} us "
            f"of it; constant model RMS {rms:.1%}, max {worst:.1%})"
            + (f"; per-sequence slope not in the cost model: {', '.join(slopes)}" if slopes else ""))


def _forward_note(kernel: KernelFit) -> str:
    """How the runtime's forward passes entered the kernel fit (empty without them)."""
    if not kernel.forward:
        return ""
    n, rms, worst = residual_summary(kernel.forward)["forward"]
    how = (f"each weighing {kernel.forward_sample_weight:.3g} op timings" if kernel.forward_sample_weight > 0
           else "reported only, not fitted")
    return f" and {n} timed forward passes of the runtime ({how}; RMS {rms:.1%}, max {worst:.1%})"


def profile_entry(kernel: KernelFit, comm: CommFit | None, copy: CopyFit | None, facts: DeviceFacts,
                  step: StepFit | None = None, links: ForwardLinkFit | None = None) -> dict:
    """A catalog entry (the mapping under its name in a catalog file) from the fits, with a ``source`` for
    every figure group including ``overheads``; ``step_overhead_us`` is ``step``'s (0 without it).

    ``links``: the fit of ``collective_launch_us`` and ``gpu_link_gb_per_s`` to the runtime's TP forward
    passes (:func:`~seesaw.planner.calibration.fit_links.fit_forward_links`, per-hop latency held at ``comm``'s);
    when given, those two figures come from it instead of ``comm``'s micro-benchmarks.

    Link figures are achieved rates (``link_efficiency`` 1). Without ``comm`` / ``copy`` the links and
    latencies come from ``facts.base`` (or :class:`GPUSpec` defaults). The result validates as
    ``GPUSpec(name=..., **entry)``.
    """
    k = kernel.params
    held = [p for p in KERNEL_PARAMS[:2] if p not in kernel.free]
    peak = max(facts.peak_flops, k.flops_per_s)
    stream = max(facts.stream_bytes_per_s, k.bytes_per_s)
    base = facts.base or GPUSpec(name="defaults", memory_gb=1, bf16_tflops=1, memory_gb_per_s=1)
    by = facts.measured_by
    entry = {
        "memory_gb": facts.memory_gb, "bf16_tflops": _sig(peak / 1e12), "memory_gb_per_s": _sig(stream / GB),
        "dtype_bytes": facts.dtype_bytes, "link": facts.link,
        "gpu_link_gb_per_s": base.gpu_link_gb_per_s, "gpu_link_latency_us": base.gpu_link_latency_us,
        "host_link_gb_per_s": base.host_link_gb_per_s, "host_memory_gb_per_gpu": facts.host_memory_gb_per_gpu,
        "gpus_per_node": facts.gpus_per_node,
        "matmul_efficiency": _sig(min(1.0, k.flops_per_s / peak)),
        "memory_efficiency": _sig(min(1.0, k.bytes_per_s / stream)),
        "link_efficiency": 1.0 if comm or copy else base.link_efficiency,
        "collective_launch_us": base.collective_launch_us,
        "runtime_reserve_gb": _sig(facts.runtime_reserve_gb, 3),
        "memory_fraction": base.memory_fraction if facts.base else 1.0,
        "matmul_half_rows": _sig(k.matmul_half_rows), "matmul_pack_ratio": _sig(k.matmul_pack_ratio),
        "compute_memory_overlap": _sig(k.compute_memory_overlap),
        "op_overhead_us": _sig(k.op_overhead_us), "elementwise_overhead_us": _sig(k.elementwise_overhead_us),
        "attention_seq_overhead_us": _sig(k.attention_seq_overhead_us),
        "attention_overhead_us": _sig(k.attention_overhead_us),
        "attention_efficiency": _sig(k.attention_efficiency),
        "attention_memory_efficiency": _sig(k.attention_memory_efficiency),
        "lm_head_efficiency": _sig(k.lm_head_efficiency),
        "step_overhead_us": _sig(step.step_overhead_us) if step else 0.0,
    }
    not_measured = f"not measured here: {base.name} figures" if facts.base else "not measured here: defaults"
    source = {
        "compute": f"{facts.peak_source}; dtype_bytes {facts.dtype_bytes}; memory_gb: {facts.planning_source}",
        "links": not_measured, "latency": not_measured,
        "host": facts.planning_source,
        "efficiency": (f"fitted by {by}: achieved/peak of the roofline over {len(kernel.residuals)} op timings "
                       f"({_rms(kernel.residuals)})" + _forward_note(kernel)
                       + (f"; held fixed: {', '.join(held)} ({facts.fixed_note})" if held else "")),
        "reserve": facts.reserve_source,
        "overheads": (f"fitted by {by} (free: {', '.join(kernel.free)}); "
                      + (step_source(step, by) if step else "step_overhead_us not measured (0)")),
    }
    if comm:
        c = comm.params
        entry.update(gpu_link_gb_per_s=_sig(c.link_gb_per_s), gpu_link_latency_us=_sig(c.link_latency_us),
                     collective_launch_us=_sig(c.collective_launch_us))
        source["latency"] = (f"fitted by {by}, alpha-beta over {len(comm.residuals)} timings ({_rms(comm.residuals)})"
                             + ("" if "collective_launch_us" in comm.free else
                                "; one world size: launch held at 0, the latency carries the fixed term"))
        source["links"] = f"GPU link: {source['latency']}"
    if links:
        entry.update(gpu_link_gb_per_s=_sig(links.link_gb_per_s), collective_launch_us=_sig(links.collective_launch_us))
        n, rms, worst = residual_summary(links.residuals)["forward tp"]
        fitted = ("collective_launch_us fitted (gpu_link_gb_per_s held at the micro-benchmark figure, whose large "
                  "messages show the byte term)" if links.bandwidth_held else
                  "collective_launch_us and gpu_link_gb_per_s fitted")
        fwd = (f"{fitted} by {by} to {n} timed TP "
               f"{'/'.join(map(str, links.tps))} forward passes of the runtime (collectives inside real steps, "
               f"gpu_link_latency_us held at the micro-benchmark figure {links.link_latency_us:.4g} us; "
               f"RMS {rms:.1%}, max {worst:.1%})")
        micro = source["latency"] if comm else not_measured
        source["latency"] = f"{fwd}; gpu_link_latency_us: {micro}"
        source["links"] = f"GPU link: {fwd}" + (f"; micro-benchmarks: {micro}" if comm else "")
    if copy:
        entry["host_link_gb_per_s"] = _sig(copy.host_link_gb_per_s)
        host = f"host link: fitted by {by} on {copy.kind} copies ({_rms(copy.residuals)})"
        source["links"] = host if not comm else f"{source['links']}; {host}"
    elif comm:
        source["links"] += f"; host link: {not_measured}"
    entry["source"] = source
    return entry
