"""Per-micro-batch fixed cost of the runtime, for ``seesaw-calibrate``'s ``step_overhead_us`` (no checkpoint).

What a micro-batch costs outside the IR ops that the cost model already charges:

- the scheduler's round trip: a ``("forward", [ForwardBatch])`` command put on a rank's command queue and the
  sampler's ``("tokens", rank, [(seq_ids, tokens, None)])`` reply read from the results queue, through
  ``torch.multiprocessing`` spawn-context queues between this process and one spawned process, exactly as
  :class:`seesaw.runtime.transport.LocalWorkers` talks to a worker (pickling, the queues' feeder threads,
  pipe writes and the two process wake-ups);
- the worker's own per-micro-batch set-up, run by the spawned process before it replies: the prologue of
  :meth:`seesaw.runtime.program.PhaseProgram.forward` (token ids, positions, RoPE cos/sin, last-token
  indices, the paged cache's ``slot_table`` over the batch's block tables, new-token slots and decode
  contexts) and the program's ``sample`` instruction (:func:`seesaw.runtime.sampling.sample`, greedy) over
  ``[B, vocab]`` logits of the model's vocabulary in the runtime dtype (float32 on CPU), under
  ``torch.inference_mode`` as ``Worker.forward`` runs it. The program is the real :class:`PhaseProgram`
  with a one-instruction plan (``sample``); a preallocated logits tensor stands in for the lm head's output.

Batches of 1, 8 and 32 sequences, decode (one token each, contexts of 512 tokens, pages reserved for a
768-token budget) and prefill (prompts of 256 tokens, paged cache), each timed as the median of single
round trips after warm-up; the spawned process also reports the median of its set-up part.
"""
from __future__ import annotations

import os
import queue
import statistics
import time
from dataclasses import dataclass

import torch
import torch.multiprocessing as mp

from seesaw.ir import ModelConfig

BATCH_SEQS = (1, 8, 32)
PROMPT_TOKENS = 256
DECODE_CONTEXT = 512
DECODE_BUDGET = 768  # prompt + max_tokens: the pages a sequence holds while it decodes
PAGE_SIZE = 16


@dataclass(frozen=True)
class StepTiming:
    """One timed micro-batch (fields as :class:`seesaw.planner.calibration.fit.StepSample`): ``mode`` prefill |
    decode, ``seqs`` sequences, ``tokens`` query tokens, median round trip ``seconds`` and the median of the
    worker-side set-up part ``setup_s``."""

    mode: str
    seqs: int
    tokens: int
    seconds: float
    setup_s: float
    label: str = ""


def _batch(mode: str, seqs: int, prompt: int, context: int, budget: int):
    """A ForwardBatch as the scheduler builds it: contiguous page runs (what the allocator prefers), greedy
    sampling, vocabulary-range token ids."""
    from seesaw.schedule.batch import ForwardBatch, SamplingParams

    per_seq = -(-(budget if mode == "decode" else prompt) // PAGE_SIZE)
    tables = [list(range(i * per_seq, (i + 1) * per_seq)) for i in range(seqs)]
    if mode == "decode":
        tokens, lens, index = [[(7 * i) % 100 + 1] for i in range(seqs)], [context] * seqs, [context - prompt] * seqs
    else:
        tokens = [[(7 * i + j) % 100 + 1 for j in range(prompt)] for i in range(seqs)]
        lens, index = [prompt] * seqs, [0] * seqs
    return ForwardBatch(mode=mode, seq_ids=list(range(seqs)), tokens=tokens, context_lens=lens, block_tables=tables,
                        page_size=PAGE_SIZE, sampling=[SamplingParams() for _ in range(seqs)], sample_index=index)


def _serve(cfg: ModelConfig, device: str, max_seqs: int, commands, results) -> None:
    """The spawned process: serve ``forward`` commands like ``worker_main`` (set-up only), then report the
    set-up times on ``("setup_times",)``."""
    from seesaw.codegen.plan import Instruction, RankPlan
    from seesaw.runtime import layers
    from seesaw.runtime.microbench import runtime_dtype
    from seesaw.runtime.program import PhaseProgram, RankContext

    torch.set_num_threads(max(1, int(os.environ.get("SEESAW_THREADS_PER_RANK", "1"))))
    try:
        dev = torch.device(device)
        dtype = runtime_dtype(dev)
        plan = RankPlan(rank=0, dp_rank=0, pp_rank=0, tp_rank=0, layers=(0, cfg.num_hidden_layers),
                        weight_shards={}, program=[Instruction(op="sample", name="sample")])
        ctx = RankContext(cfg, layers.Rope(cfg.head_dim, cfg.rope_theta), {}, {}, 0, None, None, dev, dtype)
        program = PhaseProgram(plan, ctx)
        logits = torch.randn(max_seqs, cfg.vocab_size, device=dev).to(dtype)
        program.steps.insert(0, lambda r, b: setattr(r, "logits", logits[:len(b.seq_ids)]))  # the lm head's output
        results.put(("ready", 0, {}))
        setup: list[float] = []
        while True:
            cmd = commands.get()
            if cmd[0] == "stop":
                break
            if cmd[0] == "setup_times":
                results.put(("setup_times", 0, setup))
                setup = []
                continue
            t0 = time.perf_counter()
            out = []
            with torch.inference_mode():
                for b in cmd[1]:
                    tokens, _ = program.forward(b)
                    out.append((b.seq_ids, tokens, None))
            program.flush()
            setup.append(time.perf_counter() - t0)
            results.put(("tokens", 0, out))
    except KeyboardInterrupt:
        pass
    except BaseException as e:  # reported to the calibrating process
        results.put(("error", 0, f"{type(e).__name__}: {e}"))
        raise SystemExit(1)


def _get(results, proc, timeout_s: float = 120.0):
    """Next reply (as ``LocalWorkers.get``); RuntimeError when the process failed, died or is silent."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            msg = results.get(timeout=0.2)
        except queue.Empty:
            if proc.exitcode is not None:
                raise RuntimeError(f"step-overhead process died (exit code {proc.exitcode})") from None
            if time.monotonic() > deadline:
                raise RuntimeError(f"no answer from the step-overhead process within {timeout_s:g} s") from None
            continue
        if msg[0] == "error":
            raise RuntimeError(f"step-overhead process failed: {msg[2]}")
        return msg


def measure_step(cfg: ModelConfig, device_type: str = "cpu", quick: bool = False,
                 batch_seqs: tuple[int, ...] = BATCH_SEQS) -> list[StepTiming]:
    """Round trips of one micro-batch through spawn-context queues to one spawned process, for decode and
    prefill batches of ``batch_seqs`` sequences (median of 30 single round trips, 100 unless ``quick``,
    after 5 warm-up ones). Prompt and context lengths are capped by the model's maximum position."""
    prompt = max(1, min(PROMPT_TOKENS, cfg.max_position_embeddings // 2))
    context = max(prompt + 1, min(DECODE_CONTEXT, cfg.max_position_embeddings))
    budget = max(context, min(DECODE_BUDGET, cfg.max_position_embeddings))
    reps, warmup = (30 if quick else 100), 5
    ctx = mp.get_context("spawn")
    results, commands = ctx.Queue(), ctx.Queue()
    device = "cuda" if device_type == "cuda" else "cpu"
    proc = ctx.Process(target=_serve, args=(cfg, device, max(batch_seqs), commands, results), daemon=True)
    proc.start()
    out = []
    try:
        _get(results, proc)  # ready
        for mode in ("decode", "prefill"):
            for seqs in batch_seqs:
                cmd = ("forward", [_batch(mode, seqs, prompt, context, budget)])
                times = []
                for i in range(warmup + reps):
                    t0 = time.perf_counter()
                    commands.put(cmd)
                    reply = _get(results, proc)
                    times.append(time.perf_counter() - t0)
                    if reply[0] != "tokens" or len(reply[2][0][1]) != seqs:
                        raise RuntimeError(f"unexpected reply {reply[0]!r} from the step-overhead process")
                commands.put(("setup_times",))
                setup = _get(results, proc)[2][warmup:]
                length = context if mode == "decode" else prompt
                out.append(StepTiming(mode, seqs, seqs * (1 if mode == "decode" else prompt),
                                      statistics.median(times[warmup:]), statistics.median(setup),
                                      f"{mode} {seqs}x{length}"))
        commands.put(("stop",))
        proc.join(10)
    finally:
        if proc.is_alive():
            proc.terminate()
            proc.join(2)
        if proc.is_alive():
            proc.kill()
            proc.join(1)
    return out
