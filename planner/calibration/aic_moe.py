"""The fused mixture-of-experts kernel's efficiency, fitted to NVIDIA AIConfigurator's measured MoE tables.

``aiconfigurator-core`` ships, per GPU system, ``moe/<engine>/<version>/moe_perf.parquet``: the latency (ms) of
one MoE layer's experts (``num_tokens`` tokens, ``hidden_size``, expert width ``inter_size``, ``topk`` of
``num_experts``, the experts tensor-parallel ``moe_tp_size`` ways, ``moe_ep_size`` expert-parallel, a token
``distribution``) as the engine's kernel runs it. This module reads vLLM's unquantized fused-MoE rows
(``vllm_unquantizedfusedmoe_triton_tritonexperts``, bf16, balanced routing, no expert parallelism: the
planner's moe_experts op) of the shipped MoE shapes and fits two terms of the catalog entry, with everything
else (rates, ``matmul_half_rows``) as the entry has it:

- ``moe_efficiency``: the fused kernel's compute rate as a share of the dense GEMM rate (the roofline's
  ``F * rows / (rows + n_half)`` at the rows one touched expert sees);
- ``moe_overhead_us``: a fixed time per MoE layer (routing-index set-up and the kernel's launch).

The fit minimizes the mean squared log ratio of modelled to measured latency over a grid (efficiency in steps
of 0.01, overhead in steps of 1 us), so no single large shape dominates.

Expert parallelism, from the same table: ``moe_ep_efficiency`` and ``moe_ep_overhead_us`` (:func:`fit_moe_ep`) fitted
the same way to the balanced rows with ``moe_tp_size`` 1 and ``moe_ep_size`` 2-8 (the planner's ``tp{n}ep{n}``),
with the two terms above set; and the per-expert load's coefficient of variation behind
:func:`~seesaw.planner.cost.moe_balance.ep_imbalance` (:func:`fit_load_cv`) from the ratio of the busiest rank's
latency under AIConfigurator's power-law routing to the balanced one (:func:`ep_imbalance_samples`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from seesaw.ir import OpKind, PassShape, build_graph, load_model_config
from seesaw.ir.passes import apply_tp
from seesaw.planner.calibration.aiconfigurator import Table, load_table
from seesaw.planner.hardware import GPUSpec

KERNEL = "vllm_unquantizedfusedmoe_triton_tritonexperts"
#: The shipped mixture-of-experts configs whose shapes are fitted (hidden, expert width, top-k, experts).
MODELS = ("mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b")
TP_SIZES = (1, 2, 4, 8)


@dataclass(frozen=True)
class MoeSample:
    """One measured MoE layer: the model whose shape it has, the tokens, the TP ways, the latency (s), and the
    expert-parallel ways inside the TP group (``ep == tp``: AIConfigurator's ``moe_tp_size`` 1, ``moe_ep_size`` tp)."""

    model: str
    tokens: int
    tp: int
    measured_s: float
    ep: int = 1


def moe_samples(system: str) -> tuple[list[MoeSample], Table]:
    """The measured rows of the shipped MoE shapes on ``system`` (an AIConfigurator system name, e.g.
    ``h100_sxm``) and the table they come from. Raises InputError when the system has no vLLM MoE table."""
    table = load_table(system, "moe", "moe_perf", "vllm")
    d = table.rows
    d = d[(d.kernel_source == KERNEL) & (d.moe_dtype == "bfloat16") & (d.distribution == "balanced")
          & (d.moe_ep_size == 1) & d.moe_tp_size.isin(TP_SIZES)]
    out = []
    for name in MODELS:
        cfg = load_model_config(name)
        rows = d[(d.hidden_size == cfg.hidden_size) & (d.inter_size == cfg.moe_intermediate_size)
                 & (d.topk == cfg.num_experts_per_tok) & (d.num_experts == cfg.num_experts)]
        out += [MoeSample(name, int(r.num_tokens), int(r.moe_tp_size), float(r.latency) * 1e-3)
                for _, r in rows.iterrows() if r.latency > 0]  # a few rows of some tables hold 0: not measured
    return out, table


def moe_ep_samples(system: str) -> list[MoeSample]:
    """The measured expert-parallel rows of the shipped MoE shapes on ``system``: vLLM's unquantized fused-MoE
    kernel, bf16, balanced routing, ``moe_tp_size`` 1 and ``moe_ep_size`` in :data:`EP_SIZES` (the planner's
    ``tp{n}ep{n}``), where each rank's experts are at least the top-k (AIConfigurator caps a rank's top-k at its
    expert count, which the planner's layer, with its tokens routed over all groups, never does). Raises
    InputError when the system has no vLLM MoE table."""
    d = load_table(system, "moe", "moe_perf", "vllm").rows
    d = d[(d.kernel_source == KERNEL) & (d.moe_dtype == "bfloat16") & (d.distribution == "balanced")
          & (d.moe_tp_size == 1) & d.moe_ep_size.isin(EP_SIZES) & (d.latency > 0)]
    out = []
    for name in MODELS:
        cfg = load_model_config(name)
        rows = d[(d.hidden_size == cfg.hidden_size) & (d.inter_size == cfg.moe_intermediate_size)
                 & (d.topk == cfg.num_experts_per_tok) & (d.num_experts == cfg.num_experts)
                 & (cfg.num_experts // d.moe_ep_size >= cfg.num_experts_per_tok)]
        out += [MoeSample(name, int(r.num_tokens), int(r.moe_ep_size), float(r.latency) * 1e-3, int(r.moe_ep_size))
                for _, r in rows.iterrows()]
    return out


def modelled_s(gpu: GPUSpec, sample: MoeSample) -> float:
    """The planner's time (s) of the sample's MoE layer on ``gpu`` (its ``moe_efficiency`` and ``moe_overhead_us``
    included, for an expert-parallel sample ``moe_ep_efficiency`` and ``moe_ep_overhead_us`` too; balanced routing:
    no busiest-group excess)."""
    from seesaw.planner.cost.roofline import gemm_rows, kernel_time_s  # noqa: PLC0415

    op = _experts_op(sample.model, sample.tp, sample.ep)
    shape = PassShape(sample.tokens, 1, 1)
    return (kernel_time_s(op.flops(shape, sample.tp), op.device_bytes(shape, sample.tp, gpu.dtype_bytes), gpu,
                          gemm_rows(op, shape), moe=True, moe_ep=sample.ep > 1)
            + (gpu.op_overhead_us + gpu.moe_overhead_us + (gpu.moe_ep_overhead_us if sample.ep > 1 else 0.0)) * 1e-6)


@functools.lru_cache(maxsize=None)
def _experts_op(name: str, tp: int = 1, ep: int = 1):
    graph = build_graph(load_model_config(name))
    if ep > 1:
        graph = apply_tp(graph, tp, ep)
    return next(op for op in graph.layer_ops(0) if op.kind is OpKind.MOE_EXPERTS)


def fit_moe_ep(gpu: GPUSpec, samples: list[MoeSample]) -> tuple[float, float, float]:
    """``(moe_ep_efficiency, moe_ep_overhead_us, rms log error)`` minimizing the mean squared log ratio of
    :func:`modelled_s` to the measured expert-parallel ``samples`` over a grid (efficiency in steps of 0.01 in
    ``[0.20, 1.50]``, overhead in steps of 1 us in ``[0, 100]``), the entry's other terms (its ``moe_efficiency``
    and ``moe_overhead_us`` among them) as they are."""
    base = gpu.model_copy(update={"moe_ep_efficiency": 1.0, "moe_ep_overhead_us": 0.0})
    return _grid_fit(base, samples, (gpu.op_overhead_us + gpu.moe_overhead_us) * 1e-6, 150, moe_ep=True)


def fit_moe(gpu: GPUSpec, samples: list[MoeSample]) -> tuple[float, float, float]:
    """``(moe_efficiency, moe_overhead_us, rms log error)`` minimizing the mean squared log ratio of
    :func:`modelled_s` to the measured latency over ``samples`` (the entry's own two terms are ignored)."""
    base = gpu.model_copy(update={"moe_efficiency": 1.0, "moe_overhead_us": 0.0})
    return _grid_fit(base, samples, gpu.op_overhead_us * 1e-6, 100, moe_ep=False)


def _grid_fit(base: GPUSpec, samples: list[MoeSample], fixed_s: float, max_eff_pct: int,
              moe_ep: bool) -> tuple[float, float, float]:
    """``(efficiency, overhead us, rms log error)``: the grid point (efficiency 0.20 to ``max_eff_pct / 100`` in
    steps of 0.01, overhead 0 to 100 us in steps of 1) whose roofline time ``roofline(c / eff, m) + fixed_s +
    overhead`` best matches the samples, ``c`` and ``m`` being each sample's compute and memory sides on ``base``
    (the fitted efficiency 1, its overhead 0)."""
    from seesaw.planner.cost.roofline import gemm_rows, kernel_time_s, roofline_s  # noqa: PLC0415

    parts = []  # (compute s at efficiency 1, memory s, measured s): the roofline's two sides of each sample
    for s in samples:
        op, shape = _experts_op(s.model, s.tp, s.ep), PassShape(s.tokens, 1, 1)
        rows = gemm_rows(op, shape)
        parts.append((kernel_time_s(op.flops(shape, s.tp), 0.0, base, rows, moe=True, moe_ep=moe_ep),
                      kernel_time_s(0.0, op.device_bytes(shape, s.tp, base.dtype_bytes), base, rows, moe=True,
                                    moe_ep=moe_ep), s.measured_s))
    best = (1.0, 0.0, math.inf)
    for eff_pct in range(20, max_eff_pct + 1):
        for over_us in range(0, 101):
            eff, over = eff_pct / 100, over_us * 1e-6
            err = math.sqrt(sum(math.log((roofline_s(c / eff, m, base.compute_memory_overlap) + fixed_s + over) / t)
                                ** 2 for c, m, t in parts) / len(parts))
            if err < best[2]:
                best = (eff, float(over_us), err)
    return best


#: Expert-parallel ways whose measured power-law / balanced latency ratios :func:`ep_imbalance_samples` reads.
EP_SIZES = (2, 4, 8)
#: The power-law routing of AIConfigurator's SDK default for Mixtral and Qwen3-MoE (alpha = 1.2).
_POWER_LAW = "power_law_1.2"
#: Fewest tokens of an imbalance sample: from here on the fused kernel is compute-bound, so its latency
#: follows the busiest rank's (token, expert) pairs.
_MIN_IMBALANCE_TOKENS = 1024


@dataclass(frozen=True)
class EpImbalanceSample:
    """One measured expert-parallel MoE layer: the model whose shape it has, the tokens, the EP ways and the
    measured excess of the busiest rank: the latency ratio of power-law (alpha 1.2) to balanced routing at these
    EP ways over the same ratio without EP."""

    model: str
    experts: int
    tokens: int
    ep: int
    measured: float


def ep_imbalance_samples(system: str) -> list[EpImbalanceSample]:
    """The measured expert-parallel load-imbalance excess of the shipped MoE shapes on ``system`` (an
    AIConfigurator system name, e.g. ``h100_sxm``): vLLM's unquantized fused-MoE kernel (bf16, no TP, at least
    1,024 tokens), ``ratio(ep) / ratio(1)`` with ``ratio`` = latency under AIConfigurator's ``power_law_1.2``
    routing (the busiest rank's) over the balanced latency at the same tokens, for ``ep`` in :data:`EP_SIZES`.
    Rows with a latency <= 0 or without all four partners are skipped. Raises InputError when the system has no
    vLLM MoE table."""
    d = load_table(system, "moe", "moe_perf", "vllm").rows
    d = d[(d.kernel_source == KERNEL) & (d.moe_dtype == "bfloat16") & (d.moe_tp_size == 1)
          & d.moe_ep_size.isin((1,) + EP_SIZES) & (d.num_tokens >= _MIN_IMBALANCE_TOKENS) & (d.latency > 0)
          & d.distribution.isin(("balanced", _POWER_LAW))]
    out = []
    for name in MODELS:
        cfg = load_model_config(name)
        experts = cfg.num_experts
        rows = d[(d.hidden_size == cfg.hidden_size) & (d.inter_size == cfg.moe_intermediate_size)
                 & (d.topk == cfg.num_experts_per_tok) & (d.num_experts == experts)]
        lat = rows.groupby(["moe_ep_size", "num_tokens", "distribution"]).latency.mean().to_dict()
        for ep, tokens in sorted({(int(e), int(t)) for e, t, _ in lat if e > 1 and experts % e == 0}):
            keys = [(ep, tokens, "balanced"), (ep, tokens, _POWER_LAW), (1, tokens, "balanced"),
                    (1, tokens, _POWER_LAW)]
            if not all(k in lat for k in keys):
                continue
            b, s, b1, s1 = (lat[k] for k in keys)
            out.append(EpImbalanceSample(name, experts, tokens, ep, float((s / b) / (s1 / b1))))
    return out


def fit_load_cv(samples: list[EpImbalanceSample]) -> tuple[float, float]:
    """``(cv, rms log error)``: the per-expert load coefficient of variation (steps of 0.01 in [0, 3]) whose
    :func:`~seesaw.planner.cost.moe_balance.ep_imbalance` best matches ``samples`` (least squares on the logs)."""
    from seesaw.planner.cost.moe_balance import ep_imbalance  # noqa: PLC0415

    best = (0.0, math.inf)
    for pct in range(0, 301):
        cv = pct / 100
        err = math.sqrt(sum(math.log(ep_imbalance(s.experts, s.ep, cv) / s.measured) ** 2 for s in samples)
                        / len(samples))
        if err < best[1]:
            best = (cv, err)
    return best
