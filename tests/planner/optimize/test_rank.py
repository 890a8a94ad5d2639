"""The candidates' screening: stopping the ones slower than the first finalists keeps the same finalists."""
from __future__ import annotations

from helpers.instances import tiny_cluster, tiny_model, tiny_workload

from seesaw.planner.cost.model import CostModel
from seesaw.planner.optimize import rank

WALLS = [5.0, 3.0, 9.0, 2.0, 4.0, 7.0]


def _run(cost, wall, stop):
    """A stand-in simulation: None when its clock would pass ``stop``."""
    return None if stop is not None and wall > stop else wall


def _cost():
    return CostModel(tiny_model(), tiny_cluster(0.4, 4.0), tiny_workload(n=8))


def test_screen_keeps_the_fastest_and_stops_the_slow_ones(monkeypatch):
    monkeypatch.setenv("SEESAW_PLAN_WORKERS", "1")
    got = rank.screen(_run, _cost(), WALLS, 2, lambda w: w)
    full = [_run(None, w, None) for w in WALLS]
    fastest = sorted(w for w in got if w is not None)[:2]
    assert fastest == sorted(full)[:2] == [2.0, 3.0]
    assert got[:2] == WALLS[:2]  # the first ones run to the end
    assert got[2] is None and got[5] is None  # slower than 5 s, the slower of the first two: stopped
    assert got[3] == 2.0 and got[4] == 4.0


def test_screen_without_enough_finished_first_ones_stops_nothing(monkeypatch):
    monkeypatch.setenv("SEESAW_PLAN_WORKERS", "1")
    got = rank.screen(lambda c, w, stop: None if w == 5.0 else _run(c, w, stop), _cost(), WALLS, 2, lambda w: w)
    assert got == [None, 3.0, 9.0, 2.0, 4.0, 7.0]
