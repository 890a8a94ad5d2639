"""Brute-force search under the same integer objective as CP-SAT (``--search exhaustive``).

Enumerates every dp, prefill (layout, batch), decode (layout, batch) and PP stage partition (with a
bound that only skips points that cannot beat the incumbent). When a
layout has more partitions than ``max_partitions`` the grid is coarsened to near-even partitions
(``space.near_even_partitions``), so on large instances exhaustive search can only match or trail
CP-SAT; on small ones it enumerates everything and the two optima must be equal.
"""
from __future__ import annotations

import math
import time

from seesaw.planner.cost.model import CostModel
from seesaw.planner.optimize.result import SearchResult
from seesaw.planner.optimize.objective import evaluate_seesaw, evaluate_static
from seesaw.planner.optimize.space import compositions, near_even_partitions
from seesaw.planner.optimize.terms import PhaseTerms


def partitions(num_layers: int, pp: int, max_partitions: int) -> tuple[list[tuple[int, ...]], bool]:
    """All stage partitions, or the coarse grid when there are too many; second item: complete?"""
    if math.comb(num_layers - 1, pp - 1) <= max_partitions:
        return compositions(num_layers, pp), True
    return near_even_partitions(num_layers, pp), False


def _phase_points(cost: CostModel, opts: list[PhaseTerms], max_partitions: int, with_kv: bool):
    """Every (time, terms, partition) of one phase whose stages fit on their own, sorted by time."""
    layers, cap = cost.cfg.num_hidden_layers, cost.device_capacity_bytes
    points, complete = [], True
    for t in opts:
        parts, ok = partitions(layers, t.pp, max_partitions)
        complete &= ok
        for pc in parts:
            if all(t.busy_bytes(s, n) + (n * t.kv_layer_bytes if with_kv else 0) <= cap for s, n in enumerate(pc)):
                points.append((t.time_ns(pc), t, pc))
    points.sort(key=lambda p: p[0])
    return points, complete


def _top(best: dict, keep: int) -> list:
    """The ``keep`` best entries of ``best`` (key -> (objective, ...)), best first."""
    return sorted(best.values(), key=lambda b: b[0])[:keep]


def search_seesaw(cost: CostModel, prefill_opts: dict[int, list[PhaseTerms]],
                  decode_opts: dict[int, list[PhaseTerms]], max_partitions: int = 5000, keep: int = 1) -> SearchResult:
    """Enumerate every (dp, prefill point, decode point); exact branch and bound: points are visited in
    order of ``T_prefill + T_decode``, a lower bound of the objective, and the scan stops once that bound
    reaches the ``keep``-th best layout pair's objective, so no better point is skipped. Returns the best
    point and, as candidates, the best point of each of the ``keep`` best layout pairs."""
    start = time.perf_counter()
    best: dict = {}  # (prefill layout, decode layout) -> (objective, pre, dec, pc, dc)
    complete = True
    evaluated = 0

    def bound() -> float:
        return _top(best, keep)[-1][0] if len(best) >= keep else math.inf

    for dp in sorted(prefill_opts):
        pre_pts, ok_p = _phase_points(cost, prefill_opts[dp], max_partitions, with_kv=False)
        dec_pts, ok_d = _phase_points(cost, decode_opts.get(dp, []), max_partitions, with_kv=True)
        complete &= ok_p and ok_d
        for t_pre, pre, pc in pre_pts:
            if not dec_pts or t_pre + dec_pts[0][0] >= bound():
                break
            for t_dec, dec, dc in dec_pts:
                if t_pre + t_dec >= bound():
                    break
                if pre.layout == dec.layout and pc != dc:
                    continue  # one layout keeps one partition
                evaluated += 1
                ev = evaluate_seesaw(cost, pre, dec, pc, dc)
                key = (pre.layout, dec.layout)
                if ev and (key not in best or ev.objective_ns < best[key][0]):
                    best[key] = (ev.objective_ns, pre, dec, pc, dc)
    seconds = time.perf_counter() - start
    if not best:
        return SearchResult("INFEASIBLE", seconds, None, evaluated=evaluated)
    top = _top(best, keep)
    return SearchResult("OPTIMAL" if complete else "FEASIBLE", seconds, *top[0], evaluated, tuple(top))


def search_static(cost: CostModel, opts: list[PhaseTerms], max_partitions: int = 5000, keep: int = 1) -> SearchResult:
    """Every static point; returns the best and, as candidates, the best point of each of the ``keep`` best
    layouts."""
    start = time.perf_counter()
    layers = cost.cfg.num_hidden_layers
    best: dict = {}  # layout -> (objective, terms, terms, counts, counts)
    complete = True
    evaluated = 0
    for t in opts:
        parts, ok = partitions(layers, t.pp, max_partitions)
        complete &= ok
        for pc in parts:
            evaluated += 1
            ev = evaluate_static(cost, t, pc)
            if ev and (t.layout not in best or ev.objective_ns < best[t.layout][0]):
                best[t.layout] = (ev.objective_ns, t, t, pc, pc)
    seconds = time.perf_counter() - start
    if not best:
        return SearchResult("INFEASIBLE", seconds, None, evaluated=evaluated)
    top = _top(best, keep)
    return SearchResult("OPTIMAL" if complete else "FEASIBLE", seconds, *top[0], evaluated, tuple(top))
