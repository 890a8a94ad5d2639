"""Where ``seesaw-run``'s results go, so that nothing completed is lost.

Each finished request's line is appended to the output file (and flushed) the moment it finishes; a run
that ends normally rewrites the file in input order (through a temporary file and a rename); a run that
fails part-way leaves every finished line in place and writes metrics naming the completed request
indices. ``--resume`` reads an output file back and skips the requests it already holds.

Output line: ``{"index", "prompt_token_ids", "token_ids", "text", "finish_reason"}`` (+ ``"error"``).

Metrics carry vLLM's names beside ours (:func:`vllm_throughput_metrics`), so that a ``seesaw-run`` metrics
file or a ``seesaw-bench`` system reads like ``vllm bench throughput --output-json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from seesaw.ir.errors import InputError
from seesaw.schedule.replica import Sequence


def vllm_throughput_metrics(metrics: dict) -> dict:
    """vLLM's offline-throughput keys for our run metrics: the same figures under vLLM's names.

    ``vllm bench throughput --output-json`` (vllm-project/vllm, ``vllm/benchmarks/throughput.py``, ``main``)
    writes ``elapsed_time`` (seconds of the whole generate call), ``num_requests``, ``total_num_tokens``
    (prompt + output), ``requests_per_second`` and ``tokens_per_second`` (``total_num_tokens /
    elapsed_time``); it prints output tokens/s without writing it, so ``output_tokens_per_second`` (output
    tokens / ``elapsed_time``) follows the same pattern.

    ``metrics`` needs ``requests``, ``prompt_tokens``, ``output_tokens``, ``wall_s``, ``requests_per_s``,
    ``tokens_per_s`` and ``output_tokens_per_s`` (``RunMetrics.as_dict()``, or the transformers baseline's
    entry in ``seesaw-bench``), all counting the requests the timed call served. Merge the result beside ours:
    ``{**metrics, **vllm_throughput_metrics(metrics)}``.
    """
    return {"elapsed_time": metrics["wall_s"], "num_requests": metrics["requests"],
            "total_num_tokens": metrics["prompt_tokens"] + metrics["output_tokens"],
            "requests_per_second": metrics["requests_per_s"], "tokens_per_second": metrics["tokens_per_s"],
            "output_tokens_per_second": metrics["output_tokens_per_s"]}


def check_writable(path: Path, field: str) -> None:
    """Raise :class:`InputError` unless ``path`` can be written (its folder exists and is writable), before
    any work starts."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(field, f"folder '{folder}' does not exist")
    if path.is_dir():
        raise InputError(field, f"'{path}' is a folder")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(field, f"'{path}' is not writable")


class ResultsFile:
    """The output JSONL of one run. ``tok``: a tokenizer to decode ``text`` (None: ``text`` is null)."""

    def __init__(self, path: Path, tok=None) -> None:
        self.path = Path(path)
        self.tok = tok
        self.records: dict[int, dict] = {}  # request index -> its line
        self._f = None

    def record(self, seq: Sequence) -> dict:
        """The output line of a finished sequence (see the module docstring)."""
        rec = {"index": seq.index, "prompt_token_ids": list(seq.prompt), "token_ids": list(seq.output),
               "text": self.tok.decode(seq.output, skip_special_tokens=True) if self.tok is not None else None,
               "finish_reason": seq.finish_reason}
        if seq.error:
            rec["error"] = seq.error
        return rec

    def resume(self, seqs: list[Sequence]) -> list[Sequence]:
        """Read the lines an earlier run of the same prompts wrote; returns the sequences still to run.

        Raises:
            InputError: (field ``--resume``) a line that is not JSON or names a request whose prompt differs.
        """
        if not self.path.exists():
            return list(seqs)
        by_index = {s.index: s for s in seqs}
        for n, raw in enumerate(self.path.read_text().splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
                seq = by_index[rec["index"]]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise InputError("--resume", f"{self.path} line {n} is not a result line of these prompts") from None
            if rec.get("prompt_token_ids") != list(seq.prompt):
                raise InputError("--resume", f"{self.path} line {n}: request {seq.index}'s prompt differs from the "
                                 "prompts given now")
            if rec.get("finish_reason") not in (None, "error"):
                self.records[seq.index] = rec
        return [s for s in seqs if s.index not in self.records]

    def open(self, keep: bool) -> None:
        """Start appending (``keep``: after the lines already there, as with ``--resume``)."""
        if keep and self.records:
            self._rewrite(sorted(self.records.values(), key=lambda r: r["index"]))
        self._f = self.path.open("a" if keep else "w")

    def add(self, seq: Sequence) -> None:
        """Append a finished request's line now (flushed: it survives the process)."""
        rec = self.record(seq)
        self.records[seq.index] = rec
        if self._f is not None:
            self._f.write(json.dumps(rec) + "\n")
            self._f.flush()

    def close(self) -> None:
        """Stop appending (the lines written so far stay)."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def finish(self) -> None:
        """All requests done: the file again, in input order."""
        self.close()
        self._rewrite(sorted(self.records.values(), key=lambda r: r["index"]))

    def _rewrite(self, recs: list[dict]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
        os.replace(tmp, self.path)
