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
