"""The model graph: one :class:`~seesaw.ir.ops.Op` per node of a ``networkx.DiGraph``, edges = dataflow.

:func:`build_graph` lowers a :class:`ModelConfig` into the unsharded graph of one forward pass of a
pre-norm decoder (Llama/Mistral/Qwen2/Qwen3):

    embed_tokens -> [layer 0] -> ... -> [layer L-1] -> norm -> lm_head

and per layer ``i`` (``x`` = the residual stream entering the layer):

    x -> input_layernorm -> q_proj/k_proj/v_proj (-> q_norm/k_norm, Qwen3) -> rope -> attention
      -> o_proj -> attn_residual (+x) -> post_attention_layernorm -> gate_proj/up_proj -> silu_mul
      -> down_proj -> mlp_residual (+attn_residual)

and in a mixture-of-experts model (Mixtral, Qwen3-MoE) the MLP part is ``post_attention_layernorm -> router
-> experts -> mlp_residual`` (``layers.{i}.router``, ``layers.{i}.experts``: one op for all experts).

Node ids are ``embed_tokens``, ``layers.{i}.<op>``, ``norm``, ``lm_head`` (passes add collectives and
send/recv). Node insertion order is program order (a topological order), which passes preserve. Node
attributes: ``op`` (the Op) and ``section`` (``pre`` | ``layer`` | ``post``); passes add ``tp`` and
``stage``. Weight names are the exact Hugging Face checkpoint names; a quantized checkpoint's linears list the
tensors it stores (FP8 or packed INT4 weights, scales, zero points: :func:`~seesaw.ir.quant.quantized_linear`).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import networkx as nx

from seesaw.ir.config import ModelConfig
from seesaw.ir.ops import Op, OpKind, ShardRule, WeightSpec
from seesaw.ir.quant import quantized_linear

_R = ShardRule


class ModelGraph:
    """A model's op graph (``.g``, a ``networkx.DiGraph``) with its config (``.cfg``).

    Graph attributes (``.g.graph``): ``tp`` and ``stage_layers`` once the passes have run.
    """

    def __init__(self, cfg: ModelConfig, g: nx.DiGraph) -> None:
        self.cfg = cfg
        self.g = g

    # -- queries ----------------------------------------------------------------------------------------
    def op(self, name: str) -> Op:
        """The Op of node ``name`` (KeyError when absent)."""
        return self.g.nodes[name]["op"]

    def ops(self) -> list[Op]:
        """All ops in program (topological) order."""
        return [data["op"] for _, data in self.g.nodes(data=True)]

    def _section(self, section: str) -> list[Op]:
        return [d["op"] for _, d in self.g.nodes(data=True) if d["section"] == section]

    def pre_ops(self) -> list[Op]:
        """Ops before the first layer: the embedding (and its all-reduce under TP)."""
        return self._section("pre")

    def post_ops(self) -> list[Op]:
        """Ops after the last layer: final norm, lm head (and the logits all-gather under TP)."""
        return self._section("post")

    def layer_ops(self, i: int) -> list[Op]:
        """Ops of decoder layer ``i`` in program order (incl. its collectives and outgoing sends)."""
        return [d["op"] for _, d in self.g.nodes(data=True) if d["section"] == "layer" and d["op"].layer == i]

    def weights(self) -> list[WeightSpec]:
        """Unique checkpoint tensors in program order (a tied embedding/lm-head tensor appears once)."""
        seen: dict[str, WeightSpec] = {}
        for op in self.ops():
            for w in op.weights:
                seen.setdefault(w.name, w)
        return list(seen.values())

    def num_parameters(self) -> int:
        """Total parameters (elements), tied weights counted once; equals HF ``model.parameters()``. For a
        quantized checkpoint: the elements of its stored tensors (scales included; a packed INT4 tensor counts its
        int32 words)."""
        return sum(w.numel for w in self.weights())

    def weight_bytes(self, tp: int = 1, dtype_bytes: int | None = None) -> int:
        """Bytes of all weights held by one rank of a ``tp``-way group (tied weights once): each tensor in its
        stored dtype (quantized weights and their scales), the rest ``dtype_bytes`` per element (default: the
        checkpoint's, ``cfg.dtype_bytes``)."""
        db = self.cfg.dtype_bytes if dtype_bytes is None else dtype_bytes
        return sum(w.local_bytes(tp, db) for w in self.weights())

    def layer_weight_bytes(self, i: int, tp: int = 1, dtype_bytes: int | None = None) -> int:
        """Bytes of decoder layer ``i``'s weights held by one rank of a ``tp``-way group (as
        :meth:`weight_bytes` counts them)."""
        db = self.cfg.dtype_bytes if dtype_bytes is None else dtype_bytes
        names: dict[str, WeightSpec] = {w.name: w for op in self.layer_ops(i) for w in op.weights}
        return sum(w.local_bytes(tp, db) for w in names.values())

    def kv_bytes_per_token_per_layer(self, dtype_bytes: int | None = None) -> int:
        """KV-cache bytes one token adds to one layer, all heads: ``2 * h_kv * d * kv_bytes`` (DESIGN.md
        section 4; divide by ``tp`` for one rank when ``tp`` divides the KV heads), ``kv_bytes`` = 1 for an FP8
        KV cache (``cfg.kv_cache_dtype``), else ``dtype_bytes`` (default: the checkpoint's)."""
        c = self.cfg
        kv = c.kv_cache_dtype_bytes or (c.dtype_bytes if dtype_bytes is None else dtype_bytes)
        return 2 * c.num_key_value_heads * c.head_dim * kv

    def copy(self) -> "ModelGraph":
        """A copy whose graph can be edited without touching this one (Ops are immutable, shared)."""
        return ModelGraph(self.cfg, self.g.copy())

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops())

    def __len__(self) -> int:
        return self.g.number_of_nodes()


class _Builder:
    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.g = nx.DiGraph()

    def add(self, name: str, kind: OpKind, section: str, inputs: tuple[str, ...] = (), *,
            layer: int | None = None, weights: tuple[WeightSpec, ...] = (), **dims) -> str:
        self.g.add_node(name, op=Op(name, kind, layer, weights, dims), section=section)
        for src in inputs:
            self.g.add_edge(src, name)
        return name

    def linear(self, i: int, module: str, proj: str, x: str, out_f: int, in_f: int, rule: ShardRule,
               bias: bool, unit: int = 1) -> str:
        prefix = f"model.layers.{i}.{module}.{proj}"
        shard_dim = 1 if rule is _R.ROW else 0
        ws = [WeightSpec(f"{prefix}.weight", (out_f, in_f), rule, shard_dim, unit)]
        if bias:
            bias_rule = _R.REPLICATED if rule is _R.ROW else rule
            ws.append(WeightSpec(f"{prefix}.bias", (out_f,), bias_rule, 0, unit))
        ws, quant_dims = quantized_linear(self.cfg.quantization, prefix, ws)  # unchanged when not quantized
        return self.add(f"layers.{i}.{proj}", OpKind.LINEAR, "layer", (x,), layer=i, weights=tuple(ws),
                        **{"in": in_f, "out": out_f}, **quant_dims)

    def norm(self, name: str, weight: str, width: int, section: str, x: str, layer: int | None = None,
             heads: int = 1) -> str:
        w = WeightSpec(weight, (width,), _R.REPLICATED)
        return self.add(name, OpKind.RMSNORM, section, (x,), layer=layer, weights=(w,), hidden=width,
                        heads=heads)

    def layer(self, i: int, x: str) -> str:
        c = self.cfg
        h, d, hq, hkv, ffn = c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads, \
            c.intermediate_size
        p, attn = f"layers.{i}", f"model.layers.{i}.self_attn"
        ln = self.norm(f"{p}.input_layernorm", f"model.layers.{i}.input_layernorm.weight", h, "layer", x, i)
        q = self.linear(i, "self_attn", "q_proj", ln, hq * d, h, _R.COLUMN, c.qkv_bias)
        k = self.linear(i, "self_attn", "k_proj", ln, hkv * d, h, _R.KV_HEAD, c.qkv_bias, unit=d)
        v = self.linear(i, "self_attn", "v_proj", ln, hkv * d, h, _R.KV_HEAD, c.qkv_bias, unit=d)
        if c.qk_norm:
            q = self.norm(f"{p}.q_norm", f"{attn}.q_norm.weight", d, "layer", q, i, heads=hq)
            k = self.norm(f"{p}.k_norm", f"{attn}.k_norm.weight", d, "layer", k, i, heads=hkv)
        heads = {"q_heads": hq, "kv_heads": hkv, "head_dim": d}
        rope = self.add(f"{p}.rope", OpKind.ROPE, "layer", (q, k), layer=i, **heads)
        kv_bytes = {"kv_dtype_bytes": c.kv_cache_dtype_bytes} if c.kv_cache_dtype_bytes else {}
        at = self.add(f"{p}.attention", OpKind.ATTENTION, "layer", (rope, v), layer=i, **heads, **kv_bytes)
        o = self.linear(i, "self_attn", "o_proj", at, h, hq * d, _R.ROW, c.attention_bias)
        res1 = self.add(f"{p}.attn_residual", OpKind.RESIDUAL_ADD, "layer", (x, o), layer=i, hidden=h)
        ln2 = self.norm(f"{p}.post_attention_layernorm", f"model.layers.{i}.post_attention_layernorm.weight",
                        h, "layer", res1, i)
        if c.is_moe:
            down = self.moe(i, ln2)
        else:
            gate = self.linear(i, "mlp", "gate_proj", ln2, ffn, h, _R.COLUMN, c.mlp_bias)
            up = self.linear(i, "mlp", "up_proj", ln2, ffn, h, _R.COLUMN, c.mlp_bias)
            act = self.add(f"{p}.silu_mul", OpKind.SILU_MUL, "layer", (gate, up), layer=i, intermediate=ffn)
            down = self.linear(i, "mlp", "down_proj", act, h, ffn, _R.ROW, c.mlp_bias)
        return self.add(f"{p}.mlp_residual", OpKind.RESIDUAL_ADD, "layer", (res1, down), layer=i, hidden=h)

    def moe(self, i: int, x: str) -> str:
        """Router then experts (``MOE_NAMES`` gives the checkpoint names); each expert's gate/up projections are
        column-parallel and its down projection row-parallel, so under TP every rank holds a slice of every
        expert and the experts' partial outputs are summed by one all-reduce, as a dense MLP's. A quantized
        checkpoint's expert (and router, unless excluded) tensors follow each projection's weight in the op's
        weights (:func:`~seesaw.ir.quant.quantized_linear`)."""
        c = self.cfg
        h, e, ffn = c.hidden_size, c.num_experts, c.moe_intermediate_size
        module, gate_name, up_name, down_name = MOE_NAMES[c.architecture]
        prefix = f"model.layers.{i}.{module}"
        q = c.quantization  # quantized_linear keeps a module the checkpoint leaves unquantized as it is
        router_ws, router_dims = quantized_linear(q, f"{prefix}.gate",
                                                  [WeightSpec(f"{prefix}.gate.weight", (e, h), _R.REPLICATED)])
        router = self.add(f"layers.{i}.router", OpKind.ROUTER, "layer", (x,), layer=i, weights=tuple(router_ws),
                          hidden=h, experts=e, top_k=c.num_experts_per_tok, normalize=c.norm_topk_prob,
                          **{k: v for k, v in router_dims.items() if k == "gemm_dtype"})
        ws, dims = [], {}
        for j in range(e):
            ex = f"{prefix}.experts.{j}"
            for proj, shape, rule, dim in ((gate_name, (ffn, h), _R.COLUMN, 0), (up_name, (ffn, h), _R.COLUMN, 0),
                                           (down_name, (h, ffn), _R.ROW, 1)):
                tensors, proj_dims = quantized_linear(q, f"{ex}.{proj}", [WeightSpec(f"{ex}.{proj}.weight", shape,
                                                                                     rule, dim)])
                ws += [replace(t, expert=j, experts=e) for t in tensors]
                dims.update({k: v for k, v in proj_dims.items() if k == "gemm_dtype"})
        return self.add(f"layers.{i}.experts", OpKind.MOE_EXPERTS, "layer", (x, router), layer=i, weights=tuple(ws),
                        hidden=h, experts=e, top_k=c.num_experts_per_tok, intermediate=ffn, **dims)


#: Per mixture-of-experts architecture: the layer's MLP module and each expert's gate / up / down projection
#: names in its checkpoints (Mixtral: ``block_sparse_moe.experts.{j}.w1`` = gate, ``w3`` = up, ``w2`` = down).
MOE_NAMES: dict[str, tuple[str, str, str, str]] = {
    "MixtralForCausalLM": ("block_sparse_moe", "w1", "w3", "w2"),
    "Qwen3MoeForCausalLM": ("mlp", "gate_proj", "up_proj", "down_proj"),
}


def build_graph(cfg: ModelConfig) -> ModelGraph:
    """The unsharded op graph of one forward pass of ``cfg`` (see the module docstring for its shape).

    With ``tie_word_embeddings`` the lm head's weight is the embedding tensor
    (``model.embed_tokens.weight``), counted once by :meth:`ModelGraph.weights`.
    """
    b = _Builder(cfg)
    h, vocab = cfg.hidden_size, cfg.vocab_size
    embed_w = WeightSpec("model.embed_tokens.weight", (vocab, h), _R.VOCAB, 0)
    x = b.add("embed_tokens", OpKind.EMBEDDING, "pre", weights=(embed_w,), vocab=vocab, hidden=h)
    for i in range(cfg.num_hidden_layers):
        x = b.layer(i, x)
    x = b.norm("norm", "model.norm.weight", h, "post", x)
    head_w = embed_w if cfg.tie_word_embeddings else WeightSpec("lm_head.weight", (vocab, h), _R.VOCAB, 0)
    b.add("lm_head", OpKind.LM_HEAD, "post", (x,), weights=(head_w,), vocab=vocab, hidden=h)
    return ModelGraph(cfg, b.g)
