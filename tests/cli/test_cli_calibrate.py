"""``seesaw-calibrate`` end to end with tiny settings (--quick, a random 64-wide checkpoint whose forward
passes the runtime also times, world size 2 only: about 20 s on 2 cores), the profile loading as a catalog
file and in cluster files, the timings file's refit, and bad input (exit 2).

No timing assertions: the measured figures depend on the machine and its load.
"""
from __future__ import annotations

import json

import pytest
import yaml

from helpers.checkpoints import LLAMA_GQA, write_random_checkpoint
from seesaw.cli.calibrate import main
from seesaw.planner.hardware import SOURCE_GROUPS, load_catalog, load_cluster
from seesaw.planner.hardware.catalog import OVERHEAD_FIELDS


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A random LLAMA_GQA checkpoint folder (config.json + safetensors): --model and --checkpoint take it."""
    return write_random_checkpoint(tmp_path_factory.mktemp("model"), LLAMA_GQA)


@pytest.fixture(scope="module")
def calibrated(tiny_model, tmp_path_factory):
    """One calibration with the runtime's forward passes; --model defaults to the checkpoint's config."""
    out_dir = tmp_path_factory.mktemp("profile")
    out, timings = out_dir / "profile.yaml", out_dir / "timings.json"
    code = main(["--checkpoint", str(tiny_model), "--quick", "--world-sizes", "2", "--tp", "1,2", "--out", str(out),
                 "--save-timings", str(timings), "--no-progress"])
    assert code == 0
    return out, timings


def test_profile_loads_as_a_catalog_file(calibrated):
    out, _ = calibrated
    catalog = load_catalog(out)
    assert list(catalog) == ["cpu"]
    cpu = catalog["cpu"]
    assert cpu.dtype_bytes == 4 and cpu.link == "gloo" and cpu.memory_gb == 4 and cpu.host_memory_gb_per_gpu == 3
    assert cpu.peak_flops > 0 and cpu.memory_gb_per_s > 0 and cpu.gpu_link_gb_per_s > 0 and cpu.host_link_gb_per_s > 0
    assert 0 <= cpu.compute_memory_overlap <= 1 and 0 < cpu.attention_efficiency <= 1 and cpu.step_overhead_us > 0
    assert 0 < cpu.attention_memory_efficiency <= 1
    assert "timed forward passes of the runtime" in cpu.source["efficiency"]
    assert "step_overhead_us measured by seesaw-calibrate" in cpu.source["overheads"]
    # one world size: launch and per-hop latency are not separable in the micro-benchmarks (launch 0); TP
    # forward passes (2 ranks, even heads) then fit the launch inside real steps
    assert cpu.collective_launch_us == 0 or "TP 2 forward passes" in cpu.source["latency"]
    for group in (*SOURCE_GROUPS, "overheads"):
        assert "seesaw-calibrate" in cpu.source[group] or "planning choice" in cpu.source[group], group
    raw = yaml.safe_load(out.read_text())["cpu"]
    assert set(OVERHEAD_FIELDS) <= set(raw)
    assert out.read_text().startswith("# Hardware profile written by seesaw-calibrate")


def test_profile_is_accepted_by_cluster_files(calibrated, tmp_path):
    out, _ = calibrated
    by_path = tmp_path / "by-path.yaml"
    by_path.write_text(f"gpu: {out}\nnum_gpus: 2\n")
    cluster = load_cluster(str(by_path))
    assert cluster.gpu == load_catalog(out)["cpu"] and cluster.gpu_link == "gloo"
    assert cluster.source["gpu"].startswith("profile ")
    entry = yaml.safe_load(out.read_text())["cpu"]
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump({"gpu": {"name": "my-cpu", **entry}, "num_gpus": 3}))
    custom = load_cluster(str(mapping))
    assert custom.gpu.op_overhead_us == entry["op_overhead_us"] and custom.gpu.source == entry["source"]
    assert custom.allreduce_s(1e6, 3) > 0


def test_refit_without_measuring(calibrated, tiny_model, tmp_path, capsys):
    out, timings = calibrated
    data = json.loads(timings.read_text())
    assert {"ops", "comm", "copies", "peak", "stream", "reserves"} <= set(data)
    assert {s["kind"] for s in data["ops"]} == {"gemm", "lm_head", "elementwise", "attention"}
    assert {(s["mode"], s["seqs"]) for s in data["steps"]} == {(m, n) for m in ("decode", "prefill") for n in (1, 8, 32)}
    again = tmp_path / "again.yaml"
    assert main(["--model", str(tiny_model), "--refit", str(timings), "--out", str(again), "--name", "cpu2"]) == 0
    printed = capsys.readouterr().out
    assert "Fit quality per group" in printed and "Fitted parameters" in printed and "all_reduce" in printed
    assert "Micro-batch round trips" in printed and "step_overhead_us" in printed
    assert "Forward passes of the runtime" in printed and "forward decode" in printed
    assert "In-run op timings per op" in printed and "in-run elementwise" in printed
    first, second = load_catalog(out)["cpu"], load_catalog(again)["cpu2"]
    assert second.bf16_tflops == first.bf16_tflops and second.gpu_link_latency_us == first.gpu_link_latency_us
    assert second.step_overhead_us == first.step_overhead_us
    assert second.attention_memory_efficiency == first.attention_memory_efficiency
    assert second.op_overhead_us == first.op_overhead_us
    assert second.elementwise_overhead_us == first.elementwise_overhead_us > 0
    assert second.lm_head_efficiency == first.lm_head_efficiency
    assert second.collective_launch_us == first.collective_launch_us
    assert second.gpu_link_gb_per_s == first.gpu_link_gb_per_s
    assert "TP forward passes of the runtime" in printed and "forward tp" in printed
    # forward passes only reported (weight 0)
    unweighted = tmp_path / "unweighted.yaml"
    assert main(["--model", str(tiny_model), "--refit", str(timings), "--out", str(unweighted),
                 "--forward-weight", "0"]) == 0
    assert "reported only, not fitted" in load_catalog(unweighted)["cpu"].source["efficiency"]
    # a timings file of an older version, without micro-batch round trips: step_overhead_us not measured
    del data["steps"], data["forward"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    oldest = tmp_path / "old.yaml"
    assert main(["--model", str(tiny_model), "--refit", str(old), "--out", str(oldest), "--name", "cpu3"]) == 0
    third = load_catalog(oldest)["cpu3"]
    assert third.step_overhead_us == 0 and "step_overhead_us not measured" in third.source["overheads"]


def test_refit_json_prints_every_table_on_stdout(calibrated, tiny_model, tmp_path, capsys):
    """--json: the tables' figures as JSON on stdout, the tables themselves (and 'wrote ...') on stderr."""
    _, timings = calibrated
    out = tmp_path / "j.yaml"
    assert main(["--model", str(tiny_model), "--refit", str(timings), "--out", str(out), "--json"]) == 0
    printed = capsys.readouterr()
    data = json.loads(printed.out)  # stdout is the JSON alone
    assert "Fitted parameters" in printed.err and f"wrote {out}" in printed.err
    assert data["profile"]["name"] == "cpu" and data["out"] == str(out)
    entry = yaml.safe_load(out.read_text())["cpu"]
    assert data["profile"]["entry"]["op_overhead_us"] == entry["op_overhead_us"]
    assert data["measured"]["weight_streaming"]["gb_per_s"] > 0 and data["measured"]["peak_gemm"]["gflop_per_s"] > 0
    groups = {r["group"] for r in data["residuals"]}
    assert {"all_reduce", "in-run elementwise"} <= groups
    for r in data["residuals"]:
        assert r["error"] == pytest.approx(r["predicted_s"] / r["measured_s"] - 1)
    assert {"forward", "forward decode", "forward tp"} <= set(data["fit_quality"])
    assert {f["kind"] for f in data["forward_passes"]} == {"prefill", "decode"}
    assert data["tp_forward_passes"] and all(f["collectives"] > 0 for f in data["tp_forward_passes"])
    assert {(r["phase"], r["op"]) for r in data["in_run_ops"]} >= {("decode", "attention"), ("prefill", "attention")}
    assert data["step_round_trips"] and data["parameters"]["step"]["step_overhead_us"] == pytest.approx(
        entry["step_overhead_us"], rel=1e-2)  # the profile rounds
    kernel = data["parameters"]["kernel"]
    assert kernel["flops_per_s"] > 0 and isinstance(kernel["stderr"], dict)
    assert "link_gb_per_s" in data["parameters"]["comm"] and data["parameters"]["host_copies"]


@pytest.mark.parametrize("args, needle", [
    (["--world-sizes", "1"], "--world-sizes"),
    (["--world-sizes", "two"], "--world-sizes"),
    (["--tp", "3"], "tp"),
    (["--memory-gb", "0"], "--memory-gb"),
    (["--device", "tpu"], "--device"),
    (["--out", "/nonexistent-folder/p.yaml"], "--out"),
    (["--refit", "/nonexistent.json"], "--refit"),
    (["--forward-weight", "-1"], "--forward-weight"),
    (["--checkpoint", "/nonexistent-model.gguf"], "nonexistent-model.gguf"),
])
def test_bad_input_exits_2_with_one_line(tiny_model, capsys, args, needle):
    code = main(["--model", str(tiny_model), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_unknown_model_exits_2(capsys):
    assert main(["--model", "no-such-model"]) == 2
    assert "model" in capsys.readouterr().err


def test_model_or_checkpoint_is_needed(capsys):
    assert main(["--quick"]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "--checkpoint" in err and len(err.strip().splitlines()) == 1


def test_timings_file_holds_the_forward_passes(calibrated):
    _, timings = calibrated
    forward = json.loads(timings.read_text())["forward"]
    assert {f["kind"] for f in forward} == {"prefill", "decode"}
    for f in forward:
        assert f["seconds"] > 0 and len(f["ops"]) == len(f["counts"]) and f["seqs"] == len(f["context_lens"]) >= 1
        attention = sum(n for op, n in zip(f["ops"], f["counts"]) if op["kind"] == "attention")
        assert attention == LLAMA_GQA["num_hidden_layers"]
    dp = [f for f in forward if f.get("tp", 1) == 1]
    assert len({f["seqs"] for f in dp if f["kind"] == "decode"}) >= 3  # the decode batch shrinks


def test_timings_file_holds_the_in_run_op_timings(calibrated):
    """The forward-pass runs time every instruction: the timings file keeps them as in-run op samples of every
    compute kind, each with the IR's FLOPs and bytes and a positive time."""
    _, timings = calibrated
    in_run = json.loads(timings.read_text())["in_run"]
    assert {s["kind"] for s in in_run} == {"gemm", "lm_head", "elementwise", "attention"}
    assert all(s["in_run"] and s["seconds"] > 0 and s["label"].startswith("in-run ") for s in in_run)
    assert {s["label"].split()[1] for s in in_run} == {"prefill", "decode"}
    assert all(s["rows"] for s in in_run if s["kind"] in ("gemm", "lm_head"))


def test_link_terms_come_from_the_tp_forward_passes(calibrated):
    """LLAMA_GQA's 4 heads / 2 KV heads allow tp 2 over the 2 forward ranks: the same request set is served
    by one TP group and its passes fit collective_launch_us and gpu_link_gb_per_s."""
    out, timings = calibrated
    forward = json.loads(timings.read_text())["forward"]
    ranks = {f.get("tp", 1) for f in forward} - {1}
    if not ranks:
        pytest.skip("one forward rank on this machine: no TP passes")
    tp_passes = [f for f in forward if f.get("tp", 1) > 1]
    assert {f["kind"] for f in tp_passes} == {"prefill", "decode"}
    for f in tp_passes:
        kinds = {k for k, _ in f["comms"]}
        assert kinds == {"all_reduce", "all_gather"} and len(f["comms"]) == len(f["comm_counts"])
    # the request set is served once by the TP group, once per replica by the data-parallel run
    tp = ranks.pop()
    prefill_tokens = lambda fs: sum(f["tokens"] for f in fs if f["kind"] == "prefill")  # noqa: E731
    assert prefill_tokens([f for f in forward if f.get("tp", 1) == 1]) == tp * prefill_tokens(tp_passes)
    entry = load_catalog(out)["cpu"]
    assert "forward passes" in entry.source["latency"] and f"TP {tp} forward passes" in entry.source["latency"]
    assert "collective_launch_us" in entry.source["latency"] and "gpu_link_gb_per_s" in entry.source["links"]
