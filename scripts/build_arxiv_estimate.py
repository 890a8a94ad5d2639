#!/usr/bin/env python
"""Build ``planner/workload/data/arxiv-seesaw.csv``: an ESTIMATE of the Seesaw paper's arXiv-summarization
sample (500 requests), for planning the paper's setups without the dataset.

The paper (Su et al., MLSys 2025, section 6.1) samples 500 requests from arxiv-summarization; its artifact
(``benchmark/dataload.py``, zenodo 14991054) takes ``armanc/scientific_papers`` (arxiv, train) in dataset
order, article as prompt and abstract as output, and skips pairs over 4,096 tokens. Without the dataset here,
lengths are drawn from lognormal distributions matched to the dataset's published means (Cohan et al., NAACL
2018, "A Discourse-Aware Attention Model for Abstractive Summarization of Long Documents", Table 1: arXiv
documents average 4,938 words, abstracts 220 words), at 1.33 tokens per word (an estimate for Llama-family
tokenizers on English prose), with spreads (log-sigma 0.75 for articles, 0.4 for abstracts) that are
guesses; pairs over 4,096 tokens are skipped as the artifact does, and outputs under 20 tokens pruned. The
seed is fixed, so the file is reproducible::

    python scripts/build_arxiv_estimate.py
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "planner" / "workload" / "data" / "arxiv-seesaw.csv"
TOKENS_PER_WORD = 1.33
ARTICLE_WORDS, ABSTRACT_WORDS = 4938, 220
ARTICLE_SIGMA, ABSTRACT_SIGMA = 0.75, 0.4
MAX_TOTAL, MIN_OUTPUT, N, SEED = 4096, 20, 500, 0


def lognormal_with_mean(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    """``n`` draws of a lognormal whose mean is ``mean`` (median ``mean / exp(sigma^2 / 2)``)."""
    return rng.lognormal(math.log(mean) - sigma**2 / 2, sigma, n)


def main() -> int:
    rng = np.random.default_rng(SEED)
    rows: list[tuple[int, int]] = []
    while len(rows) < N:
        p = lognormal_with_mean(rng, ARTICLE_WORDS * TOKENS_PER_WORD, ARTICLE_SIGMA, 4 * N)
        o = lognormal_with_mean(rng, ABSTRACT_WORDS * TOKENS_PER_WORD, ABSTRACT_SIGMA, 4 * N)
        rows += [(int(a), int(b)) for a, b in zip(p, o) if a + b <= MAX_TOTAL and b >= MIN_OUTPUT and a >= 1]
    rows = rows[:N]
    OUT.write_text("prompt_len,output_len\n" + "".join(f"{p},{o}\n" for p, o in rows))
    ps, os_ = [p for p, _ in rows], [o for _, o in rows]
    print(f"wrote {OUT}: {len(rows)} requests, prompt mean {np.mean(ps):.0f} (max {max(ps)}), "
          f"output mean {np.mean(os_):.0f} (max {max(os_)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
