"""``seesaw-calibrate --from-aiconfigurator SYSTEM`` and ``--from-benchmarks FILE``: profiles fitted to
measurements made elsewhere (the fitting lives in :mod:`seesaw.planner.calibration`); this module only prints
the fit and writes the profile."""
from __future__ import annotations

from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from seesaw.ir.errors import InputError


def _write(out: Path, name: str, entry: dict, header: list[str]) -> None:
    from seesaw.planner.hardware.catalog import GPUSpec  # noqa: PLC0415

    GPUSpec(name=name, **entry)  # validated before anything is written
    text = "\n".join(f"# {h}" for h in header) + "\n" + yaml.safe_dump({name: entry}, sort_keys=False, width=110,
                                                                        default_flow_style=None)
    try:
        out.write_text(text)
    except OSError as e:
        raise InputError("--out", f"cannot write '{out}': {e.strerror}") from None


def from_aiconfigurator(system: str, out: Path, name: str | None, console: Console) -> dict:
    """Fit a profile to AIConfigurator's measured tables of ``system``, print the fit and write it.

    Returns what was printed as JSON-ready data: ``profile`` (``name``, ``entry``), ``out``, and
    ``fit_quality`` per kernel group (``samples``, ``rms_error``, ``max_abs_error``)."""
    from seesaw.planner.calibration.aic_profile import fit_system  # noqa: PLC0415
    from seesaw.planner.calibration.samples import residual_summary  # noqa: PLC0415

    fit = fit_system(system)
    t = Table(title=f"{fit.name} fitted to AIConfigurator's measured tables ({system})")
    for col in ("term", "value"):
        t.add_column(col)
    for key in ("matmul_efficiency", "memory_efficiency", "compute_memory_overlap", "op_overhead_us",
                "attention_overhead_us", "attention_seq_overhead_us", "attention_efficiency",
                "attention_memory_efficiency"):
        t.add_row(key, f"{fit.entry[key]:g}")
    t.add_row("all-reduce curves (GPUs)", ", ".join(map(str, sorted(fit.entry["allreduce_us"]))))
    console.print(t)
    quality = residual_summary(fit.kernel.residuals)
    for group, (n, rms, worst) in quality.items():
        console.print(f"fit residuals, {group}: {n} kernels, RMS {rms:.1%}, max {worst:.1%}")
    _write(out, name or fit.name, fit.entry, [f"Hardware profile fitted by seesaw-calibrate --from-aiconfigurator {system}.",
                                              "A catalog file of one entry: a cluster file's 'gpu: <this file>'."])
    console.print(f"wrote {out}")
    return {"profile": {"name": name or fit.name, "entry": fit.entry}, "out": str(out), "system": system,
            "fit_quality": {g: {"samples": n, "rms_error": rms, "max_abs_error": worst}
                            for g, (n, rms, worst) in quality.items()}}


def from_benchmarks(path: Path, out: Path, name: str | None, console: Console) -> dict:
    """Fit a profile's efficiency terms to the measured runs of ``path``, print the fit and write it.

    Returns what was printed as JSON-ready data: ``profile`` (``name``, ``entry``), ``out``, ``runs`` (each
    run with its ``measured``, ``predicted_before``, ``predicted_after`` value and ``error_after``) and
    ``terms`` (each fitted term's ``before`` and ``after``)."""
    from seesaw.planner.calibration.benchmarks import fit_benchmarks, load_runs  # noqa: PLC0415

    runs = load_runs(path)
    fit = fit_benchmarks(runs, str(path))
    t = Table(title=f"{fit.gpu}: {len(runs)} measured runs of {path}")
    for col in ("run", "model", "cluster", "layout", "workload", "metric", "measured", "predicted before",
                "predicted after", "error after"):
        t.add_column(col)
    for r, b, a in zip(fit.runs, fit.predicted_before, fit.predicted_after):
        t.add_row(r.label, r.model, r.cluster, r.layout, r.workload, r.metric, f"{r.value:,.1f}", f"{b:,.1f}",
                  f"{a:,.1f}", f"{a / r.value - 1:+.1%}")
    console.print(t)
    for term, value in fit.after.items():
        console.print(f"{term}: {fit.before[term]:g} -> {value:.4g}")
    _write(out, name or fit.gpu, fit.entry, [f"Hardware profile fitted by seesaw-calibrate --from-benchmarks {path}.",
                                            "A catalog file of one entry: a cluster file's 'gpu: <this file>'."])
    console.print(f"wrote {out}")
    return {"profile": {"name": name or fit.gpu, "entry": fit.entry}, "out": str(out), "benchmarks": str(path),
            "runs": [{"run": r.label, "model": r.model, "cluster": r.cluster, "layout": r.layout,
                      "workload": r.workload, "engine": r.engine, "metric": r.metric, "measured": r.value,
                      "predicted_before": b, "predicted_after": a, "error_after": a / r.value - 1}
                     for r, b, a in zip(fit.runs, fit.predicted_before, fit.predicted_after)],
            "terms": {t: {"before": fit.before[t], "after": v} for t, v in fit.after.items()}}
