"""The result of a search (CP-SAT or exhaustive): status, time, objective and the chosen point."""
from __future__ import annotations

from dataclasses import dataclass

from seesaw.planner.optimize.terms import PhaseTerms


@dataclass(frozen=True)
class SearchResult:
    """``objective_ns`` is the integer objective (ns per replica); None when nothing was found.

    ``pre`` / ``dec`` are the chosen phase terms (the same object twice for a static plan) and
    ``pcounts`` / ``dcounts`` their PP stage sizes. ``evaluated`` counts exhaustive evaluations.
    ``candidates``: the best point of each of the best layout choices (a layout pair, or a static
    layout), best first, as ``(objective_ns, pre, dec, pcounts, dcounts)``; the first is the result itself.
    """

    status: str  # OPTIMAL, FEASIBLE, INFEASIBLE, UNKNOWN
    seconds: float
    objective_ns: int | None
    pre: PhaseTerms | None = None
    dec: PhaseTerms | None = None
    pcounts: tuple[int, ...] = ()
    dcounts: tuple[int, ...] = ()
    evaluated: int = 0
    candidates: tuple[tuple[int, PhaseTerms, PhaseTerms, tuple[int, ...], tuple[int, ...]], ...] = ()
