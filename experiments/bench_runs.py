"""Measurement pieces of ``seesaw-bench`` (see ``cli/bench.py``): request sets, memcpy bandwidth, per-rank
weight bytes, and the timed runs of a Seesaw plan and of transformers' ``generate``."""
from __future__ import annotations

import random
import time
from pathlib import Path

from seesaw.ir.errors import CommandError
from seesaw.ir.errors import InputError

GB = 1e9


# -- shared option parsing ---------------------------------------------------------------------------------
def parse_layout_pairs(texts: list[str] | None, example: str = "pp3:tp3") -> list[tuple]:
    """``--layout PREFILL:DECODE`` values as ``(Layout, Layout)`` pairs; InputError naming ``--layout``."""
    from seesaw.ir.layout import Layout  # noqa: PLC0415

    pairs = []
    for text in texts or []:
        pre, sep, dec = text.partition(":")
        if not sep:
            raise InputError("--layout", f"'{text}' is not PREFILL:DECODE (e.g. {example})")
        pairs.append((Layout.parse(pre, field="--layout"), Layout.parse(dec, field="--layout")))
    return pairs


def eos_token_ids(config: dict) -> set[int]:
    """The checkpoint config's ``eos_token_id`` (an id or a list of ids) as a set (empty when absent)."""
    eos = config.get("eos_token_id")
    return set(eos if isinstance(eos, list) else [eos] if eos is not None else [])


# -- requests ----------------------------------------------------------------------------------------------
def sharegpt_requests(tokenizer, num_prompts: int, output_cap: int | None, seed: int,
                      context_limit: int) -> list[tuple[list[int], int]]:
    """The first ``num_prompts`` ShareGPT pairs (vLLM order for ``seed``) that pass vLLM's length filter.

    Returns ``(prompt_token_ids, output_len)`` pairs; ``output_len`` is the completion's token count
    (``len(tokenizer(text).input_ids)``, as vLLM counts), capped at ``output_cap``. The filter sees the
    uncapped length (vLLM's rule). Raises InputError when fewer pairs pass than asked for.
    """
    from seesaw.runtime.datasets import keep_lengths, sharegpt_pairs  # noqa: PLC0415

    pairs = sharegpt_pairs(seed=seed)
    out: list[tuple[list[int], int]] = []
    for start in range(0, len(pairs), 256):
        chunk = pairs[start:start + 256]
        prompts = tokenizer([p for p, _ in chunk]).input_ids
        outputs = tokenizer([c for _, c in chunk]).input_ids
        for ids, comp in zip(prompts, outputs):
            n_out = len(comp) if output_cap is None else min(len(comp), output_cap)
            if keep_lengths(len(ids), len(comp)) and len(ids) + n_out <= context_limit:
                out.append((list(ids), n_out))
                if len(out) == num_prompts:
                    return out
    raise InputError("--num-prompts", f"only {len(out)} ShareGPT requests pass the length filter")


def random_requests(vocab_size: int, num_prompts: int, input_len: int, output_len: int,
                    seed: int) -> list[tuple[list[int], int]]:
    """``num_prompts`` prompts of ``input_len`` token ids drawn uniformly from ``[0, vocab_size)`` with
    ``random.Random(seed)``, each with ``output_len`` output tokens."""
    rng = random.Random(seed)
    return [([rng.randrange(vocab_size) for _ in range(input_len)], output_len) for _ in range(num_prompts)]


def build_requests(dataset: str, folder: Path, config: dict, num_prompts: int, input_len: int | None,
                   output_len: int | None, seed: int) -> tuple[list[tuple[list[int], int]], str]:
    """The benchmark's ``(prompt_token_ids, output_len)`` requests and a workload name. ShareGPT needs the
    checkpoint's tokenizer; random needs only ``config["vocab_size"]`` (defaults: 128 in, 128 out). Raises
    InputError for a missing tokenizer or a request longer than ``max_position_embeddings``."""
    limit = int(config.get("max_position_embeddings", 1 << 30))
    if dataset == "sharegpt":
        from transformers import AutoTokenizer  # noqa: PLC0415

        try:
            tok = AutoTokenizer.from_pretrained(str(folder))
        except Exception as e:  # noqa: BLE001 (any loader failure is a missing/broken tokenizer)
            raise InputError("--checkpoint", f"no usable tokenizer in '{folder}' for ShareGPT: {type(e).__name__}") from None
        name = f"sharegpt:{num_prompts}" + (f" (outputs <= {output_len})" if output_len else "")
        return sharegpt_requests(tok, num_prompts, output_len, seed, limit), name
    ilen, olen = input_len or 128, output_len or 128
    if ilen + olen > limit:
        raise InputError("--input-len", f"input ({ilen}) + output ({olen}) exceed the context limit ({limit})")
    return random_requests(int(config["vocab_size"]), num_prompts, ilen, olen, seed), f"random:{ilen}:{olen}:{num_prompts}"


# -- measurements ------------------------------------------------------------------------------------------
def memcpy_gb_per_s(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Best-of-``repeats`` host memcpy bandwidth (GB/s, 1e9 bytes, counting bytes copied once) of
    ``dst.copy_(src)`` on two preallocated float32 CPU tensors of ``nbytes``, with the caller's torch thread
    count. A weight reload on CPU (``clone`` of each host shard) copies at best at this rate."""
    import torch  # noqa: PLC0415

    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # fault the pages in
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return nbytes / best / GB


def phase_bytes_per_rank(plan, ckpt, bytes_per_element: int) -> dict[str, list[int]]:
    """Weight bytes each rank loads when it switches *to* each phase: ``{"prefill": [bytes per rank],
    "decode": [...]}``, from the plan's ``weight_shards`` and the checkpoint's tensor shapes."""
    out: dict[str, list[int]] = {}
    for ph in ("prefill", "decode"):
        sizes = []
        for rank in plan.phase(ph).ranks:
            total = 0
            for name, sl in rank.weight_shards.items():
                shape = list(ckpt.shape(name))
                if sl is not None:
                    shape[sl.dim] = sl.stop - sl.start
                n = 1
                for d in shape:
                    n *= d
                total += n * bytes_per_element
            sizes.append(total)
        out[ph] = sizes
    return out


def run_seesaw(exec_plan, folder: Path, requests, eos_ids: set[int], warmup: bool,
               progress) -> tuple[dict, int, int]:
    """Serve ``requests`` under ``exec_plan``; returns (``RunMetrics.as_dict()`` of the timed run, number of
    requests whose output length differs from the trace, bytes per weight element on the workers). Worker
    stats are cumulative, so the warm-up request's byte counts are subtracted."""
    import torch  # noqa: PLC0415

    from seesaw.runtime.engine import Engine, WorkerError  # noqa: PLC0415
    from seesaw.schedule.replica import Sequence  # noqa: PLC0415

    try:
        with Engine(exec_plan, str(folder)) as engine:
            base = {"kv_swap_out_bytes": 0, "kv_swap_in_bytes": 0, "transition_bytes": 0}
            if warmup:
                _, wm = engine.generate([Sequence(-1, requests[0][0][:8], 2, ignore_eos=True)], eos_ids)
                base = {k: getattr(wm, k) for k in base}
            seqs = [Sequence(i, ids, n, ignore_eos=True) for i, (ids, n) in enumerate(requests)]
            _, m = engine.generate(seqs, eos_ids, progress)
            element_bytes = torch.tensor([], dtype=getattr(torch, engine.dtype)).element_size()
    except WorkerError as e:
        raise CommandError(str(e)) from None
    for k, v in base.items():
        setattr(m, k, getattr(m, k) - v)
    wrong = sum(1 for s, (_, n) in zip(seqs, requests) if s.finish_reason != "length" or len(s.output) != n)
    return m.as_dict(), wrong, element_bytes


def run_transformers(folder: Path, requests, batch_size: int, threads: int, pad_id: int, warmup: bool,
                     progress, sort_by_prompt: bool = False) -> dict:
    """Hugging Face ``generate`` on ``requests`` (float32, CPU, greedy, left padding, batches in trace order,
    or by prompt length when ``sort_by_prompt``: less padding; see the module docstring for how output
    lengths equal the trace's). Returns figures like
    ``RunMetrics.as_dict()``; ``wall_s`` sums the ``generate`` calls only. ``computed_output_slots`` counts
    batch rows x steps actually generated (padding included)."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM, StoppingCriteria, StoppingCriteriaList  # noqa: PLC0415
    from transformers.utils import logging as hf_logging  # noqa: PLC0415

    class RowLengths(StoppingCriteria):
        def __init__(self, start: int, lens: list[int]) -> None:
            self.start, self.lens = start, torch.tensor(lens)

        def __call__(self, input_ids, scores, **kwargs):
            return (input_ids.shape[1] - self.start) >= self.lens

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()

        def generate(batch) -> float:
            width = max(len(ids) for ids, _ in batch)
            ids = torch.tensor([[pad_id] * (width - len(p)) + p for p, _ in batch])
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p, _ in batch])
            lens = [n for _, n in batch]
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=max(lens),
                                     min_new_tokens=max(lens), pad_token_id=pad_id,
                                     stopping_criteria=StoppingCriteriaList([RowLengths(width, lens)]))
            secs = time.perf_counter() - t0
            if out.shape[1] != width + max(lens):
                raise CommandError(f"transformers generated {out.shape[1] - width} tokens, expected {max(lens)}")
            return secs

        if warmup:
            generate([(requests[0][0][:8], 2)])
        order = sorted(requests, key=lambda r: len(r[0])) if sort_by_prompt else requests
        wall, slots = 0.0, 0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            wall += generate(batch)
            slots += len(batch) * max(n for _, n in batch)
            if progress:
                progress("generate", start + len(batch), sum(n for _, n in batch))
    finally:
        torch.set_num_threads(old_threads)
    prompt, output = sum(len(p) for p, _ in requests), sum(n for _, n in requests)
    return {"requests": len(requests), "prompt_tokens": prompt, "output_tokens": output, "wall_s": wall,
            "tokens_per_s": (prompt + output) / wall, "output_tokens_per_s": output / wall,
            "requests_per_s": len(requests) / wall, "computed_output_slots": slots, "batch_size": batch_size,
            "threads": threads, "sorted_by_prompt_len": sort_by_prompt}


def seesaw_entry(exec_plan, ckpt, metrics: dict, wrong: int, element_bytes: int, memcpy_gb_per_s: float) -> dict:
    """One Seesaw system's JSON entry: metrics, plan figures, and transitions measured vs estimated.

    Transitions alternate prefill->decode (loading decode shards) and decode->prefill; each is estimated
    as the largest rank's bytes for the target phase over ``memcpy_gb_per_s`` (ranks reload in parallel)."""
    per_rank = phase_bytes_per_rank(exec_plan, ckpt, element_bytes)
    n, n_dec = metrics["transitions"], (metrics["transitions"] + 1) // 2
    est = (n_dec * max(per_rank["decode"]) + (n - n_dec) * max(per_rank["prefill"])) / (memcpy_gb_per_s * GB)
    return {
        "layouts": f"{_layout_label(exec_plan.prefill.layout)}/{_layout_label(exec_plan.decode.layout)}",
        "metrics": metrics, "wrong_output_lengths": wrong,
        "plan": {"host_buffer_tokens_per_replica": exec_plan.kv.host_buffer_tokens_per_replica,
                 "gpu_kv_tokens_per_replica": exec_plan.kv.gpu_kv_tokens_per_replica,
                 "schedule": exec_plan.schedule.model_dump(mode="json"),
                 "predicted_tokens_per_s": exec_plan.summary.predicted_tokens_per_s},
        "transitions": {"count": n, "measured_s": metrics["transition_s"],
                        "measured_s_per_transition": metrics["transition_s"] / n if n else 0.0,
                        "weight_bytes_per_rank": per_rank,
                        "estimated_s": est, "estimated_s_per_transition": est / n if n else 0.0},
    }


# -- presentation ------------------------------------------------------------------------------------------


def _layout_label(lay) -> str:
    from seesaw.ir.layout import Layout  # noqa: PLC0415

    return str(Layout(lay.dp, lay.tp, lay.pp))
