"""Token sampling: greedy, or temperature + top-p with a per-request seed."""
from __future__ import annotations

import torch

from seesaw.schedule.batch import SamplingParams


def sample(logits: torch.Tensor, params: list[SamplingParams], sample_index: list[int]) -> list[int]:
    """``logits [B, vocab]`` (float32) -> one token id per row.

    Greedy (argmax) when a row's temperature is 0. Otherwise softmax(logits / temperature), restricted to
    the smallest set of tokens whose probability reaches ``top_p`` (nucleus sampling, Holtzman et al.
    2020), sampled with a generator seeded by ``(seed, sample_index)`` so a request's tokens do not depend
    on what else is in its batch.
    """
    out = logits.argmax(dim=-1).tolist()
    for i, p in enumerate(params):
        if p.temperature <= 0:
            continue
        probs = torch.softmax(logits[i] / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            keep = sorted_p.cumsum(0) - sorted_p < p.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        gen = torch.Generator(device="cpu")
        gen.manual_seed(((p.seed if p.seed is not None else 0) * 1_000_003 + sample_index[i]) % (2**63))
        out[i] = int(torch.multinomial(probs.cpu(), 1, generator=gen).item())
    return out
