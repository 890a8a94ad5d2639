"""What the scheduler sends a worker for one forward pass of one micro-batch (picklable, small)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    """Per-request sampling: greedy when ``temperature`` is 0; else temperature + nucleus (top-p) with a
    per-request seed (the token index is mixed in, so results do not depend on batching)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None


@dataclass
class ForwardBatch:
    """One micro-batch.

    prefill: ``tokens[i]`` is sequence ``i``'s prompt, ``positions`` start at 0; KV goes to the host buffer
    at ``buffer_starts[i]`` (plans with a host buffer) or to the paged cache pages ``block_tables[i]``.
    decode: ``tokens[i]`` is the one new token, at position ``context_lens[i] - 1``; ``block_tables[i]``
    lists the sequence's cache pages (position ``p`` is slot ``table[p // page_size] * page_size +
    p % page_size``); this step writes the new token's K/V and attends over positions
    ``0 .. context_lens[i] - 1``.
    ``sample_index[i]`` is the output index the sampled token will have (seeds the sampler).
    """

    mode: str  # "prefill" | "decode"
    seq_ids: list[int]
    tokens: list[list[int]]
    context_lens: list[int]
    block_tables: list[list[int]] | None = None
    page_size: int = 16
    buffer_starts: list[int] | None = None
    sampling: list[SamplingParams] = field(default_factory=list)
    sample_index: list[int] = field(default_factory=list)
    micro_batch: int = 0
    return_logits: bool = False  # also return the sampled rows' logits (tests compare them to a reference)

    @property
    def num_tokens(self) -> int:
        return sum(len(t) for t in self.tokens)
