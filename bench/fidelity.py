"""Benchmark (not a test): how far the planner's predictions are from measured reality, side by side.

    python bench/fidelity.py [--published bench/data/published.jsonl] [--paper bench/data/seesaw_paper.jsonl]
                             [--aiconfigurator] [--only ID ...] [--markdown docs/fidelity/results.md]

1. Published measurements (``bench/data/published.jsonl``: engine, model, GPU, layout, workload, metric, value,
   source and verbatim quote per row): each setting planned with its layout pinned, its metric predicted by the
   closed form and by the simulation of the row's engine; the error per row, the mean absolute percentage error
   (MAPE) of both, and per group of runs comparing layouts on one kind of machine whether they rank as measured.
2. The Seesaw paper's Fig. 10 and 11 cells (``bench/data/seesaw_paper.jsonl``): the planner's layouts beside
   the paper's, whether it re-shards in the paper's direction, its predicted speedup over its best static plan
   beside the paper's measured one, and the PCIe geometric mean.
3. With ``--aiconfigurator`` and the ``aiconfigurator`` package installed: AIConfigurator's own estimate of each
   published row's setting beside ours (see ``seesaw.planner.validation.aiconfigurator_side``).

``--markdown docs/fidelity.md`` also writes the tables as Markdown between that page's markers (its figures
are this output).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from seesaw.planner.validation.paper import geomean, load_cells, plan_cell
from seesaw.planner.validation.published import load_published, mape, predict_run, rankings

ROOT = Path(__file__).resolve().parents[1]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.0%}"


def published_section(path: Path, only: list[str], md: list[str], console: Console) -> None:
    rows = [r for r in load_published(path) if not only or any(o in r.id for o in only)]
    preds = []
    t = Table(title=f"published measurements ({len(rows)} rows of {path.name})")
    for col in ("id", "engine", "GPU", "layout", "workload", "metric", "measured", "closed form", "simulated", "sim knobs"):
        t.add_column(col)
    md += ["## Published measurements", "", f"{len(rows)} rows of `{path.relative_to(ROOT)}`; error = predicted / "
           "measured - 1.", "", "| id | engine | GPU | layout | workload | metric | measured | closed form | "
           "simulated |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = predict_run(r)
        preds.append(p)
        lay = (f"{r.num_gpus}x tp{r.tp} pp{r.pp}" + (f" dp{r.dp}" if r.dp > 1 else "")
               + (f" ep{r.ep}" if r.ep > 1 else ""))
        cells = [r.id, f"{r.engine} {r.engine_version or ''}".strip(), r.gpu, lay, r.workload, r.metric,
                 f"{r.value:,.1f}", _pct(p.error("closed_form")), _pct(p.error("simulated"))]
        t.add_row(*cells, p.knobs)
        md.append("| " + " | ".join(cells) + " |")
    console.print(t)
    groups = rankings(preds)
    same_cf = sum(g.same_order("closed_form") for g in groups)
    same_sim = sum(g.same_order("simulated") for g in groups)
    summary = (f"MAPE: closed form {mape(preds, 'closed_form'):.1%}, simulation {mape(preds, 'simulated'):.1%}; "
               f"groups ranked as measured: closed form {same_cf}/{len(groups)}, simulation {same_sim}/{len(groups)}")
    console.print(summary)
    g = Table(title="same-machine groups (Kendall tau, measured vs predicted)")
    for col in ("group", "runs", "tau closed form", "tau simulated"):
        g.add_column(col)
    md += ["", f"**{summary}**", "", "| group | runs | tau closed form | tau simulated |", "|---|---|---|---|"]
    for grp in groups:
        cells = [grp.group, str(len(grp.ids)), f"{grp.tau_closed_form:.2f}", f"{grp.tau_simulated:.2f}"]
        g.add_row(*cells)
        md.append("| " + " | ".join(cells) + " |")
    console.print(g)
    md.append("")


def paper_section(path: Path, md: list[str], console: Console) -> None:
    cells = load_cells(path)
    t = Table(title="the Seesaw paper's setups (Fig. 10: A10/L4 PCIe; Fig. 11: A100 PCIe vs NVLink)")
    for col in ("fig", "GPUs", "model", "dataset", "paper static", "paper Seesaw", "planned static", "planned",
                "direction", "predicted speedup", "closed form", "paper speedup"):
        t.add_column(col)
    md += ["## The Seesaw paper's setups", "", "| fig | GPUs | model | dataset | paper static | paper Seesaw | "
           "planned static | planned | paper's direction | predicted speedup | closed form | paper speedup |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    results = []
    for c in cells:
        r = plan_cell(c)
        results.append(r)
        cols = [c.figure, f"{c.num_gpus}x{c.gpu}", c.seesaw_model, c.dataset, c.best_static or "-",
                f"{c.seesaw_prefill} -> {c.seesaw_decode}" if c.seesaw_prefill else "-", str(r.best_static),
                f"{r.prefill} -> {r.decode}" if r.prefill != r.decode else f"{r.prefill} (static)",
                "yes" if r.direction else "no", f"{r.speedup:.2f}x", f"{r.closed_form_speedup:.2f}x",
                f"{c.speedup:.2f}x" if c.speedup else "-"]
        t.add_row(*cols)
        md.append("| " + " | ".join(cols) + " |")
    console.print(t)
    fig10 = [r for r in results if r.cell.figure == "10"]
    by_gpu = {g: geomean([r.speedup for r in fig10 if r.cell.gpu == g]) for g in sorted({r.cell.gpu for r in fig10})}
    summary = (f"Fig. 10: paper's direction in {sum(r.direction for r in fig10)}/{len(fig10)} cells, exact layouts "
               f"in {sum(r.same_layouts for r in fig10)}/{len(fig10)}, paper's best static in "
               f"{sum(r.same_static for r in fig10)}/{len(fig10)}; predicted geometric-mean speedup "
               f"{geomean([r.speedup for r in fig10]):.2f}x (closed form "
               f"{geomean([r.closed_form_speedup for r in fig10]):.2f}x; "
               + ", ".join(f"{g} {v:.2f}x" for g, v in by_gpu.items())
               + "); the paper measured 1.36x (A10 1.45x, L4 1.29x)")
    console.print(summary)
    md += ["", f"**{summary}**", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--published", type=Path, default=ROOT / "bench" / "data" / "published.jsonl")
    ap.add_argument("--paper", type=Path, default=ROOT / "bench" / "data" / "seesaw_paper.jsonl")
    ap.add_argument("--only", nargs="*", default=[], help="published row ids containing any of these")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--skip-published", action="store_true")
    ap.add_argument("--aiconfigurator", action="store_true", help="AIConfigurator's estimates beside ours")
    ap.add_argument("--markdown", type=Path, default=None,
                    help="also write the tables as Markdown: a file holding the markers '<!-- fidelity:begin -->' "
                         "and '<!-- fidelity:end -->' gets only the text between them replaced")
    args = ap.parse_args()
    console = Console(width=200)
    md = [f"Generated by `python bench/fidelity.py{' --aiconfigurator' if args.aiconfigurator else ''} "
          f"--markdown {args.markdown}`; do not edit by hand.", ""]
    start = time.perf_counter()
    if not args.skip_published:
        published_section(args.published, args.only, md, console)
    if not args.skip_paper:
        paper_section(args.paper, md, console)
    if args.aiconfigurator:
        from seesaw.planner.validation.aiconfigurator_side import side_by_side_section  # noqa: PLC0415

        side_by_side_section(md, console)
    console.print(f"fidelity report in {time.perf_counter() - start:.0f} s")
    if args.markdown:
        write_markdown(args.markdown, md)
        console.print(f"wrote {args.markdown}")


BEGIN, END = "<!-- fidelity:begin -->", "<!-- fidelity:end -->"


def write_markdown(path: Path, lines: list[str]) -> None:
    """The tables into ``path``: between its markers when it has them, else as the whole file."""
    body = "\n".join(lines) + "\n"
    text = path.read_text() if path.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        body = f"{head}{BEGIN}\n{body}{END}{rest.split(END, 1)[1]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


if __name__ == "__main__":
    main()
