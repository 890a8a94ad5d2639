"""The runtime reproduces Hugging Face transformers' greedy tokens and logits under every layout.

Random-weight checkpoints (fp32) with even head counts: Llama with GQA (untied) and Qwen2 with q/k/v bias
and tied embeddings. Each case spawns gloo workers (one per rank) and compares with ``generate``.
"""
from __future__ import annotations

import random

import pytest
import torch
from helpers.checkpoints import (LLAMA3_ROPE, LLAMA_GQA, MIXTRAL_MOE, QWEN2_TIED, QWEN3_MOE, QWEN3_QK_NORM,
                                 write_random_checkpoint)
from helpers.plans import make_plan

from seesaw.runtime.engine import Engine
from seesaw.schedule.replica import Sequence

NEW_TOKENS = 6
MODELS = {"llama_gqa": LLAMA_GQA, "qwen2_tied": QWEN2_TIED}
EXTRA = {"qwen3_qk_norm": QWEN3_QK_NORM, "llama3_rope_scaling": LLAMA3_ROPE,  # fewer layouts each
         "mixtral_moe": MIXTRAL_MOE, "qwen3_moe": QWEN3_MOE}


def _prompts(vocab: int, n: int = 5, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(1, 24))] for _ in range(n)]


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Per model: checkpoint folder, prompts, greedy tokens and per-step logits from transformers."""
    from transformers import AutoModelForCausalLM

    out = {}
    for name, cfg in {**MODELS, **EXTRA}.items():
        folder = write_random_checkpoint(tmp_path_factory.mktemp(name), cfg, seed=1)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        prompts = _prompts(cfg["vocab_size"])
        tokens, logits = [], []
        for p in prompts:
            ids = torch.tensor([p])
            g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                               min_new_tokens=NEW_TOKENS,
                               do_sample=False, output_logits=True, return_dict_in_generate=True,
                               pad_token_id=0)
            tokens.append(g.sequences[0, len(p):].tolist())
            logits.append(torch.stack([step[0] for step in g.logits]))
        out[name] = (folder, prompts, tokens, logits)
    return out


def _run(folder, prompts, prefill, decode, **plan_kw):
    plan = make_plan(folder, prefill, decode, **plan_kw)
    with Engine(plan, str(folder), keep_logits=True) as eng:
        seqs = [Sequence(i, list(p), NEW_TOKENS, ignore_eos=True) for i, p in enumerate(prompts)]
        seqs, metrics = eng.generate(seqs, eos_ids=set())
        logits = {i: torch.stack(v) for i, v in eng.logits.items()}
    return [s.output for s in seqs], logits, metrics


def _check(ref, got_tokens, got_logits):
    _, _, tokens, logits = ref
    assert got_tokens == tokens
    for i, ref_logits in enumerate(logits):
        scale = ref_logits.abs().max()
        assert (got_logits[i] - ref_logits).abs().max() <= 1e-4 * scale


TWO_RANKS = [("tp1", "tp1", 0), ("tp2", "tp2", 0), ("pp2", "pp2", 0), ("dp2", "dp2", 0),
             ("pp2", "tp2", 4096), ("tp2", "pp2", 4096)]


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("prefill, decode, buffer", TWO_RANKS, ids=[f"{p}->{d}" for p, d, _ in TWO_RANKS])
def test_layouts_match_transformers(references, model, prefill, decode, buffer):
    folder, prompts, *_ = references[model]
    tokens, logits, m = _run(folder, prompts, prefill, decode, host_buffer_tokens=buffer)
    _check(references[model], tokens, logits)
    if prefill != decode:
        assert m.transitions >= 1 and m.kv_swap_out_bytes > 0 and m.kv_swap_in_bytes > 0


@pytest.mark.parametrize("model", list(EXTRA))
@pytest.mark.parametrize("prefill, decode, buffer", [("tp1", "tp1", 0), ("pp2", "tp2", 4096)], ids=["tp1", "pp2->tp2"])
def test_qk_norm_and_llama3_rope_match_transformers(references, model, prefill, decode, buffer):
    folder, prompts, *_ = references[model]
    tokens, logits, _ = _run(folder, prompts, prefill, decode, host_buffer_tokens=buffer)
    _check(references[model], tokens, logits)


FOUR_RANKS = [("pp4", "tp2pp2"), ("dp2pp2", "dp2tp2")]


@pytest.mark.parametrize("prefill, decode", FOUR_RANKS, ids=[f"{p}->{d}" for p, d in FOUR_RANKS])
def test_four_rank_resharding_matches_transformers(references, prefill, decode):
    folder, prompts, *_ = references["llama_gqa"]
    tokens, logits, m = _run(folder, prompts, prefill, decode)
    _check(references["llama_gqa"], tokens, logits)
    assert m.transitions >= 1


def test_uneven_stages_match_transformers(references):
    folder, prompts, *_ = references["llama_gqa"]
    tokens, logits, _ = _run(folder, prompts, "pp2", "tp2", prefill_stages=[(0, 1), (1, 4)])
    _check(references["llama_gqa"], tokens, logits)


def test_tiny_buffer_and_pages_force_transitions_and_waiting(references):
    """A host buffer that holds about one prompt and a device cache of a few sequences: many
    prefill/decode cycles and requests that wait for pages; every request completes unchanged."""
    folder, prompts, ref_tokens, _ = references["llama_gqa"]
    many = prompts * 3  # 15 requests
    plan = make_plan(folder, "pp2", "tp2", host_buffer_tokens=32, gpu_kv_tokens=64, max_prefill_tokens=32,
                     decode_max_seqs=4)
    with Engine(plan, str(folder)) as eng:
        seqs = [Sequence(i, list(p), NEW_TOKENS, ignore_eos=True) for i, p in enumerate(many)]
        seqs, m = eng.generate(seqs, eos_ids=set())
    assert len(seqs) == len(many)
    assert all(s.finish_reason == "length" for s in seqs)
    assert [s.output for s in seqs] == ref_tokens * 3
    assert m.transitions >= 6
    assert m.op_times == []  # instructions are timed only with Engine(time_ops=True)


def test_second_generate_reshards_back_to_the_prefill_layout(references):
    """Workers keep the layout a call ended in: the next call of a resharding plan starts with a transition
    back to the prefill layout (before, its prefill ran on the decode layout's program: a tp2 -> pp2 run
    after a warm-up prefilled under pp2, 1.7-1.9x slower than tp2) and still matches transformers."""
    folder, prompts, ref_tokens, _ = references["llama_gqa"]
    plan = make_plan(folder, "tp2", "pp2", host_buffer_tokens=4096)
    with Engine(plan, str(folder)) as eng:
        for call in range(2):
            seqs = [Sequence(i, list(p), NEW_TOKENS, ignore_eos=True) for i, p in enumerate(prompts)]
            seqs, m = eng.generate(seqs, eos_ids=set())
            assert [s.output for s in seqs] == ref_tokens
            targets = [s["target"] for s in m.steps if s["kind"] == "transition"]
            assert targets == (["decode"] if call == 0 else ["prefill", "decode"])
            assert m.steps[0]["kind"] == ("prefill" if call == 0 else "transition")


def test_timed_instructions_leave_tokens_unchanged_and_cover_every_program(references):
    """Engine(time_ops=True) across a pp2 -> tp2 re-sharding: tokens still match transformers, and every rank
    reports one record per forward pass it ran with every instruction of its phase's program, in order,
    each with a positive time; the planner turns the TP-2 decode records into in-run op samples."""
    from seesaw.ir import load_model_config
    from seesaw.planner.calibration.forward import forward_graph, in_run_op_samples

    folder, prompts, ref_tokens, _ = references["llama_gqa"]
    plan = make_plan(folder, "pp2", "tp2", host_buffer_tokens=4096)
    with Engine(plan, str(folder), time_ops=True) as eng:
        seqs = [Sequence(i, list(p), NEW_TOKENS, ignore_eos=True) for i, p in enumerate(prompts)]
        seqs, m = eng.generate(seqs, eos_ids=set())
    assert [s.output for s in seqs] == ref_tokens
    assert {r["rank"] for r in m.op_times} == {0, 1} and {r["mode"] for r in m.op_times} == {"prefill", "decode"}
    for rec in m.op_times:
        program = plan.phase(rec["mode"]).rank_plan(rec["rank"]).program
        assert [name for name, _ in rec["ops"]] == [ins.name for ins in program]
        assert all(t > 0 for _, t in rec["ops"])
    decode_passes = sum(1 for s in m.steps if s["kind"] == "decode")
    assert sum(1 for r in m.op_times if r["mode"] == "decode") == 2 * decode_passes  # both TP ranks
    decode = [r for r in m.op_times if r["mode"] == "decode"]
    samples = in_run_op_samples(forward_graph(load_model_config(folder), 2), decode, 4, tp=2)
    assert {s.kind for s in samples} == {"gemm", "lm_head", "elementwise", "attention"}
    assert all(s.in_run for s in samples)


MOE_LAYOUTS = [("tp2", "tp2", 0), ("pp2", "pp2", 0), ("pp2", "tp2", 4096), ("ep2", "ep2", 0), ("pp2", "ep2", 4096),
               ("ep2", "tp2", 4096)]


@pytest.mark.parametrize("model", ["mixtral_moe", "qwen3_moe"])
@pytest.mark.parametrize("prefill, decode, buffer", MOE_LAYOUTS, ids=[f"{p}->{d}" for p, d, _ in MOE_LAYOUTS])
def test_mixture_of_experts_layouts_match_transformers(references, model, prefill, decode, buffer):
    """Router and experts under TP (each expert's width split in two, partial sums all-reduced), EP (``ep2`` =
    ``tp2ep2``: attention split in two, each rank holding half of the experts whole), PP, and re-sharding plans
    (``pp2 -> ep2`` re-shards the experts too): transformers' greedy tokens, logits within 1e-4."""
    folder, prompts, *_ = references[model]
    tokens, logits, m = _run(folder, prompts, prefill, decode, host_buffer_tokens=buffer)
    _check(references[model], tokens, logits)
    if prefill != decode:
        assert m.transitions >= 1
