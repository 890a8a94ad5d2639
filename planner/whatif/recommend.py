"""Which candidate cluster finishes a workload by a deadline and within a budget: the cheapest, or the fewest GPUs.

Pure functions over what-if :class:`~seesaw.planner.whatif.run.Row` s, one per candidate cluster: the
``seesaw`` row of its base point (no sweep). Units: times in seconds (``_s``), money in US dollars
(``_usd``), prices in USD per GPU-hour (``usd_per_gpu_hour``).

- A candidate's **workload time** is its Seesaw plan's predicted ``Row.total_s`` (prefill + decode +
  re-sharding + exposed KV swap, for the whole workload).
- Its **cost** is ``usd_per_gpu_hour * num_gpus * total_s / 3600`` (:func:`workload_usd`): every GPU is
  paid for while the workload runs.
- It **meets** a limit when it is feasible (the model fits) and ``total_s <= deadline_s`` /
  ``cost <= budget_usd``; a limit that was not given is met by every feasible candidate.
- :func:`recommend` picks, among the candidates that meet every given limit, the cheapest when every
  candidate has a price (ties: faster, then fewer GPUs), else the one with the fewest GPUs (ties: faster,
  then the order given). When none meets the limits, :func:`closest` names the feasible candidate that
  misses them by the smallest fraction (:attr:`Candidate.overshoot`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from seesaw.planner.whatif.run import Row

_NAN = float("nan")


def workload_usd(total_s: float, num_gpus: int, usd_per_gpu_hour: float) -> float:
    """Dollars for running ``num_gpus`` GPUs at ``usd_per_gpu_hour`` each for ``total_s`` seconds."""
    return usd_per_gpu_hour * num_gpus * total_s / 3600.0


def smaller_counts(num_gpus: int) -> list[int]:
    """GPU counts to consider for an ``NxGPU`` cluster: the powers of two below ``num_gpus``, then ``num_gpus``.

    ``smaller_counts(8) == [1, 2, 4, 8]``, ``smaller_counts(6) == [1, 2, 4, 6]``, ``smaller_counts(1) == [1]``.
    """
    out, k = [], 1
    while k < num_gpus:
        out.append(k)
        k *= 2
    return [*out, num_gpus]


def format_hours(seconds: float) -> str:
    """``seconds`` as hours with 3 significant digits (``5400`` -> ``1.5``); ``-`` for NaN."""
    return "-" if math.isnan(seconds) else f"{seconds / 3600:.3g}"


def format_duration(seconds: float, like: float | None = None) -> str:
    """``seconds`` in words with 3 significant digits, in the unit that suits ``like`` (default ``seconds``):
    ``s`` below 2 min, ``min`` below 1 h, else ``h`` (``format_duration(90, like=600) == "1.5 min"``)."""
    if math.isnan(seconds):
        return "-"
    scale = seconds if like is None else like
    if scale < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.3g} min" if scale < 3600 else f"{seconds / 3600:.3g} h"


def format_usd(usd: float) -> str:
    """Dollars without the sign: cents from $1 on (``1,234.50``), 3 significant digits below (``0.500``,
    ``0.0123``); ``-`` for NaN."""
    if math.isnan(usd):
        return "-"
    if usd >= 1 or usd <= 0:
        return f"{usd:,.2f}"
    return f"{usd:.{2 - math.floor(math.log10(usd))}f}"


@dataclass(frozen=True)
class Candidate:
    """One candidate cluster's Seesaw plan judged against the limits.

    ``row``: the ``seesaw`` row of the cluster's base point; ``num_gpus``: the cluster's GPU count;
    ``usd_per_gpu_hour``: its price (None when not given); ``deadline_s`` / ``budget_usd``: the limits
    (None when not given).
    """

    row: Row
    num_gpus: int
    usd_per_gpu_hour: float | None = None
    deadline_s: float | None = None
    budget_usd: float | None = None

    @property
    def cluster(self) -> str:
        """The cluster's display name (``8xA10``)."""
        return self.row.cluster

    @property
    def feasible(self) -> bool:
        """False when the model does not fit (then ``row.note`` says why)."""
        return self.row.feasible

    @property
    def total_s(self) -> float:
        """Predicted seconds for the whole workload (NaN when infeasible)."""
        return self.row.total_s

    @property
    def total_usd(self) -> float:
        """Predicted dollars for the whole workload (NaN when infeasible or without a price)."""
        if self.usd_per_gpu_hour is None or not self.feasible:
            return _NAN
        return workload_usd(self.total_s, self.num_gpus, self.usd_per_gpu_hour)

    @property
    def layouts(self) -> str:
        """``prefill->decode`` layouts, one name when they are the same; ``infeasible`` when nothing fits."""
        if not self.feasible:
            return "infeasible"
        r = self.row
        return r.prefill_layout if r.prefill_layout == r.decode_layout else f"{r.prefill_layout}->{r.decode_layout}"

    @property
    def meets_deadline(self) -> bool | None:
        """Whether it finishes within ``deadline_s``; None when no deadline was given."""
        if self.deadline_s is None:
            return None
        return self.feasible and self.total_s <= self.deadline_s

    @property
    def meets_budget(self) -> bool | None:
        """Whether it costs at most ``budget_usd``; None when no budget was given (False without a price)."""
        if self.budget_usd is None:
            return None
        return self.feasible and not math.isnan(self.total_usd) and self.total_usd <= self.budget_usd

    @property
    def eligible(self) -> bool:
        """Feasible and meets every given limit."""
        return self.feasible and self.meets_deadline is not False and self.meets_budget is not False

    @property
    def overshoot(self) -> float:
        """The largest fraction by which it misses a limit (0.25 = 25% over); 0 when eligible, inf when
        infeasible or over a budget without a price."""
        if not self.feasible:
            return math.inf
        over = 0.0
        if self.deadline_s is not None:
            over = max(over, self.total_s / self.deadline_s - 1)
        if self.budget_usd is not None:
            usd = self.total_usd
            over = max(over, math.inf if math.isnan(usd) else usd / self.budget_usd - 1)
        return over

    def shortfall(self) -> str:
        """Why it is not eligible, in words with amounts (``""`` when it is)."""
        if not self.feasible:
            return f"infeasible: {self.row.note}"
        parts = []
        if self.meets_deadline is False:
            late, limit = self.total_s - self.deadline_s, self.deadline_s
            parts.append(f"takes {format_duration(self.total_s, limit)}, {format_duration(late, limit)} "
                         f"({late / limit:.0%}) past the {format_duration(limit)} deadline")
        if self.meets_budget is False:
            if math.isnan(self.total_usd):
                parts.append("has no price for the budget")
            else:
                over = self.total_usd - self.budget_usd
                parts.append(f"costs ${format_usd(self.total_usd)}, ${format_usd(over)} "
                             f"({over / self.budget_usd:.0%}) over the ${format_usd(self.budget_usd)} budget")
        return "; ".join(parts)

    def to_dict(self) -> dict:
        """A JSON-ready summary (NaN as None): cluster, num_gpus, layouts, times (s), dollars, limits met."""
        def num(v: float) -> float | None:
            return None if v is None or math.isnan(v) else v

        r = self.row
        return {
            "cluster": self.cluster, "num_gpus": self.num_gpus, "feasible": self.feasible,
            "prefill_layout": r.prefill_layout, "decode_layout": r.decode_layout,
            "total_s": num(self.total_s), "tokens_per_s": num(r.tokens_per_s),
            "output_tokens_per_s": num(r.output_tokens_per_s), "memory_gb_per_gpu": num(r.memory_gb_per_gpu),
            "usd_per_gpu_hour": self.usd_per_gpu_hour, "total_usd": num(self.total_usd),
            "meets_deadline": self.meets_deadline, "meets_budget": self.meets_budget,
            "shortfall": self.shortfall(),
        }


def candidates(rows: list[Row], num_gpus: dict[str, int], prices: dict[str, float] | None = None,
               deadline_s: float | None = None, budget_usd: float | None = None) -> list[Candidate]:
    """One :class:`Candidate` per ``seesaw`` row (other systems are skipped), in the rows' order.

    ``num_gpus`` and ``prices`` (USD per GPU-hour) are keyed by the rows' cluster names; a cluster without a
    price gets None.
    """
    prices = prices or {}
    return [Candidate(r, num_gpus[r.cluster], prices.get(r.cluster), deadline_s, budget_usd)
            for r in rows if r.system == "seesaw"]


def ranked_by_usd(cands: list[Candidate]) -> bool:
    """True when every candidate has a price, so that :func:`recommend` picks the cheapest."""
    return bool(cands) and all(c.usd_per_gpu_hour is not None for c in cands)


def recommend(cands: list[Candidate]) -> Candidate | None:
    """The eligible candidate to use: the cheapest when every candidate has a price (ties: faster, then fewer
    GPUs), else the fewest GPUs (ties: faster); None when no candidate is eligible."""
    ok = [(i, c) for i, c in enumerate(cands) if c.eligible]
    if not ok:
        return None
    if ranked_by_usd(cands):
        key = lambda ic: (ic[1].total_usd, ic[1].total_s, ic[1].num_gpus, ic[0])  # noqa: E731
    else:
        key = lambda ic: (ic[1].num_gpus, ic[1].total_s, ic[0])  # noqa: E731
    return min(ok, key=key)[1]


def closest(cands: list[Candidate]) -> Candidate | None:
    """The feasible candidate that misses the limits by the smallest fraction (ties: faster); None when
    nothing is feasible."""
    ok = [c for c in cands if c.feasible]
    return min(ok, key=lambda c: (c.overshoot, c.total_s)) if ok else None
