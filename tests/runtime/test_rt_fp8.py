"""FP8 checkpoints on the runtime: each rank dequantizes its shard on load and the greedy tokens equal
transformers' on the same (dequantized) weights; INT4 plans are refused with one line (exit 2).

Tiny random Llama checkpoints (helpers.checkpoints.LLAMA_GQA) quantized by helpers.fp8 in four formats. The
block-wise ``fp8`` one is also loaded by transformers itself (its FP8 quantizer dequantizes on a machine without
a GPU); the others are compared with transformers on the dequantized weights written as a plain checkpoint.
Token equality as tests/runtime/test_rt_equivalence.py checks it (greedy, EOS ignored, fixed lengths).
"""
from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch
from helpers.checkpoints import LLAMA_GQA
from helpers.fp8 import write_fp8_checkpoint
from helpers.plans import make_plan

from seesaw.ir.errors import InputError
from seesaw.runtime.checkpoint import Checkpoint, check_fingerprint
from seesaw.runtime.engine import Engine
from seesaw.schedule.replica import Sequence

NEW_TOKENS = 6
RUN = [sys.executable, "-c", "from seesaw.cli.run import main; main()"]


def _prompts(vocab: int, n: int = 4, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(1, 20))] for _ in range(n)]


def _transformers_tokens(folder, prompts) -> list[list[int]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    out = []
    for p in prompts:
        ids = torch.tensor([p])
        g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                           min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0)
        out.append(g[0, len(p):].tolist())
    return out


def _engine_tokens(folder, prompts, prefill, decode, buffer) -> list[list[int]]:
    plan = make_plan(folder, prefill, decode, host_buffer_tokens=buffer)
    with Engine(plan, str(folder)) as eng:
        seqs = [Sequence(i, list(p), NEW_TOKENS, ignore_eos=True) for i, p in enumerate(prompts)]
        seqs, _ = eng.generate(seqs, eos_ids=set())
    return [s.output for s in seqs]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp8")
    return {fmt: write_fp8_checkpoint(root, LLAMA_GQA, fmt) for fmt in
            ("fp8-block", "fp8-tensor-static", "ct-channel", "fbgemm")}


def test_dequantized_slices_equal_the_dequantized_tensor(checkpoints):
    """A rank's slice (rows or columns) of a block-wise FP8 weight dequantizes to the same values as that slice
    of the whole dequantized weight (the plain checkpoint's)."""
    fp8, plain = checkpoints["fp8-block"]
    q, p = Checkpoint(fp8), Checkpoint(plain)
    name = "model.layers.1.mlp.down_proj.weight"  # [64, 128]
    scale = "model.layers.1.mlp.down_proj.weight_scale_inv"
    full = p.read(name)
    assert torch.equal(q.read_dequantized(name, None, scale, (16, 16)), full)
    assert torch.equal(q.read_dequantized(name, (1, 64, 128), scale, (16, 16)), full[:, 64:])
    assert torch.equal(q.read_dequantized(name, (0, 16, 48), scale, (16, 16)), full[16:48])
    fb, fb_plain = checkpoints["fbgemm"]  # per-channel: a column-parallel slice takes its rows' scales
    k = "model.layers.0.self_attn.k_proj.weight"
    assert torch.equal(Checkpoint(fb).read_dequantized(k, (0, 16, 32), k + "_scale", None),
                       Checkpoint(fb_plain).read(k)[16:32])


def test_transformers_reads_the_block_fp8_checkpoint_as_its_dequantized_twin(checkpoints):
    fp8, plain = checkpoints["fp8-block"]
    prompts = _prompts(LLAMA_GQA["vocab_size"])
    assert _transformers_tokens(fp8, prompts) == _transformers_tokens(plain, prompts)


@pytest.mark.parametrize("fmt, prefill, decode, buffer", [
    ("fp8-block", "tp2", "tp2", 0),
    ("fp8-tensor-static", "pp2", "tp2", 4096),
    ("ct-channel", "tp2", "pp2", 4096),
    ("fbgemm", "tp1", "tp1", 0),
])
def test_fp8_runs_match_transformers_on_the_dequantized_weights(checkpoints, fmt, prefill, decode, buffer):
    fp8, plain = checkpoints[fmt]
    prompts = _prompts(LLAMA_GQA["vocab_size"], seed=len(fmt))
    assert _engine_tokens(fp8, prompts, prefill, decode, buffer) == _transformers_tokens(plain, prompts)


def test_seesaw_run_cli_on_a_block_fp8_checkpoint(checkpoints, tmp_path):
    """The real CLI (plan validation, fingerprint with the scales, 2 gloo ranks re-sharding) against
    transformers' own FP8 loading."""
    fp8, _ = checkpoints["fp8-block"]
    prompts = _prompts(LLAMA_GQA["vocab_size"], seed=7)
    plan = tmp_path / "plan.json"
    plan.write_text(make_plan(fp8, "pp2", "tp2", host_buffer_tokens=256, gpu_kv_tokens=2048).to_json())
    assert json.loads(plan.read_text())["model"]["fingerprint"]["quantization"]["block_size"] == [16, 16]
    src = tmp_path / "p.jsonl"
    src.write_text("".join(json.dumps({"prompt_token_ids": p, "max_tokens": NEW_TOKENS, "ignore_eos": True}) + "\n"
                           for p in prompts))
    out = tmp_path / "o.jsonl"
    r = subprocess.run(RUN + [str(plan), "--checkpoint", str(fp8), "--prompts", str(src), "--output", str(out),
                              "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = [json.loads(line)["token_ids"] for line in out.read_text().splitlines()]
    assert got == _transformers_tokens(fp8, prompts)


def _awq_folder(tmp_path):
    folder = tmp_path / "awq"
    folder.mkdir()
    cfg = {**LLAMA_GQA, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 32,
                                                 "zero_point": True, "version": "gemm"}}
    (folder / "config.json").write_text(json.dumps(cfg))
    from safetensors.torch import save_file

    save_file({"model.embed_tokens.weight": torch.zeros(256, 64)}, str(folder / "model.safetensors"))
    return folder


def test_int4_plans_are_refused_with_one_line(tmp_path):
    folder = _awq_folder(tmp_path)
    plan = make_plan(folder, "tp2", "tp2")  # the planner plans INT4 (its real bytes)
    assert plan.model.fingerprint["quantization"]["weight_bits"] == 4
    with pytest.raises(InputError, match="INT4 weights cannot run on seesaw-run yet"):
        Engine(plan, str(folder))
    with pytest.raises(InputError, match="model.fingerprint.quantization"):
        check_fingerprint(Checkpoint(folder), plan.model.fingerprint)
    plan_file, prompts = tmp_path / "plan.json", tmp_path / "p.jsonl"
    plan_file.write_text(plan.to_json())
    prompts.write_text(json.dumps({"prompt_token_ids": [1, 2, 3]}) + "\n")
    r = subprocess.run(RUN + [str(plan_file), "--checkpoint", str(folder), "--prompts", str(prompts), "--output",
                              str(tmp_path / "o.jsonl"), "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "'awq' INT4 weights cannot run on seesaw-run yet" in lines[0], r.stderr


def test_fp8_mixture_of_experts_matches_transformers_on_the_dequantized_weights(tmp_path):
    """A block-wise FP8 Qwen3-MoE (experts and attention quantized, router kept): each rank dequantizes its
    slices of every expert; the tokens equal transformers' on the dequantized weights, under tp2 and pp2->tp2."""
    from helpers.checkpoints import QWEN3_MOE
    from helpers.fp8 import write_fp8_moe_checkpoint

    fp8, plain = write_fp8_moe_checkpoint(tmp_path, QWEN3_MOE)
    plan = make_plan(fp8, "tp2", "tp2")
    assert plan.model.fingerprint["quantization"]["block_size"] == [16, 16]
    experts = next(i for i in plan.decode.rank_plan(0).program if i.op == "moe_experts")
    assert any(w.endswith("experts.0.gate_proj.weight_scale_inv") for w in experts.weights)
    prompts = _prompts(QWEN3_MOE["vocab_size"], seed=3)
    want = _transformers_tokens(plain, prompts)
    assert _engine_tokens(fp8, prompts, "tp2", "tp2", 0) == want
    assert _engine_tokens(fp8, prompts, "pp2", "tp2", 4096) == want


def _engine_logits(folder, prompts, prefill, decode, buffer, kv_cache_dtype=None):
    plan = make_plan(folder, prefill, decode, host_buffer_tokens=buffer)
    if kv_cache_dtype:  # as `seesaw-plan --kv-cache-dtype fp8` writes it into the plan's fingerprint
        plan.model.fingerprint["kv_cache_dtype"] = kv_cache_dtype
    with Engine(plan, str(folder), keep_logits=True) as eng:
        seqs = [Sequence(i, list(p), NEW_TOKENS, ignore_eos=True) for i, p in enumerate(prompts)]
        eng.generate(seqs, eos_ids=set())
        return [torch.stack(eng.logits[i]) for i in range(len(prompts))]


@pytest.mark.parametrize("prefill, decode, buffer", [("tp2", "tp2", 0), ("pp2", "tp2", 4096)])
def test_fp8_kv_cache_stores_e4m3_and_stays_close(tmp_path, prefill, decode, buffer):
    """With an FP8 KV cache the device pages and the host buffer hold e4m3 values (scale 1): the decode logits
    move off the exact run's (the cache really is quantized) but stay within e4m3's rounding of them."""
    from helpers.checkpoints import write_random_checkpoint

    folder = write_random_checkpoint(tmp_path / "llama", LLAMA_GQA, seed=1)
    prompts = _prompts(LLAMA_GQA["vocab_size"], seed=5)
    exact = _engine_logits(folder, prompts, prefill, decode, buffer)
    fp8 = _engine_logits(folder, prompts, prefill, decode, buffer, kv_cache_dtype="fp8_e4m3")
    # the first decode step (the same input token in both runs; later steps may follow other tokens)
    diffs = [float((a[1] - b[1]).abs().max() / b[1].abs().max()) for a, b in zip(fp8, exact)]
    assert 1e-6 < max(diffs) < 0.05, diffs
    assert all(torch.equal(a[0], b[0]) for a, b in zip(fp8, exact))  # the first token comes from prefill alone
