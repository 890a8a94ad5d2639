"""A catalog entry fitted to AIConfigurator's measured tables of one GPU system (``--from-aiconfigurator``).

The kernel terms come from the planner's own kernel fit (:func:`~seesaw.planner.calibration.fit.fit_kernels`)
over the system's GEMM and attention timings (:mod:`seesaw.planner.calibration.aiconfigurator`), with the
memory bandwidth held at the streaming rate of its largest one-row GEMMs (GEMM timings alone cannot separate
it from ``matmul_half_rows``); the collectives are the measured all-reduce and all-gather curves themselves;
the peaks are the datasheet figures AIConfigurator's system file states. Figures the tables do not measure
(device memory as reported, links, host memory, reserve) come from this catalog's entry for the same GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import yaml

from seesaw.ir.errors import InputError

from seesaw.planner.calibration.aiconfigurator import (SYSTEMS, allreduce_curves, attention_samples, data_dir,
                                                    gemm_samples, load_table)
from seesaw.planner.hardware.catalog import GB, GPUSpec, get_gpu
from seesaw.planner.calibration.fit import KernelFit, fit_kernels
from seesaw.planner.calibration.samples import residual_summary

#: Weights of at least this many bytes (one-row GEMMs) set the streaming rate.
STREAM_MIN_BYTES = 64e6


def _sig(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}") if abs(x) >= 1e-9 else 0.0


@dataclass(frozen=True)
class SystemFit:
    """What :func:`fit_system` found: the catalog entry, the kernel fit, and the streaming rate (bytes/s)."""

    name: str
    entry: dict
    kernel: KernelFit
    stream_bytes_per_s: float
    curves_source: str


def _system_file(system: str) -> dict:
    return yaml.safe_load((data_dir().parent / f"{system}.yaml").read_text())


def _curve(points) -> list[list[float]]:
    return [[int(round(b)), _sig(t * 1e6, 4)] for b, t in points]


def fit_system(system: str, framework: str = "vllm") -> SystemFit:
    """Fit a catalog entry to ``system``'s measured tables (engine ``framework``'s kernels and custom
    all-reduce). Raises InputError when aiconfigurator-core is missing or the system has no such tables."""
    gemm = load_table(system, "gemm", "gemm_perf", framework)
    ctx = load_table(system, "attention", "context_attention_perf", framework)
    gen = load_table(system, "attention", "generation_attention_perf", framework)
    gemms = gemm_samples(gemm)
    samples = gemms + attention_samples(ctx, gen)
    one_row = [s for s in gemms if s.rows == 1 and s.nbytes >= STREAM_MIN_BYTES] or [s for s in gemms if s.rows == 1]
    stream = max(s.nbytes / s.seconds for s in one_row)
    kernel = fit_kernels(samples, fixed={"matmul_pack_ratio": 0.0, "bytes_per_s": stream}, attention_floor=True)
    k = kernel.params
    spec = _system_file(system)["gpu"]
    peak_flops, peak_bw = float(spec["bfloat16_tc_flops"]), float(spec["mem_bw"])
    elementwise_fixed_us = float(spec.get("mem_empirical_constant_latency", 0.0)) * 1e6
    ar, ar_source = allreduce_curves(system, framework)
    ag = _allgather_curves(system)
    try:
        base = get_gpu(SYSTEMS[system])
    except InputError:
        base = None  # a system this catalog has no entry for: AIConfigurator's own figures
    base = base or GPUSpec(name=SYSTEMS.get(system, system), memory_gb=float(spec["mem_capacity"]) / GB,
                           bf16_tflops=peak_flops / 1e12, memory_gb_per_s=peak_bw / GB)
    entry = base.model_dump(exclude={"name", "aliases", "source"}, exclude_defaults=False)
    entry.update({
        "bf16_tflops": _sig(peak_flops / 1e12), "memory_gb_per_s": _sig(peak_bw / GB),
        "matmul_efficiency": _sig(min(1.0, k.flops_per_s / peak_flops)),
        "memory_efficiency": _sig(min(1.0, stream / peak_bw)),
        "matmul_half_rows": _sig(k.matmul_half_rows), "matmul_pack_ratio": 0.0,
        "compute_memory_overlap": _sig(k.compute_memory_overlap), "op_overhead_us": _sig(k.op_overhead_us),
        "elementwise_overhead_us": _sig(max(0.0, elementwise_fixed_us - k.op_overhead_us)),
        "attention_overhead_us": _sig(k.attention_overhead_us),
        "attention_seq_overhead_us": _sig(k.attention_seq_overhead_us),
        "attention_efficiency": _sig(k.attention_efficiency),
        "attention_memory_efficiency": _sig(k.attention_memory_efficiency),
        "lm_head_efficiency": 1.0,
        "allreduce_us": {n: _curve(v) for n, v in ar.items()},
        "allgather_us": {n: _curve(v) for n, v in ag[0].items()},
    })
    entry = {key: value for key, value in entry.items() if key not in ("name",)}
    fitted = "; ".join(f"{g} {n} samples, RMS {rms:.1%}, max {mx:.1%}"
                       for g, (n, rms, mx) in residual_summary(kernel.residuals).items())
    tables = f"{gemm.cite()}, {ctx.cite()}, {gen.cite()}"
    entry["source"] = {
        **base.source,
        "compute": (f"peaks: AIConfigurator system file {system}.yaml (bfloat16_tc_flops, mem_bw: datasheet); "
                    f"memory_gb: {base.source.get('compute', 'catalog entry')}"),
        "efficiency": (f"fitted by seesaw-calibrate --from-aiconfigurator {system}: achieved/peak of the roofline "
                       f"over {len(samples)} measured kernels of {tables} ({fitted}); memory_efficiency held "
                       f"at the streaming rate of its largest one-row GEMMs ({stream / GB:.0f} GB/s)"),
        "overheads": (f"fitted with the efficiencies (free: {', '.join(kernel.free)}); elementwise_overhead_us: "
                      f"AIConfigurator {system}.yaml mem_empirical_constant_latency "
                      f"{elementwise_fixed_us:g} us less op_overhead_us (its 'nonofficial correction based on "
                      "observations': an estimate, no elementwise table is measured)"),
        "collectives": (f"measured: {ar_source} (all_reduce); {ag[1]} (all_gather); bf16, message sizes in "
                        "bytes per rank"),
    }
    return SystemFit(base.name, entry, kernel, stream, ar_source)


def _allgather_curves(system: str) -> tuple[dict[int, list[tuple[float, float]]], str]:
    """NCCL all-gather per GPU count as ``(gathered bytes, seconds)``: the table's message size is each
    rank's part in elements (AIConfigurator's ``NCCL(..., "all_gather", per_rank_elements, ...)``)."""
    nccl = load_table(system, "comm", "nccl_perf", "nccl")
    d = nccl.rows
    d = d[(d.op_name == "all_gather") & (d.nccl_dtype == "half")]
    curves: dict[int, dict[float, float]] = {}
    for r in d.itertuples():
        curves.setdefault(int(r.num_gpus), {})[2.0 * r.message_size * r.num_gpus] = float(r.latency) * 1e-3
    return {n: sorted(v.items()) for n, v in sorted(curves.items())}, nccl.cite()


# -- the catalog's fitted terms ---------------------------------------------------------------------------
#: Catalog GPUs without AIConfigurator tables take another system's fitted kernel terms (efficiencies as
#: shares of their own datasheet peaks, overheads as they are): the same architecture where there is one.
BORROWED_KERNELS = {
    "A100-SXM-40GB": ("a100_sxm", "same GPU (GA100) as the measured A100-SXM4-80GB, less HBM"),
    "A100-PCIe-80GB": ("a100_sxm", "same GPU (GA100) as the measured A100-SXM4-80GB, PCIe card"),
    "A100-PCIe-40GB": ("a100_sxm", "same GPU (GA100) as the measured A100-SXM4-80GB, PCIe card"),
    "H100-PCIe": ("h100_sxm", "same GPU (GH100) as the measured H100 SXM, PCIe card (lower clocks and bandwidth "
                              "are in its datasheet peaks)"),
    "L4": ("l40s", "same architecture (Ada, sm_89) as the measured L40S"),
    "A10": ("a100_sxm", "the measured Ampere GPU (A100, sm_80) for the A10 (GA102, sm_86): estimate, no A10 "
                        "kernel timings found"),
}
#: PCIe GPUs of the Seesaw paper's machines (PCIe 4.0 x8 per GPU): the L40S's measured all-reduce and
#: all-gather curves (PCIe 4.0 x16, two NUMA halves), their size-dependent part stretched by this factor so
#: that a 4-GPU all-reduce matches the one published A10G measurement.
PCIE_X8_SCALE_SOURCE = ("pytorch/pytorch#127077 (4x A10G, NCCL 2.18.5): all_reduce of 29,388,800 B in 14,207 us "
                        "(busbw 3.10 GB/s)")
PCIE_X8_POINT = (4, 29_388_800.0, 14_207e-6)
BORROWED_CURVES = {"L4": "l40s", "A10": "l40s"}
#: NVLink GPUs without tables of their own take a measured system's curves unchanged (same NVLink generation).
SAME_LINK_CURVES = {"A100-SXM-40GB": "a100_sxm"}
CATALOG_SYSTEMS = ("h100_sxm", "h200_sxm", "a100_sxm", "l40s")
_KERNEL_FIELDS = ("matmul_efficiency", "memory_efficiency", "matmul_half_rows", "matmul_pack_ratio",
                  "compute_memory_overlap", "op_overhead_us", "elementwise_overhead_us", "attention_overhead_us",
                  "attention_seq_overhead_us", "attention_efficiency", "attention_memory_efficiency",
                  "lm_head_efficiency")


def _stretch(points: list[list[float]], scale: float) -> list[list[float]]:
    """``t(b) -> t(b_0) + scale * (t(b) - t(b_0))``: the same latency floor, a slower byte term."""
    t0 = points[0][1]
    return [[b, _sig(t0 + scale * (t - t0), 4)] for b, t in points]


def pcie_x8_scale(l40s_allreduce: dict) -> float:
    """The factor that stretches the L40S's 4-GPU all-reduce to the published A10G time (see above)."""
    n, nbytes, seconds = PCIE_X8_POINT
    curve = [(b, t) for b, t in l40s_allreduce[n]]
    spec = GPUSpec(name="probe", memory_gb=1, bf16_tflops=1, memory_gb_per_s=1, allreduce_us={n: tuple(map(tuple, curve))})
    t0 = curve[0][1] * 1e-6
    return (seconds - t0) / (spec.curve_s("allreduce_us", n, nbytes) - t0)


def moe_terms(system: str, kernel: dict) -> dict | None:
    """``moe_efficiency`` and ``moe_overhead_us`` of ``system`` fitted to its measured vLLM fused-MoE table with the
    entry's other terms as ``kernel`` sets them (:mod:`~seesaw.planner.calibration.aic_moe`), then
    ``moe_ep_efficiency`` and ``moe_ep_overhead_us`` to the table's expert-parallel rows with those two set, and their source; None when the
    system has no such table."""
    from seesaw.planner.calibration.aic_moe import fit_moe, fit_moe_ep, moe_ep_samples, moe_samples  # noqa: PLC0415
    from seesaw.planner.hardware.catalog import load_catalog  # noqa: PLC0415

    try:
        samples, table = moe_samples(system)
    except InputError:
        return None
    if not samples:
        return None
    gpu = load_catalog()[kernel["name"]].model_copy(update={k: v for k, v in kernel.items() if k != "name"})
    eff, over, err = fit_moe(gpu, samples)
    ep_samples = moe_ep_samples(system)
    ep_eff, ep_over, ep_err = fit_moe_ep(gpu.model_copy(update={"moe_efficiency": eff, "moe_overhead_us": over}),
                                         ep_samples)
    return {"moe_efficiency": eff, "moe_overhead_us": over, "moe_ep_efficiency": ep_eff, "moe_ep_overhead_us": ep_over,
            "source": (f"fitted by planner/calibration/aic_moe.py to {len(samples)} measured MoE layers (Mixtral-8x7B, "
                       f"Qwen3-30B-A3B, Qwen3-235B-A22B shapes; bf16, balanced routing, TP 1-8) of {table.cite()}: "
                       f"RMS log error {err:.3f}; moe_ep_efficiency and moe_ep_overhead_us to its {len(ep_samples)} expert-parallel layers "
                       f"(EP 2-8, no TP inside the experts): RMS log error {ep_err:.3f}")}


def catalog_terms() -> dict[str, dict]:
    """The fitted and measured terms of every catalog GPU that AIConfigurator's tables cover, directly or
    borrowed (``catalog_fitted.yaml``: ``scripts/fit_gpu_catalog.py`` writes it, a test checks it)."""
    fits = {s: fit_system(s) for s in CATALOG_SYSTEMS}
    out: dict[str, dict] = {}
    for system, f in fits.items():
        e = f.entry
        out[f.name] = {k: e[k] for k in (*_KERNEL_FIELDS, "allreduce_us", "allgather_us")}
        out[f.name]["source"] = {g: e["source"][g] for g in ("efficiency", "overheads", "collectives")}
    moe = {f.name: moe_terms(system, {k: f.entry[k] for k in _KERNEL_FIELDS} | {"name": f.name})
           for system, f in fits.items()}
    for name, terms in moe.items():
        if terms:
            out[name].update({k: v for k, v in terms.items() if k != "source"})
            out[name]["source"]["moe"] = terms["source"]
    scale = pcie_x8_scale(fits["l40s"].entry["allreduce_us"])
    for name, (system, why) in BORROWED_KERNELS.items():
        f = fits[system]
        out[name] = {k: f.entry[k] for k in _KERNEL_FIELDS}
        out[name]["source"] = {
            "efficiency": f"borrowed from {f.name} ({why}): {f.entry['source']['efficiency']}",
            "overheads": f"borrowed from {f.name}: {f.entry['source']['overheads']}"}
        if moe.get(f.name):
            out[name].update({k: v for k, v in moe[f.name].items() if k != "source"})
            out[name]["source"]["moe"] = f"borrowed from {f.name}: {moe[f.name]['source']}"
        if name in SAME_LINK_CURVES:
            c = fits[SAME_LINK_CURVES[name]]
            out[name]["allreduce_us"] = c.entry["allreduce_us"]
            out[name]["allgather_us"] = c.entry["allgather_us"]
            out[name]["source"]["collectives"] = (f"measured on {c.name} (same NVLink generation): "
                                                  f"{c.entry['source']['collectives']}")
        if name in BORROWED_CURVES:
            c = fits[BORROWED_CURVES[name]].entry
            out[name]["allreduce_us"] = {n: _stretch(v, scale) for n, v in c["allreduce_us"].items()}
            out[name]["allgather_us"] = {n: _stretch(v, scale) for n, v in c["allgather_us"].items()}
            out[name]["source"]["collectives"] = (
                f"the L40S's measured curves ({c['source']['collectives']}) with their size-dependent part "
                f"stretched x{scale:.3g} to match {PCIE_X8_SCALE_SOURCE}: the PCIe 4.0 x8 links of the Seesaw "
                "paper's machines (AWS g5/g6) against the L40S's x16")
    return out
