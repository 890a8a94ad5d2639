"""Running one CP-SAT subproblem: a short portfolio of solver settings, tried in turn, deterministically.

The planning models are small (tens of Booleans, a few stage-size and time variables) but their
coefficients are nanoseconds and bytes, and no single setting of CP-SAT solves all of them fast.
``python bench/cpsat_settings.py`` (24 instances: Llama-2-70B, Llama-3-8B/15B, CodeLlama-34B on 8xA10,
8xL4, 8xH100-SXM, 64xA10, 64xH100-SXM, 4xL4; ShareGPT; static and Seesaw problems; 2 cores, 2026-12-05)
measured, each setting alone with the whole 2 s budget against the portfolio:

- CP-SAT's defaults (presolve on, ``linearization_level`` 1): 15 of 24 proven, 95.1 s. Presolve's domain
  reasoning over nanosecond-valued variables takes 0.5-3 s per layout pair where the search takes
  milliseconds, and on one static PP layout on 64 GPUs a single worker walked the objective down one
  nanosecond per solution for a minute, stopping FEASIBLE 10 % above the optimum;
- presolve off, full LP relaxation (level 2), the model's search order (time variables last, at their
  least value): 23 of 24, 32.2 s;
- presolve off, level 1, with the search order: 20 of 24, 32.8 s; without it: 18 of 24, 38.0 s;
- the portfolio below: 24 of 24 proven, 23.9 s.

So each setting gets :data:`ATTEMPT_LIMIT_S` of deterministic time in turn, the last the rest of
:data:`SUBPROBLEM_LIMIT_S`; the first proof (optimal or infeasible) ends the subproblem, else the best
incumbent of all attempts stands. Deterministic time, not wall time, bounds each attempt, so the same
inputs stop at the same point whatever else the machine runs; a wall-clock cap (a few times that) only
guards against a search doing little deterministic work per second.
"""
from __future__ import annotations

from ortools.sat.python import cp_model

#: At most this much of CP-SAT's deterministic time (about seconds) on one subproblem (a layout pair or
#: layout), so that one hard pair cannot use up the whole time limit; a subproblem stopped by it keeps its
#: best point and makes the status FEASIBLE.
SUBPROBLEM_LIMIT_S = 2.0
#: Deterministic time of each attempt but the last.
ATTEMPT_LIMIT_S = 0.25
#: The wall-clock cap of an attempt, in multiples of its deterministic limit.
WALL_FACTOR = 3.0
#: ``(presolve, linearization level, keep the model's search order)`` tried in this order.
SETTINGS = ((False, 2, True), (False, 1, True), (False, 1, False), (True, 1, False))


def solve_model(model: cp_model.CpModel, time_limit_s: float) -> tuple[int, cp_model.CpSolver]:
    """Solve ``model`` (minimization) with :data:`SETTINGS` in turn, within ``time_limit_s`` of wall time.

    Returns ``(status, solver)``: OPTIMAL or INFEASIBLE from the first attempt that proves it, else FEASIBLE
    with the solver holding the best incumbent (read the point with ``solver.Value``), else the last
    attempt's status (UNKNOWN: no point found in time; MODEL_INVALID).
    """
    best: tuple[int, cp_model.CpSolver] | None = None
    spent = 0.0
    for i, (presolve, level, ordered) in enumerate(SETTINGS):
        if time_limit_s <= 0:
            break
        budget = SUBPROBLEM_LIMIT_S - spent if i == len(SETTINGS) - 1 else ATTEMPT_LIMIT_S
        if budget <= 0:
            continue
        attempt = model
        if not ordered:
            attempt = model.clone()
            attempt.proto.search_strategy.clear()
        solver = cp_model.CpSolver()
        p = solver.parameters
        p.max_deterministic_time = budget
        p.max_time_in_seconds = min(time_limit_s, WALL_FACTOR * budget)
        p.num_workers = 1  # deterministic: same inputs give the same plan
        p.random_seed = 0
        p.cp_model_presolve = presolve
        p.linearization_level = level
        status = solver.Solve(attempt)
        spent += solver.ResponseProto().deterministic_time
        time_limit_s -= solver.WallTime()
        if status in (cp_model.OPTIMAL, cp_model.INFEASIBLE, cp_model.MODEL_INVALID):
            return status, solver
        if status == cp_model.FEASIBLE and (best is None or solver.ObjectiveValue() < best[1].ObjectiveValue()):
            best = (status, solver)
        if best is None:
            best = (status, solver)
    if best is None:
        raise ValueError(f"no CP-SAT attempt ran (wall time left {time_limit_s:g} s)")
    return best
