"""``seesaw-run``: execute a plan on a checkpoint for a file of prompts.

    seesaw-run plan.json --checkpoint PATH --prompts prompts.jsonl --output out.jsonl --metrics metrics.json

``PATH`` is a Hugging Face folder (config.json + safetensors) or a ``.gguf`` file (dequantized once into a
cached folder). One worker process per rank (gloo on CPU, NCCL on GPUs). Bad input exits with status 2
before any work starts; a failed worker exits with status 1 naming its rank.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from seesaw.cli.common import CommandError, run_app
from seesaw.ir.errors import InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _tokenize(lines, folder: Path, chat: bool):
    from transformers import AutoTokenizer  # noqa: PLC0415 (heavy import, only when running)

    needs_text = chat or any(ln.prompt is not None for ln in lines)
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 (any loader failure is a missing/broken tokenizer)
        if needs_text:
            raise InputError("--checkpoint", f"no usable tokenizer in '{folder}': {type(e).__name__}") from None
        tok = None
    ids = []
    for ln in lines:
        if ln.prompt_token_ids is not None:
            ids.append(list(ln.prompt_token_ids))
        elif chat:
            text = tok.apply_chat_template([{"role": "user", "content": ln.prompt}], add_generation_prompt=True,
                                           tokenize=False)
            ids.append(tok(text, add_special_tokens=False)["input_ids"])
        else:
            ids.append(tok(ln.prompt)["input_ids"])
    return tok, ids


def _eos_ids(config: dict, tok) -> set[int]:
    eos = config.get("eos_token_id")
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tok is not None and tok.eos_token_id is not None:
        ids.add(tok.eos_token_id)
    return ids


def _status(show: bool, what: str):
    """A spinner with ``what`` on stderr while a silent step runs (drawn on a terminal only)."""
    from contextlib import nullcontext  # noqa: PLC0415

    from rich.console import Console  # noqa: PLC0415

    return Console(stderr=True).status(what, spinner="line") if show else nullcontext()


def _torchrun_env() -> tuple[int, int, int] | None:
    """``(rank, world, local_rank)`` when started by torchrun (its environment variables), else None."""
    if all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")):
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    return None


def _prepare(plan: Path, prompts: Path, checkpoint: Path, chat: bool, max_tokens: int):
    """Validate every input before any work: plan, prompts, checkpoint fingerprint, tokenization."""
    from seesaw.codegen.validate import validate_plan_file  # noqa: PLC0415
    from seesaw.runtime.checkpoint import Checkpoint, check_fingerprint, prepare_checkpoint  # noqa: PLC0415
    from seesaw.runtime.requests import check_token_ids, read_prompts  # noqa: PLC0415
    from seesaw.schedule.replica import Sequence  # noqa: PLC0415

    exec_plan = validate_plan_file(plan)
    lines = read_prompts(prompts, max_tokens)
    folder = prepare_checkpoint(checkpoint)
    ckpt = Checkpoint(folder)
    check_fingerprint(ckpt, exec_plan.model.fingerprint)
    check_token_ids(lines, int(exec_plan.model.fingerprint["vocab_size"]), prompts)
    tok, ids = _tokenize(lines, folder, chat)
    limit = int(ckpt.config.get("max_position_embeddings", 1 << 30))
    seqs = []
    for ln, prompt_ids in zip(lines, ids):
        seq = Sequence(ln.index, prompt_ids, max(1, min(ln.max_tokens, limit - len(prompt_ids))), ln.sampling,
                       ln.ignore_eos)
        if len(prompt_ids) >= limit:
            seq.finish_reason, seq.error = "error", f"prompt ({len(prompt_ids)} tokens) exceeds the context limit ({limit})"
        seqs.append(seq)
    return exec_plan, folder, ckpt, tok, seqs


@app.command()
def run(
    plan: Annotated[Path, typer.Argument(help="execution plan from seesaw-plan")],
    checkpoint: Annotated[Path, typer.Option(help="Hugging Face folder or .gguf file")],
    prompts: Annotated[Path, typer.Option(help="JSONL: {prompt | prompt_token_ids, max_tokens?, temperature?, top_p?, seed?, ignore_eos?}")],
    output: Annotated[Path, typer.Option(help="JSONL results, in input order")],
    metrics: Annotated[Optional[Path], typer.Option(help="write run metrics (JSON) here")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="apply the tokenizer's chat template")] = False,
    max_tokens: Annotated[int, typer.Option(help="default max_tokens per request")] = 256,
    device: Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when the plan is for GPUs and one is present)")] = None,
    gpu_kv_tokens: Annotated[Optional[int], typer.Option(help="override the plan's device KV cache tokens per replica")] = None,
    host_buffer_tokens: Annotated[Optional[int], typer.Option(help="override the plan's host KV buffer tokens per replica")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    resume: Annotated[bool, typer.Option("--resume", help="keep the requests --output already holds, run the rest")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the final metrics (as --metrics writes them) as JSON on stdout")] = False,
) -> None:
    """Generate for every prompt under the plan's layouts (re-sharding between prefill and decode)."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    from seesaw.runtime.engine import Engine, WorkerError  # noqa: PLC0415
    from seesaw.runtime.results import ResultsFile, check_writable, vllm_throughput_metrics  # noqa: PLC0415

    if device not in (None, "cpu", "cuda"):
        raise InputError("--device", f"must be cpu or cuda, got '{device}'")
    check_writable(output, "--output")
    if metrics is not None:
        check_writable(metrics, "--metrics")
    distributed = _torchrun_env()
    if distributed is not None:
        from seesaw.runtime.launch import torchrun_start  # noqa: PLC0415

        engine_kw = dict(device=device, gpu_kv_tokens=gpu_kv_tokens, host_buffer_tokens=host_buffer_tokens)
        prepared = torchrun_start(distributed, lambda: _prepare(plan, prompts, checkpoint, chat, max_tokens), plan,
                                  checkpoint, engine_kw)
        if prepared is None:  # ranks other than 0 served their share and are done
            return
        exec_plan, folder, ckpt, tok, seqs, engine_factory = prepared
    else:
        with _status(progress, "checking the plan, the prompts and the checkpoint; tokenizing"):
            exec_plan, folder, ckpt, tok, seqs = _prepare(plan, prompts, checkpoint, chat, max_tokens)
        engine_factory = lambda: Engine(exec_plan, str(folder), device=device, gpu_kv_tokens=gpu_kv_tokens,  # noqa: E731
                                        host_buffer_tokens=host_buffer_tokens)
    results = ResultsFile(output, tok)
    pending = results.resume(seqs) if resume else list(seqs)
    results.open(keep=resume)
    todo = []
    for s in pending:
        if s.finish_reason is None:
            todo.append(s)
        else:  # refused before running (a prompt beyond the context limit)
            results.add(s)
    m = None
    try:
        ranks = exec_plan.prefill.layout.dp * exec_plan.prefill.layout.tp * exec_plan.prefill.layout.pp
        with _status(progress, f"starting {ranks} worker(s); each loads its shards of both layouts"):
            engine = engine_factory()
        with engine, \
                Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                         TextColumn("{task.fields[phase]}"), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                         disable=not progress, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("requests", total=len(todo), phase="", rate="")
            start = time.perf_counter()
            produced = [0]

            def on_progress(phase: str, done: int, new_tokens: int) -> None:
                produced[0] += new_tokens
                rate = produced[0] / max(1e-9, time.perf_counter() - start)
                bar.update(task, completed=done, phase=phase, rate=f"{rate:,.1f} output tok/s")

            _, m = engine.generate(todo, _eos_ids(ckpt.config, tok), on_progress, results.add)
    except BaseException as e:
        results.close()
        done = sorted(results.records)
        if metrics is not None:
            metrics.write_text(json.dumps({"requests": len(seqs), "completed": len(done), "completed_indices": done,
                                           "stopped": type(e).__name__, "reason": str(e)}, indent=2) + "\n")
        kept = (f"{len(done)} of {len(seqs)} requests completed and kept in {output}"
                + (f", metrics in {metrics}" if metrics is not None else "") + "; rerun with --resume to finish")
        if isinstance(e, WorkerError):
            raise CommandError(f"{e}; {kept}") from None
        if isinstance(e, KeyboardInterrupt):
            print(f"seesaw-run: interrupted: {kept}", file=sys.stderr)
        raise
    results.finish()
    report = m.as_dict()
    report.update(vllm_throughput_metrics(report))  # counts this invocation's timed requests, as ours do
    report["requests"] = len(seqs)
    report["resumed"] = len(seqs) - len(pending)
    report["errors"] = sum(1 for r in results.records.values() if r["finish_reason"] == "error")
    if metrics is not None:
        metrics.write_text(json.dumps(report, indent=2) + "\n")
    if as_json:
        print(json.dumps(report, indent=2))
    print(f"{len(seqs)} requests ({report['errors']} errors, {report['resumed']} kept from an earlier run), "
          f"{m.output_tokens} output tokens in {m.wall_s:.2f} s: "
          f"{report['tokens_per_s']:.1f} tok/s, {report['output_tokens_per_s']:.1f} output tok/s, "
          f"{m.transitions} transitions ({m.transition_s:.2f} s)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    code = run_app(app, list(sys.argv[1:] if argv is None else argv), "seesaw-run")
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
