"""``seesaw-run``'s final metrics: ``--json`` prints them on stdout (the summary line stays on stderr), and they
carry vLLM's ``bench throughput --output-json`` names beside ours, the same figures. The run is the real CLI in
a subprocess (2 gloo ranks on a tiny random checkpoint, about 10 s on 2 cores)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.checkpoints import LLAMA_GQA, write_random_checkpoint
from helpers.plans import make_plan
from seesaw.runtime.results import vllm_throughput_metrics

RUN = [sys.executable, "-c", "from seesaw.cli.run import main; main()"]
OURS = {"requests": 3, "prompt_tokens": 30, "output_tokens": 12, "wall_s": 2.0, "requests_per_s": 1.5,
        "tokens_per_s": 21.0, "output_tokens_per_s": 6.0}


def test_vllm_names_are_our_figures():
    v = vllm_throughput_metrics(OURS)
    assert list(v) == ["elapsed_time", "num_requests", "total_num_tokens", "requests_per_second",
                       "tokens_per_second", "output_tokens_per_second"]
    assert (v["elapsed_time"], v["num_requests"], v["total_num_tokens"]) == (2.0, 3, 42)
    assert v["tokens_per_second"] * v["elapsed_time"] == pytest.approx(v["total_num_tokens"])
    assert v["requests_per_second"] * v["elapsed_time"] == pytest.approx(v["num_requests"])
    assert v["output_tokens_per_second"] * v["elapsed_time"] == pytest.approx(OURS["output_tokens"])


def test_run_json_prints_the_metrics_with_vllm_names(tmp_path):
    ckpt = write_random_checkpoint(tmp_path / "ckpt", LLAMA_GQA, seed=3)
    plan = tmp_path / "plan.json"
    plan.write_text(make_plan(ckpt, "pp2", "tp2", host_buffer_tokens=64, gpu_kv_tokens=2048).to_json())
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt_token_ids": [i + 1] * 5, "max_tokens": 4, "ignore_eos": True})
                               + "\n" for i in range(3)))
    metrics = tmp_path / "m.json"
    r = subprocess.run(RUN + [str(plan), "--checkpoint", str(ckpt), "--prompts", str(prompts), "--output",
                              str(tmp_path / "o.jsonl"), "--metrics", str(metrics), "--no-progress", "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)  # stdout is the JSON alone
    assert printed == json.loads(metrics.read_text())
    assert "3 requests" in r.stderr and "tok/s" in r.stderr
    assert printed["prompt_tokens"] == 15 and printed["output_tokens"] == 12
    assert printed["elapsed_time"] == printed["wall_s"] > 0
    assert printed["num_requests"] == printed["requests"] == 3
    assert printed["total_num_tokens"] == 27
    assert printed["tokens_per_second"] * printed["elapsed_time"] == pytest.approx(27)
    assert printed["output_tokens_per_second"] * printed["elapsed_time"] == pytest.approx(12)
    assert printed["requests_per_second"] * printed["elapsed_time"] == pytest.approx(3)
    assert printed["tokens_per_second"] == printed["tokens_per_s"]
