"""What a simulated run reports: wall time, the phase breakdown and the counts of what ran."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SimRun:
    """One simulated run: wall time and the phase breakdown (s) of the slowest replica (its parts add up to
    its wall time; the runtime's metrics take each phase's maximum over replicas instead), transitions per
    replica (the most of any), the other counts summed over replicas. On a cluster of many replicas only some
    are stepped through (:mod:`~seesaw.planner.simulate.replicas`): ``requests``, ``refused`` and the token
    counts cover every replica, the step counts (batches, steps, swap-ins, preemptions) the simulated ones."""

    wall_s: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    transition_s: float = 0.0
    prefill_batches: int = 0
    decode_steps: int = 0
    transitions: int = 0
    swap_in_tokens: int = 0
    preemptions: int = 0
    refused: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    per_replica: list[dict] = field(default_factory=list)
    stopped: bool = False  # stopped early: its clock passed ``stop_after_s`` (then only a lower bound)
    replicas: int = 0  # DP replicas with requests
    replicas_simulated: int = 0  # of which stepped through (the others counted only: simulate.replicas)

    @property
    def tokens_per_s(self) -> float:
        return (self.prompt_tokens + self.output_tokens) / self.wall_s if self.wall_s else 0.0

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.wall_s if self.wall_s else 0.0

    def add_replica(self, rep: "SimRun") -> None:
        """Fold one replica's run in: times are the slowest replica's, counts add up."""
        self.per_replica.append({"wall_s": rep.wall_s, "prefill_s": rep.prefill_s, "decode_s": rep.decode_s,
                                 "transition_s": rep.transition_s})
        if rep.wall_s >= self.wall_s:
            self.wall_s, self.prefill_s, self.decode_s, self.transition_s = (
                rep.wall_s, rep.prefill_s, rep.decode_s, rep.transition_s)
        self.transitions = max(self.transitions, rep.transitions)  # per replica, as the runtime counts them
        self.stopped |= rep.stopped
        for key in ("prefill_batches", "decode_steps", "swap_in_tokens", "preemptions", "refused",
                    "requests", "prompt_tokens", "output_tokens"):
            setattr(self, key, getattr(self, key) + getattr(rep, key))
