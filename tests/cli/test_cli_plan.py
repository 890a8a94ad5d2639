"""``seesaw-plan`` end to end: plan files, the JSON summary, pins, determinism, and one-line errors.

The CLI runs in-process through ``seesaw.cli.plan.main(argv)`` (returns the exit status); one test runs the
console entry point in a subprocess to check the real exit status. Small models and workloads keep the
file fast; one test plans llama-2-70b on 8xA10 with the full ShareGPT trace (about a second).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from seesaw.cli.plan import main

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "examples" / "models"
SMOL = str(MODELS / "SmolLM2-135M.json")
L7B = str(MODELS / "llama-2-7b.json")
L70B = str(MODELS / "llama-2-70b.json")
SMALL_WL = "random:128:64:200"

LAYOUT_KEYS = {"dp", "tp", "pp", "ep"}
SUMMARY_KEYS = {
    "prefill", "decode", "host_kv_buffer_tokens", "gpu_kv_tokens", "max_prefill_tokens", "decode_max_seqs",
    "predicted_tokens_per_s", "predicted_output_tokens_per_s", "best_static", "speedup_vs_best_static",
    "solver",
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit status, stdout, stderr)."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(capsys, *argv: str) -> dict:
    """Plan with ``--json``; the summary parsed from stdout (the table goes to stderr)."""
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    """Exit status 2, nothing on stdout, exactly one ``seesaw-plan: error:`` line naming the problem."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("seesaw-plan: error: "), err
    assert "Traceback" not in err
    assert out == ""
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory) -> Path:
    """llama-2-7b on 8xA10 with 500 ShareGPT requests (a re-sharding plan), written once for the module."""
    path = tmp_path_factory.mktemp("plan") / "plan.json"
    assert main(["--model", L7B, "--cluster", "8xA10", "--workload", "sharegpt:500", "-o", str(path)]) == 0
    return path


# --- normal runs -----------------------------------------------------------------------------------------

def test_plan_writes_file_and_validate_accepts_it(plan_file, capsys):
    plan = json.loads(plan_file.read_text())
    assert plan["summary"]["prefill"].keys() == LAYOUT_KEYS
    code, out, err = run(capsys, "validate", str(plan_file))
    assert code == 0, err
    assert "valid plan" in out and err == ""


def test_plan_prints_table_and_names_output(tmp_path, capsys):
    path = tmp_path / "p.json"
    code, out, err = run(capsys, "--model", SMOL, "--cluster", "8xA10", "--workload", SMALL_WL, "-o", str(path))
    assert code == 0, err
    assert "prefill layout" in out and "decode layout" in out and "predicted throughput" in out
    assert "wrote" in out and str(path) in out.replace("\n", "")  # rich may fold a long path
    assert json.loads(path.read_text())["model"]


def test_json_summary_keys_and_status(capsys):
    s = run_json(capsys, "--model", SMOL, "--cluster", "8xA10", "--workload", SMALL_WL)
    assert SUMMARY_KEYS <= s.keys(), SUMMARY_KEYS - s.keys()
    assert s["prefill"].keys() == LAYOUT_KEYS and s["decode"].keys() == LAYOUT_KEYS
    assert s["best_static"].keys() == LAYOUT_KEYS | {"predicted_tokens_per_s", "engine", "max_num_seqs",
                                                     "max_num_batched_tokens", "gpu_memory_utilization"}
    assert s["prediction_method"] == "simulated" and s["closed_form_tokens_per_s"] > 0
    assert s["best_static"]["engine"] == "vllm" and s["best_static"]["gpu_memory_utilization"] == 0.9
    assert s["solver"].keys() == {"name", "status", "seconds"}
    assert s["solver"]["status"] == "OPTIMAL"
    for name in ("prefill", "decode", "best_static"):
        lay = s[name]
        assert lay["dp"] * lay["tp"] * lay["pp"] == 8
    assert s["prefill"]["dp"] == s["decode"]["dp"]  # DP never changes between phases
    for key in ("gpu_kv_tokens", "max_prefill_tokens", "decode_max_seqs"):
        assert isinstance(s[key], int) and s[key] > 0
    assert s["predicted_tokens_per_s"] > s["predicted_output_tokens_per_s"] > 0
    # the plan is never predicted slower than the best static layout it is compared with
    assert s["speedup_vs_best_static"] == pytest.approx(
        s["predicted_tokens_per_s"] / s["best_static"]["predicted_tokens_per_s"])
    assert s["speedup_vs_best_static"] >= 1.0 - 1e-9


def test_pins_are_honoured(capsys):
    s = run_json(capsys, "--model", L7B, "--cluster", "8xA10", "--workload", "sharegpt:500",
                 "--prefill", "pp8", "--decode", "tp8")
    assert s["prefill"] == {"dp": 1, "tp": 1, "pp": 8, "ep": 1}
    assert s["decode"] == {"dp": 1, "tp": 8, "pp": 1, "ep": 1}
    assert s["host_kv_buffer_tokens"] > 0  # different layouts: prefill KV goes through the host buffer


def test_static_gives_equal_layouts(capsys):
    s = run_json(capsys, "--model", L7B, "--cluster", "8xA10", "--workload", "sharegpt:500", "--static")
    assert s["prefill"] == s["decode"]
    assert s["host_kv_buffer_tokens"] == 0
    assert s["solver"]["status"] == "OPTIMAL"
    assert s["best_static"] is not None
    assert {k: s["best_static"][k] for k in LAYOUT_KEYS} == s["prefill"]


def test_70b_on_8xa10_reshards_and_beats_static(capsys):
    """The paper's headline setting: PCIe A10s, ShareGPT; prefill favours PP, decode favours TP."""
    s = run_json(capsys, "--model", L70B, "--cluster", "8xA10", "--workload", "sharegpt")
    assert s["solver"]["status"] == "OPTIMAL"
    assert s["prefill"] != s["decode"]
    assert s["prefill"]["pp"] > s["decode"]["pp"] and s["decode"]["tp"] > s["prefill"]["tp"]
    assert s["host_kv_buffer_tokens"] > 0
    assert s["speedup_vs_best_static"] > 1.0


def _plans_twice(tmp_path) -> tuple[Path, Path]:
    paths = (tmp_path / "a.json", tmp_path / "b.json")
    for p in paths:
        assert main(["--model", L7B, "--cluster", "8xA10", "--workload", "sharegpt:500", "-o", str(p)]) == 0
    return paths


def test_same_inputs_give_the_same_plan_apart_from_solver_time(tmp_path):
    a, b = (json.loads(p.read_text()) for p in _plans_twice(tmp_path))
    for plan in (a, b):
        del plan["summary"]["solver"]["seconds"]
    assert a == b


def test_schema_prints_json_schema(capsys):
    code, out, err = run(capsys, "schema")
    assert code == 0, err
    schema = json.loads(out)
    assert schema["type"] == "object"
    assert {"prefill", "decode", "summary", "schema_version"} <= set(schema["properties"])
    assert "summary" in schema["required"]


# --- bad input: exit 2, one line, no traceback ---------------------------------------------------------------

def test_missing_model_file(tmp_path, capsys):
    missing = str(tmp_path / "nope.json")
    assert_one_line_error(*run(capsys, "--model", missing, "--cluster", "8xA10", "--workload", SMALL_WL),
                          "nope.json", "no such file")


def test_malformed_config_json(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": ')
    assert_one_line_error(*run(capsys, "--model", str(bad), "--cluster", "8xA10", "--workload", SMALL_WL),
                          "config.json", "malformed JSON")


def test_unknown_architecture(tmp_path, capsys):
    cfg = json.loads(Path(L7B).read_text())
    cfg["architectures"] = ["MambaForCausalLM"]
    path = tmp_path / "mamba.json"
    path.write_text(json.dumps(cfg))
    assert_one_line_error(*run(capsys, "--model", str(path), "--cluster", "8xA10", "--workload", SMALL_WL),
                          "architectures", "MambaForCausalLM", "not supported")


def test_unknown_gpu(capsys):
    assert_one_line_error(*run(capsys, "--model", SMOL, "--cluster", "8xB999", "--workload", SMALL_WL),
                          "--cluster", "unknown GPU", "B999")


def test_malformed_cluster_yaml(tmp_path, capsys):
    bad = tmp_path / "cluster.yaml"
    bad.write_text("gpu: A10\nnum_gpus: [8\n")
    assert_one_line_error(*run(capsys, "--model", SMOL, "--cluster", str(bad), "--workload", SMALL_WL),
                          "cluster.yaml", "malformed YAML")


def test_missing_workload_file(tmp_path, capsys):
    missing = str(tmp_path / "trace.jsonl")
    assert_one_line_error(*run(capsys, "--model", SMOL, "--cluster", "8xA10", "--workload", missing),
                          "--workload", "no such file", "trace.jsonl")


def test_empty_workload_file(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_one_line_error(*run(capsys, "--model", SMOL, "--cluster", "8xA10", "--workload", str(empty)),
                          "empty.jsonl", "no requests")


def test_layout_with_wrong_gpu_count(capsys):
    assert_one_line_error(*run(capsys, "--model", L7B, "--cluster", "8xA10", "--workload", SMALL_WL,
                               "--prefill", "tp7"), "--prefill", "tp7", "7 GPUs", "8")


def test_layout_larger_than_cluster(capsys):
    assert_one_line_error(*run(capsys, "--model", L70B, "--cluster", "8xA10", "--workload", "sharegpt:500",
                               "--prefill", "tp16"), "--prefill", "tp16", "16 GPUs")


def test_model_that_cannot_fit_says_by_how_much(capsys):
    line = assert_one_line_error(*run(capsys, "--model", L70B, "--cluster", "1xA10", "--workload", "sharegpt:500"),
                                 "does not fit", "short by")
    shortfall_gb = float(line.split("short by")[1].split("GB")[0])
    assert shortfall_gb > 100  # ~138 GB of bf16 weights against 22.5 usable GB


def test_missing_required_option(capsys):
    assert_one_line_error(*run(capsys, "--model", SMOL, "--workload", SMALL_WL), "--cluster")


@pytest.mark.parametrize("argv, needle", [
    (["--model", SMOL, "--cluster", "8xA10", "--bogus"], "--bogus"),
    (["--model", SMOL, "--cluster", "8xA10", "--search", "greedy"], "--search"),
    (["--model", SMOL, "--cluster", "8xA10", "--time-limit", "0"], "--time-limit"),
    (["--model", SMOL, "--cluster", "8xA10", "--time-limit", "soon"], "--time-limit"),
    (["--model", SMOL, "--cluster", "8xA10", "--prefill", "xx9"], "--prefill"),
    (["validate"], "path"),
])
def test_usage_errors(argv, needle, capsys):
    assert_one_line_error(*run(capsys, *argv), needle)


def test_help_exits_zero(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "--cluster" in out and "validate" in out


def test_validate_rejects_truncated_plan(plan_file, tmp_path, capsys):
    bad = tmp_path / "truncated.json"
    bad.write_bytes(plan_file.read_bytes()[:500])
    assert_one_line_error(*run(capsys, "validate", str(bad)), "truncated.json", "malformed JSON")


def test_validate_rejects_inconsistent_plan(plan_file, tmp_path, capsys):
    plan = json.loads(plan_file.read_text())
    lay = plan["summary"]["prefill"]
    lay["tp"], lay["pp"] = lay["pp"], lay["tp"]  # still 8 GPUs, but not the plan's prefill layout
    bad = tmp_path / "edited.json"
    bad.write_text(json.dumps(plan))
    assert_one_line_error(*run(capsys, "validate", str(bad)), "edited.json", "summary.prefill", "disagrees")


def test_validate_rejects_missing_section(plan_file, tmp_path, capsys):
    plan = json.loads(plan_file.read_text())
    del plan["kv"]
    bad = tmp_path / "nokv.json"
    bad.write_text(json.dumps(plan))
    assert_one_line_error(*run(capsys, "validate", str(bad)), "nokv.json", "kv")


def test_console_script_exit_status_for_unknown_gpu():
    """The real process exits with status 2 (``main()`` without argv calls ``sys.exit``)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from seesaw.cli.plan import main; main()",
         "--model", SMOL, "--cluster", "8xB999", "--workload", SMALL_WL],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("seesaw-plan: error: ") and "B999" in lines[0]
    assert proc.stdout == ""


def test_prompts_beyond_the_context_are_counted_and_planned_as_the_runtime_treats_them(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(f'{{"prompt_len": {p}, "output_len": 50}}\n' for p in (100, 200, 4096, 9000)))
    code = main(["--model", "llama-2-7b", "--cluster", "2xA10", "--workload", str(trace), "--json"])
    out = capsys.readouterr()
    assert code == 0
    assert "note: 2 of 4 requests have prompts of 4,096 tokens or more" in out.err


def test_list_gpus_and_models(capsys):
    assert main(["list", "gpus"]) == 0
    out = capsys.readouterr().out
    assert "H100-SXM" in out and "A10" in out and "dense TFLOP/s" in out
    assert main(["list", "gpus", "--json"]) == 0
    gpus = json.loads(capsys.readouterr().out)
    assert gpus["A10"]["source"]["links"] and gpus["H100-SXM"]["memory_gb"] > 80
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert "llama-2-70b" in out and "68.98 B" in out and "SmolLM2-135M" in out
    assert main(["list", "nope"]) == 2 and "gpus or models" in capsys.readouterr().err


@pytest.mark.parametrize("prog", ["plan", "run", "bench", "whatif", "validate", "calibrate"])
def test_every_command_has_version(prog, capsys):
    import importlib  # noqa: PLC0415

    mod = importlib.import_module(f"seesaw.cli.{prog}")
    assert mod.main(["--version"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"seesaw-{prog} ") and out.split()[1][0].isdigit()


# --- launch commands (--emit, emit) ------------------------------------------------------------------------

def test_emit_prints_launch_commands_after_the_table_or_in_the_json(tmp_path, capsys):
    path = tmp_path / "plan.json"
    argv = ["--model", L70B, "--cluster", "8xA10", "--workload", "sharegpt:200", "--no-simulate"]
    code, out, err = run(capsys, *argv, "-o", str(path), "--emit", "vllm")
    assert code == 0, err
    lines = out.splitlines()
    serve = next(i for i, ln in enumerate(lines) if ln.startswith("vllm serve meta-llama/Llama-2-70b-hf "))
    assert serve > next(i for i, ln in enumerate(lines) if ln.startswith("solver:"))
    assert any(ln.startswith("vllm bench throughput --model meta-llama/Llama-2-70b-hf ") for ln in lines)
    assert any(ln.startswith("#") and "re-shards" in ln for ln in lines)
    s = run_json(capsys, *argv, "--emit", "sglang")
    assert any(c.startswith("python -m sglang.launch_server --model-path ") for c in s["launch_commands"])
    assert "--tp-size" in " ".join(s["launch_commands"])


def test_emit_subcommand_reads_a_plan_file(plan_file, capsys):
    code, out, err = run(capsys, "emit", str(plan_file), "--engine", "trtllm")
    assert code == 0, err
    assert any(ln.startswith("trtllm-serve meta-llama/Llama-2-7b-hf --tp_size ") for ln in out.splitlines())
    assert any(ln.startswith("trtllm-bench --model meta-llama/Llama-2-7b-hf throughput ") for ln in out.splitlines())
    code, out, err = run(capsys, "emit", str(plan_file), "--engine", "seesaw")
    assert code == 0, err
    assert f"seesaw-run {plan_file} --checkpoint " in out


def test_emit_rejects_an_unknown_engine(plan_file, capsys):
    assert_one_line_error(*run(capsys, "emit", str(plan_file), "--engine", "tgi"), "--engine", "'tgi'")
    assert_one_line_error(*run(capsys, "--model", SMOL, "--cluster", "8xA10", "--workload", SMALL_WL,
                               "--emit", "tgi"), "--emit", "'tgi'")


def test_a_terminal_sees_each_planning_step(tmp_path):
    """On a terminal (forced here), stderr shows the step planning is in instead of staying silent."""
    import os  # noqa: PLC0415

    proc = subprocess.run(
        [sys.executable, "-c", "from seesaw.cli.plan import main; main()", "--model", "llama-2-7b", "--cluster",
         "4xA10", "--workload", "random:512:128:64", "-o", str(tmp_path / "p.json")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "FORCE_COLOR": "1", "TTY_INTERACTIVE": "1"})
    assert proc.returncode == 0, proc.stderr
    for step in ("searching", "simulating", "writing the execution plan"):
        assert step in proc.stderr


def test_planning_4096_gpus_writes_a_compact_plan(tmp_path):
    """512 replicas of tp8: the plan lists DP replica 0's ranks and expands every other rank on demand."""
    from seesaw.codegen import validate_plan_file  # noqa: PLC0415

    out = tmp_path / "big.json"
    assert main(["--model", "llama-2-70b", "--cluster", "4096xH100-SXM", "--workload", "sharegpt:4000",
                 "--static", "--prefill", "dp512tp8", "-o", str(out)]) == 0
    plan = validate_plan_file(out)
    ph = plan.prefill
    assert (ph.ranks_listed, len(ph.ranks)) == ("first-replica", 8)
    last = ph.rank_plan(4095)
    assert (last.dp_rank, last.tp_rank) == (511, 7)
    groups = {g.id: g.ranks for g in ph.process_groups}
    assert all(4095 in groups[i.group] for i in last.program if i.op == "all_reduce")
