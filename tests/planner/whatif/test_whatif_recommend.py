"""Deadline / budget recommendation over synthetic what-if rows (no planning)."""
import json
import math

import pytest

from seesaw.planner.whatif.recommend import (Candidate, candidates, closest, format_duration, format_usd,
                                             ranked_by_usd, recommend, smaller_counts, workload_usd)
from seesaw.planner.whatif.run import Row

NAN = float("nan")


def row(cluster: str, total_s: float, feasible: bool = True, system: str = "seesaw", pre: str = "tp2",
        dec: str = "tp2", note: str = "") -> Row:
    t = total_s if feasible else NAN
    return Row(cluster, "base", NAN, NAN, system, feasible, pre, dec, 1000.0 if feasible else NAN, 200.0 if feasible
               else NAN, NAN, False, 20.0 if feasible else NAN, t, 0.0, 0.0, 0.0, t, NAN, note)


GPUS = {"1xA10": 1, "2xA10": 2, "4xA10": 4, "2xL4": 2}
# 1 GPU: 10,000 s; 2 GPUs: 3,000 s ($1.67 at $1/GPU-h); 4 GPUs: 1,400 s ($1.56 at $1/GPU-h)
ROWS = [row("1xA10", 10_000), row("2xA10", 3_000), row("4xA10", 1_400, pre="pp4", dec="tp2pp2")]
PRICES = {"1xA10": 1.0, "2xA10": 1.0, "4xA10": 1.0}


def test_cost_is_price_times_gpus_times_hours():
    assert workload_usd(1800, 4, 2.0) == pytest.approx(4.0)
    c = Candidate(ROWS[2], 4, 1.0)
    assert c.total_usd == pytest.approx(1400 * 4 / 3600)
    assert math.isnan(Candidate(ROWS[2], 4).total_usd)  # no price, no cost


def test_smaller_counts_are_powers_of_two_then_n():
    assert smaller_counts(8) == [1, 2, 4, 8]
    assert smaller_counts(6) == [1, 2, 4, 6]
    assert smaller_counts(1) == [1]


def test_deadline_without_prices_recommends_the_fewest_gpus_that_meet_it():
    cands = candidates(ROWS, GPUS, deadline_s=3600)
    assert [c.meets_deadline for c in cands] == [False, True, True]
    assert not ranked_by_usd(cands)
    best = recommend(cands)
    assert best.cluster == "2xA10" and best.meets_budget is None and best.shortfall() == ""


def test_deadline_with_prices_recommends_the_cheapest():
    cands = candidates(ROWS, GPUS, PRICES, deadline_s=3600)
    assert ranked_by_usd(cands)
    best = recommend(cands)
    assert best.cluster == "4xA10" and best.layouts == "pp4->tp2pp2"


def test_deadline_missed_by_all_names_the_closest_and_by_how_much():
    cands = candidates(ROWS, GPUS, deadline_s=1000)
    assert recommend(cands) is None
    near = closest(cands)
    assert near.cluster == "4xA10" and near.overshoot == pytest.approx(0.4)
    assert near.shortfall() == "takes 23.3 min, 6.67 min (40%) past the 16.7 min deadline"


def test_budget_keeps_only_candidates_within_it():
    cands = candidates(ROWS, GPUS, PRICES, budget_usd=1.6)
    assert [c.meets_budget for c in cands] == [False, False, True]
    assert recommend(cands).cluster == "4xA10"
    assert "over the $1.60 budget" in cands[1].shortfall() and "$1.67" in cands[1].shortfall()


def test_budget_and_deadline_missed_closest_is_the_smallest_relative_miss():
    cands = candidates(ROWS, GPUS, PRICES, deadline_s=2900, budget_usd=1.5)
    assert recommend(cands) is None
    # 2xA10: 3.4% late, 11% over budget; 4xA10: on time, 3.7% over budget
    near = closest(cands)
    assert near.cluster == "4xA10" and near.meets_deadline and not near.meets_budget
    assert near.overshoot == pytest.approx(1400 * 4 / 3600 / 1.5 - 1)


def test_budget_without_a_price_is_not_met():
    c = Candidate(ROWS[0], 1, None, budget_usd=100.0)
    assert c.meets_budget is False and not c.eligible and c.overshoot == math.inf
    assert "no price" in c.shortfall()


def test_ties_fewest_gpus_then_fastest_and_cheapest_then_fastest():
    rows = [row("2xA10", 3_000), row("2xL4", 2_500), row("4xA10", 1_000)]
    assert recommend(candidates(rows, GPUS, deadline_s=3600)).cluster == "2xL4"
    # same dollars: 2 GPUs x 3,000 s and 4 GPUs x 1,500 s at $1/GPU-h; the faster wins
    rows = [row("2xA10", 3_000), row("4xA10", 1_500)]
    best = recommend(candidates(rows, GPUS, {"2xA10": 1.0, "4xA10": 1.0}, deadline_s=3600))
    assert best.cluster == "4xA10"


def test_infeasible_candidates_are_never_recommended_nor_closest():
    rows = [row("1xA10", NAN, feasible=False, note="model: does not fit"), row("2xA10", 3_000)]
    cands = candidates(rows, GPUS, deadline_s=3600)
    assert recommend(cands).cluster == "2xA10"
    assert cands[0].layouts == "infeasible" and cands[0].shortfall() == "infeasible: model: does not fit"
    assert cands[0].meets_deadline is False and cands[0].overshoot == math.inf
    only = candidates(rows[:1], GPUS, deadline_s=3600)
    assert recommend(only) is None and closest(only) is None


def test_partial_prices_rank_by_gpu_count_and_static_rows_are_skipped():
    rows = [*ROWS, row("4xA10", 1_200, system="dp2tp2")]
    cands = candidates(rows, GPUS, {"4xA10": 1.0}, deadline_s=3600)
    assert len(cands) == 3 and not ranked_by_usd(cands)
    assert recommend(cands).cluster == "2xA10"


def test_to_dict_is_strict_json_with_units():
    cands = candidates([row("1xA10", NAN, feasible=False, note="x"), *ROWS[1:]], GPUS, PRICES, deadline_s=3600)
    d = json.loads(json.dumps([c.to_dict() for c in cands], allow_nan=False))
    assert d[0]["total_s"] is None and d[0]["total_usd"] is None and d[0]["meets_deadline"] is False
    assert d[2]["total_s"] == 1400 and d[2]["total_usd"] == pytest.approx(1400 * 4 / 3600)
    assert d[2]["num_gpus"] == 4 and d[2]["usd_per_gpu_hour"] == 1.0 and d[2]["meets_budget"] is None


def test_formats():
    assert format_duration(30) == "30 s" and format_duration(600) == "10 min" and format_duration(5400) == "1.5 h"
    assert format_duration(90, like=600) == "1.5 min"
    assert format_usd(1234.5) == "1,234.50" and format_usd(0.01234) == "0.0123" and format_usd(0.5) == "0.500"
    assert format_usd(NAN) == "-"
