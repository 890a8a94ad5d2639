"""Launch commands (``seesaw.codegen.emit``): every flag printed is one of the flag table's, for the right
engine and command, and carries the plan's values.

Plans: Llama-3-70B on 8xH100-SXM (the planner keeps one layout) and Llama-2-70B on 8xA10 (it re-shards), both
closed form over a small ShareGPT sample so that the module takes a few seconds.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from seesaw.codegen import build_execution_plan
from seesaw.codegen.emit import (
    FLAGS_PATH, SHAREGPT_FILE, check_engine, engines, launch_commands, load_engine_flags, resolve_model,
)
from seesaw.ir import load_model_config
from seesaw.ir.errors import InputError
from seesaw.planner.hardware import load_cluster
from seesaw.planner.optimize.solve import plan as make_plan
from seesaw.planner.optimize.space import SearchOptions
from seesaw.planner.workload import load_workload

CASES = {
    "llama-3-70b/8xH100-SXM": ("llama-3-70b", "8xH100-SXM", "sharegpt:200", "meta-llama/Meta-Llama-3-70B"),
    "llama-2-70b/8xA10": ("llama-2-70b", "8xA10", "sharegpt:200", "meta-llama/Llama-2-70b-hf"),
}


def _plan(model: str, cluster: str, workload: str):
    cfg, cl = load_model_config(model), load_cluster(cluster)
    wl, _ = load_workload(workload).within_context(cfg.max_position_embeddings)
    decision = make_plan(cfg, cl, wl, SearchOptions(), simulate=False)
    return build_execution_plan(cfg, decision, cl, wl)


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    model, cluster, workload, hf_id = CASES[request.param]
    return request.param, _plan(model, cluster, workload), hf_id


def _commands(lines: list[str]) -> list[list[str]]:
    return [shlex.split(line) for line in lines if not line.startswith("#")]


def _which(engine: str, words: list[str]) -> tuple[str, dict]:
    """The flag-table command whose program starts ``words``."""
    for name, spec in load_engine_flags()[engine]["commands"].items():
        if words[:len(spec["program"])] == spec["program"]:
            return name, spec
    raise AssertionError(f"no {engine} command starts {words[:3]}")


def _flag_values(words: list[str]) -> dict[str, str | None]:
    """``--flag value`` pairs (a flag followed by another flag or nothing maps to None)."""
    out = {}
    for i, w in enumerate(words):
        if w.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else None
            out[w] = None if nxt is None or nxt.startswith("--") else nxt
    return out


def _expected(plan) -> dict[str, int | None]:
    """The static layout and tuned knobs the commands must carry."""
    s = plan.summary
    bs = s.best_static
    lay = plan.prefill.layout if s.static else bs
    return {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "max_num_seqs": bs.max_num_seqs,
            "max_num_batched_tokens": bs.max_num_batched_tokens,
            "max_model_len": plan.workload["max_seq_len"], "num_prompts": plan.workload["num_requests"]}


def test_flag_table_names_a_source_for_every_flag():
    table = load_engine_flags()
    assert set(engines()) == {"vllm", "sglang", "trtllm", "seesaw"}
    for engine, entry in table.items():
        assert entry["checked"].strip(), engine
        for name, spec in entry["commands"].items():
            for knob, flag in spec["flags"].items():
                assert flag["flag"].startswith("--"), (engine, name, knob)
                assert flag["source"] in entry["sources"], (engine, name, knob)
            if "model" in spec:
                assert spec["model"]["source"] in entry["sources"], (engine, name)


def test_flag_table_is_package_data():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert FLAGS_PATH.name in text


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm"])
def test_engine_commands_use_only_table_flags_with_the_plans_values(case, engine):
    label, plan, hf_id = case
    lines = launch_commands(plan, engine)
    cmds = _commands(lines)
    assert [_which(engine, c)[0] for c in cmds] == ["serve", "bench"], lines
    want = _expected(plan)
    for words in cmds:
        name, spec = _which(engine, words)
        allowed = {f["flag"]: knob for knob, f in spec["flags"].items()}
        model_flag = spec["model"].get("flag")
        got = _flag_values(words)
        for flag in got:
            assert flag in allowed or flag == model_flag, f"{label} {engine} {name}: {flag} not in the table"
        assert hf_id in words, words
        if model_flag:
            assert got[model_flag] == hf_id
        for flag, value in got.items():
            knob = allowed.get(flag)
            if knob in want:
                assert value == str(want[knob]), f"{label} {engine} {name}: {flag} {value} != {want[knob]}"
        for knob in ("tp", "pp", "max_num_seqs", "max_num_batched_tokens", "max_model_len"):
            assert knob in set(map(allowed.get, got)), f"{label} {engine} {name}: no flag for {knob}"
        assert ("dp" in set(map(allowed.get, got))) == ("dp" in spec["flags"])


def test_resharding_plan_says_so_and_gives_both_predictions(case):
    label, plan, _ = case
    text = "\n".join(launch_commands(plan, "vllm"))
    s = plan.summary
    if s.static:
        assert "re-shards" not in text
        assert f"{s.predicted_tokens_per_s:,.0f} tok/s" in text
    else:
        assert (s.prefill.tp, s.prefill.pp) != (s.decode.tp, s.decode.pp)
        assert "re-shards" in text and "--emit seesaw" in text
        assert f"{s.predicted_tokens_per_s:,.0f} tok/s" in text
        assert f"{s.best_static.predicted_tokens_per_s:,.0f} tok/s" in text


def test_seesaw_runs_the_plan_file_with_seesaw_run_options(case):
    _, plan, hf_id = case
    lines = launch_commands(plan, "seesaw", plan_path="my plan.json")
    (words,) = _commands(lines)
    spec = load_engine_flags()["seesaw"]["commands"]["run"]
    assert words[:2] == ["seesaw-run", "my plan.json"]
    assert set(_flag_values(words)) <= {f["flag"] for f in spec["flags"].values()}
    assert {"--checkpoint", "--prompts", "--output"} <= set(_flag_values(words))
    assert any(hf_id in line for line in lines if line.startswith("#"))


def test_seesaw_run_flags_exist_in_the_cli():
    import typer.main  # noqa: PLC0415

    from seesaw.cli.run import app  # noqa: PLC0415

    params = {opt for p in typer.main.get_command(app).params for opt in getattr(p, "opts", [])}
    for f in load_engine_flags()["seesaw"]["commands"]["run"]["flags"].values():
        assert f["flag"] in params, f["flag"]


def test_unset_knobs_are_left_out(case):
    _, plan, _ = case
    data = plan.model_dump(mode="json")
    if data["summary"]["static"]:
        data["schedule"]["max_batched_tokens"] = None
        data["summary"]["best_static"] = None
        data["schedule"]["decode_max_seqs"] = 0
    else:
        data["summary"]["best_static"]["max_num_seqs"] = None
        data["summary"]["best_static"]["max_num_batched_tokens"] = None
    stripped = type(plan).model_validate(data)
    text = "\n".join(launch_commands(stripped, "vllm"))
    assert "--max-num-seqs" not in text and "--max-num-batched-tokens" not in text
    assert "--gpu-memory-utilization" not in text  # closed form: the plan sets no memory fraction


def test_sharegpt_and_random_workloads_map_to_the_benchmarks_datasets():
    plan = _plan("llama-2-7b", "2xA10", "random:512:128:64")
    vllm_bench = _flag_values(_commands(launch_commands(plan, "vllm"))[1])
    assert vllm_bench["--dataset-name"] == "random"
    assert (vllm_bench["--input-len"], vllm_bench["--output-len"], vllm_bench["--num-prompts"]) == ("512", "128", "64")
    sgl_bench = _flag_values(_commands(launch_commands(plan, "sglang"))[1])
    assert sgl_bench["--random-range-ratio"] == "1"
    assert _flag_values(_commands(launch_commands(plan, "vllm"))[0])["--max-model-len"] == "640"


def test_sharegpt_bench_points_at_the_sharegpt_file(case):
    _, plan, _ = case
    bench = _flag_values(_commands(launch_commands(plan, "vllm"))[1])
    assert (bench["--dataset-name"], bench["--dataset-path"]) == ("sharegpt", SHAREGPT_FILE)


def test_unknown_model_gets_a_placeholder_note(case):
    _, plan, _ = case
    data = plan.model_dump(mode="json")
    data["model"]["name"] = "my-model"
    other = type(plan).model_validate(data)
    assert resolve_model(other)[0] == "my-model"
    lines = launch_commands(other, "sglang")
    assert any(line.startswith("# my-model: stands for the Hugging Face id") for line in lines)


def test_bad_engine_is_input_error(case):
    _, plan, _ = case
    with pytest.raises(InputError, match="'tgi' is not an engine"):
        launch_commands(plan, "tgi")
    with pytest.raises(InputError, match="--emit"):
        check_engine("x", "--emit")


def test_data_parallel_and_multi_node_plans():
    plan = _plan("llama-3-8b", "16xH100-SXM", "random:512:128:64")
    lay = plan.prefill.layout
    assert plan.summary.static and lay.dp > 1  # the premise: replicas of one layout
    vllm = launch_commands(plan, "vllm")
    assert _flag_values(_commands(vllm)[0])["--data-parallel-size"] == str(lay.dp)
    assert any(ln.startswith("# vllm bench throughput runs data parallel only") for ln in vllm)
    trt = launch_commands(plan, "trtllm")
    assert not any("--dp" in c for c in _commands(trt)[0])
    assert any(ln.startswith("# trtllm-serve has no data-parallel flag") and f"run {lay.dp} copies" in ln
               for ln in trt)
    (words,) = _commands(launch_commands(plan, "seesaw", plan_path="plan.json"))
    spec = load_engine_flags()["seesaw"]["commands"]
    allowed = {f["flag"] for c in spec.values() for f in c["flags"].values()}
    assert words[0] == "torchrun" and set(_flag_values(words)) <= allowed
    assert _flag_values(words)["--nnodes"] == "2"
    assert words[words.index("-m") + 1:][:2] == ["seesaw.cli.run", "plan.json"]


def test_expert_parallel_layouts_map_to_each_engines_ep_flags():
    """A pinned static tp8ep2 layout (Qwen3-235B-A22B-FP8: TP 8 alone would cut its FP8 expert blocks):
    SGLang and TensorRT-LLM take ep 2 as is; vLLM's EP spans the whole TP group, so it gets the flag and a note
    that its experts would not be tensor-parallel inside two groups."""
    cfg, cl = load_model_config("qwen3-235b-a22b-fp8"), load_cluster("8xH100-SXM")
    wl, _ = load_workload("sharegpt:100").within_context(cfg.max_position_embeddings)
    from seesaw.ir import Layout  # noqa: PLC0415

    decision = make_plan(cfg, cl, wl, SearchOptions(static=True, prefill=Layout(1, 8, 1, 2)), simulate=False)
    plan = build_execution_plan(cfg, decision, cl, wl)
    assert plan.summary.static and plan.prefill.layout.ep == 2
    sglang = _flag_values(_commands(launch_commands(plan, "sglang"))[0])
    assert sglang["--tp-size"] == "8" and sglang["--ep-size"] == "2"
    trt = [_flag_values(c) for c in _commands(launch_commands(plan, "trtllm"))]
    assert trt[0]["--ep_size"] == "2" and trt[1]["--ep"] == "2"
    vllm = launch_commands(plan, "vllm")
    assert all("--enable-expert-parallel" in c for c in _commands(vllm))
    assert any(ln.startswith("# vLLM's expert parallelism spans the whole TP group") and "2 expert groups" in ln
               for ln in vllm)
    assert "ep=2" in vllm[0]
