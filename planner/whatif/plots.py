"""PNG plots of what-if rows (matplotlib, Agg backend): throughput per sweep, phase breakdown per cluster."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from seesaw.planner.whatif.run import BASE, Row  # noqa: E402
from seesaw.planner.whatif.sweep import FIELD_LABELS  # noqa: E402

_PHASES = (("prefill_s", "prefill"), ("decode_s", "decode (static: mixed chunked prefill+decode)"), ("transition_s", "re-shard"), ("kv_swap_s", "KV swap"))


def plot_sweep(rows: list[Row], field: str, path: Path, title: str = "") -> None:
    """Throughput (tokens/s) against ``field``: one panel per cluster, one line per static layout + Seesaw."""
    rows = [r for r in rows if r.sweep_field == field]
    clusters = list(dict.fromkeys(r.cluster for r in rows))
    fig, axes = plt.subplots(1, len(clusters), figsize=(5.5 * len(clusters), 4.2), squeeze=False)
    for ax, name in zip(axes[0], clusters):
        mine = [r for r in rows if r.cluster == name]
        for system in dict.fromkeys(r.system for r in mine):
            pts = sorted((r.sweep_value, r.tokens_per_s) for r in mine if r.system == system and r.feasible)
            if not pts:
                continue
            xs, ys = zip(*pts)
            seesaw = system == "seesaw"
            ax.plot(xs, ys, marker="o" if seesaw else ".", lw=2.5 if seesaw else 1.0, color="black" if seesaw else None,
                    label="Seesaw" if seesaw else system, zorder=3 if seesaw else 2)
        vals = [r.sweep_value for r in mine]
        if vals and min(vals) > 0 and max(vals) / min(vals) >= 10:
            ax.set_xscale("log")
        ax.set_xlabel(FIELD_LABELS.get(field, field))
        ax.set_ylabel("predicted throughput (tokens/s)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.suptitle(title or f"throughput vs {FIELD_LABELS.get(field, field)}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_breakdown(rows: list[Row], path: Path, title: str = "") -> None:
    """Stacked bars of the per-phase time (s) of Seesaw and the best static layout at each cluster's base point."""
    base = [r for r in rows if r.sweep_field == BASE and r.feasible and (r.system == "seesaw" or r.is_best_static)]
    labels = [f"{r.cluster}\n{'Seesaw ' + r.prefill_layout + '->' + r.decode_layout if r.system == 'seesaw' else 'static ' + r.system}"
              for r in base]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(base) + 1), 4.5))
    bottom = [0.0] * len(base)
    for attr, label in _PHASES:
        h = [getattr(r, attr) for r in base]
        ax.bar(range(len(base)), h, bottom=bottom, label=label)
        bottom = [b + x for b, x in zip(bottom, h)]
    ax.set_xticks(range(len(base)), labels, fontsize=7)
    ax.set_ylabel("predicted time for the workload (s)")
    ax.set_title(title or "per-phase time breakdown")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(rows: list[Row], out_dir: Path, title: str = "") -> list[Path]:
    """``throughput_vs_<field>.png`` per swept field and ``breakdown.png``; returns the paths written."""
    paths = []
    for field in dict.fromkeys(r.sweep_field for r in rows if r.sweep_field != BASE):
        p = out_dir / f"throughput_vs_{field}.png"
        plot_sweep(rows, field, p, f"{title}: throughput vs {field}" if title else "")
        paths.append(p)
    p = out_dir / "breakdown.png"
    plot_breakdown(rows, p, f"{title}: per-phase time" if title else "")
    paths.append(p)
    return paths
