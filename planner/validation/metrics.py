"""Error statistics of ``seesaw-validate``: predicted against measured, per layout and per phase.

- absolute percentage error ``|predicted - measured| / measured`` and its mean over layouts (MAPE);
- Kendall's tau-b between predicted and measured throughput over the layouts (``scipy.stats.kendalltau``:
  1 = the model orders every pair of layouts as the measurements do, -1 = every pair reversed);
- the planner's chosen plan against the measured best: ``1 - measured(chosen) / max(measured)`` (0 when the
  chosen plan is the measured best).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def ape(predicted: float, measured: float) -> float:
    """Absolute percentage error as a fraction (0.1 = 10 %). Raises ValueError when ``measured <= 0``."""
    if measured <= 0:
        raise ValueError(f"measured value must be > 0, got {measured}")
    return abs(predicted - measured) / measured


def mape(pairs: Sequence[tuple[float, float]]) -> float:
    """Mean of :func:`ape` over ``(predicted, measured)`` pairs; NaN for no pairs."""
    if not pairs:
        return math.nan
    return sum(ape(p, m) for p, m in pairs) / len(pairs)


def kendall_tau(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Kendall's tau-b of the two rankings; NaN with fewer than two layouts or when one side is constant.
    Raises ValueError when the lengths differ."""
    if len(predicted) != len(measured):
        raise ValueError(f"{len(predicted)} predictions for {len(measured)} measurements")
    if len(predicted) < 2:
        return math.nan
    from scipy.stats import kendalltau  # noqa: PLC0415 (scipy is slow to import)

    return float(kendalltau(predicted, measured).statistic)


def gap_to_best(measured: Mapping[str, float], chosen: str) -> tuple[str, float]:
    """``(best layout, 1 - measured[chosen] / measured[best])`` for throughputs (higher is better).
    Raises KeyError when ``chosen`` was not measured."""
    best = max(measured, key=measured.__getitem__)
    return best, 1.0 - measured[chosen] / measured[best]
