"""Parallel layouts: (dp, tp, pp) and their rank maps.

A layout splits ``dp * tp * pp`` ranks into ``dp`` data-parallel replicas, each a pipeline of ``pp``
stages whose stages are ``tp``-way tensor parallel. Rank order (Megatron/vLLM convention, TP fastest):

    rank = dp_rank * (pp * tp) + pp_rank * tp + tp_rank

so the ranks of one TP group are consecutive and stay inside a node whenever ``tp`` divides the GPUs per
node.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from seesaw.ir.errors import InputError

_LAYOUT_RE = re.compile(r"^(?:(?:dp(\d+))|(?:tp(\d+))|(?:pp(\d+)))+$")
_PART_RE = re.compile(r"(dp|tp|pp)(\d+)")


@dataclass(frozen=True, order=True)
class Layout:
    """One phase's parallel layout. ``dp * tp * pp`` is the number of ranks (GPUs)."""

    dp: int = 1
    tp: int = 1
    pp: int = 1

    def __post_init__(self) -> None:
        for name in ("dp", "tp", "pp"):
            if getattr(self, name) < 1:
                raise ValueError(f"layout {name} must be >= 1, got {getattr(self, name)}")

    @property
    def world_size(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def replica_size(self) -> int:
        """GPUs per data-parallel replica (``tp * pp``)."""
        return self.tp * self.pp

    def coords(self, rank: int) -> tuple[int, int, int]:
        """``(dp_rank, pp_rank, tp_rank)`` of ``rank``; raises ValueError when out of range."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} outside layout {self} of {self.world_size} ranks")
        dp_rank, rest = divmod(rank, self.pp * self.tp)
        pp_rank, tp_rank = divmod(rest, self.tp)
        return dp_rank, pp_rank, tp_rank

    def rank(self, dp_rank: int, pp_rank: int, tp_rank: int) -> int:
        """Inverse of :meth:`coords`."""
        return dp_rank * (self.pp * self.tp) + pp_rank * self.tp + tp_rank

    def __str__(self) -> str:
        parts = [f"{n}{v}" for n, v in (("dp", self.dp), ("tp", self.tp), ("pp", self.pp)) if v > 1]
        return "".join(parts) or "tp1"

    @classmethod
    def parse(cls, text: str, *, field: str = "layout") -> "Layout":
        """Parse ``pp8``, ``tp4pp2``, ``dp2tp4``, ``dp1tp1pp1`` (any order, each part at most once).

        Raises :class:`InputError` naming ``field`` when the text is not a layout.
        """
        t = text.strip().lower()
        if not t or not _LAYOUT_RE.match(t):
            raise InputError(field, f"'{text}' is not a layout (expected e.g. pp8, tp4pp2, dp2tp4)")
        seen: dict[str, int] = {}
        for name, value in _PART_RE.findall(t):
            if name in seen:
                raise InputError(field, f"'{text}' names {name} twice")
            seen[name] = int(value)
            if seen[name] < 1:
                raise InputError(field, f"'{text}': {name} must be >= 1")
        return cls(**seen)
