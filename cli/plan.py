"""``seesaw-plan``: from a model config, a cluster and a workload to an execution plan.

    seesaw-plan --model llama-2-70b --cluster 8xA10 --workload sharegpt -o plan.json
    seesaw-plan validate plan.json
    seesaw-plan schema -o plan.schema.json
    seesaw-plan emit plan.json --engine vllm

Bad input exits with status 2 and one line naming the problem (no traceback).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from seesaw.cli.common import print_table, run_app
from seesaw.ir.errors import InputError



app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
aux = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@app.command(epilog="Other commands: 'seesaw-plan validate PLAN.json' checks a plan file; "
                    "'seesaw-plan schema [-o FILE]' prints the plan's JSON Schema; "
                    "'seesaw-plan emit PLAN.json --engine ENGINE' prints its launch commands.")
def plan(
    model: Annotated[str, typer.Option("--model", "-m", help="config.json path, folder, shipped name (e.g. llama-2-70b), or model.onnx")],
    cluster: Annotated[str, typer.Option("--cluster", "-c", help="NxGPU (e.g. 8xA10) or a YAML/JSON cluster file")],
    workload: Annotated[str, typer.Option("--workload", "-w", help="sharegpt[:N], random:IN:OUT[:N], or a .jsonl/.csv trace")] = "sharegpt",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write the execution plan JSON here")] = None,
    prefill: Annotated[Optional[str], typer.Option(help="pin the prefill layout, e.g. pp8, tp4pp2, dp2tp4")] = None,
    decode: Annotated[Optional[str], typer.Option(help="pin the decode layout")] = None,
    static: Annotated[bool, typer.Option("--static", help="forbid re-sharding (one layout for both phases)")] = False,
    search: Annotated[str, typer.Option(help="cpsat or exhaustive")] = "cpsat",
    time_limit: Annotated[float, typer.Option("--time-limit", help="solver time limit, seconds")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="print the plan summary as JSON on stdout")] = False,
    simulate: Annotated[bool, typer.Option("--simulate/--no-simulate", help=(
        "rank the search's best candidates by request-level simulation (default), or keep the closed form"))] = True,
    engine: Annotated[str, typer.Option("--engine", help="serving engine of the static baseline (vllm, trtllm)")] = "vllm",
    emit: Annotated[Optional[str], typer.Option("--emit", help=(
        "print the launch commands after the table: vllm, sglang, trtllm (the static layout) or seesaw (seesaw-run)"))] = None,
    kv_cache_dtype: Annotated[str, typer.Option("--kv-cache-dtype", help=(
        "KV-cache dtype: auto (the compute dtype) or fp8 (1 byte per element, vLLM's --kv-cache-dtype fp8)"))] = "auto",
    frontend: Annotated[str, typer.Option("--frontend", help=(
        "config (read config.json) or torch-export (derive the model from its torch.export on the meta device)"))] = "config",
) -> None:
    """Plan prefill and decode layouts, buffers and thresholds; print the table; write the plan."""
    from seesaw.codegen import build_execution_plan
    from seesaw.ir import load_model_config
    from seesaw.ir.layout import Layout
    from seesaw.planner.hardware import load_cluster
    from seesaw.planner.optimize.solve import plan as make_plan
    from seesaw.planner.optimize.space import SearchOptions
    from seesaw.planner.workload import load_workload

    from seesaw.cli.report import render

    if emit is not None:
        from seesaw.codegen.emit import check_engine  # noqa: PLC0415

        check_engine(emit, "--emit")
    if search not in ("cpsat", "exhaustive"):
        raise InputError("--search", f"'{search}' is not a search (expected cpsat or exhaustive)")
    if not time_limit > 0:  # also rejects nan; with 0 the solver stops before finding any plan
        raise InputError("--time-limit", f"must be a positive number of seconds, got {time_limit:g}")
    from seesaw.ir.quant import parse_kv_cache_dtype  # noqa: PLC0415

    cfg = load_model_config(model, frontend).model_copy(update={"kv_cache_dtype": parse_kv_cache_dtype(kv_cache_dtype)})
    cl = load_cluster(cluster)
    wl, too_long = load_workload(workload).within_context(cfg.max_position_embeddings)
    if too_long:
        print(f"note: {too_long} of {wl.num_requests + too_long} requests have prompts of {cfg.max_position_embeddings:,}"
              f" tokens or more (the model's context); the runtime refuses them, so they are planned without",
              file=sys.stderr)
    options = SearchOptions(
        prefill=Layout.parse(prefill, field="--prefill") if prefill else None,
        decode=Layout.parse(decode, field="--decode") if decode else None,
        static=static,
    )
    with Console(stderr=True).status("planning", spinner="line") as status:  # drawn on a terminal only
        decision = make_plan(cfg, cl, wl, options, search=search, time_limit_s=time_limit, simulate=simulate,
                             engine=engine, on_step=status.update)
        status.update("writing the execution plan")
        exec_plan = build_execution_plan(cfg, decision, cl, wl)
    if output is not None:
        try:
            output.write_text(exec_plan.model_dump_json(indent=1))
        except OSError as e:
            raise InputError("--output", f"cannot write '{output}': {e.strerror}") from None
    commands = None
    if emit is not None:
        from seesaw.codegen.emit import launch_commands  # noqa: PLC0415

        commands = launch_commands(exec_plan, emit, plan_path=str(output) if output is not None else None)
    console = Console(stderr=as_json)
    if as_json:
        summary = exec_plan.summary.model_dump(mode="json")
        if commands is not None:
            summary["launch_commands"] = commands
        print(json.dumps(summary, indent=2))
    title = f"{cfg.name} on {cl.num_gpus}x{cl.gpu.name} ({cl.gpu_link}), workload {wl.name}: {wl.num_requests} requests"
    from seesaw.planner.cost.model import CostModel  # noqa: PLC0415 (only for the KV unit)
    kv_tok = CostModel(cfg, cl, wl).kv_bytes_per_token
    render(decision, title, console, kv_tok, "CPU rank" if cl.gpu.name.lower() == "cpu" else "GPU")
    if output is not None:
        console.print(f"wrote {output}")
    if commands is not None and not as_json:
        print("\n".join(commands))


@aux.command()
def validate(path: Annotated[Path, typer.Argument(help="plan.json to check")]) -> None:
    """Check a plan file against the schema and for internal consistency."""
    from seesaw.codegen import validate_plan_file

    p = validate_plan_file(path)
    print(f"{path}: valid plan (schema {p.schema_version}, prefill {p.summary.prefill}, decode {p.summary.decode})")


@aux.command(name="emit")
def emit_commands(
    path: Annotated[Path, typer.Argument(help="plan.json written by seesaw-plan -o")],
    engine: Annotated[str, typer.Option("--engine", help="vllm, sglang, trtllm or seesaw")] = "vllm",
) -> None:
    """Print the commands that launch a plan's static layout on an engine, or the plan itself on seesaw-run."""
    from seesaw.codegen import validate_plan_file  # noqa: PLC0415
    from seesaw.codegen.emit import check_engine, launch_commands  # noqa: PLC0415

    check_engine(engine)
    print("\n".join(launch_commands(validate_plan_file(path), engine, plan_path=str(path))))


@aux.command()
def schema(output: Annotated[Optional[Path], typer.Option("--output", "-o")] = None) -> None:
    """Print (or write) the execution plan's JSON Schema."""
    from seesaw.codegen import plan_json_schema

    text = json.dumps(plan_json_schema(), indent=2)
    if output:
        output.write_text(text + "\n")
    else:
        print(text)


@aux.command(name="list")
def list_catalog(what: Annotated[str, typer.Argument(help="gpus or models")],
                 as_json: Annotated[bool, typer.Option("--json", help="every field and source, as JSON")] = False) -> None:
    """The GPU catalog (each entry's figures; --json adds their sources) or the shipped model configs."""
    from rich.table import Table  # noqa: PLC0415

    from seesaw.ir import list_examples, load_model_config  # noqa: PLC0415
    from seesaw.planner.hardware.catalog import load_catalog  # noqa: PLC0415

    if what == "gpus":
        gpus = load_catalog()
        if as_json:
            print(json.dumps({k: g.model_dump(mode="json") for k, g in gpus.items()}, indent=2))
            return
        t = Table(title="GPU catalog (planner/hardware/catalog.yaml; sources: --json)")
        for col in ("name", "memory GB", "dense TFLOP/s", "FP8 TFLOP/s", "memory GB/s", "link", "GPU link GB/s",
                    "host link GB/s"):
            t.add_column(col, justify="left" if col in ("name", "link") else "right")
        for name, g in gpus.items():
            t.add_row(name, f"{g.memory_gb:g}", f"{g.bf16_tflops:g}", f"{g.fp8_tflops:g}" if g.fp8_tflops else "-",
                      f"{g.memory_gb_per_s:g}", g.link,
                      f"{g.gpu_link_gb_per_s:g}", f"{g.host_link_gb_per_s:g}")
    elif what == "models":
        cfgs = [load_model_config(n) for n in list_examples()]
        if as_json:
            print(json.dumps({c.name: c.fingerprint() for c in cfgs}, indent=2))
            return
        from seesaw.ir.graph import build_graph  # noqa: PLC0415

        t = Table(title="shipped model configs (examples/models/; --model NAME)")
        for col in ("name", "architecture", "layers", "hidden", "heads / KV heads", "parameters", "context"):
            t.add_column(col, justify="left" if col in ("name", "architecture") else "right")
        for c in cfgs:
            t.add_row(c.name, c.architecture, str(c.num_hidden_layers), str(c.hidden_size),
                      f"{c.num_attention_heads} / {c.num_key_value_heads}",
                      f"{build_graph(c).num_parameters() / 1e9:.2f} B", f"{c.max_position_embeddings:,}")
    else:
        raise InputError("list", f"'{what}' is not a list (expected gpus or models)")
    print_table(t)


def _run(typer_app: typer.Typer, args: list[str]) -> int:
    return run_app(typer_app, args, "seesaw-plan")


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the status code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("validate", "schema", "list", "emit"):
        code = _run(aux, args)
    else:
        code = _run(app, args)
    if argv is None:
        sys.exit(code)
    return code
