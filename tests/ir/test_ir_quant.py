"""Quantized checkpoints in the IR: each format's config parsed, its tensors' names, shapes, dtypes and bytes,
scale sharding, TP degrees that would cut blocks or groups, and the KV-cache dtype."""
import copy
import json
import math

import pytest

from seesaw.ir import InputError, ModelConfig, build_graph, load_model_config
from seesaw.ir.ops import ShardRule
from seesaw.ir.quant import parse_kv_cache_dtype
from seesaw.ir.sharding import shard_range, valid_tp_degrees

L3 = load_model_config("llama-3-70b")  # the bf16 twin of the shipped FP8 config
BASE = {k: v for k, v in json.loads(open(__file__.rsplit("/tests/", 1)[0] + "/examples/models/llama-3-70b.json")
                                     .read()).items() if not k.startswith("_")}

FP8_BLOCK = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [128, 128]}
FP8_STATIC = {"quant_method": "fp8", "activation_scheme": "static", "ignored_layers": ["lm_head"]}
CT_TENSOR = json.loads(open(__file__.rsplit("/tests/", 1)[0] + "/examples/models/llama-3.1-70b-fp8.json")
                       .read())["quantization_config"]
CT_CHANNEL_W8A16 = {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
                    "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                                  "weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}}
CT_BLOCK = {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
            "config_groups": {"group_0": {"targets": ["Linear"],
                                          "input_activations": {"num_bits": 8, "type": "float", "dynamic": True},
                                          "weights": {"num_bits": 8, "type": "float", "strategy": "block",
                                                      "block_structure": [128, 128]}}}}
FBGEMM = {"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0,
          "modules_to_not_convert": ["model.layers.0.mlp.down_proj", "lm_head"]}
AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "GEMM",
       "modules_to_not_convert": None}
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True, "sym": True}
CT_W4A16 = {"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
            "config_groups": {"group_0": {"targets": ["Linear"], "input_activations": None,
                                          "weights": {"num_bits": 4, "type": "int", "strategy": "group",
                                                      "group_size": 128, "symmetric": True}}}}


def cfg_of(quant, key="quantization_config", **extra) -> ModelConfig:
    data = copy.deepcopy({**BASE, **extra})
    data[key] = quant
    return ModelConfig.from_hf_dict(data, name="q")


def layer_tensors(cfg, i=1):
    return {w.name.removeprefix(f"model.layers.{i}."): w for op in build_graph(cfg).layer_ops(i) for w in op.weights}


@pytest.mark.parametrize("quant, scale, shape, granularity, fp8_gemm", [
    (FP8_BLOCK, "weight_scale_inv", (64, 64), "block", True),
    (FP8_STATIC, "weight_scale", (), "tensor", True),
    (CT_TENSOR, "weight_scale", (1,), "tensor", True),
    (CT_CHANNEL_W8A16, "weight_scale", (8192, 1), "channel", False),
    (CT_BLOCK, "weight_scale", (64, 64), "block", True),
    (FBGEMM, "weight_scale", (8192, 1), "channel", True),
])
def test_fp8_formats_store_e4m3_weights_and_checkpoint_named_scales(quant, scale, shape, granularity, fp8_gemm):
    cfg = cfg_of(quant)
    q = cfg.quantization
    assert q.weight_bits == 8 and q.scale_granularity == granularity and q.fp8_gemm is fp8_gemm
    t = layer_tensors(cfg)
    w = t["self_attn.q_proj.weight"]
    assert (w.shape, w.dtype, w.shard, w.shard_dim) == ((8192, 8192), "float8_e4m3fn", ShardRule.COLUMN, 0)
    assert t[f"self_attn.q_proj.{scale}"].shape == shape
    static = "input_scale" in json.dumps(quant) or quant.get("activation_scheme") == "static" or (
        quant is CT_TENSOR)  # the shipped config's activations are static per tensor
    assert ("self_attn.q_proj.input_scale" in t) is static
    assert t["input_layernorm.weight"].dtype is None  # norms keep the model dtype
    g = build_graph(cfg)
    assert g.op("lm_head").weights[0].dtype is None and g.op("embed_tokens").weights[0].dtype is None
    lin = g.op("layers.1.q_proj")
    assert lin.dims.get("gemm_dtype") == ("fp8" if fp8_gemm else None)


def test_fp8_bytes_are_one_per_weight_plus_scales():
    bf16, fp8 = build_graph(L3), build_graph(cfg_of(FP8_BLOCK))
    layer_params = bf16.layer_weight_bytes(0) // 2
    scales = sum(math.prod(w.shape) * 4 for w in fp8.weights() if w.name.endswith("weight_scale_inv")) // 80
    assert fp8.layer_weight_bytes(0) == layer_params - 2 * 8192 + 2 * 8192 * 2 + scales  # norms stay bf16
    embed_head = 2 * 128256 * 8192 * 2
    assert fp8.weight_bytes() == 80 * fp8.layer_weight_bytes(0) + embed_head + 8192 * 2
    assert 0.5 < fp8.weight_bytes() / bf16.weight_bytes() < 0.53
    # the checkpoint's parameters: the model's plus one float32 scale per 128x128 block
    assert fp8.num_parameters() == bf16.num_parameters() + scales // 4 * 80


@pytest.mark.parametrize("quant, names", [
    (AWQ, {"qweight": ((8192, 1024), "int32"), "qzeros": ((64, 1024), "int32"), "scales": ((64, 8192), "float16")}),
    (GPTQ, {"qweight": ((1024, 8192), "int32"), "qzeros": ((64, 1024), "int32"), "scales": ((64, 8192), "float16"),
            "g_idx": ((8192,), "int32")}),
    (CT_W4A16, {"weight_packed": ((8192, 1024), "int32"), "weight_scale": ((8192, 64), "bfloat16"),
                "weight_shape": ((2,), "int64")}),
])
def test_int4_formats_store_packed_weights_and_group_scales(quant, names):
    cfg = cfg_of(quant)
    assert cfg.quantization.is_int4 and cfg.quantization.group_size == 128
    t = layer_tensors(cfg)
    assert {n.rsplit(".", 1)[1] for n in t if n.startswith("self_attn.q_proj.")} == set(names)
    for n, (shape, dtype) in names.items():
        assert (t[f"self_attn.q_proj.{n}"].shape, t[f"self_attn.q_proj.{n}"].dtype) == (shape, dtype)
    g = build_graph(cfg)
    # about 0.5 byte per weight plus a 2-byte scale (and zeros) per 128 weights
    per_weight = g.op("layers.1.down_proj").weight_bytes() / (8192 * 28672)
    assert 0.5 < per_weight < 0.53
    # FLOPs come from the logical shape, not the packed tensor's
    assert g.op("layers.1.k_proj").flops(_decode(), 8) == build_graph(L3).op("layers.1.k_proj").flops(_decode(), 8)


def _decode():
    from seesaw.ir.ops import PassShape
    return PassShape.decode(4, 100)


@pytest.mark.parametrize("quant", [FP8_BLOCK, AWQ, GPTQ, CT_W4A16, CT_CHANNEL_W8A16])
def test_scale_shards_follow_their_weight(quant):
    """Under TP 8 every rank's scale slice covers exactly its weight slice (blocks, groups, channels)."""
    t = layer_tensors(cfg_of(quant))
    q = cfg_of(quant).quantization
    for proj in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.o_proj", "mlp.down_proj"):
        tensors = {n.rsplit(".", 1)[1]: w for n, w in t.items() if n.startswith(proj + ".")}
        for rank in range(8):
            ranges = {n: shard_range(w, rank, 8) for n, w in tensors.items()}
            if q.method == "fp8":
                w_rng, s_rng = ranges["weight"], ranges["weight_scale_inv"]
                assert (s_rng[0], s_rng[1] * 128, s_rng[2] * 128) == w_rng
            elif q.scale_granularity == "channel":
                rng = ranges["weight_scale"]
                assert rng is None if proj.endswith(("o_proj", "down_proj")) else rng == ranges["weight"]
            else:
                packed = ranges.get("qweight") or ranges["weight_packed"]
                scales = ranges.get("scales") or ranges["weight_scale"]
                row_parallel = proj.endswith(("o_proj", "down_proj"))
                if row_parallel:  # input features split: scales split by groups of 128
                    in_per_rank = (8192 if proj.endswith("o_proj") else 28672) // 8
                    assert scales[2] - scales[1] == in_per_rank // 128
                else:  # output features split: scales split like the outputs
                    out_per_rank = {"self_attn.q_proj": 1024, "self_attn.k_proj": 128}[proj]
                    assert scales[2] - scales[1] == out_per_rank
                assert packed is not None


def test_tp_degrees_that_cut_blocks_or_groups_are_refused():
    assert valid_tp_degrees(L3) == [1, 2, 4, 8, 16, 32, 64]
    assert valid_tp_degrees(cfg_of(FP8_BLOCK)) == [1, 2, 4, 8, 16, 32]  # 28672 / 64 = 448: not whole blocks
    assert valid_tp_degrees(cfg_of(FP8_STATIC)) == [1, 2, 4, 8, 16, 32, 64]  # per-tensor: nothing to cut
    assert valid_tp_degrees(cfg_of(AWQ)) == [1, 2, 4, 8, 16, 32]  # 28672 / 64 = 448 input columns: 3.5 groups
    from seesaw.ir.sharding import check_tp
    with pytest.raises(InputError, match="cuts the 128-wide quantization blocks"):
        check_tp(cfg_of(FP8_BLOCK), 64)


def test_excluded_modules_keep_the_model_dtype():
    cfg = cfg_of(FBGEMM)
    assert layer_tensors(cfg, 0)["mlp.down_proj.weight"].dtype is None
    assert "mlp.down_proj.weight_scale" not in layer_tensors(cfg, 0)
    assert layer_tensors(cfg, 1)["mlp.down_proj.weight"].dtype == "float8_e4m3fn"
    regex = cfg_of({**CT_TENSOR, "ignore": ["lm_head", "re:.*self_attn.*"]})
    assert layer_tensors(regex)["self_attn.q_proj.weight"].dtype is None
    assert layer_tensors(regex)["mlp.up_proj.weight"].dtype == "float8_e4m3fn"


def test_older_compression_config_key_is_read():
    assert cfg_of(CT_TENSOR, key="compression_config").quantization == cfg_of(CT_TENSOR).quantization


def test_fingerprint_names_the_quantization_and_round_trips():
    plain, fp8 = L3.fingerprint(), cfg_of(FP8_BLOCK).fingerprint()
    assert "quantization" not in plain and "kv_cache_dtype" not in plain
    assert fp8["quantization"]["weight_bits"] == 8 and fp8["quantization"]["block_size"] == [128, 128]
    assert {k: v for k, v in fp8.items() if k != "quantization"} == plain
    rebuilt = ModelConfig(name="q", max_position_embeddings=1, **json.loads(json.dumps(fp8)))  # as codegen does
    assert rebuilt.fingerprint() == fp8


def test_kv_cache_fp8_halves_kv_bytes_and_is_fingerprinted():
    fp8_kv = L3.model_copy(update={"kv_cache_dtype": parse_kv_cache_dtype("fp8")})
    assert fp8_kv.kv_cache_dtype == "fp8_e4m3" and fp8_kv.fingerprint()["kv_cache_dtype"] == "fp8_e4m3"
    assert build_graph(fp8_kv).kv_bytes_per_token_per_layer() * 2 == build_graph(L3).kv_bytes_per_token_per_layer()
    # attention reads 1-byte K and V
    from seesaw.ir.ops import PassShape
    shape = PassShape.decode(8, 1000)
    full, half = build_graph(L3).op("layers.0.attention"), build_graph(fp8_kv).op("layers.0.attention")
    kv_bf16 = 8 * 1000 * 2 * 8 * 128 * 2
    assert full.device_bytes(shape) - half.device_bytes(shape) == kv_bf16 // 2
    assert parse_kv_cache_dtype("auto") == "auto"
    with pytest.raises(InputError, match="--kv-cache-dtype: 'int8'"):
        parse_kv_cache_dtype("int8")


@pytest.mark.parametrize("quant, field", [
    ({"quant_method": "fp8", "weight_block_size": [128]}, "quantization_config.weight_block_size"),
    ({"quant_method": "fp8", "activation_scheme": "sometimes"}, "quantization_config.activation_scheme"),
    ({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}, "quantization_config.version"),
    ({"quant_method": "gptq", "bits": 8, "group_size": 128}, "quantization_config.bits"),
    ({**CT_TENSOR, "config_groups": {"a": {"weights": {"num_bits": 8, "type": "int", "strategy": "channel"}}}},
     "quantization_config.config_groups.weights"),
    ({"quant_method": "hqq"}, "quantization_config.quant_method"),
])
def test_unsupported_schemes_name_the_field(quant, field):
    with pytest.raises(InputError) as info:
        cfg_of(quant)
    assert info.value.field == field


def test_shipped_fp8_llama_matches_its_bf16_twin_but_for_dtypes_and_scales():
    fp8 = load_model_config("llama-3.1-70b-fp8")
    assert fp8.quantization.method == "compressed-tensors" and fp8.quantization.excluded == ("lm_head",)
    a = {w.name: w.shape for w in build_graph(fp8).weights() if not w.name.endswith(("_scale",))}
    assert a == {w.name: w.shape for w in build_graph(L3).weights()}  # same tensors as transformers' bf16 model
    scales = [w for w in build_graph(fp8).weights() if w.name.endswith("_scale")]
    assert len(scales) == 80 * 7 * 2 and all(w.shape == (1,) for w in scales)


def test_block_fp8_experts_keep_tp_within_whole_blocks():
    """Qwen3-235B-A22B-FP8: the experts' 1,536 columns in 128-wide blocks allow TP 4 (384 each) but not 8 (192),
    as vLLM refuses it; the experts carry their block scales and the router its own unless excluded."""
    from seesaw.ir import build_graph, load_model_config  # noqa: PLC0415
    from seesaw.ir.sharding import tp_problem  # noqa: PLC0415

    cfg = load_model_config("qwen3-235b-a22b-fp8")
    assert tp_problem(cfg, 4) is None
    assert "cuts the 128-wide quantization blocks" in tp_problem(cfg, 8)
    layer = build_graph(cfg).layer_ops(0)
    experts = next(op for op in layer if op.kind.value == "moe_experts")
    names = {w.name: w for w in experts.weights}
    scale = names["model.layers.0.mlp.experts.5.down_proj.weight_scale_inv"]
    assert scale.shape == (4096 // 128, 1536 // 128)
    assert experts.dims.get("gemm_dtype") == "fp8"
    fp8_bytes = experts.weight_bytes(1, 2)
    bf16 = next(op for op in build_graph(load_model_config("qwen3-235b-a22b")).layer_ops(0)
                if op.kind.value == "moe_experts")
    assert fp8_bytes / bf16.weight_bytes(1, 2) == pytest.approx(0.5, rel=0.01)
