"""The ONNX frontend: a :class:`~seesaw.ir.config.ModelConfig` derived from a causal LM's ``.onnx`` file.

    seesaw-plan --model path/model.onnx --cluster 8xL4 ...          # load_model_config dispatches on .onnx

Reads the files ``torch.onnx.export`` writes (sources: https://onnx.ai/onnx/repo-docs/IR.html for the graph,
initializers and ``metadata_props``; https://docs.pytorch.org/docs/stable/onnx_export.html for both exporters;
torch/onnx/_internal/exporter/_core.py, which writes the name-scope metadata):

- **Module of each node.** The dynamo exporter (``dynamo=True``) writes the module path of every node in
  ``metadata_props["pkg.torch.onnx.name_scopes"]`` and the module classes in
  ``metadata_props["pkg.torch.onnx.class_hierarchy"]``; both survive the optimizer's renaming of values. The
  legacy exporter (``dynamo=False``) writes no metadata, but its node names carry the scope
  (``/model/layers.0/self_attn/q_proj/MatMul``) and no classes. Every module must be one the IR models
  (:func:`~seesaw.ir.frontends.check_module`; classes are checked when recorded).
- **Weights.** A linear's weight is the ``B`` input of its ``MatMul`` (``[in, out]``, or ``[out, in]`` read
  through a ``Transpose``) or ``Gemm`` (``transB``), its bias a 1-D ``Add``/``Gemm`` operand; an embedding's is the
  ``Gather`` data; an RMSNorm's the 1-D ``Mul`` operand or the ``RMSNormalization`` scale (fused opset-23 ops and
  unfused patterns both read). A weight is an initializer, a ``Constant``, or a float graph input (weights left
  out of the file: ``include_initializers=False, keep_initializers_as_inputs=True``). Names are the module path
  plus ``.weight``/``.bias``, since initializer names are exact only with ``optimize=False`` (the optimizer
  renames and merges identical constants, and the legacy exporter folds transposes into ``onnx::MatMul_*``).
- **head_dim** is the last entry of the ``Reshape`` of q_proj's output into heads (its constant shape, else the
  recorded value shape), else from a fused ``Attention``'s ``q_num_heads``, else the q_norm width.
- **Tied embeddings**: the embedding's ``Gather`` and the lm head read the same tensor; the legacy exporter
  duplicates it, so two tensors with equal values (one the other's transpose) count as tied.
- **Architecture**: the ``*ForCausalLM`` class (dynamo); else the ``config.json`` next to the file; else inferred
  from the weights (q/k norms: Qwen3; q/k/v biases without an o_proj bias: Qwen2; else Llama: a Mistral file
  exported by the legacy exporter without its config.json reads as Llama, the same shapes).

Facts that change no shape (``rope_theta``, ``rms_norm_eps``, ``max_position_embeddings``) come from the
``config.json`` next to the file, else transformers' defaults (:data:`~seesaw.ir.frontends.HF_DEFAULTS`). When
that config.json is there, its shape facts must agree with the graph. ``dtype`` is the weights' element type.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from seesaw.ir.config import ModelConfig, read_hf_config
from seesaw.ir.errors import InputError
from seesaw.ir.frontends import (
    EMBED, LM_HEAD, check_module, config_from_weights, module_role, non_shape_facts, relative_path,
)

SCOPES, CLASSES = "pkg.torch.onnx.name_scopes", "pkg.torch.onnx.class_hierarchy"
_DTYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16",
           TensorProto.DOUBLE: "float64", TensorProto.FLOAT8E4M3FN: "float8_e4m3fn",
           TensorProto.FLOAT8E5M2: "float8_e5m2"}
_PASS = frozenset({"Cast", "CastLike", "Identity"})  # a weight read through these is still that weight
_RMS_OPS = frozenset({"RMSNormalization", "SimplifiedLayerNormalization"})  # input 1 is the scale
_NOT_RMS = frozenset({"LayerNormalization", "Sub"})  # mean subtraction: a LayerNorm
_WEIGHT_ROLES = frozenset({"linear", "embedding", "norm"})


class _Const(NamedTuple):
    shape: tuple[int, ...]
    elem_type: int
    proto: Any  # the TensorProto holding its values, or None (a graph input: weights left out of the file)


class _Src(NamedTuple):
    key: str  # the constant's name
    out_in: bool  # for a linear: whether the tensor's own layout is [out, in] (after Transposes and transB)


class _Graph:
    """Index of one ONNX graph: constants, producers, consumers, value shapes, and each node's module chain."""

    def __init__(self, model: onnx.ModelProto, base_dir: str) -> None:
        g = model.graph
        self.base_dir = base_dir
        self.nodes = list(g.node)
        self.consts: dict[str, _Const] = {t.name: _Const(tuple(t.dims), t.data_type, t) for t in g.initializer}
        for i in g.input:
            tt = i.type.tensor_type
            if i.name not in self.consts and tt.elem_type in _DTYPES:
                self.consts[i.name] = _Const(tuple(d.dim_value for d in tt.shape.dim), tt.elem_type, None)
        self.producer = {o: n for n in self.nodes for o in n.output}
        for n in self.nodes:
            if n.op_type == "Constant" and (t := next((a.t for a in n.attribute if a.name == "value"), None)):
                self.consts[n.output[0]] = _Const(tuple(t.dims), t.data_type, t)
        self.shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                       for v in (*g.value_info, *g.output)}
        self.dynamo = any(p.key == SCOPES for n in self.nodes for p in n.metadata_props)

    def chain(self, node) -> list[tuple[str, str | None]]:
        """The node's modules, outermost first, as (path, class or None)."""
        if self.dynamo:
            md = {p.key: p.value for p in node.metadata_props}
            if SCOPES not in md:
                return []
            scopes = ast.literal_eval(md[SCOPES])[:-1]  # the last entry is the node's own name
            classes = ast.literal_eval(md.get(CLASSES, "[]"))[:-1]
            return list(zip(scopes, classes if len(classes) == len(scopes) else [None] * len(scopes)))
        parts = node.name.split("/")[1:-1] if node.name.startswith("/") else []
        return [(".".join(parts[:i + 1]), None) for i in range(len(parts))]

    def source(self, name: str) -> _Src | None:
        """The constant ``name`` reads, through Transposes (which flip the layout), Casts and Identities."""
        flipped = False
        while name not in self.consts:
            node = self.producer.get(name)
            if node is None or node.op_type not in _PASS | {"Transpose"}:
                return None
            if node.op_type == "Transpose":
                flipped = not flipped
            name = node.input[0]
        return _Src(name, flipped)

    def values(self, key: str) -> np.ndarray | None:
        proto = self.consts[key].proto
        return None if proto is None else numpy_helper.to_array(proto, base_dir=self.base_dir)

    def ints(self, name: str) -> list[int] | None:
        """The integer values of a constant (or a Concat of constants), or None."""
        if name in self.consts and self.consts[name].proto is not None and \
                self.consts[name].elem_type in (TensorProto.INT64, TensorProto.INT32):
            return [int(v) for v in np.ravel(self.values(name))]
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value_ints":
                    return list(a.ints)
                if a.name == "value_int":
                    return [a.i]
        if node is not None and node.op_type == "Concat":
            parts = [self.ints(i) for i in node.input]
            return None if any(p is None for p in parts) else [v for p in parts for v in p]
        return None


def _load(path: Path, source: str) -> onnx.ModelProto:
    if path.is_dir():
        raise InputError("model", "is a folder, not an .onnx file", source)
    if not path.is_file():
        raise InputError("model", "no such file", source)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001 (protobuf raises DecodeError, RuntimeWarning, ValueError, ...)
        raise InputError("model", f"not an ONNX model ({type(err).__name__}: {str(err)[:120]})", source) from None
    if not model.graph.node:
        raise InputError("model", "not an ONNX model with a graph (no nodes)", source)
    return model


def config_from_onnx(path: str | Path, *, name: str | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of the causal LM in the ONNX file ``path`` (see the module docstring), after
    checking its modules and that its weights are exactly the IR's (:func:`~seesaw.ir.frontends.check_weights`).

    ``name``: the model's name (default: the file stem, or the folder name for ``<folder>/model.onnx``). Raises
    :class:`InputError` naming the file: field ``model`` for a file that is missing or not an ONNX model, else
    the module or weight at fault (a module the IR does not model, a LayerNorm, a weight missing or extra), or
    the field where a ``config.json`` next to the file disagrees with the graph.
    """
    path = Path(path)
    source = str(path)
    g = _Graph(_load(path, source), str(path.parent))
    modules: dict[str, str | None] = {}
    for node in g.nodes:
        for mpath, cls in g.chain(node):
            if modules.get(mpath) is None:
                modules[mpath] = cls
    roots = sorted((p for p, c in modules.items() if c and c.endswith("ForCausalLM")), key=len) or \
        sorted((p.removesuffix("model.embed_tokens").rstrip(".") for p in modules
                if p == "model.embed_tokens" or p.endswith(".model.embed_tokens")), key=len)
    if not roots:
        raise InputError("model", "no token embedding module (model.embed_tokens) in the graph: not a causal LM "
                         "exported by torch.onnx.export, or its nodes carry no module scopes", source)
    root = roots[0]
    for mpath, cls in modules.items():
        if (rel := relative_path(mpath, root)) is not None:
            check_module(rel, cls, source)

    def rel_of(node) -> str | None:
        chain = g.chain(node)
        return relative_path(chain[-1][0], root) if chain else None

    found: dict[str, _Src] = {}

    def put(wname: str, src: _Src | None) -> None:
        if src is None:
            return
        if wname in found and found[wname].key != src.key:
            raise InputError(wname, f"read from two tensors ({found[wname].key}, {src.key})", source)
        found[wname] = src

    for node in g.nodes:
        rel = rel_of(node)
        role = module_role(rel) if rel is not None else None
        op, ins = node.op_type, list(node.input)
        if role == "linear" and op in ("MatMul", "Gemm") and len(ins) > 1:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            if (src := g.source(ins[1])) is not None:
                put(f"{rel}.weight", _Src(src.key, src.out_in != trans_b))
            if op == "Gemm" and len(ins) > 2 and ins[2]:
                put(f"{rel}.bias", g.source(ins[2]))
        elif role == "linear" and op == "Add":
            for i in ins:
                if (src := g.source(i)) is not None and len(g.consts[src.key].shape) == 1:
                    put(f"{rel}.bias", src)
        elif role == "embedding" and op == "Gather":
            put(f"{rel}.weight", g.source(ins[0]))
        elif role == "norm" and op in _NOT_RMS:
            raise InputError(rel, f"a {op} in a norm: a LayerNorm, not the RMSNorm the IR models", source)
        elif role == "norm" and op in _RMS_OPS:
            put(f"{rel}.weight", g.source(ins[1]))
        elif role == "norm" and op == "Mul":
            for i in ins:
                src = g.source(i)
                if src is not None and len(g.consts[src.key].shape) == 1 and g.consts[src.key].shape[0] > 1:
                    put(f"{rel}.weight", src)
    used = {s.key for s in found.values()}
    for node in g.nodes:  # a tensor a weight-holding module reads but the IR has no name for
        rel = rel_of(node)
        if rel is None or module_role(rel) not in _WEIGHT_ROLES:
            continue
        for i in node.input:
            src = g.source(i) if i else None
            if src and src.key not in used and g.consts[src.key].elem_type in _DTYPES \
                    and int(np.prod(g.consts[src.key].shape)) > 1:
                raise InputError(rel, f"reads tensor {src.key} {list(g.consts[src.key].shape)} in a {node.op_type}, "
                                 "which is no weight the IR models", source)

    tied = _tied(g, found)
    if tied:
        del found[LM_HEAD]
    weights = {}
    for wname, src in found.items():
        shape = g.consts[src.key].shape
        flip = wname.endswith(".weight") and module_role(wname.removesuffix(".weight")) == "linear" and not src.out_in
        weights[wname] = tuple(reversed(shape)) if flip else shape

    data, cfg_source = None, None
    if (path.parent / "config.json").is_file():
        data, _, cfg_source = read_hf_config(path.parent / "config.json")
    arch = (modules.get(root) or "").rsplit(".", 1)[-1] or _architecture(data, weights)
    q_key = found.get("model.layers.0.self_attn.q_proj.weight")
    dtype = _DTYPES.get(g.consts[q_key.key].elem_type, "unknown") if q_key else "unknown"
    nm = name or (path.parent.name if path.stem == "model" and path.parent.name else path.stem)
    cfg = config_from_weights(weights, architecture=arch, head_dim=_head_dim(g, rel_of, weights, source),
                              tied=tied, dtype=dtype, facts=non_shape_facts(arch, data), name=nm, source=source)
    if data is not None:
        _agree(cfg, ModelConfig.from_hf_dict(data, name=nm, source=cfg_source), cfg_source, source)
    return cfg


def _tied(g: _Graph, found: dict[str, _Src]) -> bool:
    """Whether the lm head reads the embedding's tensor (or, as the legacy exporter writes it, a copy)."""
    emb, head = found.get(EMBED), found.get(LM_HEAD)
    if emb is None or head is None:
        return False
    if emb.key == head.key:
        return True
    e_shape, h_shape = g.consts[emb.key].shape, g.consts[head.key].shape
    if e_shape != (h_shape if head.out_in else tuple(reversed(h_shape))):
        return False
    e_vals, h_vals = g.values(emb.key), g.values(head.key)
    return e_vals is not None and h_vals is not None and \
        np.array_equal(e_vals, h_vals if head.out_in else h_vals.T)


def _head_dim(g: _Graph, rel_of, weights: dict[str, tuple[int, ...]], source: str) -> int:
    q_rel, attn = "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn"
    for node in g.nodes:
        producer = g.producer.get(node.input[0]) if node.op_type == "Reshape" and node.input else None
        if producer is not None and rel_of(producer) == q_rel and rel_of(node) != q_rel:
            for dims in (g.ints(node.input[1]), g.shapes.get(node.output[0])):
                if dims and dims[-1] > 0:
                    return int(dims[-1])
    q_out = weights.get(f"{q_rel}.weight", (0,))[0]
    for node in g.nodes:
        if node.op_type in ("Attention", "GroupQueryAttention", "MultiHeadAttention") and \
                (rel_of(node) or "").startswith(attn):
            heads = next((a.i for a in node.attribute if a.name in ("q_num_heads", "num_heads")), 0)
            if heads and q_out % heads == 0:
                return q_out // heads
    if f"{attn}.q_norm.weight" in weights:
        return weights[f"{attn}.q_norm.weight"][0]
    raise InputError(attn, "cannot tell head_dim: no Reshape of q_proj's output into heads, no fused "
                     "Attention with q_num_heads, no q_norm", source)


def _architecture(data: dict | None, weights: dict[str, tuple[int, ...]]) -> str:
    """The config.json's architecture, else the one the weights imply (see the module docstring)."""
    archs = data.get("architectures") if isinstance(data, dict) else None
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    attn = "model.layers.0.self_attn"
    if f"{attn}.q_norm.weight" in weights:
        return "Qwen3ForCausalLM"
    if f"{attn}.q_proj.bias" in weights and f"{attn}.o_proj.bias" not in weights:
        return "Qwen2ForCausalLM"
    return "LlamaForCausalLM"


def _agree(cfg: ModelConfig, ref: ModelConfig, ref_source: str, source: str) -> None:
    """Refuse a config.json next to the file whose shape facts (dtype aside) differ from the graph's."""
    got, want = cfg.fingerprint(), ref.fingerprint()
    for key in sorted(set(got) | set(want)):
        if key != "dtype_bytes" and got.get(key) != want.get(key):
            raise InputError(key, f"the ONNX graph gives {got.get(key)!r}, but {ref_source} next to it says "
                             f"{want.get(key)!r}", source)


def export_onnx(model_or_config, path: str | Path, *, dynamo: bool = True, optimize: bool = False,
                opset: int | None = 23, seq_len: int = 8) -> Path:
    """Write a causal LM as ONNX the way this frontend reads it; returns ``path``. Needs torch, transformers
    and (dynamo) onnxscript.

    ``model_or_config``: a ``transformers`` causal LM with weights, or a ``config.json`` object (``dict``), built
    on the meta device and written without weights (``include_initializers=False,
    keep_initializers_as_inputs=True``: about 12 MB for SmolLM2-135M; dynamo only). The graph is that of
    :class:`~seesaw.ir.frontends.torch_export.LogitsOnly` on ``input_ids [1, seq_len]``: ``dynamo=True`` is
    ``torch.onnx.export(..., dynamo=True, optimize=optimize, opset_version=opset)`` then
    ``ONNXProgram.save``; ``dynamo=False`` the legacy TorchScript exporter (its default opset when ``opset`` is
    23, which it does not support).
    """
    import torch  # noqa: PLC0415

    from seesaw.ir.frontends.torch_export import LogitsOnly, meta_model  # noqa: PLC0415

    weightless = isinstance(model_or_config, dict)
    model = meta_model(model_or_config) if weightless else model_or_config.eval()
    device = "meta" if weightless else "cpu"
    ids = torch.zeros(1, seq_len, dtype=torch.long, device=device)
    path = Path(path)
    if not dynamo:
        if weightless:
            raise ValueError("the legacy exporter needs weights: pass a model, not a config")
        torch.onnx.export(LogitsOnly(model), (ids,), str(path), dynamo=False, input_names=["input_ids"],
                          output_names=["logits"], opset_version=None if opset == 23 else opset)
        return path
    program = torch.onnx.export(LogitsOnly(model), (ids,), dynamo=True, optimize=optimize, opset_version=opset,
                                verbose=False)
    program.save(str(path), include_initializers=not weightless, keep_initializers_as_inputs=weightless)
    return path
