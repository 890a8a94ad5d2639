"""ModelConfig parsing from HF config.json files and every InputError case."""
import json
from pathlib import Path

import pytest

from seesaw.ir import InputError, ModelConfig, list_examples, load_model_config

EXAMPLES = [
    "llama-2-7b", "llama-2-13b", "llama-2-70b", "codellama-34b", "llama-3-8b", "llama-3-70b",
    "mistral-7b", "qwen2-7b", "SmolLM2-135M", "qwen3-8b", "llama-3-15b",
    "mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b", "qwen3-235b-a22b-fp8", "llama-3.1-70b-fp8", "mixtral-8x7b-fp8",
]

BASE = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
    "max_position_embeddings": 256, "torch_dtype": "bfloat16",
}


def write(tmp_path: Path, data, name="x.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_all_examples_shipped_and_load():
    assert set(list_examples()) == set(EXAMPLES)
    for name in EXAMPLES:
        cfg = load_model_config(name)
        assert cfg.name == name
        assert cfg.dtype_bytes == 2


def test_smollm2_matches_design_section_7():
    cfg = load_model_config("smollm2-135m")  # case-insensitive
    assert (cfg.architecture, cfg.num_hidden_layers, cfg.hidden_size) == ("LlamaForCausalLM", 30, 576)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (9, 3, 64)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.tie_word_embeddings) == (1536, 49152, True)
    assert cfg.rope_theta == 100000.0 and cfg.rms_norm_eps == 1e-5


def test_llama2_70b_fields():
    cfg = load_model_config("LLAMA-2-70B.json")
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers) == (8192, 28672, 80)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (64, 8, 128)
    assert not cfg.qkv_bias and not cfg.qk_norm and not cfg.tie_word_embeddings
    assert cfg.max_position_embeddings == 4096


def test_qwen_flags():
    q2, q3 = load_model_config("qwen2-7b"), load_model_config("qwen3-8b")
    assert q2.qkv_bias and not q2.attention_bias and not q2.qk_norm
    assert q3.qk_norm and not q3.qkv_bias and q3.head_dim == 128
    assert q3.rope_theta == 1e6 and q3.rms_norm_eps == 1e-6


def test_fingerprint_has_dims_and_dtype():
    fp = load_model_config("llama-3-8b").fingerprint()
    assert fp["architecture"] == "LlamaForCausalLM" and fp["vocab_size"] == 128256
    assert fp["dtype_bytes"] == 2 and fp["num_key_value_heads"] == 8
    assert fp != load_model_config("llama-2-7b").fingerprint()
    json.dumps(fp)  # plain JSON values


def test_config_is_frozen():
    cfg = load_model_config("llama-2-7b")
    with pytest.raises(Exception):
        cfg.hidden_size = 1


def test_path_and_folder(tmp_path):
    p = write(tmp_path, BASE)
    cfg = load_model_config(p)
    assert cfg.name == "x" and cfg.head_dim == 16 and cfg.num_key_value_heads == 2
    folder = tmp_path / "my-model"
    folder.mkdir()
    write(folder, BASE, "config.json")
    assert load_model_config(str(folder)).name == "my-model"


def test_defaults(tmp_path):
    data = {k: v for k, v in BASE.items() if k not in ("num_key_value_heads", "torch_dtype")}
    cfg = load_model_config(write(tmp_path, data))
    assert cfg.num_key_value_heads == 4 and cfg.dtype_bytes == 2 and cfg.rope_theta == 10000.0
    assert not cfg.tie_word_embeddings
    cfg = load_model_config(write(tmp_path, {**data, "dtype": "float32", "head_dim": None}))
    assert cfg.dtype_bytes == 4 and cfg.head_dim == 16
    assert load_model_config(write(tmp_path, {**data, "torch_dtype": "torch.float16"})).dtype_bytes == 2
    nested = {**BASE, "rope_parameters": {"rope_theta": 5e5, "rope_type": "default"}}
    assert load_model_config(write(tmp_path, nested)).rope_theta == 5e5


def test_explicit_head_dim_and_llama_biases(tmp_path):
    cfg = load_model_config(write(tmp_path, {**BASE, "head_dim": 32, "attention_bias": True, "mlp_bias": True}))
    assert cfg.head_dim == 32 and cfg.qkv_bias and cfg.attention_bias and cfg.mlp_bias
    mis = load_model_config(write(tmp_path, {**BASE, "architectures": ["MistralForCausalLM"],
                                             "attention_bias": True}))
    assert not mis.qkv_bias and not mis.attention_bias  # MistralAttention has no biases


def err(tmp_path, data) -> InputError:
    p = write(tmp_path, data)
    with pytest.raises(InputError) as info:
        load_model_config(p)
    assert info.value.source == str(p)
    assert str(info.value).startswith(f"{p}: {info.value.field}: ")
    return info.value


def test_unsupported_architecture(tmp_path):
    e = err(tmp_path, {**BASE, "architectures": ["GPT2LMHeadModel"]})
    assert e.field == "architectures" and "'GPT2LMHeadModel' is not supported" in e.problem
    assert "LlamaForCausalLM" in e.problem
    assert err(tmp_path, {k: v for k, v in BASE.items() if k != "architectures"}).field == "architectures"


@pytest.mark.parametrize("field", ["hidden_size", "intermediate_size", "num_hidden_layers",
                                   "num_attention_heads", "vocab_size", "max_position_embeddings"])
def test_missing_or_bad_required(tmp_path, field):
    missing = {k: v for k, v in BASE.items() if k != field}
    assert err(tmp_path, missing).field == field
    for bad in (0, -4, "64", 6.5, True):
        e = err(tmp_path, {**BASE, field: bad})
        assert e.field == field


def test_bad_optional_fields(tmp_path):
    assert err(tmp_path, {**BASE, "num_key_value_heads": 0}).field == "num_key_value_heads"
    assert err(tmp_path, {**BASE, "head_dim": -1}).field == "head_dim"
    assert err(tmp_path, {**BASE, "torch_dtype": "int8"}).field == "torch_dtype"
    assert err(tmp_path, {**BASE, "tie_word_embeddings": "yes"}).field == "tie_word_embeddings"
    assert err(tmp_path, {**BASE, "rms_norm_eps": "small"}).field == "rms_norm_eps"


def test_heads_must_divide_hidden_without_head_dim(tmp_path):
    e = err(tmp_path, {**BASE, "num_attention_heads": 6, "num_key_value_heads": 3})
    assert e.field == "num_attention_heads" and "hidden_size 64" in e.problem
    # with an explicit head_dim the division is not needed
    assert load_model_config(write(tmp_path, {**BASE, "num_attention_heads": 6, "num_key_value_heads": 3,
                                              "head_dim": 16})).head_dim == 16


def test_kv_heads_must_divide_heads(tmp_path):
    e = err(tmp_path, {**BASE, "num_key_value_heads": 3})
    assert e.field == "num_key_value_heads"


def test_malformed_json_and_non_object(tmp_path):
    e = err(tmp_path, '{"hidden_size": 4,')
    assert e.field == "config" and "malformed JSON" in e.problem
    assert err(tmp_path, "[1, 2]").field == "config"


def test_unreadable_file(tmp_path):
    e = err(tmp_path, "")
    assert e.field == "config"
    p = tmp_path / "bin.json"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(InputError) as info:
        load_model_config(p)
    assert info.value.field == "config" and info.value.source == str(p)


def test_missing_file_and_unknown_example(tmp_path):
    with pytest.raises(InputError) as info:
        load_model_config(tmp_path / "nope.json")
    assert info.value.field == "model" and str(info.value).startswith(str(tmp_path / "nope.json"))
    with pytest.raises(InputError) as info:
        load_model_config("gpt-5")
    assert info.value.field == "model" and "llama-2-7b" in info.value.problem
    with pytest.raises(InputError) as info:
        load_model_config(tmp_path)  # folder without config.json
    assert info.value.field == "model"


def test_from_hf_dict_without_source():
    cfg = ModelConfig.from_hf_dict(BASE, name="tiny")
    assert cfg.q_size == 64 and cfg.kv_size == 32
    with pytest.raises(InputError) as info:
        ModelConfig.from_hf_dict({**BASE, "vocab_size": 0}, name="tiny")
    assert str(info.value).startswith("vocab_size: ")


@pytest.mark.parametrize("quant", [{"quant_method": "bitsandbytes", "load_in_4bit": True},
                                   {"quant_method": "gptq", "bits": 3, "group_size": 128}])
def test_unsupported_quantization_is_refused_not_planned_as_bf16(tmp_path, quant):
    """Supported formats (FP8, AWQ, GPTQ INT4) are parsed in tests/ir/test_ir_quant.py; others are refused."""
    e = err(tmp_path, {**BASE, "quantization_config": quant})
    assert e.field.startswith("quantization_config") and quant["quant_method"] in str(e)
    assert str(tmp_path / "x.json") in str(e)


# -- Hugging Face ids from the local cache -----------------------------------------------------------------
def fake_hf_cache(root: Path, repo_id: str, data, revision: str = "0123abcd") -> Path:
    """A Hugging Face hub cache holding ``repo_id``'s config.json at ``revision``, laid out as huggingface_hub
    writes it: the file under blobs/, a symlink to it under snapshots/<revision>/, refs/main naming the
    revision. Returns the snapshot's config.json."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    blob = repo / "blobs" / "c0ffee"
    blob.write_text(json.dumps(data))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True)
    (snap / "config.json").symlink_to(Path("..", "..", "blobs", "c0ffee"))
    return snap / "config.json"


@pytest.fixture(params=["huggingface_hub", "layout"])
def hf_lookup(request, monkeypatch):
    """Run each cache test through huggingface_hub's lookup and through the fallback layout reader."""
    if request.param == "huggingface_hub":
        pytest.importorskip("huggingface_hub")
    else:
        import sys  # noqa: PLC0415

        monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import raises ImportError
    return request.param


def test_hf_id_found_in_the_cache(tmp_path, monkeypatch, hf_lookup):
    cache = tmp_path / "hub"
    config = fake_hf_cache(cache, "my-org/Tiny-Llama", {**BASE, "hidden_size": 128})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # no local folder my-org/Tiny-Llama
    cfg = load_model_config("my-org/Tiny-Llama")
    assert cfg.name == "Tiny-Llama" and cfg.hidden_size == 128
    # a bad field names the cached file
    config.unlink()
    config.write_text(json.dumps({**BASE, "vocab_size": 0}))
    with pytest.raises(InputError) as info:
        load_model_config("my-org/Tiny-Llama")
    assert info.value.field == "vocab_size" and info.value.source == str(config)


def test_hf_cache_follows_hf_home(tmp_path, monkeypatch, hf_lookup):
    fake_hf_cache(tmp_path / "home" / "hub", "my-org/Tiny-Llama", BASE)
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert load_model_config("my-org/Tiny-Llama").num_hidden_layers == BASE["num_hidden_layers"]


def test_hf_id_not_in_the_cache_says_how_to_get_it(tmp_path, monkeypatch, hf_lookup):
    cache = tmp_path / "hub"
    fake_hf_cache(cache, "my-org/Other", BASE)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as info:
        load_model_config("meta-llama/Llama-2-70b-hf")
    e = info.value
    assert e.field == "model" and str(cache) in e.problem and "\n" not in str(e)
    assert "hf download meta-llama/Llama-2-70b-hf config.json" in e.problem
    assert "huggingface-cli download meta-llama/Llama-2-70b-hf config.json" in e.problem
    assert "pass the path to a config.json" in e.problem


def test_local_path_wins_over_the_hf_cache(tmp_path, monkeypatch, hf_lookup):
    cache = tmp_path / "hub"
    fake_hf_cache(cache, "my-org/Tiny-Llama", {**BASE, "hidden_size": 128})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    local = tmp_path / "my-org" / "Tiny-Llama"
    local.mkdir(parents=True)
    (local / "config.json").write_text(json.dumps({**BASE, "hidden_size": 256}))
    monkeypatch.chdir(tmp_path)
    cfg = load_model_config("my-org/Tiny-Llama")
    assert cfg.hidden_size == 256 and cfg.name == "Tiny-Llama"
    # a path-shaped spec that exists nowhere is still a missing path, not a Hub id
    with pytest.raises(InputError) as info:
        load_model_config("my-org/config.json")
    assert info.value.problem == "no such file or folder"


@pytest.mark.parametrize("name, experts, top_k, width, normalize, params_b", [
    ("mixtral-8x7b", 8, 2, 14336, True, 46.70),  # 46.7B: Mistral AI's Mixtral of Experts announcement
    ("qwen3-30b-a3b", 128, 8, 768, True, 30.53),  # 30.5B: the Qwen3-30B-A3B model card
    ("qwen3-235b-a22b", 128, 8, 1536, True, 235.09),  # 235B: the Qwen3-235B-A22B model card
])
def test_mixture_of_experts_configs(name, experts, top_k, width, normalize, params_b):
    from seesaw.ir import build_graph  # noqa: PLC0415

    cfg = load_model_config(name)
    assert cfg.is_moe and (cfg.num_experts, cfg.num_experts_per_tok) == (experts, top_k)
    assert (cfg.moe_intermediate_size, cfg.norm_topk_prob) == (width, normalize)
    assert build_graph(cfg).num_parameters() / 1e9 == pytest.approx(params_b, abs=0.01)
    assert {"num_experts", "moe_intermediate_size"} <= set(cfg.fingerprint())
    assert "num_experts" not in load_model_config("mistral-7b").fingerprint()  # dense plans keep their keys


def test_moe_qwen3_with_dense_layers_is_refused(tmp_path):
    data = {**BASE, "architectures": ["Qwen3MoeForCausalLM"], "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 32, "mlp_only_layers": [0]}
    with pytest.raises(InputError) as e:
        load_model_config(write(tmp_path, data))
    assert e.value.field == "mlp_only_layers" and "dense MLP" in e.value.problem
    data.pop("mlp_only_layers")
    data["num_experts_per_tok"] = 8
    with pytest.raises(InputError) as e:
        load_model_config(write(tmp_path, data))
    assert e.value.field == "num_experts_per_tok"


def test_experts_touched_by_a_decode_step():
    """The expected distinct experts of docs/planner.md: 8 tokens on Mixtral (8 experts, top 2) and Qwen3-MoE (128,
    top 8); all experts once the batch is large; none for no token."""
    from seesaw.ir.ops import experts_touched  # noqa: PLC0415

    assert experts_touched(8, 2, 8) == pytest.approx(7.199, abs=1e-3)
    assert experts_touched(128, 8, 8) == pytest.approx(51.62, abs=1e-2)
    assert experts_touched(128, 8, 4096) == pytest.approx(128.0)
    assert experts_touched(8, 2, 0) == 0.0
