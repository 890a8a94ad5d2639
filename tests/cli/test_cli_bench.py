"""``seesaw-bench`` end to end on a tiny random checkpoint (no timing assertions).

The bench runs in-process through ``seesaw.cli.bench.main(argv)``; it spawns 2 gloo workers per Seesaw plan
(about 3 s each), so the full run takes 10-20 s on 2 cores. Input errors are checked before any worker starts.
"""
from __future__ import annotations

import json

import pytest

from helpers.checkpoints import LLAMA_GQA, write_random_checkpoint
from seesaw.cli.bench import main
from seesaw.experiments.bench_runs import random_requests

METRIC_KEYS = {"requests", "prompt_tokens", "output_tokens", "wall_s", "tokens_per_s", "output_tokens_per_s",
               "requests_per_s"}

VLLM_KEYS = {"elapsed_time", "num_requests", "total_num_tokens", "requests_per_second", "tokens_per_second",
             "output_tokens_per_second"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt"), LLAMA_GQA)


def test_bench_reports_all_three_systems(checkpoint, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(["--checkpoint", str(checkpoint), "--cluster", "2xcpu", "--dataset", "random", "--num-prompts", "4",
                 "--input-len", "8", "--output-len", "4", "--json", str(out), "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    report = json.loads(out.read_text())
    systems = report["systems"]
    assert {"seesaw", "static", "transformers"} <= set(systems)
    for name in ("seesaw", "static", "transformers"):
        m = systems[name]["metrics"]
        assert METRIC_KEYS <= set(m), name
        assert m["requests"] == 4 and m["prompt_tokens"] == 32 and m["output_tokens"] == 16, name
        assert m["tokens_per_s"] > 0 and m["output_tokens_per_s"] > 0 and m["requests_per_s"] > 0, name
        assert m["tokens_per_s"] == pytest.approx(48 / m["wall_s"]), name
        # vLLM's --output-json names beside ours: the same figures
        assert VLLM_KEYS <= set(m), name
        assert (m["elapsed_time"], m["num_requests"], m["total_num_tokens"]) == (m["wall_s"], 4, 48), name
        assert m["tokens_per_second"] * m["elapsed_time"] == pytest.approx(48), name
        assert m["output_tokens_per_second"] * m["elapsed_time"] == pytest.approx(16), name
        assert m["requests_per_second"] * m["elapsed_time"] == pytest.approx(4), name
        assert systems[name]["vs_transformers"] > 0 and systems[name]["vs_best_static"] > 0
    assert systems["transformers"]["vs_transformers"] == pytest.approx(1.0)
    assert systems["static"]["vs_best_static"] == pytest.approx(1.0)
    for name in ("seesaw", "static"):
        assert systems[name]["wrong_output_lengths"] == 0
        assert systems[name]["transitions"]["count"] >= 0
    assert systems["transformers"]["metrics"]["threads"] == report["hf_threads"] >= 1
    assert report["memcpy_gb_per_s"] > 0
    assert "transformers" in printed.out and "seesaw" in printed.out


def test_bench_json_dash_prints_the_report_on_stdout(checkpoint, capsys):
    code = main(["--checkpoint", str(checkpoint), "--cluster", "2xcpu", "--dataset", "random", "--num-prompts", "2",
                 "--input-len", "6", "--output-len", "3", "--no-hf", "--json", "-", "--no-progress"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    report = json.loads(printed.out)  # stdout is the JSON alone; the table went to stderr
    assert {"seesaw", "static"} <= set(report["systems"]) and "transformers" not in report["systems"]
    for s in report["systems"].values():
        m = s["metrics"]
        assert VLLM_KEYS <= set(m) and m["total_num_tokens"] == 18
        assert m["tokens_per_second"] * m["elapsed_time"] == pytest.approx(18)
    assert "static" in printed.err and "req/s" in printed.err


def test_random_requests_are_seeded():
    a = random_requests(256, 3, 5, 2, seed=1)
    assert a == random_requests(256, 3, 5, 2, seed=1) != random_requests(256, 3, 5, 2, seed=2)
    assert all(len(p) == 5 and n == 2 and all(0 <= t < 256 for t in p) for p, n in a)


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "wiki"], "--dataset"),
    (["--num-prompts", "0"], "--num-prompts"),
    (["--layout", "pp2"], "PREFILL:DECODE"),
    (["--layout", "pp2:xx"], "--layout"),
    (["--input-len", "500", "--output-len", "100"], "context limit"),
    (["--layout", "tp4:tp4"], "--layout: tp4:tp4: layout tp4 uses 4 GPUs"),
    (["--cluster", "2xA10"], "--cluster: 2xA10 is a GPU cluster"),
    (["--json", "/nonexistent-folder/b.json"], "--json: folder '/nonexistent-folder' does not exist"),
])
def test_bad_input_exits_2(checkpoint, capsys, args, needle):
    cluster = [] if "--cluster" in args else ["--cluster", "2xcpu"]
    code = main(["--checkpoint", str(checkpoint), *cluster, "--dataset", "random", "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
