"""``seesaw-calibrate``'s output: measurement, parameter and residual tables (rich), and the profile YAML."""
from __future__ import annotations

from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from seesaw.ir.errors import InputError
from seesaw.planner.calibration import fit as F
from seesaw.planner.hardware.catalog import GPUSpec


def _t(seconds: float) -> str:
    """A duration with a readable unit."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _rate(timing) -> str:
    """What a timing achieved: GFLOP/s and GB/s for ops, GB/s for messages and copies."""
    if hasattr(timing, "flops"):
        return f"{timing.flops / timing.seconds / 1e9:.1f} GF/s, {timing.nbytes / timing.seconds / 1e9:.2f} GB/s"
    return f"{timing.nbytes / timing.seconds / 1e9:.3f} GB/s"


def _residual_table(title: str, residuals) -> Table:
    table = Table(title=title)
    for col in ("group", "sample", "measured", "predicted", "error"):
        table.add_column(col, justify="left" if col in ("group", "sample") else "right")
    for r in residuals:
        table.add_row(r.group, r.label, _t(r.measured_s), _t(r.predicted_s), f"{r.error:+.1%}")
    return table


def _step_table(samples) -> Table:
    table = Table(title="Micro-batch round trips (scheduler -> worker -> scheduler, outside the ops)")
    for col in ("batch", "round trip", "worker set-up", "queues + processes"):
        table.add_column(col, justify="left" if col == "batch" else "right")
    for s in samples:
        table.add_row(s.label, _t(s.seconds), _t(s.setup_s), _t(s.seconds - s.setup_s))
    return table


def _forward_table(kernel: F.KernelFit, samples) -> Table:
    weight = (f"each weighs {kernel.forward_sample_weight:.3g} op samples in the fit"
              if kernel.forward_sample_weight > 0 else "reported only, not fitted")
    table = Table(title=f"Forward passes of the runtime (TP 1, one rank; {weight})")
    for col in ("kind", "seqs", "tokens", "prompts / contexts", "measured", "predicted", "error"):
        table.add_column(col, justify="left" if col in ("kind", "prompts / contexts") else "right")
    for s, r in zip(samples, kernel.forward):
        table.add_row(s.kind, str(s.seqs), str(s.tokens), s.label.rsplit(", ", 1)[-1], _t(r.measured_s),
                      _t(r.predicted_s), f"{r.error:+.1%}")
    return table


def _in_run_groups(kernel: F.KernelFit) -> dict[tuple[str, str], list]:
    """The in-run op residuals by (phase, op), sorted."""
    groups: dict[tuple[str, str], list] = {}
    for r in kernel.residuals:
        if r.group.startswith("in-run "):
            words = r.label.split()  # "in-run <mode> <n> seq(s) <op>"
            groups.setdefault((words[1], words[-1]), []).append(r)
    return dict(sorted(groups.items()))


def _in_run_table(kernel: F.KernelFit) -> Table | None:
    """Per phase and op, the in-run op samples' mean measured and predicted time and their ratio (sums): where
    the fitted model misses inside real passes (None without in-run samples)."""
    groups = _in_run_groups(kernel)
    if not groups:
        return None
    table = Table(title="In-run op timings per op (mean over the sampled passes; ratio of the sums)")
    for col in ("phase", "op", "samples", "measured", "predicted", "predicted / measured"):
        table.add_column(col, justify="left" if col in ("phase", "op") else "right")
    for (mode, op), rs in groups.items():
        meas, pred = sum(r.measured_s for r in rs), sum(r.predicted_s for r in rs)
        table.add_row(mode, op, str(len(rs)), _t(meas / len(rs)), _t(pred / len(rs)), f"{pred / meas:.2f}")
    return table


def _tp_forward_table(links: F.ForwardLinkFit, samples) -> Table:
    fitted = ("collective_launch_us (the bandwidth held at the micro-benchmarks')" if links.bandwidth_held else
              "collective_launch_us and the link bandwidth")
    table = Table(title=f"TP forward passes of the runtime (tp {'/'.join(map(str, links.tps))}: compute of the "
                        f"fitted kernel terms + collectives; these fit {fitted})")
    for col in ("kind", "seqs", "tokens", "collectives", "measured", "predicted", "error"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for s, r in zip(samples, links.residuals):
        table.add_row(s.kind, str(s.seqs), str(s.tokens), str(sum(s.comm_op_counts)), _t(r.measured_s),
                      _t(r.predicted_s), f"{r.error:+.1%}")
    return table


def _fit_quality(kernel: F.KernelFit, comm: F.CommFit | None, copies: dict[str, F.CopyFit],
                 step: F.StepFit | None, forward_samples, links: F.ForwardLinkFit | None, tp_samples):
    """Every micro-benchmark residual, and per group ``(samples, RMS, max |error|)`` over those and the
    forward passes (also per kind: ``  forward <kind>``, ``  forward tp <kind>``)."""
    residuals = list(kernel.residuals) + list(comm.residuals if comm else ())
    for c in copies.values():
        residuals += c.residuals
    residuals += step.residuals if step else ()
    by_kind = [F.Residual(f"  forward {s.kind}", r.label, r.measured_s, r.predicted_s)
               for s, r in zip(forward_samples, kernel.forward)]
    by_kind += [F.Residual(f"  forward tp {s.kind}", r.label, r.measured_s, r.predicted_s)
                for s, r in zip(tp_samples, links.residuals if links else ())]
    fitted = residuals + list(kernel.forward) + list(links.residuals if links else ())
    return residuals, F.residual_summary(fitted) | F.residual_summary(by_kind)


def _residual_rows(residuals) -> list[dict]:
    return [{"group": r.group, "sample": r.label, "measured_s": r.measured_s, "predicted_s": r.predicted_s,
             "error": r.error} for r in residuals]


def report_data(kernel: F.KernelFit, comm: F.CommFit | None, copies: dict[str, F.CopyFit], peak, stream,
                name: str, entry: dict, step: F.StepFit | None = None, step_samples=(), forward_samples=(),
                links: F.ForwardLinkFit | None = None, tp_samples=()) -> dict:
    """What :func:`print_report` prints, as JSON-ready data (same arguments): ``profile`` (the entry written),
    ``measured`` rates, ``step_round_trips``, ``residuals`` (every sample), ``forward_passes``,
    ``tp_forward_passes``, ``in_run_ops``, ``fit_quality`` per group and the fitted ``parameters`` with their
    standard errors (``stderr``: free parameters only). Times are seconds, rates 1e9 units per second."""
    residuals, quality = _fit_quality(kernel, comm, copies, step, forward_samples, links, tp_samples)
    rate = lambda t: {"label": t.label, "seconds": t.seconds, "gflop_per_s": t.flops / t.seconds / 1e9,  # noqa: E731
                      "gb_per_s": t.nbytes / t.seconds / 1e9}
    params = {"kernel": {**vars(kernel.params), "stderr": dict(kernel.stderr)}}
    if comm is not None:
        params["comm"] = {**vars(comm.params), "stderr": {k: v for k, v in comm.stderr.items() if k in comm.free}}
    if links is not None:
        params["tp_forward_links"] = {k: v for k, v in vars(links).items() if k != "residuals"}
    params["host_copies"] = {k: {"host_link_gb_per_s": c.host_link_gb_per_s, "stderr_gb_per_s": c.stderr_gb_per_s}
                             for k, c in copies.items()}
    if step is not None:
        params["step"] = {k: v for k, v in vars(step).items() if k != "residuals"}
    pass_row = lambda s, r: {"kind": s.kind, "seqs": s.seqs, "tokens": s.tokens, "label": s.label,  # noqa: E731
                             "measured_s": r.measured_s, "predicted_s": r.predicted_s, "error": r.error}
    return {
        "profile": {"name": name, "entry": entry},
        "measured": {"peak_gemm": rate(peak), "weight_streaming": rate(stream),
                     "host_copies_gb_per_s": {k: c.host_link_gb_per_s for k, c in copies.items()},
                     "runtime_reserve_gb": entry["runtime_reserve_gb"]},
        "step_round_trips": [{"label": s.label, "mode": s.mode, "seqs": s.seqs, "seconds": s.seconds,
                              "setup_s": s.setup_s} for s in step_samples] if step is not None else [],
        "residuals": _residual_rows(residuals),
        "forward_passes": [pass_row(s, r) for s, r in zip(forward_samples, kernel.forward)],
        "tp_forward_passes": [{**pass_row(s, r), "collectives": sum(s.comm_op_counts)}
                              for s, r in zip(tp_samples, links.residuals if links else ())],
        "in_run_ops": [{"phase": mode, "op": op, "samples": len(rs),
                        "measured_s": sum(r.measured_s for r in rs) / len(rs),
                        "predicted_s": sum(r.predicted_s for r in rs) / len(rs),
                        "predicted_over_measured": sum(r.predicted_s for r in rs) / sum(r.measured_s for r in rs)}
                       for (mode, op), rs in _in_run_groups(kernel).items()],
        "fit_quality": {g.strip(): {"samples": n, "rms_error": rms, "max_abs_error": worst}
                        for g, (n, rms, worst) in quality.items()},
        "parameters": params,
    }


def print_report(console: Console, kernel: F.KernelFit, comm: F.CommFit | None, copies: dict[str, F.CopyFit],
                 peak, stream, name: str, entry: dict, step: F.StepFit | None = None,
                 step_samples=(), forward_samples=(), links: F.ForwardLinkFit | None = None,
                 tp_samples=()) -> None:
    """Print measured rates, every sample's residual, the per-group summary (forward passes also per kind;
    TP forward passes as ``forward tp``) and the fitted parameters."""
    measured = Table(title="Measured")
    measured.add_column("what")
    measured.add_column("value", justify="right")
    measured.add_row(f"hot GEMM {peak.label} (peak)", _rate(peak))
    measured.add_row(f"cold {stream.label} (weight streaming)", _rate(stream))
    for kind, c in copies.items():
        measured.add_row(f"host copies, {kind}", f"{c.host_link_gb_per_s:.2f} GB/s")
    if "pinned" not in copies:
        measured.add_row("host copies, pinned", "not applicable (no CUDA device)")
    measured.add_row("runtime memory per rank", f"{entry['runtime_reserve_gb']:.3g} GB")
    console.print(measured)
    if step is not None and step_samples:
        console.print(_step_table(step_samples))

    residuals, quality = _fit_quality(kernel, comm, copies, step, forward_samples, links, tp_samples)
    console.print(_residual_table("Residuals (predicted by the fitted cost model vs measured)", residuals))
    if kernel.forward:
        console.print(_forward_table(kernel, forward_samples))
    in_run = _in_run_table(kernel)
    if in_run is not None:
        console.print(in_run)
    if links is not None:
        console.print(_tp_forward_table(links, tp_samples))
    summary = Table(title="Fit quality per group (relative error)")
    for col in ("group", "samples", "RMS", "max |error|"):
        summary.add_column(col, justify="left" if col == "group" else "right")
    for group, (n, rms, worst) in quality.items():
        summary.add_row(group, str(n), f"{rms:.1%}", f"{worst:.1%}")
    console.print(summary)

    params = Table(title=f"Fitted parameters -> profile '{name}'")
    for col in ("parameter", "value", "std. error", "profile field(s)"):
        params.add_column(col, justify="right" if col in ("value", "std. error") else "left")
    k = kernel.params
    rows = [
        ("F_eff (achieved GEMM rate)", k.flops_per_s / 1e9, "GFLOP/s", "flops_per_s", 1e9,
         f"bf16_tflops {entry['bf16_tflops']} x matmul_efficiency {entry['matmul_efficiency']}"),
        ("B_eff (achieved memory bw)", k.bytes_per_s / 1e9, "GB/s", "bytes_per_s", 1e9,
         f"memory_gb_per_s {entry['memory_gb_per_s']} x memory_efficiency {entry['memory_efficiency']}"),
        ("matmul_half_rows", k.matmul_half_rows, "rows", "matmul_half_rows", 1, "matmul_half_rows"),
        ("matmul_pack_ratio", k.matmul_pack_ratio, "", "matmul_pack_ratio", 1, "matmul_pack_ratio"),
        ("compute_memory_overlap", k.compute_memory_overlap, "", "compute_memory_overlap", 1,
         "compute_memory_overlap"),
        ("op_overhead_us", k.op_overhead_us, "us", "op_overhead_us", 1, "op_overhead_us"),
        ("elementwise_overhead_us", k.elementwise_overhead_us, "us", "elementwise_overhead_us", 1,
         "elementwise_overhead_us"),
        ("attention_seq_overhead_us", k.attention_seq_overhead_us, "us", "attention_seq_overhead_us", 1,
         "attention_seq_overhead_us"),
        ("attention_efficiency", k.attention_efficiency, "", "attention_efficiency", 1, "attention_efficiency"),
        ("attention_memory_efficiency", k.attention_memory_efficiency, "", "attention_memory_efficiency", 1,
         "attention_memory_efficiency"),
        ("lm_head_efficiency", k.lm_head_efficiency, "", "lm_head_efficiency", 1, "lm_head_efficiency"),
    ]
    for label, value, unit, key, div, field in rows:
        err = kernel.stderr.get(key)
        value = value if abs(value) >= 1e-9 else 0.0  # at its 0 bound
        params.add_row(label, f"{value:.4g} {unit}", "fixed" if err is None else f"{err / div:.2g}", field)
    if comm:
        c = comm.params
        for label, value, unit, key in (("collective_launch_us", c.collective_launch_us, "us", "collective_launch_us"),
                                        ("link latency per hop", c.link_latency_us, "us", "link_latency_us"),
                                        ("link bandwidth", c.link_gb_per_s, "GB/s", "link_gb_per_s")):
            err = comm.stderr.get(key) if key in comm.free else None
            field = {"link_latency_us": "gpu_link_latency_us", "link_gb_per_s": "gpu_link_gb_per_s"}.get(key, key)
            params.add_row(label, f"{value:.4g} {unit}", "fixed" if err is None else f"{err:.2g}",
                           field if links is None or key == "link_latency_us" else "(reported only)")
    if links is not None:
        for label, value, unit, key, field in (
                ("collective_launch_us (TP forward passes)", links.collective_launch_us, "us",
                 "collective_launch_us", "collective_launch_us"),
                ("link bandwidth (TP forward passes)", links.link_gb_per_s, "GB/s", "link_gb_per_s",
                 "gpu_link_gb_per_s")):
            held = key == "link_gb_per_s" and links.bandwidth_held
            params.add_row(label, f"{value:.4g} {unit}", "held (micro-benchmark)" if held else
                           f"{links.stderr[key]:.2g}", field)
    used = "pinned" if "pinned" in copies else "pageable"
    for kind, cf in copies.items():
        params.add_row(f"host copy bandwidth ({kind})", f"{cf.host_link_gb_per_s:.4g} GB/s",
                       f"{cf.stderr_gb_per_s:.2g}", "host_link_gb_per_s" if kind == used else "(reported only)")
    if step is not None:
        params.add_row("step_overhead_us (median fixed part)", f"{step.step_overhead_us:.4g} us", "-",
                       "step_overhead_us")
        params.add_row("  of which worker set-up", f"{step.setup_us:.4g} us", "-", "(reported only)")
        for mode, slope in step.slope_us_per_seq.items():
            params.add_row(f"  {mode} per-sequence slope", f"{slope:.4g} us/seq",
                           "clearly non-zero" if step.slope_clear[mode] else "not clear (0)",
                           "(reported only: not in the cost model)")
    console.print(params)


def write_profile(out: Path, name: str, entry: dict, measured_by: str, kernel: F.KernelFit,
                  comm: F.CommFit | None, copy: F.CopyFit | None, step: F.StepFit | None = None,
                  links: F.ForwardLinkFit | None = None) -> None:
    """Write ``{name: entry}`` as YAML with a comment header (command, fit quality); InputError naming
    ``--out`` when it cannot be written. The entry is validated as a :class:`GPUSpec` first."""
    GPUSpec(name=name, **entry)
    residuals = list(kernel.residuals) + list(comm.residuals if comm else ()) + list(copy.residuals if copy else ())
    residuals += list(step.residuals if step else ()) + list(kernel.forward) + list(links.residuals if links else ())
    lines = [f"# Hardware profile written by {measured_by}.",
             "# A catalog file of one entry: load_catalog(this file), or a cluster file's 'gpu: <this file>'.",
             "# Fit quality (relative error of the fitted cost model per sample group):"]
    lines += [f"#   {g}: {n} samples, RMS {rms:.1%}, max {worst:.1%}"
              for g, (n, rms, worst) in F.residual_summary(residuals).items()]
    text = "\n".join(lines) + "\n" + yaml.safe_dump({name: entry}, sort_keys=False, width=110)
    try:
        out.write_text(text)
    except OSError as e:
        raise InputError("--out", f"cannot write '{out}': {e.strerror}") from None
