"""Parallel layouts: (dp, tp, pp, ep) and their rank maps.

A layout splits ``dp * tp * pp`` ranks into ``dp`` data-parallel replicas, each a pipeline of ``pp``
stages whose stages are ``tp``-way tensor parallel. In a mixture-of-experts model ``ep`` (a divisor of ``tp``)
splits each TP group's experts: the ``tp`` ranks form ``ep`` expert groups of ``tp / ep`` consecutive ranks,
group ``g`` holds experts ``g * E / ep .. (g + 1) * E / ep - 1`` whole or tensor-parallel over its ``tp / ep``
ranks, and attention stays ``tp``-way tensor parallel. ``ep == tp`` is vLLM's ``--enable-expert-parallel`` with
``--tensor-parallel-size tp`` (experts whole, EP size = TP size); ``ep == 1`` splits every expert ``tp`` ways.
Rank order (Megatron/vLLM convention, TP fastest):

    rank = dp_rank * (pp * tp) + pp_rank * tp + tp_rank

so the ranks of one TP group are consecutive and stay inside a node whenever ``tp`` divides the GPUs per
node.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from seesaw.ir.errors import InputError

_LAYOUT_RE = re.compile(r"^(?:(?:dp(\d+))|(?:tp(\d+))|(?:pp(\d+))|(?:ep(\d+)))+$")
_PART_RE = re.compile(r"(dp|tp|pp|ep)(\d+)")


@dataclass(frozen=True, order=True)
class Layout:
    """One phase's parallel layout. ``dp * tp * pp`` is the number of ranks (GPUs); ``ep`` divides ``tp``
    (see the module docstring). Raises ValueError for a degree below 1 or an ``ep`` that does not divide ``tp``."""

    dp: int = 1
    tp: int = 1
    pp: int = 1
    ep: int = 1

    def __post_init__(self) -> None:
        for name in ("dp", "tp", "pp", "ep"):
            if getattr(self, name) < 1:
                raise ValueError(f"layout {name} must be >= 1, got {getattr(self, name)}")
        if self.tp % self.ep:
            raise ValueError(f"layout ep={self.ep} must divide tp={self.tp} (experts are split inside a TP group)")

    @property
    def expert_tp(self) -> int:
        """Ranks each expert is tensor-parallel over: ``tp / ep``."""
        return self.tp // self.ep

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
        parts = [f"{n}{v}" for n, v in (("dp", self.dp), ("tp", self.tp), ("ep", self.ep), ("pp", self.pp))
                 if v > 1]
        return "".join(parts) or "tp1"

    @classmethod
    def parse(cls, text: str, *, field: str = "layout") -> "Layout":
        """Parse ``pp8``, ``tp4pp2``, ``dp2tp4``, ``tp8ep8``, ``dp1tp1pp1`` (any order, each part at most once).
        ``ep`` without ``tp`` means ``tp = ep`` (``ep2`` is ``tp2ep2``: vLLM's expert parallelism over its TP group).

        Raises :class:`InputError` naming ``field`` when the text is not a layout or ``ep`` does not divide ``tp``.
        """
        t = text.strip().lower()
        if not t or not _LAYOUT_RE.match(t):
            raise InputError(field, f"'{text}' is not a layout (expected e.g. pp8, tp4pp2, dp2tp4, tp8ep8)")
        seen: dict[str, int] = {}
        for name, value in _PART_RE.findall(t):
            if name in seen:
                raise InputError(field, f"'{text}' names {name} twice")
            seen[name] = int(value)
            if seen[name] < 1:
                raise InputError(field, f"'{text}': {name} must be >= 1")
        if "ep" in seen:
            seen.setdefault("tp", seen["ep"])
        try:
            return cls(**seen)
        except ValueError as err:  # ep does not divide tp
            raise InputError(field, f"'{text}': {str(err).removeprefix('layout ')}") from None
