"""``seesaw-whatif``: plan over clusters and swept hardware / workload fields; table, CSV and plots; or, with
``--deadline`` / ``--budget``, which cluster finishes the workload in time and cheapest.

    seesaw-whatif --model llama-2-70b --cluster 8xA10 --cluster 8xL4 \
        --sweep gpu_link_gb_per_s=0.1x:50x --out whatif/ --price-per-gpu-hour 8xA10=1.2
    seesaw-whatif --model llama-2-13b --cluster 8xA10 --workload sharegpt --deadline 1h

``--json`` prints every table as JSON on stdout (the tables and messages go to stderr). Bad input exits
with status 2 and one line naming the problem (no traceback); so does a deadline / budget that no
candidate meets (the line names the closest candidate and by how much it misses).
"""
from __future__ import annotations

import json
import math
import re
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

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(h|m|min|s)?\s*$", re.IGNORECASE)
_UNIT_S = {None: 1.0, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_SHORTHAND = re.compile(r"^\s*(\d+)\s*[xX]\s*([A-Za-z][\w.\- ]*?)\s*$")


def _deadline_s(text: str) -> float:
    """``6h``, ``90m``, ``3600s``, ``1.5h`` or a bare number of seconds, as seconds (> 0)."""
    m = _DURATION.match(text or "")
    value = float(m.group(1)) * _UNIT_S[(m.group(2) or "").lower() or None] if m else math.nan
    if not (value > 0 and math.isfinite(value)):
        raise InputError("--deadline", f"'{text}' is not a positive duration (e.g. 6h, 90m, 3600s, 1.5h; "
                         "a bare number is seconds)")
    return value


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


def _show(table: Table, to_stderr: bool) -> None:
    """Print a table whole (as :func:`print_table`), on stderr when stdout carries JSON."""
    if not to_stderr:
        print_table(table)
        return
    for col in table.columns:
        col.overflow = "fold"
    console = Console(stderr=True, emoji=False)
    if not console.is_terminal:
        console = Console(stderr=True, emoji=False, width=200)
    console.print(table)


@app.command()
def whatif(
    model: Annotated[str, typer.Option("--model", "-m", help="config.json path, folder, or shipped name")],
    cluster: Annotated[list[str], typer.Option("--cluster", "-c", help=(
        "NxGPU or a cluster file; repeatable. With --deadline/--budget and exactly one NxGPU cluster, the "
        "power-of-two GPU counts below N (1, 2, 4, ...) of that GPU are candidates too"))],
    workload: Annotated[str, typer.Option("--workload", "-w", help="sharegpt[:N], random:IN:OUT[:N], or a trace")] = "sharegpt",
    sweep: Annotated[Optional[list[str]], typer.Option("--sweep", help="FIELD=SPEC (0.1x:50x, A:B, a,b,c); repeatable")] = None,
    points: Annotated[int, typer.Option("--points", help="points per range sweep")] = 7,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help=(
        "output folder for results.csv and PNGs (default whatif); with --deadline/--budget only results.csv, "
        "and only when given"))] = None,
    price: Annotated[Optional[list[str]], typer.Option("--price-per-gpu-hour", help=(
        "CLUSTER=USD per GPU-hour; repeatable; a price for 8xA10 also applies to its smaller candidates"))] = None,
    time_limit: Annotated[float, typer.Option("--time-limit", help="solver time limit per plan, seconds")] = 10.0,
    deadline: Annotated[Optional[str], typer.Option("--deadline", help=(
        "finish the workload within this time: 6h, 90m, 3600s, 1.5h (a bare number is seconds); "
        "recommends a cluster (not with --sweep)"))] = None,
    budget: Annotated[Optional[float], typer.Option("--budget", help=(
        "spend at most this many USD on the whole workload (needs --price-per-gpu-hour for every "
        "cluster); recommends a cluster (not with --sweep)"))] = None,
    as_json: Annotated[bool, typer.Option("--json", help=(
        "print the tables as JSON on stdout (the tables and messages go to stderr)"))] = False,
) -> None:
    """Plan every cluster at every sweep point; print a table; write results.csv and plots. With --deadline
    and/or --budget: plan each candidate cluster once and recommend the cheapest that meets them (the fewest
    GPUs, then the fastest, when no prices are given)."""
    if not time_limit > 0:
        raise InputError("--time-limit", f"must be a positive number of seconds, got {time_limit:g}")
    deadline_s = _deadline_s(deadline) if deadline is not None else None
    if budget is not None and not (budget > 0 and math.isfinite(budget)):
        raise InputError("--budget", f"must be a positive number of USD, got {budget:g}")
    if (deadline_s is not None or budget is not None) and sweep:
        raise InputError("--sweep", "cannot be combined with --deadline/--budget (they plan each candidate "
                         "cluster at its base point); run the sweep separately")
    if deadline_s is not None or budget is not None:
        _recommend(model, cluster, workload, price or [], deadline_s, budget, time_limit, out, as_json)
    else:
        _sweep(model, cluster, workload, sweep or [], points, out or Path("whatif"), price or [], time_limit,
               as_json)


def _sweep(model: str, cluster: list[str], workload: str, sweep: list[str], points: int, out: Path,
           price: list[str], time_limit: float, as_json: bool) -> None:
    """Plan every cluster at every sweep point; table (stdout, or stderr under --json), CSV and plots."""
    from seesaw.ir import load_model_config
    from seesaw.planner.hardware import load_cluster
    from seesaw.planner.whatif.plots import write_plots
    from seesaw.planner.whatif.run import point_list, row_dict, run_whatif, write_csv
    from seesaw.planner.whatif.sweep import parse_sweep
    from seesaw.planner.workload import load_workload

    cfg = load_model_config(model)
    clusters = [(c, load_cluster(c)) for c in cluster]
    wl = load_workload(workload)
    sweeps = [parse_sweep(s, points) for s in sweep]
    prices = _prices(price, [n for n, _ in clusters])
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
    fits = any(r.feasible for r in rows)
    paths = write_plots(rows, out, f"{cfg.name}, {wl.name}") if fits else []
    if as_json:
        print(json.dumps({"model": cfg.name, "workload": wl.name, "num_requests": wl.num_requests,
                          "rows": [row_dict(r) for r in rows],
                          "files": [str(out / "results.csv"), *map(str, paths)]}, indent=2))
    if not fits:
        raise InputError("--cluster", f"nothing fits at any point (results in {out / 'results.csv'}, no plots): "
                         + infeasible[0].note)
    _show_rows(rows, f"{cfg.name}, workload {wl.name}: Seesaw vs best static layout", as_json, console)
    console.print(f"wrote {out / 'results.csv'} and {', '.join(p.name for p in paths)}")


def _show_rows(rows, title: str, as_json: bool, console: Console) -> None:
    """The sweep's table (one line per cluster and point: the Seesaw plan beside the best static layout), then
    a line per infeasible point on stderr."""
    from seesaw.planner.whatif.run import BASE  # noqa: PLC0415

    table = Table(title=title)
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
    _show(table, as_json)
    for r in rows:
        if r.system == "seesaw" and not r.feasible:
            point = "" if r.sweep_field == BASE else f" at {r.sweep_field}={r.sweep_value:.3g}"
            console.print(f"infeasible: {r.cluster}{point}: {r.note}", emoji=False, markup=False)


aux = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


@aux.command()
def show(results: Annotated[Path, typer.Argument(help="a results.csv that seesaw-whatif wrote, or its folder")],
         as_json: Annotated[bool, typer.Option("--json", help="the rows as JSON on stdout")] = False) -> None:
    """Print the table of an earlier sweep from its results.csv, without planning again."""
    from seesaw.planner.whatif.run import read_csv, row_dict  # noqa: PLC0415

    path = results / "results.csv" if results.is_dir() else results
    rows = read_csv(path)
    if as_json:
        print(json.dumps({"rows": [row_dict(r) for r in rows]}, indent=2))
    _show_rows(rows, f"{path}: Seesaw vs best static layout", as_json, Console(stderr=True))


def _candidate_specs(specs: list[str]) -> list[tuple[str, str]]:
    """``[(candidate name, the --cluster it came from)]``: the given clusters, or, for exactly one ``NxGPU``,
    that GPU at every count of :func:`~seesaw.planner.whatif.recommend.smaller_counts` (N included)."""
    from seesaw.planner.whatif.recommend import smaller_counts

    m = _SHORTHAND.match(specs[0]) if len(specs) == 1 else None
    path = Path(specs[0])
    if not m or path.suffix.lower() in (".yaml", ".yml", ".json") or "/" in specs[0] or "\\" in specs[0] \
            or path.exists():
        return [(s, s) for s in specs]
    return [(f"{k}x{m.group(2)}", specs[0]) for k in smaller_counts(int(m.group(1)))]


def _recommend(model: str, cluster: list[str], workload: str, price: list[str], deadline_s: float | None,
               budget_usd: float | None, time_limit: float, out: Path | None, as_json: bool) -> None:
    """Plan each candidate's Seesaw plan at its base point, print the candidates and the recommendation."""
    from seesaw.ir import load_model_config
    from seesaw.planner.hardware import load_cluster
    from seesaw.planner.whatif.recommend import (candidates, closest, format_duration, format_hours,
                                                 format_usd, ranked_by_usd, recommend)
    from seesaw.planner.whatif.run import run_whatif, write_csv
    from seesaw.planner.workload import load_workload

    cfg = load_model_config(model)
    specs = _candidate_specs(cluster)
    clusters = [(name, load_cluster(name)) for name, _ in specs]
    wl = load_workload(workload)
    given = _prices(price, list(dict.fromkeys([*cluster, *(n for n, _ in specs)])))
    prices = {n: given[n] if n in given else given[o] for n, o in specs if n in given or o in given}
    unpriced = list(dict.fromkeys(o for n, o in specs if n not in prices))  # o unpriced too, then
    if budget_usd is not None and unpriced:
        raise InputError("--budget", f"needs a price for {unpriced[0]} (--price-per-gpu-hour {unpriced[0]}=USD "
                         "per GPU-hour)")
    if prices and unpriced:
        raise InputError("--price-per-gpu-hour", f"no price for {unpriced[0]}: price every cluster (to recommend "
                         "the cheapest) or none (to recommend the fewest GPUs)")
    if out is not None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError("--out", f"cannot create '{out}': {e.strerror}") from None
    console = Console(stderr=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("planning", total=len(clusters))
        rows = run_whatif(cfg, clusters, wl, [], prices, time_limit,
                          on_point=lambda done, _n: bar.update(task, completed=done), with_static=False)
    if out is not None:
        write_csv(rows, out / "results.csv")
    cands = candidates(rows, {n: c.num_gpus for n, c in clusters}, prices, deadline_s, budget_usd)
    best = recommend(cands)
    near = closest(cands) if best is None else None
    by_usd = ranked_by_usd(cands)
    if as_json:
        print(json.dumps({"model": cfg.name, "workload": wl.name, "num_requests": wl.num_requests,
                          "deadline_s": deadline_s, "budget_usd": budget_usd,
                          "ranked_by": "total_usd" if by_usd else "num_gpus",
                          "candidates": [c.to_dict() for c in cands],
                          "recommended": best.to_dict() if best else None,
                          "closest": near.to_dict() if near else None}, indent=2))
    limits = [*([f"deadline {format_duration(deadline_s)}"] if deadline_s is not None else []),
              *([f"budget ${format_usd(budget_usd)}"] if budget_usd is not None else [])]
    table = Table(title=f"{cfg.name}, {wl.name} ({wl.num_requests:,} requests): {', '.join(limits)}")
    cols = ["cluster", "GPUs", "Seesaw layouts", "hours", *(["$/GPU-h", "USD"] if prices else []),
            *(["deadline"] if deadline_s is not None else []), *(["budget"] if budget_usd is not None else []),
            "note"]
    for col in cols:
        table.add_column(col, justify="right" if col in ("GPUs", "hours", "$/GPU-h", "USD") else "left")
    yes = {True: "yes", False: "no", None: "-"}
    for c in cands:
        cells = [c.cluster, str(c.num_gpus), c.layouts, format_hours(c.total_s)]
        if prices:
            cells += [format_usd(c.usd_per_gpu_hour), format_usd(c.total_usd)]
        cells += [yes[c.meets_deadline]] if deadline_s is not None else []
        cells += [yes[c.meets_budget]] if budget_usd is not None else []
        table.add_row(*cells, "recommended" if c is best else c.shortfall())
    _show(table, as_json)
    if near is None and best is None:
        largest = max(cands, key=lambda c: c.num_gpus)
        raise InputError("--cluster", f"nothing fits on any candidate: {largest.row.note}")
    if best is None:
        field = " and ".join(["--deadline"] * (deadline_s is not None) + ["--budget"] * (budget_usd is not None))
        raise InputError(field, f"no candidate meets {' and '.join(limits)}; the closest, {near.cluster} "
                         f"({near.layouts}), {near.shortfall()}")
    cost = f", ${format_usd(best.total_usd)}" if by_usd else ""  # no prices: ranked by GPU count, no cost
    line = f"recommended: {best.cluster} ({best.layouts}), {format_hours(best.total_s)} h{cost}"
    if as_json:
        console.print(line, emoji=False, markup=False, highlight=False)
    else:
        print(line)
    if out is not None:
        console.print(f"wrote {out / 'results.csv'}", emoji=False, markup=False, highlight=False)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the status code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "show":  # one command: typer takes its arguments directly
        code = run_app(aux, args[1:], "seesaw-whatif show")
    else:
        code = run_app(app, args, "seesaw-whatif")
    if argv is None:
        sys.exit(code)
    return code
