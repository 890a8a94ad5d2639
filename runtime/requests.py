"""Reading ``prompts.jsonl`` into token-id requests (validated before any work starts)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from seesaw.ir.errors import InputError
from seesaw.schedule.batch import SamplingParams

DEFAULT_MAX_TOKENS = 256
_KEYS = {"prompt", "prompt_token_ids", "max_tokens", "temperature", "top_p", "seed", "ignore_eos"}


@dataclass
class PromptLine:
    index: int
    line: int  # line number in the file (1-based)
    prompt: str | None
    prompt_token_ids: list[int] | None
    max_tokens: int
    sampling: SamplingParams
    ignore_eos: bool


def _int(v, key: str, line: int, src: str, lo: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise InputError(f"line {line}: {key}", f"must be an integer >= {lo}, got {v!r}", src)
    return v


def read_prompts(path: str | Path, default_max_tokens: int = DEFAULT_MAX_TOKENS) -> list[PromptLine]:
    """Parse every line; raises :class:`InputError` naming the file, line number and field."""
    src = str(path)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise InputError("prompts", f"cannot read: {e.strerror}", src) from None
    out = []
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            d = json.loads(raw)
        except json.JSONDecodeError as e:
            raise InputError(f"line {n}", f"malformed JSON: {e.msg}", src) from None
        if not isinstance(d, dict):
            raise InputError(f"line {n}", "must be a JSON object", src)
        unknown = set(d) - _KEYS
        if unknown:
            raise InputError(f"line {n}: {sorted(unknown)[0]}", f"unknown field (known: {', '.join(sorted(_KEYS))})", src)
        has_text, has_ids = "prompt" in d, "prompt_token_ids" in d
        if has_text == has_ids:
            raise InputError(f"line {n}", "needs exactly one of 'prompt' or 'prompt_token_ids'", src)
        if has_text and (not isinstance(d["prompt"], str) or not d["prompt"]):
            raise InputError(f"line {n}: prompt", "must be a non-empty string", src)
        ids = d.get("prompt_token_ids")
        if has_ids and (not isinstance(ids, list) or not ids or
                        not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in ids)):
            raise InputError(f"line {n}: prompt_token_ids", "must be a non-empty list of token ids (integers >= 0)", src)
        temp = d.get("temperature", 0.0)
        if not isinstance(temp, (int, float)) or isinstance(temp, bool) or temp < 0:
            raise InputError(f"line {n}: temperature", f"must be a number >= 0, got {temp!r}", src)
        top_p = d.get("top_p", 1.0)
        if not isinstance(top_p, (int, float)) or isinstance(top_p, bool) or not 0 < top_p <= 1:
            raise InputError(f"line {n}: top_p", f"must be in (0, 1], got {top_p!r}", src)
        seed = d.get("seed")
        if seed is not None:
            _int(seed, "seed", n, src, 0)
        ignore = d.get("ignore_eos", False)
        if not isinstance(ignore, bool):
            raise InputError(f"line {n}: ignore_eos", f"must be true or false, got {ignore!r}", src)
        out.append(PromptLine(len(out), n, d.get("prompt"), ids,
                              _int(d.get("max_tokens", default_max_tokens), "max_tokens", n, src, 1),
                              SamplingParams(float(temp), float(top_p), seed), ignore))
    if not out:
        raise InputError("prompts", "no prompts", src)
    return out


def check_token_ids(lines: list[PromptLine], vocab_size: int, path: str | Path) -> None:
    """Raise :class:`InputError` naming the file and line of the first ``prompt_token_ids`` entry outside
    the model's vocabulary (``0 <= id < vocab_size``)."""
    for ln in lines:
        bad = next((t for t in ln.prompt_token_ids or () if t >= vocab_size), None)
        if bad is not None:
            raise InputError(f"line {ln.line}: prompt_token_ids",
                             f"token id {bad} is outside the model's vocabulary (vocab_size {vocab_size})", str(path))
