"""Human-readable rendering of a :class:`SeesawPlan` (rich tables)."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table

from seesaw.planner.decision import PhaseLayout, Prediction, SeesawPlan

GB = 1e9


def _layout(p: PhaseLayout) -> str:
    lay = p.layout
    return f"dp={lay.dp} tp={lay.tp} pp={lay.pp}" + (f" ep={lay.ep}" if lay.ep > 1 else "")


def _stages(p: PhaseLayout) -> str:
    return " ".join(f"[{a},{b})" for a, b in p.stage_layers)


def _rate(pred: Prediction) -> str:
    return f"{pred.tokens_per_s:,.0f} tok/s total, {pred.output_tokens_per_s:,.0f} output tok/s"


def _method(pred: Prediction, engine: str) -> str:
    """How a prediction was made: simulated (with the closed form beside it) or the closed form alone."""
    if pred.method != "simulated":
        return "closed form"
    gap = pred.gap_vs_closed_form
    return f"simulation of {engine} (closed form {pred.closed_form_s:,.1f} s, {gap:+.0%})"


def render(plan: SeesawPlan, title: str, console: Console, kv_bytes_per_token: int, device: str = "GPU") -> None:
    """Print the plan table. ``kv_bytes_per_token``: all layers, for sizing the host buffer in GB;
    ``device``: what a rank runs on, in the labels ("GPU", or "CPU rank" for a CPU cluster)."""
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("item")
    # One layout with a host buffer still alternates prefill and decode phases (no chunked prefill).
    phased = plan.host_kv_buffer_tokens > 0
    t.add_column("Seesaw plan" if not plan.is_static else "Seesaw plan (one layout)" if phased else "plan (static)")
    t.add_column("best static")
    s = plan.best_static
    pred = plan.prediction
    bd = pred.breakdown
    t.add_row("prefill layout", _layout(plan.prefill), _layout(s.phase) if s else "-")
    t.add_row("decode layout", _layout(plan.decode), _layout(s.phase) if s else "-")
    t.add_row("prefill PP stages (layers)", _stages(plan.prefill), _stages(s.phase) if s else "-")
    t.add_row("decode PP stages (layers)", _stages(plan.decode), _stages(s.phase) if s else "-")
    t.add_row("host KV buffer", f"{plan.host_kv_buffer_tokens:,} tokens "
              f"({plan.host_kv_buffer_tokens * kv_bytes_per_token / GB:,.1f} GB) per replica", "-")
    t.add_row(f"{device} KV capacity", f"{plan.gpu_kv_tokens:,} tokens per replica",
              f"{s.gpu_kv_tokens:,} tokens per replica" if s else "-")
    t.add_row("max prefill tokens / batch", f"{plan.max_prefill_tokens:,}",
              f"{s.max_batched_tokens:,} (chunked)" if s else "-")
    t.add_row("decode batch cap (seqs)", f"{plan.decode_max_seqs:,}", f"{s.decode_max_seqs:,}" if s else "-")
    if s is not None and s.gpu_memory_utilization is not None:
        t.add_row("engine memory fraction", "-", f"{s.gpu_memory_utilization:g}")
    t.add_row("switch thresholds (buffer tokens)",
              f"prefill->decode at {plan.prefill_to_decode_threshold_tokens:,}, "
              f"decode->prefill at {plan.decode_to_prefill_threshold_tokens:,}" if phased else "- (no phase switches)",
              "-")
    t.add_row("predicted throughput", _rate(pred), _rate(s.prediction) if s else "-")
    t.add_row("  predicted by", _method(pred, "this runtime"), _method(s.prediction, f"{s.engine} engine") if s else "-")
    t.add_row("  prefill / decode", f"{bd.prefill_s:,.1f} s / {bd.decode_s:,.1f} s",
              f"mixed steps {s.prediction.breakdown.total_s:,.1f} s" if s else "-")
    t.add_row("  transitions", f"{bd.transitions} ({bd.transition_s:,.1f} s)", "0")
    t.add_row("  exposed KV swap", f"{bd.kv_swap_s:,.1f} s", "-")
    t.add_row("  total", f"{bd.total_s:,.1f} s", f"{s.prediction.breakdown.total_s:,.1f} s" if s else "-")
    m = pred.memory
    t.add_row(f"memory per {device} (fullest)",
              f"{m.device_total_bytes / GB:.1f} / {m.capacity_bytes / GB:.1f} GB "
              f"(weights {m.weights_bytes / GB:.1f}, KV {m.kv_cache_bytes / GB:.1f}, "
              f"workspace {m.workspace_bytes / GB:.1f}, reserve {m.reserve_bytes / GB:.1f})",
              f"{s.prediction.memory.device_total_bytes / GB:.1f} GB" if s else "-")
    t.add_row("host memory per node", f"{(m.host_weights_bytes + m.host_kv_buffer_bytes) / GB:,.1f} / "
              f"{m.host_capacity_bytes / GB:,.0f} GB", "-")
    console.print(t)
    speedup = (pred.tokens_per_s / s.prediction.tokens_per_s) if s else None
    verdict = ("re-sharding" if not plan.is_static else
               "one layout, no re-sharding; prefill and decode alternate through the host KV buffer" if phased
               else "static (no re-sharding)")
    console.print(f"chosen: {verdict}" + (f"; predicted speedup vs best static: {speedup:.2f}x" if speedup else ""))
    for note in plan.notes:
        console.print(f"note: {note}")
    sv = plan.solver
    console.print(f"solver: {sv.name} {sv.status} in {sv.seconds:.2f} s")
