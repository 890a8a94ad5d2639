"""Model frontends: a :class:`~seesaw.ir.config.ModelConfig` derived from the model itself rather than from its
``config.json``, checked against the IR that :func:`~seesaw.ir.graph.build_graph` builds from it.

- :mod:`seesaw.ir.frontends.torch_export`: ``torch.export`` of the Hugging Face model class built on the meta
  device (no weights): parameter names and shapes from the exported program's graph signature, module paths and
  classes from each node's ``nn_module_stack``.
- :mod:`seesaw.ir.frontends.onnx_model`: an ``.onnx`` file written by ``torch.onnx.export`` (the dynamo exporter's
  ``pkg.torch.onnx.name_scopes`` metadata or the legacy exporter's scoped node names), weights from initializers
  or from graph inputs when they were left out.

This module holds what both share, so that each rule has one home: which modules the IR models
(:func:`check_module`), how the weights (checkpoint name -> shape) give the config's sizes and flags
(:func:`config_from_weights`, which goes through :meth:`ModelConfig.from_hf_dict` for the architecture rules),
the check that the exported weights are exactly the IR's (:func:`check_weights`), and the dispatch that
:func:`~seesaw.ir.config.load_model_config` calls (:func:`load_with_frontend`). Every problem raises
:class:`~seesaw.ir.errors.InputError` naming the file (or model), the module or weight, and the problem.

A mixture of experts (Mixtral, Qwen3-MoE) is read from transformers >= 5's modules: its fused 3-D expert
parameters are renamed to the checkpoint's per-expert tensors (:func:`unfuse_experts`); top-k and renormalization
change no shape and come with the other non-shape facts.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from seesaw.ir.config import ModelConfig
from seesaw.ir.errors import InputError

FRONTENDS: tuple[str, ...] = ("config", "torch-export")  # an .onnx --model always takes the ONNX frontend

#: Module paths relative to the ``*ForCausalLM`` root -> the role the IR gives them.
_ROLES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), r) for p, r in (
    (r"", "causal_lm"), (r"model", "model"), (r"model\.embed_tokens", "embedding"),
    (r"model\.rotary_emb", "rotary"), (r"model\.norm", "norm"), (r"model\.layers", "list"),
    (r"model\.layers\.\d+", "layer"), (r"model\.layers\.\d+\.self_attn", "attention"),
    (r"model\.layers\.\d+\.self_attn\.[qkvo]_proj", "linear"),
    (r"model\.layers\.\d+\.self_attn\.[qk]_norm", "norm"),
    (r"model\.layers\.\d+\.(input|post_attention)_layernorm", "norm"),
    (r"model\.layers\.\d+\.mlp", "mlp"), (r"model\.layers\.\d+\.mlp\.(gate|up|down)_proj", "linear"),
    (r"model\.layers\.\d+\.mlp\.act_fn", "act"), (r"lm_head", "linear"),
    # a mixture of experts as transformers >= 5 holds it: the router and the fused experts under ``mlp``
    (r"model\.layers\.\d+\.mlp\.gate", "router"), (r"model\.layers\.\d+\.mlp\.experts", "experts"),
    (r"model\.layers\.\d+\.mlp\.experts\.act_fn", "act"),
))
#: Per role, the class names transformers / torch give such modules: a suffix (``LlamaRMSNorm``) or exact names.
_CLASS_SUFFIX = {"causal_lm": ("ForCausalLM",), "model": ("Model",), "layer": ("DecoderLayer",),
                 "attention": ("Attention",), "mlp": ("MLP", "SparseMoeBlock"), "norm": ("RMSNorm",),
                 "rotary": ("RotaryEmbedding",), "router": ("TopKRouter",), "experts": ("Experts",)}
_CLASS_EXACT = {"linear": ("Linear",), "embedding": ("Embedding",), "list": ("ModuleList",),
                "act": ("SiLU", "SiLUActivation")}

#: Facts that change no shape, when no config.json gives them: the defaults of transformers' LlamaConfig,
#: MistralConfig, Qwen2Config and Qwen3Config (transformers 4.45 - 5.x).
HF_DEFAULTS: dict[str, dict[str, Any]] = {
    "LlamaForCausalLM": {"max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "MistralForCausalLM": {"max_position_embeddings": 131072, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "Qwen2ForCausalLM": {"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "Qwen3ForCausalLM": {"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0},
    "MixtralForCausalLM": {"max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
                           "num_experts_per_tok": 2},
    "Qwen3MoeForCausalLM": {"max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
                            "num_experts_per_tok": 8, "norm_topk_prob": False, "intermediate_size": 6144},
}
#: Facts no weight shape fixes: a mixture of experts' top-k and renormalization, and a Qwen3-MoE's dense MLP width
#: (no layer uses it when every layer is a mixture).
NON_SHAPE_KEYS = ("max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_parameters",
                  "num_experts_per_tok", "norm_topk_prob")

EMBED, LM_HEAD = "model.embed_tokens.weight", "lm_head.weight"
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")


def module_role(rel_path: str) -> str | None:
    """The role (``linear``, ``norm``, ``attention``, ...) of the module at ``rel_path`` (relative to the
    ``*ForCausalLM`` root, as in checkpoint names: ``model.layers.0.self_attn.q_proj``); None when the IR models
    no module there."""
    for pattern, role in _ROLES:
        if pattern.fullmatch(rel_path):
            return role
    return None


def check_module(rel_path: str, class_name: str | None, source: str) -> str:
    """The role of the module at ``rel_path`` (see :func:`module_role`), checking its class when known
    (``class_name``: a qualified or short class name, or None when the export records no classes).

    Raises :class:`InputError` (field: the module path, attributed to ``source``) for a module the IR does not
    model: an unknown path (a mixture-of-experts block's ``experts``, a fused ``qkv_proj``) or a known path whose
    class is another kind of module (a ``LayerNorm`` norm, a ``SparseMoeBlock`` MLP, a GELU activation).
    """
    role = module_role(rel_path)
    short = class_name.rsplit(".", 1)[-1] if class_name else None
    where = rel_path or "(root)"
    if role is None:
        kind = f" ({short})" if short else ""
        raise InputError(where, f"a module the IR does not model{kind}; the frontends read dense decoders "
                         "(Llama, Mistral, Qwen2, Qwen3) only", source)
    if short is None:
        return role
    expected = _CLASS_EXACT.get(role)
    ok = short in expected if expected else short.endswith(_CLASS_SUFFIX[role])
    if not ok:
        want = " or ".join(expected) if expected else " or ".join(f"a *{x}" for x in _CLASS_SUFFIX[role])
        raise InputError(where, f"{short} is a module the IR does not model (expected {want} here); the "
                         "frontends read dense decoders (Llama, Mistral, Qwen2, Qwen3) only", source)
    return role


def relative_path(path: str, root: str) -> str | None:
    """``path`` relative to the ``*ForCausalLM`` module at ``root`` (``""`` for the root itself); None for a
    module outside it (an export wrapper around the model)."""
    if path == root:
        return ""
    if not root:
        return path
    return path[len(root) + 1:] if path.startswith(root + ".") else None


def non_shape_facts(architecture: str, data: dict | None) -> dict[str, Any]:
    """``max_position_embeddings``, ``rms_norm_eps`` and the rope base from a ``config.json`` object ``data``,
    each missing one from :data:`HF_DEFAULTS` (transformers' defaults for ``architecture``)."""
    facts = dict(HF_DEFAULTS.get(architecture, HF_DEFAULTS["LlamaForCausalLM"]))
    keys = NON_SHAPE_KEYS + (("intermediate_size",) if architecture == "Qwen3MoeForCausalLM" else ())
    for key in keys:
        if data and data.get(key) is not None:
            facts[key] = data[key]
    if data and data.get("rope_theta") is None and isinstance(data.get("rope_parameters"), dict) \
            and data["rope_parameters"].get("rope_theta") is not None:
        facts.pop("rope_theta")  # the rope_parameters given win over the default rope_theta
    return facts


def _need(weights: dict[str, tuple[int, ...]], name: str, source: str) -> tuple[int, ...]:
    if name not in weights:
        raise InputError(name, "missing from the export (a weight every decoder the IR models has)", source)
    return weights[name]


def config_from_weights(weights: dict[str, tuple[int, ...]], *, architecture: str, head_dim: int, tied: bool,
                        dtype: str, facts: dict[str, Any], name: str, source: str) -> ModelConfig:
    """The :class:`ModelConfig` whose IR has exactly ``weights`` (checkpoint name -> shape; with ``tied``, the lm
    head's weight is the embedding's and ``lm_head.weight`` is absent), after :func:`check_weights`.

    Sizes come from the shapes: ``vocab_size, hidden_size`` = the embedding's, layers = the ``model.layers.{i}``
    indices, ``intermediate_size`` = gate_proj's rows, heads = q_proj's rows / ``head_dim``, KV heads = k_proj's
    rows / ``head_dim``; flags from the biases and norms present (o_proj bias -> ``attention_bias``, gate_proj
    bias -> ``mlp_bias``). ``dtype`` is the weights' torch dtype name (``bfloat16``); ``facts`` the non-shape
    facts (:func:`non_shape_facts`). The result goes through :meth:`ModelConfig.from_hf_dict`, so the
    architecture rules (which projections carry biases) are the config path's. Raises :class:`InputError`
    (source ``source``) for a missing weight, layers not numbered ``0..L-1``, widths ``head_dim`` does not
    divide, an unsupported architecture or dtype, or weights that differ from the IR's.
    """
    vocab, hidden = _need(weights, EMBED, source)
    moe = _moe_sizes(weights, architecture, facts, source)
    weights = unfuse_experts(weights, architecture)
    layers = sorted({int(m.group(1)) for n in weights if (m := _LAYER.match(n))})
    if not layers or layers != list(range(len(layers))):
        raise InputError("model.layers", f"decoder layers numbered {layers[:8]}, expected 0..L-1", source)
    attn, mlp = "model.layers.0.self_attn", "model.layers.0.mlp"
    q_out = _need(weights, f"{attn}.q_proj.weight", source)[0]
    k_out = _need(weights, f"{attn}.k_proj.weight", source)[0]
    for proj, width in (("q_proj", q_out), ("k_proj", k_out)):
        if width % head_dim:
            raise InputError(f"{attn}.{proj}.weight", f"{width} rows are not whole heads of head_dim {head_dim}",
                             source)
    data = {
        "architectures": [architecture], "hidden_size": hidden, "vocab_size": vocab,
        "num_hidden_layers": len(layers),
        **(moe or {"intermediate_size": _need(weights, f"{mlp}.gate_proj.weight", source)[0]}),
        "num_attention_heads": q_out // head_dim, "num_key_value_heads": k_out // head_dim, "head_dim": head_dim,
        "tie_word_embeddings": tied, "attention_bias": f"{attn}.o_proj.bias" in weights,
        "mlp_bias": f"{mlp}.gate_proj.bias" in weights, "torch_dtype": dtype,
        **facts, **(moe or {}),
    }
    cfg = ModelConfig.from_hf_dict(data, name=name, source=source)
    check_weights(cfg, weights, source)
    return cfg


_FUSED = re.compile(r"^model\.layers\.(\d+)\.mlp\.(experts\.gate_up_proj|experts\.down_proj|gate\.weight)$")


def unfuse_experts(weights: dict[str, tuple[int, ...]], architecture: str) -> dict[str, tuple[int, ...]]:
    """``weights`` with a mixture of experts as transformers >= 5 holds it in memory (``mlp.gate.weight [E,
    hidden]``, ``mlp.experts.gate_up_proj [E, 2 * ffn, hidden]``, ``mlp.experts.down_proj [E, hidden, ffn]``)
    renamed to the checkpoint's tensors (one gate, up and down projection per expert, under the architecture's
    MoE module: :data:`~seesaw.ir.graph.MOE_NAMES`); other weights unchanged."""
    from seesaw.ir.graph import MOE_NAMES  # noqa: PLC0415 (graph imports config, as this module does)

    if architecture not in MOE_NAMES:
        return weights
    module, gate, up, down = MOE_NAMES[architecture]
    out = {}
    for wname, shape in weights.items():
        m = _FUSED.match(wname)
        if m is None:
            out[wname] = shape
            continue
        prefix = f"model.layers.{m.group(1)}.{module}"
        if m.group(2) == "gate.weight":
            out[f"{prefix}.gate.weight"] = shape
        elif m.group(2) == "experts.gate_up_proj":
            for j in range(shape[0]):
                out[f"{prefix}.experts.{j}.{gate}.weight"] = (shape[1] // 2, shape[2])
                out[f"{prefix}.experts.{j}.{up}.weight"] = (shape[1] // 2, shape[2])
        else:
            for j in range(shape[0]):
                out[f"{prefix}.experts.{j}.{down}.weight"] = (shape[1], shape[2])
    return out


def _moe_sizes(weights: dict[str, tuple[int, ...]], architecture: str, facts: dict[str, Any],
               source: str) -> dict[str, Any] | None:
    """A mixture of experts' config fields from layer 0's fused experts (None for a dense export): the expert
    count and width from ``experts.down_proj [E, hidden, ffn]``, top-k and renormalization from ``facts``."""
    down = weights.get("model.layers.0.mlp.experts.down_proj")
    if down is None:
        return None
    experts, _, width = down
    if architecture == "MixtralForCausalLM":
        sizes = {"num_local_experts": experts, "intermediate_size": width}
    else:
        sizes = {"num_experts": experts, "moe_intermediate_size": width, "intermediate_size": facts["intermediate_size"]}
    return {**sizes, "num_experts_per_tok": facts["num_experts_per_tok"],
            **({"norm_topk_prob": facts["norm_topk_prob"]} if "norm_topk_prob" in facts else {})}


def check_weights(cfg: ModelConfig, weights: dict[str, tuple[int, ...]], source: str) -> None:
    """Check that ``weights`` (name -> shape, a tied lm head left out) are exactly the weights of
    ``build_graph(cfg)``, name for name and shape for shape. Raises :class:`InputError` (field: the first weight
    that differs, source ``source``) naming what the IR expects."""
    from seesaw.ir.graph import build_graph  # noqa: PLC0415 (graph imports config, as this module does)

    expected = {w.name: tuple(w.shape) for w in build_graph(cfg).weights()}
    for wname, shape in weights.items():
        if wname not in expected:
            raise InputError(wname, f"shape {list(shape)}: a weight the IR of {cfg.architecture} does not have "
                             "(a bias, norm or projection this architecture does not carry)", source)
        if tuple(shape) != expected[wname]:
            raise InputError(wname, f"shape {list(shape)}, but the IR expects {list(expected[wname])}", source)
    for wname, shape in expected.items():
        if wname not in weights:
            raise InputError(wname, f"missing from the export (the IR of {cfg.architecture} expects shape "
                             f"{list(shape)})", source)


def load_with_frontend(spec: str | Path, frontend: str = "config") -> ModelConfig:
    """The :class:`ModelConfig` of ``spec`` through a frontend: an ``.onnx`` path through
    :func:`~seesaw.ir.frontends.onnx_model.config_from_onnx` (with ``frontend`` ``config``, the default);
    otherwise ``frontend`` ``torch-export`` through :func:`~seesaw.ir.frontends.torch_export.config_from_export`
    or ``config`` through :func:`load_model_config` (``spec`` as :func:`load_model_config` takes it). Raises
    :class:`InputError` for an unknown frontend, ``torch-export`` given an ``.onnx`` file, or a missing package
    (``onnx``; ``torch`` and ``transformers``)."""
    if frontend not in FRONTENDS:
        raise InputError("frontend", f"'{frontend}' is not a frontend (expected {' or '.join(FRONTENDS)}; an "
                         ".onnx --model is read as ONNX)")
    if Path(spec).suffix.lower() != ".onnx" and frontend == "config":
        from seesaw.ir.config import load_model_config  # noqa: PLC0415

        return load_model_config(spec)
    if Path(spec).suffix.lower() == ".onnx":
        if frontend == "torch-export":
            raise InputError("frontend", "torch-export reads a config.json (or a model name); an .onnx file is "
                             "read by the ONNX frontend (leave --frontend out)", str(spec))
        try:
            from seesaw.ir.frontends.onnx_model import config_from_onnx  # noqa: PLC0415 (needs onnx)
        except ImportError as err:
            raise InputError("model", f"reading an .onnx file needs the onnx package ({err.name} is not "
                             "installed): pip install onnx", str(spec)) from None
        return config_from_onnx(spec)
    try:
        from seesaw.ir.frontends.torch_export import config_from_export  # noqa: PLC0415 (needs torch)
    except ImportError as err:
        raise InputError("frontend", f"torch-export needs torch and transformers ({err.name} is not installed): "
                         "pip install -e '.[runtime]'") from None
    return config_from_export(str(spec))
