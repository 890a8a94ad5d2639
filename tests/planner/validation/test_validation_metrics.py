"""Validation's error arithmetic (planner/validation/metrics.py)."""
from __future__ import annotations

import math

import pytest

from seesaw.planner.validation.metrics import ape, gap_to_best, kendall_tau, mape


def test_ape_and_mape_by_hand():
    assert ape(110.0, 100.0) == pytest.approx(0.10)
    assert ape(90.0, 100.0) == pytest.approx(0.10)
    assert ape(5.0, 4.0) == pytest.approx(0.25)
    assert mape([(110.0, 100.0), (5.0, 4.0), (3.0, 3.0)]) == pytest.approx((0.10 + 0.25 + 0.0) / 3)
    assert math.isnan(mape([]))
    with pytest.raises(ValueError, match="measured"):
        ape(1.0, 0.0)


def test_kendall_tau_counts_concordant_pairs():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # one discordant pair of six: (6 - 1 - 1) / 6 = 4/6
    assert kendall_tau([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(4 / 6)
    assert math.isnan(kendall_tau([1.0], [2.0]))
    with pytest.raises(ValueError):
        kendall_tau([1, 2], [1])


def test_gap_to_best():
    measured = {"dp2": 100.0, "pp2": 80.0, "tp2->pp2": 95.0}
    assert gap_to_best(measured, "dp2") == ("dp2", 0.0)
    best, gap = gap_to_best(measured, "tp2->pp2")
    assert best == "dp2" and gap == pytest.approx(0.05)
    with pytest.raises(KeyError):
        gap_to_best(measured, "tp1")


def test_merge_repeats_averages_and_summary_uses_the_means():
    from seesaw.planner.validation.compare import PhaseResult, RunResult, merge_repeats, summarize

    def run(label, pred, meas, chosen=False):
        return RunResult(label, pred, meas, pred, {"decode": PhaseResult(10, meas / 100, pred / 100)}, chosen=chosen)

    a = merge_repeats([run("dp2", 100.0, 90.0, True), run("dp2", 100.0, 110.0, True)])
    b = merge_repeats([run("pp2", 80.0, 70.0), run("pp2", 80.0, 90.0)])
    assert a.measured_tokens_per_s == pytest.approx(100.0) and a.extra["measured_tokens_per_s"] == [90.0, 110.0]
    assert a.phases["decode"].measured_s == pytest.approx(1.0) and a.phases["decode"].steps == 10
    s = summarize([a, b])
    assert s.throughput_mape == pytest.approx((0.0 + 0.0) / 2)
    assert s.step_mape["decode"] == pytest.approx(0.0)
    assert (s.chosen, s.best_measured, s.chosen_gap) == ("dp2", "dp2", 0.0)
    assert s.kendall_tau == pytest.approx(1.0)


def test_median_step_error_ignores_a_spell_of_slow_steps():
    from seesaw.planner.validation.compare import PhaseResult, RunResult, merge_repeats, summarize

    # 8 steps predicted 10 ms each; measured 10.5 ms, except 2 steps of an interference spell at 16 ms
    measured = [0.0105] * 6 + [0.016] * 2
    errors = tuple((0.010 - m) / m for m in measured)
    phase = PhaseResult(8, sum(measured), 0.080, errors)
    assert phase.error == pytest.approx(abs(0.080 - sum(measured)) / sum(measured))  # 15.5%: the spell weighs in
    assert phase.median_step_error == pytest.approx(0.5 / 10.5)  # 4.8%: the typical step
    assert math.isnan(PhaseResult(8, 0.1, 0.1).median_step_error)
    # repeats pool their steps; the summary averages the per-layout medians
    run = RunResult("dp2", 1.0, 1.0, 1.0, {"decode": phase})
    merged = merge_repeats([run, RunResult("dp2", 1.0, 1.0, 1.0, {"decode": PhaseResult(2, 0.02, 0.02, (0.0, 0.0))})])
    assert merged.phases["decode"].step_errors == errors + (0.0, 0.0)
    assert merged.phases["decode"].median_step_error == pytest.approx(0.5 / 10.5)
    other = RunResult("pp2", 1.0, 1.0, 1.0, {"decode": PhaseResult(2, 0.02, 0.022, (0.1, 0.1))})
    assert summarize([merged, other]).median_step_error["decode"] == pytest.approx((0.5 / 10.5 + 0.1) / 2)
    assert math.isnan(summarize([merged, other]).median_step_error["prefill"])


def test_compare_run_records_each_steps_signed_error():
    from seesaw.ir.layout import Layout
    from seesaw.ir import load_model_config
    from seesaw.planner.cost.model import CostModel
    from seesaw.planner.hardware import load_cluster
    from seesaw.planner.validation.compare import compare_run
    from seesaw.planner.validation.predict import PhaseShape, stage_times_s
    from seesaw.planner.workload import Workload

    cfg = load_model_config("SmolLM2-135M")
    cost = CostModel(cfg, load_cluster("2xcpu"), Workload("t", [64] * 4, [4] * 4))
    phase = PhaseShape(Layout(2, 1, 1), (cfg.num_hidden_layers,))
    one = sum(stage_times_s(cost, phase, "decode", [70, 70]))
    steps = [{"replica": 0, "kind": "decode", "context_lens": [70, 70], "service_s": one * f, "after_idle": i == 0}
             for i, f in enumerate((1.0, 2.0, 1.0))]
    run = compare_run("dp2", cost, {"prefill": phase, "decode": phase}, {"prompt_tokens": 0, "output_tokens": 6,
                      "tokens_per_s": 1.0}, steps, 1.0)
    assert run.phases["decode"].step_errors == pytest.approx((0.0, -0.5, 0.0))
    assert run.phases["decode"].median_step_error == pytest.approx(0.0)
    assert run.phases["decode"].error == pytest.approx(0.25)  # 3 predicted against 4 measured
