"""``seesaw-whatif``: plan over clusters and swept hardware / workload fields; table, CSV and plots.

    seesaw-whatif --model llama-2-70b --cluster 8xA10 --cluster 8xL4 \
        --sweep gpu_link_gb_per_s=0.1x:50x --out whatif/ --price-per-gpu-hour 8xA10=1.2

Bad input exits with status 2 and one line naming the problem (no traceback).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from seesaw.cli.common import print_table, run_app
from seesaw.ir.errors import InputError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _prices(items: list[str], names: list[str]) -> dict[str, float]:
    out = {}
    for it in items:
        name, eq, usd = it.partition("=")
        if not eq or name not in names:
            raise InputError("--price-per-gpu-hour", f"'{it}' must be CLUSTER=USD with CLUSTER one of {', '.join(names)}")
        try:
            v = float(usd)
        except ValueError:
            v = -1.0
        if not (v > 0 and math.isfinite(v)):
            raise InputError("--price-per-gpu-hour", f"'{usd}' is not a positive price in USD per GPU-hour")
        out[name] = v
    return out


def _f(v: float, fmt: str = ",.0f") -> str:
    return "-" if isinstance(v, float) and math.isnan(v) else format(v, fmt)


@app.command()
def whatif(
    model: Annotated[str, typer.Option("--model", "-m", help="config.json path, folder, or shipped name")],
    cluster: Annotated[list[str], typer.Option("--cluster", "-c", help="NxGPU or a cluster file; repeatable")],
    workload: Annotated[str, typer.Option("--workload", "-w", help="sharegpt[:N], random:IN:OUT[:N], or a trace")] = "sharegpt",
    sweep: Annotated[Optional[list[str]], typer.Option("--sweep", help="FIELD=SPEC (0.1x:50x, A:B, a,b,c); repeatable")] = None,
    points: Annotated[int, typer.Option("--points", help="points per range sweep")] = 7,
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder for results.csv and PNGs")] = Path("whatif"),
    price: Annotated[Optional[list[str]], typer.Option("--price-per-gpu-hour", help="CLUSTER=USD; repeatable")] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="solver time limit per plan, seconds")] = 10.0,
) -> None:
    """Plan every cluster at every sweep point; print a table; write results.csv and plots."""
    from seesaw.ir import load_model_config
    from seesaw.planner.hardware import load_cluster
    from seesaw.planner.whatif.plots import write_plots
    from seesaw.planner.whatif.run import BASE, point_list, run_whatif, write_csv
    from seesaw.planner.whatif.sweep import parse_sweep
    from seesaw.planner.workload import load_workload

    if not time_limit > 0:
        raise InputError("--time-limit", f"must be a positive number of seconds, got {time_limit:g}")
    cfg = load_model_config(model)
    clusters = [(c, load_cluster(c)) for c in cluster]
    wl = load_workload(workload)
    sweeps = [parse_sweep(s, points) for s in (sweep or [])]
    prices = _prices(price or [], [n for n, _ in clusters])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError("--out", f"cannot create '{out}': {e.strerror}") from None
    total = len(point_list(clusters, wl, sweeps))  # validates every point before planning
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("planning", total=total)
        rows = run_whatif(cfg, clusters, wl, sweeps, prices, time_limit,
                          on_point=lambda done, _n: bar.update(task, completed=done))
    write_csv(rows, out / "results.csv")
    infeasible = [r for r in rows if r.system == "seesaw" and not r.feasible]
    if not any(r.feasible for r in rows):
        raise InputError("--cluster", f"nothing fits at any point (results in {out / 'results.csv'}, no plots): "
                         + infeasible[0].note)
    paths = write_plots(rows, out, f"{cfg.name}, {wl.name}")
    table = Table(title=f"{cfg.name}, workload {wl.name}: Seesaw vs best static layout")
    for col in ("cluster", "sweep", "value", "Seesaw", "tok/s", "best static", "tok/s ", "speedup", "GB/GPU", "$/M out"):
        table.add_column(col, justify="left" if col in ("cluster", "sweep", "Seesaw", "best static") else "right")
    key = lambda r: (r.cluster, r.sweep_field, r.sweep_value)  # noqa: E731
    best = {key(r): r for r in rows if r.is_best_static}
    for r in rows:
        if r.system != "seesaw":
            continue
        b = best.get(key(r))
        table.add_row(r.cluster, r.sweep_field, "" if r.sweep_field == BASE else f"{r.sweep_value:.3g}",
                      f"{r.prefill_layout}->{r.decode_layout}" if r.feasible else "infeasible", _f(r.tokens_per_s),
                      b.system if b else "-", _f(b.tokens_per_s) if b else "-", _f(r.speedup_vs_best_static, ".2f"),
                      _f(r.memory_gb_per_gpu, ".1f"), _f(r.usd_per_m_output_tokens, ".3f"))
    print_table(table)
    for r in infeasible:
        point = "" if r.sweep_field == BASE else f" at {r.sweep_field}={r.sweep_value:.3g}"
        console.print(f"infeasible: {r.cluster}{point}: {r.note}", emoji=False, markup=False)
    console.print(f"wrote {out / 'results.csv'} and {', '.join(p.name for p in paths)}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the status code."""
    code = run_app(app, list(sys.argv[1:] if argv is None else argv), "seesaw-whatif")
    if argv is None:
        sys.exit(code)
    return code
