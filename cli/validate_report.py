"""Presentation of ``seesaw-validate``: the terminal table, ``report.md``, ``results.json`` and the plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

from seesaw.ir.errors import InputError

#: Validation targets: mean step-time error per phase, whole-run throughput error, and how far the planner's
#: choice may fall behind the measured best layout (fractions).
TARGETS = {"step": 0.10, "throughput": 0.15, "chosen_gap": 0.05}


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}%"


def rows(results) -> list[list[str]]:
    """One table row per run (strings)."""
    out = []
    for r in results:
        reps = r.extra.get("measured_tokens_per_s") or [r.measured_tokens_per_s]
        cells = [r.label + (" *" if r.chosen else ""), f"{r.predicted_tokens_per_s:,.1f}", f"{r.measured_tokens_per_s:,.1f}",
                 f"{min(reps):,.0f}-{max(reps):,.0f}", _pct(r.throughput_error), f"{r.replay_tokens_per_s:,.1f}"]
        for ph in ("prefill", "decode"):
            p = r.phases.get(ph)
            cells += ([f"{p.steps}", f"{1e3 * p.predicted_step_s:.1f}", f"{1e3 * p.measured_step_s:.1f}", _pct(p.error)]
                      if p else ["-"] * 4)
        cells += [str(r.transitions), f"{r.transition_predicted_s * 1e3:.0f} / {r.transition_measured_s * 1e3:.0f}"
                  if r.transitions else "-"]
        out.append(cells)
    return out


HEADER = ["layouts", "pred. tok/s", "meas. tok/s", "meas. range", "error", "replay tok/s", "prefill steps", "pred. ms/step",
          "meas. ms/step", "error", "decode steps", "pred. ms/step", "meas. ms/step", "error", "transitions",
          "trans. ms pred/meas"]


def summary_lines(summary) -> list[str]:
    """The headline figures, each with its validation target (:data:`TARGETS`) where it has one."""
    s = summary
    lines = [
        f"step-time MAPE: prefill {_pct(s.step_mape['prefill'])}, decode {_pct(s.step_mape['decode'])} "
        f"(target <= {_pct(TARGETS['step'])}); a typical step (median of the per-step errors, mean over layouts): "
        f"prefill {_pct(s.median_step_error['prefill'])}, decode {_pct(s.median_step_error['decode'])}",
        f"whole-run throughput MAPE: {_pct(s.throughput_mape)} (target <= {_pct(TARGETS['throughput'])}); "
        f"replayed from the measured steps: {_pct(s.replay_throughput_mape)}",
        "Kendall tau (predicted vs measured throughput over the layouts): "
        + ("n/a" if math.isnan(s.kendall_tau) else f"{s.kendall_tau:.2f}"),
    ]
    if s.chosen:
        lines.append(f"planner's choice: {s.chosen}; measured best: {s.best_measured}; the choice is "
                     f"{_pct(s.chosen_gap)} below the best (target <= {_pct(TARGETS['chosen_gap'])})")
    return lines


def render_table(results, summary, meta: dict, console) -> None:
    from rich.table import Table  # noqa: PLC0415

    w = meta["workload"]
    t = Table(title=f"{meta['title']}: {w['requests']} requests, {w['prompt_tokens']:,} prompt + "
                    f"{w['output_tokens']:,} output tokens", header_style="bold")
    for col in HEADER:
        t.add_column(col, justify="left" if col == "layouts" else "right", overflow="fold")
    for row in rows(results):
        t.add_row(*row)
    console.print(t)
    for line in summary_lines(summary) + meta["notes"]:
        console.print(f"  {line}")


def markdown(results, summary, meta: dict) -> str:
    """``report.md``: what was run, the summary with targets, and the per-layout table."""
    w = meta["workload"]
    dev = meta["device"]
    lines = [f"# Validation: {meta['title']}", "",
             f"Reproduce: `{meta['command']}`", "",
             f"Workload: {w['name']}, {w['requests']} requests, {w['prompt_tokens']:,} prompt + "
             f"{w['output_tokens']:,} output tokens (EOS ignored, each output exactly its request's length). "
             f"Device profile: `{dev['name']}`; {meta['threads_per_rank']} torch thread(s) per rank on "
             f"{meta['cores']} cores; {meta['repeats']} run(s) per layout, interleaved over the layouts, figures "
             f"are means (meas. range: the runs' throughputs); {meta['wall_s']:.0f} s in all.", "", "## Summary", ""]
    lines += [f"- {line}" for line in summary_lines(summary)]
    lines += ["", "## Per layout", "",
              "`*` marks the planner's choice. Step times are the time the runtime charged to each step (time "
              "since the previous completion: pipelined steps overlap), averaged over the phase and over the replicas; the prediction replays the same steps through the cost model. Throughput counts prompt "
              "+ output tokens.", "",
              "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(results)]
    lines += ["", "![throughput](throughput.png)", "", "![step times](step_times.png)", ""]
    if meta["notes"]:
        lines += ["## Notes", ""] + [f"- {n}" for n in meta["notes"]] + [""]
    return "\n".join(lines)


def plot_throughput(results, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 5))
    xs = [r.measured_tokens_per_s for r in results]
    ys = [r.predicted_tokens_per_s for r in results]
    hi = max(xs + ys) * 1.15
    ax.plot([0, hi], [0, hi], color="gray", lw=1, label="predicted = measured")
    ax.fill_between([0, hi], [0, 0.85 * hi], [0, 1.15 * hi], color="gray", alpha=0.15, label="+-15 %")
    for i, (r, x, y) in enumerate(zip(results, xs, ys)):
        ax.scatter([x], [y], marker="*" if r.chosen else "o", s=120 if r.chosen else 40)
        # alternate the label side so that layouts landing together stay readable
        ax.annotate(r.label, (x, y), textcoords="offset points", xytext=(6, 6 if i % 2 == 0 else -12), fontsize=8)
    ax.set_xlim(0, hi)
    ax.set_ylim(0, hi)
    ax.set_xlabel("measured tokens/s")
    ax.set_ylabel("predicted tokens/s")
    ax.set_title("Whole-run throughput per layout (* = planner's choice)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_step_times(results, path: Path) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, ph in zip(axes, ("prefill", "decode")):
        runs = [r for r in results if ph in r.phases]
        idx = range(len(runs))
        ax.bar([i - 0.2 for i in idx], [1e3 * r.phases[ph].predicted_step_s for r in runs], 0.4, label="predicted")
        ax.bar([i + 0.2 for i in idx], [1e3 * r.phases[ph].measured_step_s for r in runs], 0.4, label="measured")
        ax.set_xticks(list(idx), [r.label for r in runs], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("ms per step")
        ax.set_title(f"{ph}: mean step time")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def results_data(results, summary, meta: dict) -> dict:
    """What the terminal table shows, as JSON-ready data: ``meta`` (what was run), ``summary`` (the
    headline errors, Kendall's tau, the planner's choice) and ``runs`` (one object per layout, with
    ``phases``). ``results.json`` is this plus ``raw``, every run's metrics and step records."""
    return {"meta": meta, "summary": vars(summary), "runs": [
        {**{k: v for k, v in vars(r).items() if k != "phases"},
         "phases": {ph: vars(p) for ph, p in r.phases.items()}} for r in results]}


def write_outputs(out: Path, results, summary, meta: dict, raw: list[dict]) -> None:
    """Write report.md, results.json (every figure and step record) and the two plots under ``out``."""
    try:
        (out / "report.md").write_text(markdown(results, summary, meta))
        data = {**results_data(results, summary, meta), "raw": raw}
        (out / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
        plot_throughput(results, out / "throughput.png")
        plot_step_times(results, out / "step_times.png")
    except OSError as e:
        raise InputError("--out", f"cannot write under '{out}': {e.strerror}") from None
