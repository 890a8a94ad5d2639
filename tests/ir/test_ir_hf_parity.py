"""The IR's weights match the transformers model of every shipped config exactly (names, shapes, count).

Models are built on the meta device, which allocates no memory (about 5 s for all configs).
"""
import json
from importlib import resources

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from seesaw.ir import build_graph, list_examples, load_model_config  # noqa: E402


def hf_model(name: str):
    text = (resources.files("seesaw.examples") / "models" / f"{name}.json").read_text()
    data = {k: v for k, v in json.loads(text).items() if not k.startswith("_")}
    cfg = transformers.AutoConfig.for_model(data.pop("model_type"), **data)
    with torch.device("meta"):
        return transformers.AutoModelForCausalLM.from_config(cfg)


def _in_memory_names(graph) -> dict[str, tuple[int, ...]]:
    """The IR's tensors as transformers >= 5 holds a mixture of experts in memory: each layer's experts fused into
    ``experts.gate_up_proj [E, 2 * ffn, hidden]`` and ``experts.down_proj [E, hidden, ffn]`` under ``mlp`` (its
    checkpoints keep one tensor per expert, the names the IR uses, see test_moe_checkpoint_names_are_the_irs)."""
    from seesaw.ir.graph import MOE_NAMES  # noqa: PLC0415

    cfg, out = graph.cfg, {}
    module = MOE_NAMES[cfg.architecture][0] if cfg.is_moe else None
    for w in graph.weights():
        if module and ".experts." in w.name:
            continue
        name = w.name.replace(f".{module}.gate.", ".mlp.gate.") if module else w.name
        out[name] = w.shape
    if module:
        e, ffn, h = cfg.num_experts, cfg.moe_intermediate_size, cfg.hidden_size
        for i in range(cfg.num_hidden_layers):
            out[f"model.layers.{i}.mlp.experts.gate_up_proj"] = (e, 2 * ffn, h)
            out[f"model.layers.{i}.mlp.experts.down_proj"] = (e, h, ffn)
    return out


@pytest.mark.parametrize("name", [n for n in list_examples() if load_model_config(n).quantization is None])
def test_parameters_match_transformers(name):
    """Unquantized configs (a quantized one's tensors are checked in test_ir_quant.py)."""
    model = hf_model(name)
    graph = build_graph(load_model_config(name))
    assert graph.num_parameters() == sum(p.numel() for p in model.parameters())
    hf_shapes = {k: tuple(p.shape) for k, p in model.named_parameters()}  # tied tensors once
    assert _in_memory_names(graph) == hf_shapes
    assert type(model).__name__ == load_model_config(name).architecture


@pytest.mark.parametrize("arch, extra", [
    ("mixtral", {"num_local_experts": 4}),
    ("qwen3_moe", {"num_experts": 4, "moe_intermediate_size": 24, "head_dim": 16, "norm_topk_prob": True}),
])
def test_moe_checkpoint_names_are_the_irs(tmp_path, arch, extra):
    """A mixture-of-experts checkpoint as transformers writes it holds one tensor per expert, named as the IR
    names them (``save_pretrained`` converts the in-memory fused experts back)."""
    from safetensors import safe_open  # noqa: PLC0415

    from seesaw.ir import ModelConfig  # noqa: PLC0415

    dims = {"hidden_size": 64, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "vocab_size": 128, "num_experts_per_tok": 2, **extra}
    hf_cfg = transformers.AutoConfig.for_model(arch, **dims)
    transformers.AutoModelForCausalLM.from_config(hf_cfg).save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    cfg = ModelConfig.from_hf_dict(json.loads((tmp_path / "config.json").read_text()), name="tiny")
    assert {w.name: w.shape for w in build_graph(cfg).weights()} == saved
