"""The CP-SAT settings portfolio: later settings take over from one that cannot prove, and the instance that
walked the objective one nanosecond at a time under CP-SAT's defaults is proven optimal."""
from __future__ import annotations

import pytest
from ortools.sat.python import cp_model

from seesaw.ir import load_model_config
from seesaw.planner.cost.model import CostModel
from seesaw.planner.hardware import load_cluster
from seesaw.planner.optimize import cpsat, cpsat_run
from seesaw.planner.optimize.solve import build_options
from seesaw.planner.optimize.space import SearchOptions, SearchSpace
from seesaw.planner.workload import load_workload


def _knapsack() -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
    model = cp_model.CpModel()
    xs = [model.NewIntVar(0, 9, f"x{i}") for i in range(6)]
    model.Add(sum((i + 3) * x for i, x in enumerate(xs)) >= 97)
    model.Minimize(sum((2 * i + 5) * x for i, x in enumerate(xs)))
    return model, xs


def test_a_later_setting_proves_what_the_first_cannot(monkeypatch):
    model, xs = _knapsack()
    reference = cp_model.CpSolver()
    assert reference.Solve(model) == cp_model.OPTIMAL
    # every attempt but the last stops at once: only the last (CP-SAT's defaults) can prove
    monkeypatch.setattr(cpsat_run, "ATTEMPT_LIMIT_S", 1e-9)
    status, solver = cpsat_run.solve_model(model, 10.0)
    assert status == cp_model.OPTIMAL
    assert solver.parameters.cp_model_presolve  # the proof came from the last setting
    assert solver.ObjectiveValue() == reference.ObjectiveValue()
    assert sum((i + 3) * solver.Value(x) for i, x in enumerate(xs)) >= 97


def test_the_search_order_is_dropped_only_from_a_copy():
    model, xs = _knapsack()
    model.AddDecisionStrategy(xs, cp_model.CHOOSE_FIRST, cp_model.SELECT_MAX_VALUE)
    status, _ = cpsat_run.solve_model(model, 10.0)
    assert status == cp_model.OPTIMAL
    assert len(model.proto.search_strategy) == 1


def test_no_wall_time_left_is_an_error():
    model, _ = _knapsack()
    with pytest.raises(ValueError, match="no CP-SAT attempt"):
        cpsat_run.solve_model(model, 0.0)


def test_pp_static_layout_on_64_gpus_is_proven_optimal():
    """Under CP-SAT's defaults this instance (dp4tp4pp4 among others) stopped FEASIBLE at the time limit,
    about 10 % above the optimum, after tens of thousands of one-nanosecond improvements."""
    cost = CostModel(load_model_config("llama-2-70b"), load_cluster("64xH100-SXM"), load_workload("sharegpt"))
    _, _, static = build_options(cost, SearchSpace(cost, SearchOptions()))
    opts = [t for t in static if str(t.layout) == "dp4tp4pp4"]
    status, sol = cpsat._solve_layout_static(cost, opts, 30.0, None)
    assert status == cp_model.OPTIMAL
    even = min(cpsat.evaluate_static(cost, t, (20, 20, 20, 20)).objective_ns for t in opts
               if cpsat.evaluate_static(cost, t, (20, 20, 20, 20)) is not None)
    assert sol[0] <= even
