"""``seesaw-bench``: offline throughput of Seesaw plans against the best static plan and Hugging Face ``generate``.

    seesaw-bench --checkpoint model.gguf --cluster 3xcpu --dataset sharegpt --num-prompts 64 --output-len 64

Mirrors vLLM's offline throughput benchmark (``benchmarks/benchmark_throughput.py``): one fixed set of
requests, EOS ignored, every output exactly its trace length, wall time of the whole generate call, and
requests/s, total (prompt + output) tokens/s and output tokens/s (DESIGN.md section 6); each system's JSON
metrics also carry them under vLLM's ``--output-json`` names (``elapsed_time``, ``requests_per_second``,
``tokens_per_second``, ``output_tokens_per_second``, ...: :func:`seesaw.runtime.results.vllm_throughput_metrics`).
``--json FILE`` writes every figure, ``--json -`` prints it on stdout (the table then goes to stderr). In one
invocation:

- ``seesaw``: the planner's plan for exactly these requests (``SearchOptions()``);
- ``static``: the best static plan (``SearchOptions(static=True)``: one layout, no re-sharding);
- ``layout:PRE:DEC``: each ``--layout PREFILL:DECODE`` pair, planned with those layouts pinned;
- ``transformers``: ``AutoModelForCausalLM.generate`` in float32 on CPU, batches of ``--hf-batch-size`` in
  trace order (vLLM's ``run_hf`` batches in trace order too; ``--hf-sort`` batches by prompt length instead,
  which pads less), left padding, greedy. Output lengths: each
  batch runs ``min_new_tokens = max_new_tokens =`` its longest trace output (EOS can never end it early) and
  a per-row stopping criterion finishes row ``i`` after exactly its own trace length (later positions are
  padding, which the static batch still computes, as HF does). Only the ``generate`` calls are timed.

Model loading and worker start-up are not timed; each system first serves one short warm-up request.
Seesaw workers use ``--threads-per-rank`` torch threads each (``SEESAW_THREADS_PER_RANK``, default 1: on a
2-core machine one thread per worker); transformers gets the runtime's total (ranks x threads per rank),
capped at the machine's cores (``--hf-threads`` overrides). Bad input exits with status 2, a failed worker 1.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from seesaw.cli.common import run_app
from seesaw.ir.errors import InputError

from seesaw.experiments.bench_runs import (build_requests, eos_token_ids, memcpy_gb_per_s, parse_layout_pairs, run_seesaw,
                                   run_transformers, seesaw_entry)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def render(report: dict, console) -> None:
    """Print the comparison table and the notes under it."""
    from rich.table import Table  # noqa: PLC0415

    w = report["workload"]
    t = Table(title=f"{report['model']} on {report['cluster']}, {w['name']}: {w['requests']} requests, "
                    f"{w['prompt_tokens']:,} prompt + {w['output_tokens']:,} output tokens", header_style="bold")
    for col in ("system", "layouts P/D", "req/s", "tok/s", "out tok/s", "vs HF", "vs static", "transitions",
                "trans. s", "est. s"):
        t.add_column(col, justify="left" if col in ("system", "layouts P/D") else "right")
    for name, s in report["systems"].items():
        m = s["metrics"]
        tr = s.get("transitions")
        label = f"{name} (= {s['same_plan_as']})" if s.get("same_plan_as") else name
        t.add_row(label, s.get("layouts", "-"), f"{m['requests_per_s']:.3f}", f"{m['tokens_per_s']:,.1f}",
                  f"{m['output_tokens_per_s']:,.1f}", f"{s['vs_transformers']:.2f}x" if s.get("vs_transformers") else "-",
                  f"{s['vs_best_static']:.2f}x" if s.get("vs_best_static") else "-", str(tr["count"]) if tr else "-",
                  f"{tr['measured_s']:.2f}" if tr else "-", f"{tr['estimated_s']:.2f}" if tr else "-")
    console.print(t)
    console.print("  trans. s: measured re-sharding time (slowest replica); est. s: per transition, the largest "
                  "rank's weight bytes / measured memcpy bandwidth, summed")
    for note in report["notes"]:
        console.print(f"  {note}")


# -- command -----------------------------------------------------------------------------------------------
@app.command()
def bench(
    checkpoint: Annotated[Path, typer.Option(help="Hugging Face folder or .gguf file")],
    model_config: Annotated[Optional[str], typer.Option(help="config for planning: name, path or Hugging Face id in the local cache (default: the checkpoint's config.json)")] = None,
    cluster: Annotated[str, typer.Option(help="NxGPU or NxCPU (e.g. 3xcpu) or a cluster file")] = "3xcpu",
    dataset: Annotated[str, typer.Option(help="sharegpt or random")] = "sharegpt",
    num_prompts: Annotated[int, typer.Option(help="number of requests")] = 64,
    input_len: Annotated[Optional[int], typer.Option(help="random: prompt tokens (default 128)")] = None,
    output_len: Annotated[Optional[int], typer.Option(help="random: output tokens (default 128); sharegpt: cap on each output")] = None,
    seed: Annotated[int, typer.Option(help="dataset shuffle / random prompt seed")] = 0,
    layout: Annotated[Optional[list[str]], typer.Option(help="extra PREFILL:DECODE layout pair to run (repeatable)")] = None,
    hf_batch_size: Annotated[int, typer.Option(help="transformers generate batch size (8 was fastest for SmolLM2 on 2 CPU cores)")] = 8,
    hf_sort: Annotated[bool, typer.Option("--hf-sort", help="batch transformers requests by prompt length (less padding) instead of trace order")] = False,
    hf_threads: Annotated[Optional[int], typer.Option(help="transformers torch threads (default: ranks x threads per rank, capped at the cores)")] = None,
    threads_per_rank: Annotated[int, typer.Option(help="torch threads per Seesaw worker (SEESAW_THREADS_PER_RANK)")] = 1,
    hf: Annotated[bool, typer.Option(help="run the transformers baseline")] = True,
    warmup: Annotated[bool, typer.Option(help="serve one short request before each timed run")] = True,
    time_limit: Annotated[float, typer.Option(help="planner time limit, seconds")] = 60.0,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="write every figure (JSON) here; '-': on stdout (the table then goes to stderr)")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Measure throughput of the planned Seesaw plan, the best static plan, extra layouts and transformers."""
    import torch  # noqa: PLC0415
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    from seesaw.codegen import build_execution_plan  # noqa: PLC0415
    from seesaw.ir import load_model_config  # noqa: PLC0415
    from seesaw.planner.hardware import load_cluster  # noqa: PLC0415
    from seesaw.planner.optimize.solve import plan as make_plan  # noqa: PLC0415
    from seesaw.planner.optimize.space import SearchOptions  # noqa: PLC0415
    from seesaw.planner.workload import Workload  # noqa: PLC0415
    from seesaw.runtime.checkpoint import Checkpoint, check_fingerprint, prepare_checkpoint  # noqa: PLC0415
    from seesaw.runtime.results import check_writable, vllm_throughput_metrics  # noqa: PLC0415

    if dataset not in ("sharegpt", "random"):
        raise InputError("--dataset", f"'{dataset}' is not a dataset (expected sharegpt or random)")
    for opt, v in (("--num-prompts", num_prompts), ("--input-len", input_len), ("--output-len", output_len),
                   ("--hf-batch-size", hf_batch_size), ("--hf-threads", hf_threads),
                   ("--threads-per-rank", threads_per_rank)):
        if v is not None and v < 1:
            raise InputError(opt, f"must be >= 1, got {v}")
    pairs = parse_layout_pairs(layout, "pp3:tp3")
    to_stdout = json_path is not None and str(json_path) == "-"
    if json_path is not None and not to_stdout:
        check_writable(json_path, "--json")

    folder = prepare_checkpoint(checkpoint)
    ckpt = Checkpoint(folder)
    cfg = load_model_config(model_config if model_config is not None else folder)
    cl = load_cluster(cluster)
    if cl.gpu.name.lower() != "cpu":  # the runs happen here, on CPU ranks: results labelled 2xA10 would be wrong
        raise InputError("--cluster", f"{cluster} is a GPU cluster, but seesaw-bench runs every plan on this machine's "
                         f"CPU ranks; use --cluster {cl.num_gpus}xcpu (plans for GPUs: seesaw-plan)")
    eos_ids = eos_token_ids(ckpt.config)
    pad = ckpt.config.get("pad_token_id")
    pad_id = pad if isinstance(pad, int) else min(eos_ids) if eos_ids else 0
    requests, wl_name = build_requests(dataset, folder, ckpt.config, num_prompts, input_len, output_len, seed)
    wl = Workload(wl_name, [len(p) for p, _ in requests], [n for _, n in requests])

    # plans (the workload the planner sees is exactly these requests)
    runs: list[tuple[str, object]] = []
    for name, opts in [("seesaw", SearchOptions()), ("static", SearchOptions(static=True))] + \
            [(f"layout:{a}:{b}", SearchOptions(prefill=a, decode=b)) for a, b in pairs]:
        try:
            decision = make_plan(cfg, cl, wl, opts, time_limit_s=time_limit)
        except InputError as e:
            if not name.startswith("layout:") or not e.field.startswith(("--prefill", "--decode")):
                raise
            raise InputError("--layout", f"{name.removeprefix('layout:')}: {e.problem}") from None
        exec_plan = build_execution_plan(cfg, decision, cl, wl)
        check_fingerprint(ckpt, exec_plan.model.fingerprint)
        runs.append((name, exec_plan))

    world = runs[0][1].prefill.layout.dp * runs[0][1].prefill.layout.tp * runs[0][1].prefill.layout.pp
    cores = os.cpu_count() or 1
    hf_thr = hf_threads or max(1, min(world * threads_per_rank, cores))
    old_env = os.environ.get("SEESAW_THREADS_PER_RANK")
    os.environ["SEESAW_THREADS_PER_RANK"] = str(threads_per_rank)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_rank)
    bw = memcpy_gb_per_s()
    torch.set_num_threads(old_threads)
    console = Console(stderr=to_stdout)
    if not console.is_terminal:  # piped or captured: rich would wrap at 80 columns
        console = Console(width=140, stderr=to_stdout)
    systems: dict[str, dict] = {}
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), disable=not progress,
                      transient=True, console=Console(stderr=True)) as bar:
            def tracker(label: str):
                task = bar.add_task(label, total=len(requests), rate="")
                start, produced = time.perf_counter(), [0]

                def on_progress(phase: str, done: int, new_tokens: int) -> None:
                    produced[0] += new_tokens
                    rate = produced[0] / max(1e-9, time.perf_counter() - start)
                    bar.update(task, completed=done, rate=f"{phase} {rate:,.1f} output tok/s")
                return on_progress

            seen: dict[str, str] = {}
            for name, exec_plan in runs:
                key = json.dumps([exec_plan.prefill.model_dump(mode="json"), exec_plan.decode.model_dump(mode="json"),
                                  exec_plan.kv.model_dump(mode="json"), exec_plan.schedule.model_dump(mode="json")])
                if key in seen:  # the same plan twice (e.g. the planner chose the static plan): measure once
                    systems[name] = dict(systems[seen[key]], same_plan_as=seen[key])
                    continue
                seen[key] = name
                metrics, wrong, elem = run_seesaw(exec_plan, folder, requests, eos_ids, warmup,
                                                  tracker(name) if progress else None)
                systems[name] = seesaw_entry(exec_plan, ckpt, metrics, wrong, elem, bw)
            if hf:
                systems["transformers"] = {"layouts": f"{hf_thr} threads", "metrics": run_transformers(
                    folder, requests, hf_batch_size, hf_thr, pad_id, warmup,
                    tracker("transformers") if progress else None, hf_sort)}
    finally:
        if old_env is None:
            os.environ.pop("SEESAW_THREADS_PER_RANK", None)
        else:
            os.environ["SEESAW_THREADS_PER_RANK"] = old_env

    for s in systems.values():  # vLLM's names beside ours (an entry measured once is shared: same values)
        s["metrics"].update(vllm_throughput_metrics(s["metrics"]))
    hf_rate = systems["transformers"]["metrics"]["tokens_per_s"] if hf else None
    static_rate = systems["static"]["metrics"]["tokens_per_s"]
    for s in systems.values():
        rate = s["metrics"]["tokens_per_s"]
        s["vs_transformers"] = rate / hf_rate if hf_rate else None
        s["vs_best_static"] = rate / static_rate if static_rate else None
    notes = [
        f"threads: {world} Seesaw workers x {threads_per_rank} torch thread(s) (SEESAW_THREADS_PER_RANK); "
        + (f"transformers {hf_thr} (--hf-threads)" if hf_threads else
           f"transformers {hf_thr} = the same total, capped at this machine's {cores} cores"),
        f"host memcpy bandwidth (torch copy_ of 256 MiB, {threads_per_rank} thread(s)): {bw:.2f} GB/s",
        "transformers: float32, greedy, left padding, batches of "
        f"{hf_batch_size} {'sorted by prompt length' if hf_sort else 'in trace order'}; each row stops at its own trace length; only generate() is timed",
        "EOS ignored; output lengths fixed by the trace; model load and worker start-up not timed",
    ]
    bad = {k: s["wrong_output_lengths"] for k, s in systems.items() if s.get("wrong_output_lengths")}
    if bad:
        notes.append(f"WARNING: requests not finished at their trace length: {bad}")
    report = {"model": cfg.name if model_config else Path(checkpoint).name, "checkpoint": str(checkpoint),
              "cluster": cluster, "dataset": dataset, "seed": seed,
              "workload": {"name": wl_name, "requests": len(requests), "prompt_tokens": sum(wl.prompt_lens),
                           "output_tokens": sum(wl.output_lens)},
              "memcpy_gb_per_s": bw, "threads_per_rank": threads_per_rank, "hf_threads": hf_thr, "cores": cores,
              "systems": systems, "notes": notes}
    render(report, console)
    if to_stdout:
        print(json.dumps(report, indent=2))
    elif json_path is not None:
        try:
            json_path.write_text(json.dumps(report, indent=2) + "\n")
        except OSError as e:
            raise InputError("--json", f"cannot write '{json_path}': {e.strerror}") from None


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``seesaw-bench``); returns (and exits with) the status code."""
    code = run_app(app, list(sys.argv[1:] if argv is None else argv), "seesaw-bench")
    if argv is None:
        sys.exit(code)
    return code
