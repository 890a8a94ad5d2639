"""The expert-parallel load-imbalance factor and its fit to AIConfigurator's measured power-law latencies."""
from __future__ import annotations

import math
import statistics

import pytest

from seesaw.planner.cost.moe_balance import LOAD_CV, ep_imbalance, expected_max_normal


def test_expected_max_of_normals_matches_tippetts_table():
    # Tippett (1925) / standard order-statistics tables: E[max] of 2, 4, 8 standard normals
    for n, want in ((1, 0.0), (2, 0.5642), (4, 1.0294), (8, 1.4236)):
        assert expected_max_normal(n) == pytest.approx(want, abs=1e-3)


def test_factor_is_one_without_ep_grows_with_ep_and_stays_below_ep():
    assert ep_imbalance(128, 1) == 1.0
    values = [ep_imbalance(128, ep) for ep in (1, 2, 4, 8, 16, 32, 64, 128)]
    assert values == sorted(values) and all(1.0 <= v <= ep for v, ep in zip(values, (1, 2, 4, 8, 16, 32, 64, 128)))
    assert ep_imbalance(8, 8) > ep_imbalance(128, 8)  # fewer experts per group: more skew
    assert ep_imbalance(2, 2, cv=100.0) == 2.0  # capped: one group cannot take more than all the pairs


def test_ep_must_divide_the_experts():
    with pytest.raises(ValueError, match="divide"):
        ep_imbalance(8, 3)
    with pytest.raises(ValueError):
        ep_imbalance(8, 0)


def test_load_cv_is_the_fit_to_aiconfigurator_measurements():
    pytest.importorskip("aiconfigurator_core")
    from seesaw.planner.calibration.aic_moe import ep_imbalance_samples, fit_load_cv

    samples = ep_imbalance_samples("h100_sxm") + ep_imbalance_samples("h200_sxm")
    assert {s.ep for s in samples} == {2, 4, 8} and {s.model for s in samples} == {
        "mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b"}
    cv, rms = fit_load_cv(samples)
    assert cv == pytest.approx(LOAD_CV, abs=0.005)
    assert rms < 0.15  # 0.134 measured: the normal approximation leaves ~13% per sample
    logs = [math.log(ep_imbalance(s.experts, s.ep) / s.measured) for s in samples]
    assert abs(statistics.mean(logs)) < 0.05  # no overall bias
    mixtral8 = [s.measured for s in samples if s.model == "mixtral-8x7b" and s.ep == 8]
    assert statistics.median(mixtral8) > 2.0 and ep_imbalance(8, 8) > 2.0  # one expert per rank: >2x measured
