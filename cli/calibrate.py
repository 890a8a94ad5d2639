"""``seesaw-calibrate``: measure this machine and write a hardware profile for the planner.

    seesaw-calibrate --model SmolLM2-135M --world-sizes 2,3,4 --out profile.yaml [--quick]
    seesaw-calibrate --checkpoint model.gguf --out profile.yaml     # also the runtime's own forward passes

Measures (:mod:`seesaw.runtime.microbench`, :mod:`seesaw.runtime.microbench_comm`,
:mod:`seesaw.runtime.microbench_step`) GEMMs over the model's shard shapes with cold weights, weight-streaming
bandwidth, elementwise ops, attention, all-reduce and send/recv at several sizes for each world size (gloo on
CPU, NCCL on CUDA), host <-> device copies, the scheduler <-> worker round trip of a micro-batch; fits the
cost model's terms (:mod:`seesaw.planner.calibration.fit`); prints the measurements, the fitted parameters and
the residuals (``--json``: also as JSON on stdout, the tables on stderr); writes a profile that loads as a
catalog file and as a cluster file's ``gpu:``. With
``--checkpoint`` it also times the runtime's own forward passes of that checkpoint on every core at once (``--forward-ranks``)
(:mod:`seesaw.experiments.calibration_runs`) and fits the compute terms to them together with the op timings; when
the checkpoint's heads allow TP over the forward ranks it also times TP passes and fits
``collective_launch_us`` and ``gpu_link_gb_per_s`` to them (collectives inside real steps).
Bad input
exits with status 2 and one line naming the problem (no traceback); a failed measurement exits with 1.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import Progress

from seesaw.cli.common import CommandError, run_app
from seesaw.cli.json_output import json_text
from seesaw.ir.errors import InputError

STEP_LABEL = "micro-batch round trip (step overhead)"
FORWARD_LABEL = "forward passes of the runtime"

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)


def _int_list(text: str, option: str, minimum: int) -> tuple[int, ...]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or values[0] < minimum:
        raise InputError(option, f"'{text}' must be a comma-separated list of integers >= {minimum}")
    return tuple(values)


def _positive(value: float | None, option: str) -> None:
    if value is not None and not value > 0:
        raise InputError(option, f"must be > 0, got {value:g}")


@app.command()
def calibrate(
    model: Annotated[Optional[str], typer.Option(
        "--model", "-m", help="config.json path, folder, shipped name, or Hugging Face id in the local cache "
                              "(default: the checkpoint's)")] = None,
    checkpoint: Annotated[Optional[Path], typer.Option(
        help="Hugging Face folder or .gguf file: also time the runtime's forward passes of it (all ranks of --forward-ranks busy)")] = None,
    forward_weight: Annotated[float, typer.Option(
        help="weight of the forward passes in the fit, relative to all op timings together (3: the runtime's own passes dominate; the op timings fix the shape of each term)")] = 3.0,
    forward_ranks: Annotated[Optional[int], typer.Option(
        help="ranks serving the forward passes at once (default: every core on CPU, where ranks share caches, "
             "memory bandwidth and clocks; 1 on CUDA)")] = None,
    tp: Annotated[str, typer.Option(help="TP degrees whose shard shapes to time, e.g. 1,2")] = "1",
    world_sizes: Annotated[str, typer.Option(help="world sizes for all-reduce timings, e.g. 2,3,4")] = "2,3,4",
    name: Annotated[Optional[str], typer.Option(help="profile entry name (default: cpu, or the GPU's name)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="profile YAML to write")] = Path("profile.yaml"),
    quick: Annotated[bool, typer.Option("--quick", help="fewer shapes and repetitions (well under a minute)")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda")] = "auto",
    memory_gb: Annotated[Optional[float], typer.Option(help="device memory per rank, GB (planning choice)")] = None,
    host_memory_gb_per_gpu: Annotated[Optional[float], typer.Option(help="host memory per rank, GB")] = None,
    gpus_per_node: Annotated[Optional[int], typer.Option(help="ranks per node")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="show a progress bar")] = True,
    save_timings: Annotated[Optional[Path], typer.Option(help="also write every raw timing to this JSON file")] = None,
    refit: Annotated[Optional[Path], typer.Option(help="fit --save-timings output instead of measuring")] = None,
    from_aiconfigurator: Annotated[Optional[str], typer.Option(
        "--from-aiconfigurator", help="fit a profile to NVIDIA AIConfigurator's measured tables of this system "
                                      "(h100_sxm, h200_sxm, a100_sxm, l40s, b200_sxm) instead of measuring")] = None,
    from_benchmarks: Annotated[Optional[Path], typer.Option(
        "--from-benchmarks", help="fit a profile's efficiency terms to measured end-to-end throughputs (.csv or "
                                  ".jsonl, see docs/calibration.md) instead of measuring")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print every table's figures as JSON on stdout (the "
                                          "tables then go to stderr)")] = False,
) -> None:
    """Measure this device, fit the cost model, print the fit and its residuals, write the profile."""
    if from_aiconfigurator is not None or from_benchmarks is not None:
        from seesaw.cli.calibrate_sources import from_aiconfigurator as aic, from_benchmarks as bench  # noqa: PLC0415

        if from_aiconfigurator is not None and from_benchmarks is not None:
            raise InputError("--from-aiconfigurator", "give one of --from-aiconfigurator and --from-benchmarks")
        if out.exists() and out.is_dir() or not out.parent.exists():
            raise InputError("--out", f"cannot write '{out}' (a folder, or its folder does not exist)")
        console = Console(stderr=as_json)
        if from_aiconfigurator is not None:
            data = aic(from_aiconfigurator, out, name, console)
        else:
            data = bench(from_benchmarks, out, name, console)
        if as_json:
            print(json_text(data))
        return
    import torch

    from seesaw.cli.calibrate_report import print_report, report_data, write_profile
    from seesaw.ir import check_tp, load_model_config
    from seesaw.planner.calibration import fit as F
    from seesaw.planner.hardware.catalog import get_gpu, match_device_name
    from seesaw.planner.calibration.profile import DeviceFacts, profile_entry
    from seesaw.runtime.microbench import Bench, Settings
    from seesaw.runtime.microbench_comm import measure_world
    from seesaw.runtime.microbench_step import measure_step

    if model is None and checkpoint is None:
        raise InputError("--model", "give --model or --checkpoint (whose config it then defaults to)")
    if forward_ranks is not None and forward_ranks < 1:
        raise InputError("--forward-ranks", f"must be >= 1, got {forward_ranks}")
    if not (forward_weight >= 0):
        raise InputError("--forward-weight", f"must be >= 0, got {forward_weight:g}")
    folder = None
    if checkpoint is not None:
        from seesaw.runtime.checkpoint import prepare_checkpoint  # noqa: PLC0415

        folder = prepare_checkpoint(checkpoint)
    cfg = load_model_config(model if model is not None else folder)
    tps = _int_list(tp, "--tp", 1)
    for t in tps:
        check_tp(cfg, t)
    worlds = _int_list(world_sizes, "--world-sizes", 2)
    _positive(memory_gb, "--memory-gb")
    _positive(host_memory_gb_per_gpu, "--host-memory-gb-per-gpu")
    if gpus_per_node is not None and gpus_per_node < 1:
        raise InputError("--gpus-per-node", f"must be >= 1, got {gpus_per_node}")
    if device not in ("auto", "cpu", "cuda"):
        raise InputError("--device", f"'{device}' is not auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "cuda requested but torch sees no CUDA device")
    if name is not None and not name.strip():
        raise InputError("--name", "must not be empty")
    if out.exists() and out.is_dir():
        raise InputError("--out", f"'{out}' is a folder; give a file name")
    if not out.parent.exists():
        raise InputError("--out", f"folder '{out.parent}' does not exist")
    dev = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")

    if dev.type == "cpu":
        base, dev_name = get_gpu("cpu"), "cpu"
        threads = os.environ.get("SEESAW_THREADS_PER_RANK", "1")
        machine = f"{os.cpu_count()}-core CPU, torch {torch.__version__}, {threads} thread(s) per rank, gloo"
    else:
        dev_name = torch.cuda.get_device_name(dev)
        base = match_device_name(dev_name)
        machine = f"{dev_name}, torch {torch.__version__}, CUDA {torch.version.cuda}, NCCL"
        comm_worlds = [w for w in worlds if w <= torch.cuda.device_count()]
        if len(comm_worlds) < len(worlds):
            Console(stderr=True).print(f"note: {torch.cuda.device_count()} GPU(s): skipping world sizes "
                                       f"{[w for w in worlds if w not in comm_worlds]}")
        worlds = tuple(comm_worlds)

    bench = Bench(cfg, dev, Settings(tps=tps, quick=quick))
    steps = list(bench.gemm_steps())
    steps += [("weight streaming (GEMV)", lambda: [bench.stream()]), ("hot GEMM (peak)", lambda: [bench.peak()])]
    for t in tps:
        steps += [(f"elementwise ops tp{t}", lambda t=t: bench.elementwise(t)),
                  (f"attention tp{t}", lambda t=t: bench.attention(t))]
    steps.append(("host copies", bench.copies))
    steps.append((STEP_LABEL, lambda: measure_step(cfg, dev.type, quick)))
    if folder is not None and refit is None:
        from seesaw.experiments.calibration_runs import measure_forward, plan_cluster  # noqa: PLC0415

        memory = torch.cuda.get_device_properties(dev).total_memory / 1e9 if dev.type == "cuda" else 0.0
        ranks = forward_ranks or ((os.cpu_count() or 1) if dev.type == "cpu" else 1)
        cluster = plan_cluster(dev.type, base, dev_name, memory, ranks)
        steps.append((FORWARD_LABEL, lambda: measure_forward(folder, cluster, quick, bench.dtype_bytes)))
    for w in worlds:
        steps.append((f"{'NCCL' if dev.type == 'cuda' else 'gloo'} world {w}",
                      lambda w=w: measure_world(w, dev.type, quick)))

    console = Console(stderr=True)
    if refit is not None:
        m = Measurements.load(refit)
    else:
        m = _measure(steps, console, progress)
    if save_timings is not None:
        m.save(save_timings)
    peak, stream, copies, reserves = m.peak, m.stream, m.copies, m.reserves

    step = F.fit_step(m.steps) if m.steps else None
    # GEMM timings cannot separate n_half from B_eff (see fit.py): B_eff = the measured streaming rate.
    # Forward passes are predicted with the per-micro-batch overhead of the step fit.
    # TP-1 passes join the kernel fit; TP passes (collectives inside real steps) then fit the link terms.
    dp_forward = [f for f in m.forward if f.tp == 1]
    tp_forward = [f for f in m.forward if f.tp > 1]
    step_us = step.step_overhead_us if step else 0.0
    kernel = F.fit_kernels(m.ops + m.in_run, fixed={"bytes_per_s": stream.nbytes / stream.seconds},
                           forward=dp_forward,
                           forward_weight=forward_weight, step_overhead_us=step_us)
    comm = F.fit_comm(m.comm) if m.comm else None
    links = None
    if tp_forward:
        latency_us = comm.params.link_latency_us if comm else (base.gpu_link_latency_us if base else 0.0)
        held = 1.0 / (comm.params.link_gb_per_s * 1e9) if comm else None
        # the bytes term from the micro-benchmarks' large messages; the passes fit the launch (a free bandwidth
        # fitted 0.23 GB/s against 1.84 measured: the 4 TP prefill passes' compute error went into it, and
        # tp2 prefill of 5,464 tokens then came out 26% over in seesaw-validate)
        links = F.fit_forward_links(tp_forward, kernel.params.spec(step_overhead_us=step_us), latency_us * 1e-6,
                                    held, hold_bandwidth=held is not None)
    copy_fits = {k: F.fit_copy([c for c in copies if c.kind == k])
                 for k in ("pinned", "pageable") if any(c.kind == k for c in copies)}
    copy = copy_fits.get("pinned") or copy_fits.get("pageable")

    today = _dt.date.today().isoformat()
    model_name = cfg.name if model is not None else Path(checkpoint).name  # a converted GGUF's folder is a hash
    forward_of = ("" if not (m.forward and checkpoint is not None) else
                  " with its forward passes" if model is None else f", forward passes of {Path(checkpoint).name}")
    by = f"seesaw-calibrate on {today}, {machine}, model {model_name}{forward_of}" + (f", refit of {refit}" if refit else "")
    on_cpu = dev.type == "cpu"
    datasheet = base is not None and not on_cpu
    peak_flops = base.peak_flops if datasheet else peak.flops / peak.seconds
    stream_bw = base.memory_bytes_per_s if datasheet else stream.nbytes / stream.seconds
    peak_source = (f"{base.name} datasheet peaks ({base.source.get('compute', 'catalog')})" if datasheet else
                   f"measured by {by}: peak = hot GEMM {peak.label} at {peak.flops / peak.seconds / 1e9:.1f} "
                   f"GFLOP/s; memory = weights streamed by a cold {stream.label} at "
                   f"{stream.nbytes / stream.seconds / 1e9:.2f} GB/s (raised to the fitted rates if those are higher)")
    mem_gb = memory_gb or (base.memory_gb if on_cpu else
                           round(torch.cuda.get_device_properties(dev).total_memory / 1e9, 1))
    host_gb = host_memory_gb_per_gpu or (base.host_memory_gb_per_gpu if base else
                                         round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
                                               / max(1, torch.cuda.device_count()), 1))
    per_node = gpus_per_node or (base.gpus_per_node if base else max(1, torch.cuda.device_count()))
    reserve = max(reserves) / 1e9 if reserves else (base.runtime_reserve_gb if base else 2.0)
    reserve_how = "rank RSS after import torch + gloo init" if on_cpu else "device memory in use after NCCL init"
    facts = DeviceFacts(
        dtype_bytes=bench.dtype_bytes, link="gloo" if on_cpu else (base.link if base else "pcie"),
        memory_gb=mem_gb, host_memory_gb_per_gpu=host_gb, gpus_per_node=per_node, runtime_reserve_gb=reserve,
        peak_flops=peak_flops, stream_bytes_per_s=stream_bw, measured_by=by, peak_source=peak_source,
        planning_source=(f"planning choice: memory_gb {mem_gb:g}, host_memory_gb_per_gpu {host_gb:g}, "
                         f"gpus_per_node {per_node} (seesaw-calibrate options; defaults from "
                         f"{'the cpu entry' if on_cpu else (base.name if base else 'this machine')})"),
        reserve_source=(f"measured by {by} ({reserve_how})" if reserves else
                        f"not measured here: {base.name if base else 'default'} figure"),
        base=base if datasheet or on_cpu else None,
        fixed_note=f"B_eff = the cold {stream.label} streaming rate; GEMM timings cannot separate it from "
                   "matmul_half_rows")
    entry = profile_entry(kernel, comm, copy, facts, step, links)
    entry_name = (name or ("cpu" if on_cpu else (base.name if base else dev_name))).strip()
    tty = (sys.stderr if as_json else sys.stdout).isatty()
    report = Console(width=None if tty else 140, stderr=as_json)  # no wrapped sample labels in logs
    fitted = (kernel, comm, copy_fits, peak, stream, entry_name, entry, step, m.steps, dp_forward, links, tp_forward)
    print_report(report, *fitted)
    write_profile(out, entry_name, entry, by, kernel, comm, copy, step, links)
    console.print(f"wrote {out}: a catalog file of one entry; a cluster file takes it as 'gpu: {out.name}'")
    if as_json:
        print(json_text({**report_data(*fitted), "out": str(out), "measured_by": by}))


@dataclass
class Measurements:
    """Every timing of one calibration run, as fit samples (JSON round trip for --save-timings/--refit)."""

    ops: list  # OpSample, cold: what the kernel fit uses
    comm: list  # CommSample
    copies: list  # CopySample
    peak: object  # OpSample of the hot GEMM
    stream: object  # OpSample of the weight-streaming GEMV (also in ops)
    reserves: list  # runtime memory per rank, bytes, one per world size
    steps: list  # StepSample: micro-batch round trips (absent from files of older versions: not measured)
    forward: list = field(default_factory=list)  # ForwardSample: runtime forward passes (--checkpoint only),
    # TP 1 (data-parallel run) and, where the heads allow it, tp = the forward ranks (one TP group)
    in_run: list = field(default_factory=list)  # OpSample (in_run): instructions timed inside those passes

    def save(self, path: Path) -> None:
        data = {k: ([asdict(x) for x in v] if k in ("ops", "comm", "copies", "steps", "forward", "in_run") else
                    (asdict(v) if k in ("peak", "stream") else v)) for k, v in vars(self).items()}
        try:
            path.write_text(json.dumps(data, indent=1))
        except OSError as e:
            raise InputError("--save-timings", f"cannot write '{path}': {e.strerror}") from None

    @classmethod
    def load(cls, path: Path) -> "Measurements":
        from seesaw.planner.calibration import fit as F

        try:
            d = json.loads(path.read_text())
            return cls([F.OpSample(**x) for x in d["ops"]], [F.CommSample(**x) for x in d["comm"]],
                       [F.CopySample(**x) for x in d["copies"]], F.OpSample(**d["peak"]),
                       F.OpSample(**d["stream"]), list(d["reserves"]),
                       [F.StepSample(**x) for x in d.get("steps", [])],
                       [F.ForwardSample(**{**x, "ops": tuple(F.OpSample(**o) for o in x["ops"]),
                                           "counts": tuple(x.get("counts") or ()),
                                           "context_lens": tuple(x.get("context_lens") or ()),
                                           "comms": tuple((str(k), float(b)) for k, b in x.get("comms") or ()),
                                           "comm_counts": tuple(x.get("comm_counts") or ())})
                        for x in d.get("forward", [])],
                       [F.OpSample(**x) for x in d.get("in_run", [])])
        except OSError as e:
            raise InputError("--refit", f"cannot read '{path}': {e.strerror}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise InputError("--refit", f"'{path}' is not a timings file written by --save-timings ({e})") from None


def _measure(steps: list, console: Console, progress: bool) -> Measurements:
    """Run every measurement step under a progress bar with the runtime's thread count."""
    import torch

    from seesaw.planner.calibration import fit as F
    from seesaw.runtime.microbench import set_threads

    results: dict[str, object] = {}
    old_threads = set_threads()
    try:
        with Progress(console=console, transient=True, disable=not progress) as bar:
            task = bar.add_task("calibrating", total=len(steps))
            for label, step in steps:
                bar.update(task, description=label)
                try:
                    results[label] = step()
                except (RuntimeError, OSError) as e:  # a spawned rank died, out of memory, ...
                    raise CommandError(f"measuring {label} failed: {str(e).strip().splitlines()[-1]}") from None
                bar.advance(task)
    finally:
        torch.set_num_threads(old_threads)
    ops, comm, reserves = [], [], []
    for label, value in results.items():
        if label.startswith(("NCCL", "gloo")):
            comm += [F.CommSample(**asdict(t)) for t in value[0]]
            reserves.append(value[1])
        elif label not in ("host copies", "hot GEMM (peak)", STEP_LABEL, FORWARD_LABEL):
            ops += [F.OpSample(**asdict(t)) for t in value]
    return Measurements(ops, comm, [F.CopySample(**asdict(c)) for c in results["host copies"]],
                        F.OpSample(**asdict(results["hot GEMM (peak)"][0])),
                        F.OpSample(**asdict(results["weight streaming (GEMV)"][0])), reserves,
                        [F.StepSample(**asdict(t)) for t in results[STEP_LABEL]],
                        *map(list, results.get(FORWARD_LABEL, ([], []))))


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the status code."""
    code = run_app(app, list(sys.argv[1:] if argv is None else argv), "seesaw-calibrate")
    if argv is None:
        sys.exit(code)
    return code
