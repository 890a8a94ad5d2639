"""Load imbalance of an expert-parallel mixture-of-experts layer: the busiest expert group's excess.

Expert parallelism (EP) splits a layer's ``E`` experts into ``ep`` contiguous groups of ``g = E / ep``, one
group per rank (:mod:`seesaw.ir.layout`); a step takes as long as its busiest rank. With each expert's share of
the step's (token, expert) pairs a random variable of mean ``1 / E`` and coefficient of variation ``cv``
(independent across experts), a group's load has mean ``1 / ep`` and coefficient of variation ``cv / sqrt(g)``,
and the busiest of ``ep`` groups carries, in expectation (normal approximation),

    ep_imbalance = 1 + cv * z(ep) / sqrt(E / ep)        (capped at ep: one group cannot take more than all)

times the mean, ``z(n)`` being the expected maximum of ``n`` standard normals (0.56, 1.03, 1.42 for 2, 4, 8).
The IR's ``moe_experts`` cost is the balanced one; the cost model multiplies the compute side of an
expert-parallel layer by this factor.

``cv`` (:data:`LOAD_CV`) is fitted (:func:`~seesaw.planner.calibration.aic_moe.fit_load_cv`) to NVIDIA
AIConfigurator's measured vLLM fused-MoE latencies (``aiconfigurator-core``, H100-SXM and H200-SXM tables):
the latency of the busiest rank under AIConfigurator's synthetic power-law routing (exponent 1.2, its SDK's
default for Mixtral and Qwen3-MoE) over the balanced latency, at 1,024 tokens or more (compute-bound), for
EP 2, 4 and 8 of the three shipped MoE shapes, each divided by the same ratio without EP (the skew's cost
inside one GPU, which tensor parallelism pays as well). That routing is AIConfigurator's assumption, not a
measured router histogram: a trained router with a load-balancing loss may be more even.
"""
from __future__ import annotations

import functools
import math

#: Coefficient of variation of one expert's share of the pairs: :func:`~seesaw.planner.calibration.aic_moe.fit_load_cv`
#: over ``ep_imbalance_samples("h100_sxm") + ep_imbalance_samples("h200_sxm")`` (162 samples) gives 0.75 at an rms
#: log error of 0.13 (checked by ``tests/planner/cost/test_moe_balance.py``).
LOAD_CV = 0.75


@functools.lru_cache(maxsize=None)
def expected_max_normal(n: int) -> float:
    """``E[max of n iid standard normals]`` (0 for n = 1), by the trapezoid rule over ``[-8, 8]`` of
    ``x * n * phi(x) * Phi(x)^(n-1)``. Raises ValueError for ``n < 1``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n == 1:
        return 0.0
    steps, lo, hi = 4000, -8.0, 8.0
    h = (hi - lo) / steps
    total = 0.0
    for i in range(steps + 1):
        x = lo + i * h
        pdf = math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        cdf = 0.5 * (1 + math.erf(x / math.sqrt(2)))
        total += (0.5 if i in (0, steps) else 1.0) * x * n * pdf * cdf ** (n - 1)
    return total * h


def ep_imbalance(experts: int, ep: int, cv: float = LOAD_CV) -> float:
    """Expected busiest-group load over the mean (dimensionless, ``1 <= f <= ep``) of ``experts`` experts split
    ``ep`` ways, each expert's share of the pairs having coefficient of variation ``cv`` (see the module
    docstring). ``ep == 1`` gives 1.0. Raises ValueError when ``ep < 1`` or ``ep`` does not divide ``experts``."""
    if ep < 1 or experts < 1 or experts % ep:
        raise ValueError(f"ep={ep} must be >= 1 and divide the {experts} experts")
    if ep == 1:
        return 1.0
    return min(float(ep), 1.0 + cv * expected_max_normal(ep) / math.sqrt(experts / ep))
