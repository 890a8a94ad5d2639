"""The planner beside NVIDIA AIConfigurator on AIConfigurator's measured systems (the fidelity report's third
part; needs ``pip install aiconfigurator``).

For each static case (model x system x input/output lengths x TP/PP layout) AIConfigurator's own estimate
comes from its SDK exactly as its ``cli estimate --estimate-mode agg`` builds it (model config in 16-bit,
the system's vLLM perf database, ``InferenceSession``), with its own batch-size sweep
(``aiconfigurator.sdk.sweep._sweep_one_parallel_agg`` without latency limits: the batch size and prefill
budget of highest throughput that fit in memory); ours is the planner's static plan of the same layout,
simulated under the vLLM engine with tuned knobs on ``random:ISL:OSL:N``. Both give output tokens/s per
GPU. Per group (model, system, lengths) both name their best layout; :func:`summarize` reports the ratio of
the two estimates per case, how often they are within 15 %, how often the best layouts agree, and what
following the planner's choice loses by AIConfigurator's own estimate. Two private AIConfigurator
functions are used (0.12.0; its SDK moves to ``aisimulate`` in 0.13), hence the pinned version.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

from seesaw.ir.layout import Layout

#: Model (HF id AIConfigurator ships a config for) -> the config the planner plans (AIConfigurator's own copy).
MODELS = {"meta-llama/Meta-Llama-3.1-8B": "meta-llama--Meta-Llama-3.1-8B_config.json",
          "meta-llama/Meta-Llama-3.1-70B": "meta-llama--Meta-Llama-3.1-70B_config.json",
          "Qwen/Qwen3-8B": "Qwen--Qwen3-8B_config.json", "Qwen/Qwen3-32B": "Qwen--Qwen3-32B_config.json"}
SYSTEMS = {"h100_sxm": "H100-SXM", "h200_sxm": "H200-SXM", "a100_sxm": "A100-SXM-80GB", "l40s": "L40S"}
LENGTHS = ((1024, 128), (2048, 512), (512, 2048), (250, 250))
LAYOUTS = ("tp1", "tp2", "tp4", "tp8", "pp2", "pp4", "pp8", "tp2pp2", "tp2pp4", "tp4pp2")
REQUESTS = 1000  # requests of the planner's workload per case


@dataclass(frozen=True)
class Case:
    model: str
    system: str
    isl: int
    osl: int
    layout: str

    @property
    def group(self) -> tuple:
        return self.model, self.system, self.isl, self.osl


@dataclass(frozen=True)
class CaseResult:
    """Output tokens/s per GPU by AIConfigurator and by the planner (None: does not fit for that side)."""

    case: Case
    aic: float | None
    ours: float | None

    @property
    def ratio(self) -> float | None:
        return self.ours / self.aic if self.aic and self.ours else None


_SESSIONS: dict = {}


def aic_estimate(case: Case) -> float | None:
    """AIConfigurator's best output tokens/s per GPU for the case (None when nothing fits)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.getLogger("aiconfigurator").setLevel(logging.ERROR)
    logging.getLogger("aiconfigurator_core").setLevel(logging.ERROR)
    from aiconfigurator.cli import api  # noqa: PLC0415
    from aiconfigurator.sdk.backends.factory import get_backend  # noqa: PLC0415
    from aiconfigurator.sdk.config import RuntimeConfig  # noqa: PLC0415
    from aiconfigurator.sdk.config_builders import build_model_config  # noqa: PLC0415
    from aiconfigurator.sdk.inference_session import InferenceSession  # noqa: PLC0415
    from aiconfigurator.sdk.models import get_model, resolve_context_fmha_by_data  # noqa: PLC0415
    from aiconfigurator.sdk.perf_database import get_database_view, get_latest_database_version  # noqa: PLC0415
    from aiconfigurator.sdk.rust_engine_step import validate_engine_step_backend  # noqa: PLC0415
    from aiconfigurator.sdk.sweep import _sweep_one_parallel_agg  # noqa: PLC0415

    lay = Layout.parse(case.layout)
    key = (case.model, case.system, lay.tp, lay.pp)
    if key not in _SESSIONS:
        version = get_latest_database_version(system=case.system, backend="vllm")
        moe_tp, moe_ep = api._resolve_moe_parallelism(lay.tp, 1, None, None, model_path=case.model)
        cfg = build_model_config(lay.tp, lay.pp, 1, moe_tp, moe_ep, gemm_quant_mode="bfloat16",
                                 kvcache_quant_mode="bfloat16", fmha_quant_mode="bfloat16",
                                 moe_quant_mode="bfloat16", comm_quant_mode="half")
        db = get_database_view(case.system, "vllm", version, allow_missing_data=False, database_mode="SILICON",
                               transfer_policy=None)
        resolve_context_fmha_by_data(cfg, case.model, db, "vllm", is_context_role=True)
        model = get_model(case.model, cfg, "vllm")
        _SESSIONS[key] = (model, db, get_backend("vllm"))
    model, db, backend = _SESSIONS[key]
    rc = RuntimeConfig(isl=case.isl, osl=case.osl, batch_size=1, prefix=0, ttft=math.inf, tpot=math.inf,
                       engine_step_backend=validate_engine_step_backend(None))
    df, *_ = _sweep_one_parallel_agg(model=model, backend=backend, database=db, runtime_config=rc, top_k=0,
                                     max_batch_size=512, ctx_stride=512, enable_chunked_prefill=False,
                                     free_gpu_memory_fraction=None, max_seq_len=None)
    if df is None or not len(df):
        return None
    return float(df.sort_values(by="seq/s", ascending=False).iloc[0]["tokens/s/gpu"])


def our_estimate(case: Case) -> float | None:
    """The planner's simulated static plan of the case's layout: output tokens/s per GPU (None: no fit)."""
    from importlib import resources  # noqa: PLC0415

    from seesaw.ir import load_model_config  # noqa: PLC0415
    from seesaw.ir.errors import InputError  # noqa: PLC0415
    from seesaw.planner.hardware import load_cluster  # noqa: PLC0415
    from seesaw.planner.optimize.solve import plan  # noqa: PLC0415
    from seesaw.planner.optimize.space import SearchOptions  # noqa: PLC0415
    from seesaw.planner.workload import load_workload  # noqa: PLC0415

    lay = Layout.parse(case.layout)
    config = resources.files("aiconfigurator_core").joinpath("model_configs", MODELS[case.model])
    cfg = load_model_config(str(config))
    try:
        p = plan(cfg, load_cluster(f"{lay.world_size}x{SYSTEMS[case.system]}"),
                 load_workload(f"random:{case.isl}:{case.osl}:{REQUESTS}"), SearchOptions(static=True, prefill=lay))
    except InputError:
        return None
    return p.prediction.output_tokens_per_s / lay.world_size


def cases() -> list[Case]:
    return [Case(m, s, i, o, lay) for m in MODELS for s in SYSTEMS for i, o in LENGTHS for lay in LAYOUTS]


@dataclass(frozen=True)
class Summary:
    cases: int
    compared: int
    within_15: float  # share of compared cases with |ours / AIC - 1| <= 15 %
    geomean_ratio: float
    groups: int
    same_best: int
    loss_geomean: float  # 1 - geomean(AIC(our best) / AIC(AIC best)) over the groups


def summarize(results: list[CaseResult]) -> Summary:
    """Agreement of the two estimates over the cases and the groups (see the module docstring)."""
    ratios = [r.ratio for r in results if r.ratio]
    by_group: dict[tuple, list[CaseResult]] = {}
    for r in results:
        by_group.setdefault(r.case.group, []).append(r)
    same, logs = 0, []
    for members in by_group.values():
        both = [m for m in members if m.aic and m.ours]
        if not both:
            continue
        aic_best = max(both, key=lambda m: m.aic)
        our_best = max(both, key=lambda m: m.ours)
        same += aic_best is our_best
        logs.append(math.log(our_best.aic / aic_best.aic))
    return Summary(len(results), len(ratios), sum(abs(x - 1) <= 0.15 for x in ratios) / max(1, len(ratios)),
                   math.exp(sum(map(math.log, ratios)) / len(ratios)) if ratios else math.nan, len(logs), same,
                   1 - math.exp(sum(logs) / len(logs)) if logs else math.nan)


def side_by_side_section(md: list[str], console, only: int | None = None) -> list[CaseResult]:
    """Run every case (the first ``only`` groups' when given), print and append the Markdown tables."""
    from rich.table import Table  # noqa: PLC0415

    all_cases = cases()
    groups = list(dict.fromkeys(c.group for c in all_cases))[:only] if only else None
    results = []
    for c in all_cases:
        if groups is not None and c.group not in groups:
            continue
        try:
            aic = aic_estimate(c)
        except Exception as e:  # noqa: BLE001 (AIConfigurator raises plain exceptions for unsupported points)
            console.print(f"AIConfigurator: {c}: {type(e).__name__}: {e}")
            aic = None
        results.append(CaseResult(c, aic, our_estimate(c)))
    s = summarize(results)
    t = Table(title="beside AIConfigurator (output tokens/s per GPU, static layouts, vLLM)")
    for col in ("model", "system", "ISL/OSL", "layout", "AIConfigurator", "planner", "ratio"):
        t.add_column(col)
    md += ["## Beside AIConfigurator", "", "| model | system | ISL/OSL | layout | AIConfigurator | planner | ratio |",
           "|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.case
        cols = [c.model.split("/")[-1], c.system, f"{c.isl}/{c.osl}", c.layout,
                "-" if r.aic is None else f"{r.aic:,.0f}", "-" if r.ours is None else f"{r.ours:,.0f}",
                "-" if r.ratio is None else f"{r.ratio:.2f}"]
        t.add_row(*cols)
        md.append("| " + " | ".join(cols) + " |")
    console.print(t)
    line = (f"{s.compared} of {s.cases} cases estimated by both: {s.within_15:.0%} within +-15 %, geometric-mean "
            f"ratio {s.geomean_ratio:.2f}; best layout the same in {s.same_best} of {s.groups} groups; following "
            f"the planner's choice loses {s.loss_geomean:.1%} against AIConfigurator's best by its own estimate "
            "(geometric mean)")
    console.print(line)
    md += ["", f"**{line}**", ""]
    return results
