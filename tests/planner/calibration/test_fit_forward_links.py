"""TP forward passes as calibration samples: their collectives, their prediction (compute + links, what
``CostModel.stage_cost`` charges at TP 2) and the fit of the link terms to them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seesaw.ir import OpKind, PassShape, load_model_config
from seesaw.ir.errors import InputError
from seesaw.ir.layout import Layout
from seesaw.planner.cost.model import NS, CostModel
from seesaw.planner.cost.roofline import merge_parts
from seesaw.planner.hardware import GPUSpec, build_cluster
from seesaw.planner.calibration.fit import ForwardSample, fit_forward_links, fit_kernels, forward_tp_time_s
from seesaw.planner.calibration.fit_links import comm_cluster
from seesaw.planner.calibration.forward import forward_graph, forward_sample
from seesaw.planner.validation.predict import step_parts
from seesaw.planner.workload import Workload

MODEL = str(Path(__file__).parents[3] / "examples" / "validation" / "llama-even-heads.json")
GPU = GPUSpec(name="truth", memory_gb=4, dtype_bytes=4, bf16_tflops=0.12, matmul_efficiency=0.8,
              memory_gb_per_s=20, memory_efficiency=0.7, matmul_half_rows=24, compute_memory_overlap=0.0,
              op_overhead_us=15, attention_seq_overhead_us=8, attention_efficiency=0.3,
              attention_memory_efficiency=0.25, step_overhead_us=900, link="gloo", gpu_link_gb_per_s=0.4,
              gpu_link_latency_us=60, collective_launch_us=250, host_link_gb_per_s=12, link_efficiency=1.0)
STEPS = (("prefill", [64]), ("prefill", [200, 30, 500]), ("prefill", [1000]), ("decode", [300]),
         ("decode", [40, 300, 900, 2000]), ("decode", [16] * 32), ("decode", [700] * 8))


def stage_cost_s(gpu: GPUSpec, kind: str, lens: list[int], tp: int) -> float:
    """What seesaw-validate predicts for a one-stage step of a tp-way layout."""
    cfg = load_model_config(MODEL)
    cost = CostModel(cfg, build_cluster(gpu, tp, "test", "test"), Workload("w", [64], [8]))
    return cost.stage_cost(Layout(1, tp, 1), step_parts(kind, lens)).stage_ns(0, cfg.num_hidden_layers) / NS


def test_tp_sample_holds_one_ranks_shards_and_the_collectives():
    cfg = load_model_config(MODEL)
    graph = forward_graph(cfg, 2)
    s = forward_sample(graph, "decode", [100, 200, 300], 0.1, 4, tp=2)
    assert s.tp == 2 and s.label.startswith("tp2 decode")
    merged = merge_parts(step_parts("decode", [100, 200, 300]))
    ops = graph.pre_ops() + [o for i in range(cfg.num_hidden_layers) for o in graph.layer_ops(i)] + graph.post_ops()
    expected: dict[tuple[str, float], int] = {}
    for o in ops:
        if o.kind in (OpKind.ALL_REDUCE, OpKind.ALL_GATHER):
            key = (o.kind.value, o.comm_bytes(merged, 4))
            expected[key] = expected.get(key, 0) + 1
    assert dict(zip(s.comms, s.comm_counts)) == expected
    kinds = {k for k, _ in s.comms}
    assert kinds == {"all_reduce", "all_gather"}
    assert sum(n for (k, _), n in zip(s.comms, s.comm_counts) if k == "all_reduce") >= 2 * cfg.num_hidden_layers
    assert dict(s.comms)["all_reduce"] == 3 * cfg.hidden_size * 4
    one = forward_sample(forward_graph(cfg), "decode", [100, 200, 300], 0.1, 4)
    assert one.comms == () and one.tp == 1
    q1 = next(o for o in one.ops if o.label == "q_proj")
    q2 = next(o for o in s.ops if o.label == "q_proj")
    assert q2.flops == pytest.approx(q1.flops / 2)
    op = graph.op("layers.0.attention")
    attn = next(o for o in s.ops if o.kind == "attention")
    assert attn.flops == sum(op.flops(PassShape.decode(1, c), 2) for c in (100, 200, 300))
    with pytest.raises(ValueError):
        forward_sample(forward_graph(cfg), "decode", [10], 0.1, 4, tp=2)  # graph split for tp 1


@pytest.mark.parametrize("kind, lens", STEPS)
def test_tp_prediction_is_what_validate_predicts(kind, lens):
    sample = forward_sample(forward_graph(load_model_config(MODEL), 2), kind, lens, 1.0, GPU.dtype_bytes, tp=2)
    cluster = comm_cluster(2, GPU.collective_launch_us * 1e-6, GPU.gpu_link_latency_us * 1e-6,
                           1 / (GPU.gpu_link_gb_per_s * 1e9))
    assert forward_tp_time_s(sample, GPU, cluster) == pytest.approx(stage_cost_s(GPU, kind, lens, 2), rel=1e-6)  # stage_ns rounds to ns


def _tp_samples(gpu: GPUSpec, seed: int = 0, noise: float = 0.002) -> list[ForwardSample]:
    rng = np.random.default_rng(seed)
    graph = forward_graph(load_model_config(MODEL), 2)
    return [forward_sample(graph, kind, lens,
                           stage_cost_s(gpu, kind, lens, 2) * float(np.exp(rng.normal(0, noise))),
                           gpu.dtype_bytes, tp=2) for kind, lens in STEPS]


def test_link_terms_are_fitted_back_from_tp_forward_passes():
    samples = _tp_samples(GPU)
    fit = fit_forward_links(samples, GPU, GPU.gpu_link_latency_us * 1e-6)
    assert fit.collective_launch_us == pytest.approx(GPU.collective_launch_us, rel=0.02)
    assert fit.link_gb_per_s == pytest.approx(GPU.gpu_link_gb_per_s, rel=0.02)
    assert fit.link_latency_us == pytest.approx(GPU.gpu_link_latency_us)
    assert len(fit.residuals) == len(STEPS) and {r.group for r in fit.residuals} == {"forward tp"}
    assert max(abs(r.error) for r in fit.residuals) < 0.01
    assert set(fit.stderr) == {"collective_launch_us", "link_gb_per_s"}


def test_link_fit_needs_tp_passes_and_the_kernel_fit_refuses_them():
    samples = _tp_samples(GPU)
    one = forward_sample(forward_graph(load_model_config(MODEL)), "decode", [10], 0.1, 4)
    with pytest.raises(InputError, match="forward tp"):
        fit_forward_links([one], GPU, 60e-6)
    with pytest.raises(InputError, match="forward tp"):
        fit_forward_links(samples[:1], GPU, 60e-6)  # two parameters, one pass
    from seesaw.planner.calibration.fit import OpSample
    gemm = OpSample("gemm", 1e6, 1e4, 1e-4, rows=4)
    with pytest.raises(InputError, match="TP-1"):
        fit_kernels([gemm] * 6, forward=samples)


def test_bandwidth_is_held_when_the_passes_show_no_byte_term():
    """Passes timed with a link much faster than any byte term can show (and a little slower than the
    bound): the fitted seconds per byte ends at its bound and the micro-benchmark bandwidth is held."""
    fast = GPU.model_copy(update={"gpu_link_gb_per_s": 1e9})
    samples = _tp_samples(fast, noise=0.0)
    samples = [s.__class__(**{**s.__dict__, "seconds": s.seconds * 0.9999}) for s in samples]
    free = fit_forward_links(samples, GPU, 60e-6)
    held = fit_forward_links(samples, GPU, 60e-6, held_s_per_byte=1 / 2e9)
    assert not free.bandwidth_held and free.link_gb_per_s == pytest.approx(1e6)
    assert held.bandwidth_held and held.link_gb_per_s == pytest.approx(2.0)
    assert held.collective_launch_us > 0


def test_hold_bandwidth_fits_the_launch_alone_at_the_given_bandwidth():
    """hold_bandwidth keeps the micro-benchmark bandwidth from the start: passes timed with the true link
    give back the true launch when the true bandwidth is held, and a held bandwidth needs a figure."""
    samples = _tp_samples(GPU)
    held = fit_forward_links(samples, GPU, GPU.gpu_link_latency_us * 1e-6,
                             held_s_per_byte=1 / (GPU.gpu_link_gb_per_s * 1e9), hold_bandwidth=True)
    assert held.bandwidth_held and held.link_gb_per_s == pytest.approx(GPU.gpu_link_gb_per_s)
    assert held.collective_launch_us == pytest.approx(GPU.collective_launch_us, rel=0.02)
    assert held.stderr["link_gb_per_s"] == 0
    with pytest.raises(ValueError, match="held_s_per_byte"):
        fit_forward_links(samples, GPU, 60e-6, hold_bandwidth=True)
