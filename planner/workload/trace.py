"""Request-length workloads: the ``Workload`` value and ``load_workload`` for ``--workload`` specs.

A workload is only what the planner needs from a trace: per request, the prompt length and the output
length, both in tokens (DESIGN.md section 6). Output lengths are fixed by the trace (EOS ignored), as in
vLLM's throughput benchmark.
"""
from __future__ import annotations

import csv
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from seesaw.ir.errors import InputError

SPEC_SOURCE = "--workload"
SHIPPED_TRACE = "sharegpt.csv"
#: Shipped length traces by spec name (``data/<name>.csv``; see ``data/README.md``).
SHIPPED_TRACES = ("sharegpt", "sharegpt-seesaw", "arxiv-seesaw")
RANDOM_DEFAULT_N = 1000
_SPEC_HELP = ("expected 'sharegpt', 'sharegpt:N' (or sharegpt-seesaw, arxiv-seesaw), 'random:IN:OUT[:N]', or a "
              "path to a .jsonl or .csv file")
_FIELDS = ("prompt_len", "output_len")
_INT_RE = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Workload:
    """A batch of requests, each a (prompt length, output length) pair in tokens.

    ``prompt_lens[i]`` and ``output_lens[i]`` describe request ``i``; both tuples have ``num_requests``
    entries, every one an int >= 1. Lists are accepted and stored as tuples.

    Raises ``InputError`` (source = ``name``) when the tuples differ in length, are empty ("no requests")
    or hold a value that is not an int >= 1.
    """

    name: str
    prompt_lens: tuple[int, ...]
    output_lens: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt_lens", tuple(self.prompt_lens))
        object.__setattr__(self, "output_lens", tuple(self.output_lens))
        if len(self.prompt_lens) != len(self.output_lens):
            raise InputError("output_lens", f"has {len(self.output_lens)} entries but prompt_lens has "
                             f"{len(self.prompt_lens)}", self.name)
        if not self.prompt_lens:
            raise InputError("", "no requests", self.name)
        for field, values in (("prompt_lens", self.prompt_lens), ("output_lens", self.output_lens)):
            for i, v in enumerate(values):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise InputError(f"{field}[{i}]", f"must be an integer >= 1, got {v!r}", self.name)

    def within_context(self, context_len: int) -> tuple[Workload, int]:
        """The requests as the runtime serves them under a model context of ``context_len`` tokens: a
        prompt of ``context_len`` tokens or more is refused (dropped here), an output is cut to
        ``context_len - prompt_len`` tokens. Returns ``(workload, dropped)``.

        Raises InputError when every prompt is too long.
        """
        keep = [(p, min(o, context_len - p)) for p, o in zip(self.prompt_lens, self.output_lens) if p < context_len]
        if len(keep) == self.num_requests and all(o == oo for (_, o), oo in zip(keep, self.output_lens)):
            return self, 0
        if not keep:
            raise InputError("prompt_lens", f"every prompt is at least the model's context ({context_len} tokens)",
                             self.name)
        return Workload(self.name, [p for p, _ in keep], [o for _, o in keep]), self.num_requests - len(keep)

    @property
    def num_requests(self) -> int:
        """Number of requests."""
        return len(self.prompt_lens)

    @property
    def prompt_tokens(self) -> int:
        """Total prompt tokens, ``P = sum(prompt_len)`` (DESIGN.md section 8)."""
        return sum(self.prompt_lens)

    @property
    def output_tokens(self) -> int:
        """Total output (decode) tokens, ``D = sum(output_len)``."""
        return sum(self.output_lens)

    @property
    def mean_prompt_len(self) -> float:
        """Mean prompt length, tokens."""
        return self.prompt_tokens / self.num_requests

    @property
    def mean_output_len(self) -> float:
        """Mean output length, tokens."""
        return self.output_tokens / self.num_requests

    @property
    def max_prompt_len(self) -> int:
        """Longest prompt, tokens."""
        return max(self.prompt_lens)

    @property
    def max_output_len(self) -> int:
        """Longest output, tokens."""
        return max(self.output_lens)

    @property
    def max_seq_len(self) -> int:
        """Longest ``prompt_len + output_len`` of any request: the KV tokens one sequence can reach."""
        return max(p + o for p, o in zip(self.prompt_lens, self.output_lens))

    @property
    def decode_mean_context_len(self) -> float:
        """Time-weighted mean KV length of a running decode sequence, tokens: ``sum(o*(p+o/2)) / sum(o)``.

        A request with prompt ``p`` and output ``o`` stays in the decode batch for ``o`` steps, its context
        growing from ``p`` to ``p + o``, so its mean context over those steps is about ``p + o/2`` (the
        midpoint) and it holds a batch slot for a share of decode time proportional to ``o``. Weighting
        each request's mean context by ``o`` therefore gives the average KV length of the sequence
        occupying a slot at a random decode step. This is the "mean context" that caps the running batch
        (``gpu_kv_tokens / mean context``, DESIGN.md section 8) and sets the KV bytes read per step;
        the plain mean of ``p + o`` would overweight short-output requests and overstate long prompts.
        """
        den = self.output_tokens
        return sum(o * (p + o / 2) for p, o in zip(self.prompt_lens, self.output_lens)) / den

    def summary(self) -> dict:
        """The name, request count, token totals, mean/max lengths and decode mean context, as a dict."""
        return {
            "name": self.name,
            "num_requests": self.num_requests,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "mean_prompt_len": self.mean_prompt_len,
            "mean_output_len": self.mean_output_len,
            "max_prompt_len": self.max_prompt_len,
            "max_output_len": self.max_output_len,
            "max_seq_len": self.max_seq_len,
            "decode_mean_context_len": self.decode_mean_context_len,
        }

    def split(self, dp: int) -> list["Workload"]:
        """Deal requests round-robin over ``dp`` data-parallel replicas: replica ``r`` gets ``r, r+dp, ...``.

        Returns ``dp`` workloads named ``"<name>[dp r/dp]"`` whose requests together are exactly this
        workload's. Raises ``InputError`` (field ``dp``) unless ``1 <= dp <= num_requests``.
        """
        if isinstance(dp, bool) or not isinstance(dp, int) or dp < 1:
            raise InputError("dp", f"must be an integer >= 1, got {dp!r}", self.name)
        if dp > self.num_requests:
            raise InputError("dp", f"{dp} replicas but only {self.num_requests} requests", self.name)
        if dp == 1:
            return [self]
        return [Workload(f"{self.name}[dp {r}/{dp}]", self.prompt_lens[r::dp], self.output_lens[r::dp])
                for r in range(dp)]


def shipped_trace_path(name: str = "sharegpt") -> Path:
    """Path of a shipped length trace (``data/<name>.csv``; see ``data/README.md``)."""
    return Path(str(resources.files(__package__).joinpath("data", f"{name}.csv")))


def load_workload(spec: str) -> Workload:
    """Build a workload from a ``--workload`` spec.

    - ``sharegpt``: the shipped ShareGPT trace (all rows); ``sharegpt:N``: its first ``N`` rows; likewise
      ``sharegpt-seesaw`` (ShareGPT under the Seesaw paper's filters) and ``arxiv-seesaw`` (an estimate of
      the paper's arXiv-summarization sample), see ``data/README.md``.
    - ``random:IN:OUT[:N]``: ``N`` (default 1000) requests of exactly ``IN`` prompt and ``OUT`` output
      tokens, like vLLM's random dataset with range ratio 0.
    - a path ending in ``.jsonl`` (one ``{"prompt_len": int, "output_len": int}`` object per line, blank
      lines ignored) or ``.csv`` (header with columns ``prompt_len,output_len``; extra columns ignored).

    Raises ``InputError``: source ``--workload`` for a malformed or unknown spec or a missing file; source
    = the file path, with the line number in the field, for bad content (malformed JSON, missing,
    non-integer or out-of-range ``prompt_len`` / ``output_len``); "no requests" for an empty workload.
    """
    text = spec.strip() if isinstance(spec, str) else ""
    if not text:
        raise InputError("workload", f"empty spec; {_SPEC_HELP}", SPEC_SOURCE)
    head, _, rest = text.partition(":")
    kind = head.lower()
    if kind in SHIPPED_TRACES and not _looks_like_file(text):
        return _load_shipped(kind, text, rest)
    if kind == "random" and not _looks_like_file(text):
        return _load_random(text, rest)
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        if path.is_file():
            raise InputError("workload", f"unsupported file type '{path.suffix}' for '{text}'; {_SPEC_HELP}",
                             SPEC_SOURCE)
        raise InputError("workload", f"unknown spec '{text}'; {_SPEC_HELP}", SPEC_SOURCE)
    if not path.exists():
        raise InputError("path", f"no such file '{text}'", SPEC_SOURCE)
    if not path.is_file():
        raise InputError("path", f"'{text}' is not a file", SPEC_SOURCE)
    prompts, outputs = _read_jsonl(path) if suffix == ".jsonl" else _read_csv(path)
    return _build(path.stem, prompts, outputs, str(path))


def _looks_like_file(text: str) -> bool:
    return text.lower().endswith((".jsonl", ".csv"))


def _spec_int(text: str, field: str, value: str) -> int:
    cell = value.strip()
    if not _INT_RE.fullmatch(cell) or int(cell) < 1:
        raise InputError(field, f"must be an integer >= 1 in '{text}', got '{value}'", SPEC_SOURCE)
    return int(cell)


def _load_shipped(name: str, text: str, rest: str) -> Workload:
    prompts, outputs = _shipped(name)
    if not rest and ":" not in text:
        return _build(name, prompts, outputs, SPEC_SOURCE)
    n = _spec_int(text, "N", rest)
    if n > len(prompts):
        label = "ShareGPT" if name == "sharegpt" else name
        raise InputError("N", f"{n} requested but the shipped {label} trace has {len(prompts)} rows",
                         SPEC_SOURCE)
    return _build(f"{name}:{n}", prompts[:n], outputs[:n], SPEC_SOURCE)


def _load_random(text: str, rest: str) -> Workload:
    parts = rest.split(":") if rest else []
    if len(parts) not in (2, 3):
        raise InputError("workload", f"'{text}' must be random:IN:OUT or random:IN:OUT:N", SPEC_SOURCE)
    in_len = _spec_int(text, "IN", parts[0])
    out_len = _spec_int(text, "OUT", parts[1])
    n = _spec_int(text, "N", parts[2]) if len(parts) == 3 else RANDOM_DEFAULT_N
    return Workload(f"random:{in_len}:{out_len}:{n}", (in_len,) * n, (out_len,) * n)


@functools.lru_cache(maxsize=1)
@functools.lru_cache(maxsize=4)
def _shipped(name: str = "sharegpt") -> tuple[tuple[int, ...], tuple[int, ...]]:
    path = shipped_trace_path(name)
    if not path.is_file():
        raise InputError(name, f"shipped trace missing at {path}; rebuild it with "
                         "scripts/build_sharegpt_trace.py", SPEC_SOURCE)
    prompts, outputs = _read_csv(path)
    return tuple(prompts), tuple(outputs)


def _build(name: str, prompts, outputs, source: str) -> Workload:
    if not prompts:
        raise InputError("", "no requests", source)
    return Workload(name, tuple(prompts), tuple(outputs))


def _check_len(value, field: str, line: int, source: str, *, csv_cell: bool = False) -> int:
    """An int >= 1 from a JSON number or a CSV cell (str); InputError naming the line and field otherwise."""
    where = f"line {line}: {field}"
    if csv_cell:
        cell = value.strip()
        if not cell:
            raise InputError(where, "missing", source)
        if not _INT_RE.fullmatch(cell):
            raise InputError(where, f"must be an integer, got '{cell}'", source)
        value = int(cell)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise InputError(where, f"must be an integer, got {json.dumps(value)}", source)
    if value < 1:
        raise InputError(where, f"must be >= 1, got {value}", source)
    return value


def _open_text(path: Path, source: str):
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError("file", f"not UTF-8 text ({exc.reason} at byte {exc.start})", source) from None
    except OSError as exc:
        raise InputError("file", f"cannot read: {exc.strerror}", source) from None


def _read_jsonl(path: Path) -> tuple[list[int], list[int]]:
    source = str(path)
    prompts: list[int] = []
    outputs: list[int] = []
    for line_no, line in enumerate(_open_text(path, source).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"line {line_no}", f"malformed JSON: {exc.msg} (column {exc.colno})",
                             source) from None
        if not isinstance(obj, dict):
            raise InputError(f"line {line_no}", "expected a JSON object with prompt_len and output_len",
                             source)
        for field in _FIELDS:
            if field not in obj:
                raise InputError(f"line {line_no}: {field}", "missing", source)
        prompts.append(_check_len(obj["prompt_len"], "prompt_len", line_no, source))
        outputs.append(_check_len(obj["output_len"], "output_len", line_no, source))
    return prompts, outputs


def _read_csv(path: Path) -> tuple[list[int], list[int]]:
    source = str(path)
    reader = csv.reader(_open_text(path, source).splitlines())
    header = next(reader, None)
    if header is None:
        raise InputError("header", "missing; expected columns prompt_len,output_len", source)
    names = [h.strip() for h in header]
    cols = {}
    for field in _FIELDS:
        if field not in names:
            raise InputError("line 1: header", f"missing column '{field}' (found {','.join(names)})", source)
        cols[field] = names.index(field)
    prompts: list[int] = []
    outputs: list[int] = []
    for row in reader:
        if not row or not any(c.strip() for c in row):
            continue
        line_no = reader.line_num
        vals = []
        for field in _FIELDS:
            idx = cols[field]
            if idx >= len(row):
                raise InputError(f"line {line_no}: {field}", "missing", source)
            vals.append(_check_len(row[idx], field, line_no, source, csv_cell=True))
        prompts.append(vals[0])
        outputs.append(vals[1])
    return prompts, outputs
