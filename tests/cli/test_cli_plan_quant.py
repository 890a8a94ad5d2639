"""``seesaw-plan`` with quantized models: ``--kv-cache-dtype``, the shipped FP8 Llama, and the GPU catalog's FP8
rates (in-process through ``seesaw.cli.plan.main``, small workloads, no simulation)."""
from __future__ import annotations

import json

from seesaw.cli.plan import main

WL = "random:256:64:64"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_kv_cache_dtype_fp8_halves_the_plans_kv_bytes_per_token(capsys, tmp_path):
    plans = {}
    for kv in ("auto", "fp8"):
        path = tmp_path / f"{kv}.json"
        code, _, err = run(capsys, "--model", "llama-3-8b", "--cluster", "2xH100-SXM", "--workload", WL,
                           "--no-simulate", "--static", "--prefill", "tp2", "--decode", "tp2",
                           "--kv-cache-dtype", kv, "-o", str(path))
        assert code == 0, err
        plans[kv] = json.loads(path.read_text())
    auto, fp8 = plans["auto"], plans["fp8"]
    assert fp8["kv"]["kv_bytes_per_token"] * 2 == auto["kv"]["kv_bytes_per_token"] == 32 * 2 * 8 * 128 * 2
    assert fp8["model"]["fingerprint"]["kv_cache_dtype"] == "fp8_e4m3"
    assert "kv_cache_dtype" not in auto["model"]["fingerprint"]
    assert fp8["summary"]["gpu_kv_tokens"] > 1.9 * auto["summary"]["gpu_kv_tokens"]  # same memory, twice the tokens


def test_bad_kv_cache_dtype_is_one_line(capsys):
    code, out, err = run(capsys, "--model", "llama-3-8b", "--cluster", "2xH100-SXM", "--kv-cache-dtype", "int3")
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1
    assert lines[0] == "seesaw-plan: error: --kv-cache-dtype: 'int3' is not a KV-cache dtype (expected auto or fp8)"


def test_shipped_fp8_llama_plans_on_8xh100(capsys):
    code, out, err = run(capsys, "--model", "llama-3.1-70b-fp8", "--cluster", "8xH100-SXM", "--workload", WL,
                         "--no-simulate", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["predicted_tokens_per_s"] > 0 and summary["memory_per_gpu_gb"] < 85.05


def test_list_gpus_shows_dense_fp8_rates(capsys):
    code, out, _ = run(capsys, "list", "gpus", "--json")
    gpus = json.loads(out)
    assert code == 0 and gpus["H100-SXM"]["fp8_tflops"] == 1979 and gpus["A100-SXM-80GB"]["fp8_tflops"] == 0
    assert all("fp8" in g["source"] for g in gpus.values())
    code, out, _ = run(capsys, "list", "gpus")
    assert code == 0 and "FP8 TFLOP/s" in out and "1979" in out


def test_emit_passes_the_fp8_kv_cache_and_names_the_fp8_checkpoint(capsys):
    code, out, err = run(capsys, "--model", "llama-3.1-70b-fp8", "--cluster", "8xH100-SXM", "--workload", WL,
                         "--no-simulate", "--static", "--prefill", "tp8", "--decode", "tp8", "--kv-cache-dtype",
                         "fp8", "--emit", "vllm")
    assert code == 0, err
    serve = next(line for line in out.splitlines() if line.startswith("vllm serve"))
    assert serve.startswith("vllm serve neuralmagic/Meta-Llama-3.1-70B-Instruct-FP8 ")
    assert "--kv-cache-dtype fp8_e4m3" in serve
    code, out, err = run(capsys, "--model", "llama-3-8b", "--cluster", "2xH100-SXM", "--workload", WL,
                         "--no-simulate", "--static", "--prefill", "tp2", "--decode", "tp2", "--emit", "vllm")
    assert code == 0 and "--kv-cache-dtype" not in out


def test_a_pinned_tp_that_cuts_fp8_blocks_is_refused_with_that_reason(capsys):
    """Qwen3-235B-A22B-FP8 at tp8 would give each rank 192 of an expert's 1,536 columns, cutting its 128-wide
    blocks: the refusal says so (not a generic heads/width rule that tp8 meets)."""
    from seesaw.cli.plan import main  # noqa: PLC0415

    code = main(["--model", "qwen3-235b-a22b-fp8", "--cluster", "8xH100-SXM", "--workload", "sharegpt:10",
                 "--prefill", "tp8", "--static"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--prefill" in err[0] and "128-wide quantization blocks" in err[0]
