"""A PP pipeline's timeline: micro-batches pass the stages in order, each stage busy with one at a time."""
from __future__ import annotations

from collections.abc import Sequence


class Pipeline:
    """When each of ``pp`` stages is next free (seconds since the run began)."""

    def __init__(self, pp: int) -> None:
        self.free_at = [0.0] * pp

    def run(self, start_s: float, stage_s: Sequence[float], setup_s: Sequence[float] | None = None) -> float:
        """Push a micro-batch issued at ``start_s`` with per-stage times ``stage_s`` through the stages
        (each starts once the previous stage has passed it on and the stage is free); returns when the last
        stage finishes it. Micro-batches finish in issue order.

        ``setup_s[s]``: work stage ``s`` does on receiving the command, before it needs the previous
        stage's output (a KV swap-in into its own pages), starting once it is free and the command issued.
        """
        if len(stage_s) == 1 and not setup_s:
            t = max(start_s, self.free_at[0]) + stage_s[0]
            self.free_at[0] = t
            return t
        t = start_s
        for s, d in enumerate(stage_s):
            ready = self.free_at[s]
            if setup_s:
                ready = max(ready, start_s) + setup_s[s]
            t = max(t, ready) + d
            self.free_at[s] = t
        return t

    def hold(self, until_s: float) -> None:
        """Every stage is busy until ``until_s`` (a transition reloading the weights)."""
        self.free_at = [max(f, until_s) for f in self.free_at]
