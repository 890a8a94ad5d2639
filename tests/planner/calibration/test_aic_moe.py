"""The fused-MoE terms: the fit recovers known terms, and the fitted H100 entry models AIConfigurator's
measured MoE layers better than the dense GEMM rate does."""
from __future__ import annotations

import math

import pytest

from seesaw.planner.calibration.aic_moe import MoeSample, fit_moe, modelled_s, moe_samples
from seesaw.planner.hardware import get_gpu

pytest.importorskip("aiconfigurator_core")


def test_fit_recovers_the_terms_that_made_the_samples():
    gpu = get_gpu("H100-SXM").model_copy(update={"moe_efficiency": 0.55, "moe_overhead_us": 30.0})
    shapes = [MoeSample(m, t, tp, 0.0) for m in ("mixtral-8x7b", "qwen3-235b-a22b") for t in (1, 16, 256, 4096, 16384)
              for tp in (1, 4)]
    samples = [MoeSample(s.model, s.tokens, s.tp, modelled_s(gpu, s)) for s in shapes]
    eff, over, err = fit_moe(get_gpu("H100-SXM"), samples)
    assert (eff, over) == (0.55, 30.0) and err < 1e-9


def test_fitted_h100_entry_beats_the_dense_rate_on_the_measured_table():
    samples, table = moe_samples("h100_sxm")
    assert len(samples) > 100 and "moe_perf.parquet" in table.cite()
    fitted = get_gpu("H100-SXM")
    assert fitted.moe_efficiency < 1 and fitted.moe_overhead_us > 0
    dense = fitted.model_copy(update={"moe_efficiency": 1.0, "moe_overhead_us": 0.0})

    def rms(gpu) -> float:
        return math.sqrt(sum(math.log(modelled_s(gpu, s) / s.measured_s) ** 2 for s in samples) / len(samples))

    assert rms(fitted) < 0.2 < rms(dense)


def test_expert_parallel_fit_recovers_its_terms_and_the_fitted_entry_beats_the_tp_rate():
    """moe_ep_efficiency and moe_ep_overhead_us: recovered from samples they made; on H100's 216 measured
    expert-parallel layers (EP 2-8, balanced) the fitted entry (0.62, 14 us) models them better than the
    tensor-parallel terms alone."""
    from seesaw.planner.calibration.aic_moe import fit_moe_ep, moe_ep_samples

    fitted = get_gpu("H100-SXM")
    made = fitted.model_copy(update={"moe_ep_efficiency": 0.7, "moe_ep_overhead_us": 9.0})
    shapes = [MoeSample(m, t, ep, 0.0, ep) for m in ("qwen3-30b-a3b", "qwen3-235b-a22b") for t in (1, 64, 4096, 16384)
              for ep in (2, 8)]
    eff, over, err = fit_moe_ep(fitted, [MoeSample(s.model, s.tokens, s.tp, modelled_s(made, s), s.ep) for s in shapes])
    assert (eff, over) == (0.7, 9.0) and err < 1e-9
    samples = moe_ep_samples("h100_sxm")
    assert len(samples) == 216 and {s.ep for s in samples} == {2, 4, 8}
    assert not any(s.model == "mixtral-8x7b" and s.ep == 8 for s in samples)  # one expert < top-2: capped rows

    def rms(gpu) -> float:
        return math.sqrt(sum(math.log(modelled_s(gpu, s) / s.measured_s) ** 2 for s in samples) / len(samples))

    assert (fitted.moe_ep_efficiency, fitted.moe_ep_overhead_us) == (0.62, 14.0)
    tp_terms = fitted.model_copy(update={"moe_ep_efficiency": 1.0, "moe_ep_overhead_us": 0.0})
    assert rms(fitted) < 0.21 < 0.29 < rms(tp_terms)
