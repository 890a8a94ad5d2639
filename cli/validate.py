"""``seesaw-validate``: the planner's predictions against the runtime's measurements on this machine.

    seesaw-validate --checkpoint model.gguf --cluster 2xcpu --num-prompts 32 --output-len 32 --out docs/validation/smollm2

For every static layout and every re-sharding pair of the model on the cluster's ranks (or the
``--layout PRE:DEC`` pairs given), it plans the request set with those layouts pinned, runs the plan with
the runtime (EOS ignored, every output exactly its request's length, one warm-up request first), and
compares:

- per phase, the time the runtime charged to prefill and to decode steps with the cost model's replay of
  the very same steps (``planner/validation/predict.py``): the step-time error;
- whole-run throughput with the planner's prediction for the plan: the throughput error;
- over all runs: the mean absolute percentage errors, Kendall's tau between predicted and measured
  throughput, and how far the planner's own choice is from the measured best.

It writes ``report.md``, ``results.json``, ``throughput.png`` and ``step_times.png`` under ``--out``;
``--json`` also prints the table's figures as JSON on stdout (the table then goes to stderr). The
planner's view of the hardware is the cluster's device profile (``cpu`` in the catalog, or a cluster file
with ``gpu: profile.yaml`` from ``seesaw-calibrate``). Bad input exits 2, a failed worker 1.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from seesaw.cli.common import run_app
from seesaw.ir.errors import InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command()
def validate(
    checkpoint: Annotated[Path, typer.Option(help="Hugging Face folder or .gguf file")],
    cluster: Annotated[str, typer.Option(help="NxCPU / NxGPU or a cluster file (its gpu: may be a calibrated profile)")] = "2xcpu",
    dataset: Annotated[str, typer.Option(help="sharegpt or random")] = "sharegpt",
    num_prompts: Annotated[int, typer.Option(help="number of requests")] = 32,
    input_len: Annotated[Optional[int], typer.Option(help="random: prompt tokens (default 128)")] = None,
    output_len: Annotated[Optional[int], typer.Option(help="random: output tokens; sharegpt: cap on each output")] = 32,
    seed: Annotated[int, typer.Option(help="dataset shuffle / random prompt seed")] = 0,
    layout: Annotated[Optional[list[str]], typer.Option(help="PREFILL:DECODE pair to run instead of all (repeatable)")] = None,
    out: Annotated[Path, typer.Option(help="folder for report.md, results.json and the plots")] = Path("validation"),
    title: Annotated[Optional[str], typer.Option(help="report title (default: checkpoint and cluster)")] = None,
    time_limit: Annotated[float, typer.Option(help="planner time limit per plan, seconds")] = 30.0,
    repeats: Annotated[int, typer.Option(help="runs per layout, interleaved over the layouts; figures are means")] = 3,
    replay: Annotated[Optional[Path], typer.Option(help="results.json of an earlier run with the same options: "
                                                   "compare its measurements with the current model, run nothing")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the table's figures (results.json without the raw "
                                          "step records) as JSON on stdout; the table goes to stderr")] = False,
) -> None:
    """Run the runtime over layouts and compare with the cost model's predictions."""
    from rich.console import Console  # noqa: PLC0415
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    from seesaw.experiments.bench_runs import build_requests, eos_token_ids, parse_layout_pairs  # noqa: PLC0415
    from seesaw.cli.json_output import json_text  # noqa: PLC0415
    from seesaw.cli.validate_report import render_table, results_data, write_outputs  # noqa: PLC0415
    from seesaw.experiments.validation_runs import layout_pairs, machine_drift, plan_runs, run_plan  # noqa: PLC0415
    from seesaw.ir import load_model_config  # noqa: PLC0415
    from seesaw.planner.cost.model import CostModel  # noqa: PLC0415
    from seesaw.planner.hardware import load_cluster  # noqa: PLC0415
    from seesaw.planner.validation.compare import compare_run, merge_repeats, summarize  # noqa: PLC0415
    from seesaw.planner.validation.predict import PhaseShape  # noqa: PLC0415
    from seesaw.planner.workload import Workload  # noqa: PLC0415
    from seesaw.runtime.checkpoint import Checkpoint, prepare_checkpoint  # noqa: PLC0415

    if dataset not in ("sharegpt", "random"):
        raise InputError("--dataset", f"'{dataset}' is not a dataset (expected sharegpt or random)")
    for opt, v in (("--num-prompts", num_prompts), ("--input-len", input_len), ("--output-len", output_len),
                   ("--repeats", repeats)):
        if v is not None and v < 1:
            raise InputError(opt, f"must be >= 1, got {v}")
    pairs = parse_layout_pairs(layout, "tp2:pp2")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError("--out", f"cannot create '{out}': {e.strerror}") from None

    folder = prepare_checkpoint(checkpoint)
    ckpt = Checkpoint(folder)
    cfg = load_model_config(folder)
    cl = load_cluster(cluster)
    eos_ids = eos_token_ids(ckpt.config)
    requests, wl_name = build_requests(dataset, folder, ckpt.config, num_prompts, input_len, output_len, seed)
    wl = Workload(wl_name, [len(p) for p, _ in requests], [n for _, n in requests])
    pairs = pairs or layout_pairs(cfg, cl, wl)
    for pre, dec in pairs:
        if pre.world_size != cl.num_gpus or dec.world_size != cl.num_gpus:
            raise InputError("--layout", f"{pre}:{dec} does not use the cluster's {cl.num_gpus} ranks")
    runs, notes = plan_runs(cfg, cl, wl, pairs, time_limit, ckpt)
    cost = CostModel(cfg, cl, wl)
    drift = None
    if replay is None:
        drift, drift_note = machine_drift(cfg, cl.gpu)
        notes.insert(0, drift_note)

    console = Console(emoji=False, stderr=as_json)
    if not console.is_terminal:  # piped or captured: lines up to 200 columns
        console = Console(emoji=False, width=200, stderr=as_json)
    results, raw = [], []
    saved = _load_replay(replay) if replay is not None else None
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), disable=not progress, transient=True, console=Console(stderr=True)) as bar:
        per_run: dict[str, list] = {run.label: [] for run in runs}
        rounds = 1 if saved is not None else repeats
        for rnd in range(rounds):
            for i, run in enumerate(runs):
                task = bar.add_task(f"[round {rnd + 1}/{rounds}, {i + 1}/{len(runs)}] {run.label}", total=len(requests))

                def on_progress(phase: str, done: int, new: int, task=task) -> None:
                    bar.update(task, completed=done)
                if saved is not None:
                    if run.label not in saved:
                        raise InputError("--replay", f"'{replay}' has no run '{run.label}' (it has {', '.join(saved)})")
                    measured = saved[run.label]
                else:
                    measured = [run_plan(run.exec_plan, folder, requests, eos_ids, on_progress if progress else None)]
                bar.remove_task(task)
                phases = {ph: PhaseShape.from_stage_layers(getattr(run.decision, ph).layout,
                                                           getattr(run.decision, ph).stage_layers)
                          for ph in ("prefill", "decode")}
                for metrics, steps in measured:
                    per_run[run.label].append(compare_run(run.label, cost, phases, metrics, steps,
                                                          run.decision.prediction.tokens_per_s, run.chosen))
                    raw.append({"label": run.label, "round": len(per_run[run.label]), "chosen": run.chosen,
                                "metrics": metrics, "steps": steps,
                                "plan": json.loads(run.exec_plan.model_dump_json())["schedule"],
                                "predicted": {"tokens_per_s": run.decision.prediction.tokens_per_s,
                                              **vars(run.decision.prediction.breakdown)}})
        results = [merge_repeats(per_run[run.label]) for run in runs]
    summary = summarize(results)
    meta = {"title": title or f"{Path(checkpoint).name} on {cluster}", "checkpoint": str(checkpoint),
            "model": cfg.name, "cluster": cluster, "device": cl.gpu.model_dump(mode="json"),
            "workload": {"name": wl_name, "requests": len(requests), "prompt_tokens": wl.prompt_tokens,
                         "output_tokens": wl.output_tokens},
            "threads_per_rank": int(os.environ.get("SEESAW_THREADS_PER_RANK", "1")), "cores": os.cpu_count(),
            "repeats": len(next(iter(per_run.values()))) if per_run else 0,
            "wall_s": time.perf_counter() - started, "notes": notes, "drift": drift,
            "command": "seesaw-validate " + shlex.join(sys.argv[1:])}
    render_table(results, summary, meta, console)
    write_outputs(out, results, summary, meta, raw)
    if as_json:
        print(json_text(results_data(results, summary, meta)))


def _load_replay(path: Path) -> dict[str, dict]:
    """Runs of an earlier ``results.json`` by label. Raises InputError when unreadable or not one."""
    try:
        data = json.loads(path.read_text())
        out: dict[str, list] = {}
        for r in data["raw"]:
            out.setdefault(r["label"], []).append((r["metrics"], r["steps"]))
        return out
    except OSError as e:
        raise InputError("--replay", f"cannot read '{path}': {e.strerror}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise InputError("--replay", f"'{path}' is not a results.json written by seesaw-validate ({e})") from None


def main(argv: list[str] | None = None) -> int:
    """Console entry point (``seesaw-validate``); returns (and exits with) the status code."""
    code = run_app(app, list(sys.argv[1:] if argv is None else argv), "seesaw-validate")
    if argv is None:
        sys.exit(code)
    return code
