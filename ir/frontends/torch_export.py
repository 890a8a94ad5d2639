"""The torch.export frontend: a :class:`~seesaw.ir.config.ModelConfig` derived from the Hugging Face model class
itself, exported on the meta device (no weights are allocated or read).

    cfg = config_from_export("examples/models/llama-3-8b.json")      # or a config.json object, or a model name
    seesaw-plan --model llama-3-8b --frontend torch-export ...

How (sources: https://docs.pytorch.org/docs/stable/export.html for ``torch.export.export``, ``ExportedProgram``
and ``graph_signature``; transformers' ``AutoConfig.for_model`` and ``AutoModelForCausalLM.from_config``):

1. ``with torch.device("meta"): AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **config))``,
   cast to the checkpoint's dtype (``torch_dtype``/``dtype``; bfloat16 when unset, as the config path assumes).
   Every module of ``model.named_modules()`` must be one the IR models
   (:func:`~seesaw.ir.frontends.check_module`) before anything is exported.
2. ``torch.export.export(LogitsOnly(model), (input_ids,))``: the wrapper returns the logits tensor only (the
   model's output pytree does not survive ``torch.export.save``/``load``). A Llama-3-8B-sized model exports in
   about 10 s and 0.6 GB on the meta device (2 CPU cores).
3. From the :class:`torch.export.ExportedProgram`: ``graph_signature.inputs_to_parameters`` maps placeholders
   to the exact parameter (checkpoint) names, each placeholder's ``meta["val"]`` gives shape and dtype, and each
   node's ``meta["nn_module_stack"]`` its module path and class. ``head_dim`` is the last dimension of the view
   of ``q_proj``'s output into heads (``[batch, seq, heads, head_dim]``), heads = q_proj's rows / ``head_dim``
   and KV heads = k_proj's rows / ``head_dim`` (not the key at the attention call, whose heads are already
   repeated for GQA). Tied embeddings: the lm head's linear reads the same parameter placeholder as the
   embedding (torch.export keeps one placeholder, under either name).

The non-shape facts (``rope_theta``, ``rms_norm_eps``, ``max_position_embeddings``) come from the config given,
or transformers' defaults when it leaves them out. Importing this module needs torch and transformers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from seesaw.ir.config import ModelConfig
from seesaw.ir.errors import InputError
from seesaw.ir.frontends import EMBED, check_module, config_from_weights, non_shape_facts, relative_path

_MODEL_TYPES = {"LlamaForCausalLM": "llama", "MistralForCausalLM": "mistral", "Qwen2ForCausalLM": "qwen2",
                "Qwen3ForCausalLM": "qwen3"}
_VIEWS = frozenset({"aten.view.default", "aten.reshape.default", "aten._unsafe_view.default"})
_SKIPPED_KEYS = frozenset({"model_type", "torch_dtype", "dtype", "transformers_version"})


class LogitsOnly(torch.nn.Module):
    """Wraps a causal LM so that ``forward(input_ids)`` returns the logits tensor ``[batch, seq, vocab]`` only
    (an all-ones attention mask, no KV cache): an output that ``torch.export`` and both ONNX exporters handle.
    The wrapped model is the attribute ``model``, so parameter names gain a ``model.`` prefix."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = torch.ones_like(input_ids)  # given, so transformers skips its packed-sequence check (aten::diff)
        return self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits


def _torch_dtype(data: dict, source: str) -> torch.dtype:
    text = str(data.get("torch_dtype") or data.get("dtype") or "bfloat16").removeprefix("torch.")
    dtype = getattr(torch, text, None)
    if not isinstance(dtype, torch.dtype):
        raise InputError("torch_dtype", f"'{text}' is not a torch dtype", source)
    return dtype


def hf_config_object(data: Any, source: str = "config"):
    """The ``transformers`` configuration object for the ``config.json`` object ``data``
    (``AutoConfig.for_model(model_type, **data)``; ``model_type`` inferred from the architecture when absent).

    Raises :class:`InputError` (source ``source``) when ``data`` is not an object, declares quantized weights, or
    names a model type transformers cannot build."""
    if not isinstance(data, dict):
        raise InputError("config", f"expected a JSON object, got {type(data).__name__}", source)
    if data.get("quantization_config") is not None:
        raise InputError("quantization_config", "the torch.export frontend reads unquantized models only (read "
                         "a quantized model from its config.json)", source)
    archs = data.get("architectures")
    arch = archs[0] if isinstance(archs, list) and archs else None
    model_type = data.get("model_type") or _MODEL_TYPES.get(arch)
    if not model_type:
        raise InputError("model_type", "missing (transformers needs it to build the model class)", source)
    kwargs = {k: v for k, v in data.items() if not k.startswith("_") and k not in _SKIPPED_KEYS}
    try:
        return AutoConfig.for_model(model_type, **kwargs)
    except (ValueError, KeyError, TypeError) as err:
        raise InputError("model_type", f"transformers cannot build '{model_type}': {err}", source) from None


def meta_model(data: Any, source: str = "config") -> torch.nn.Module:
    """The Hugging Face causal LM of the ``config.json`` object ``data`` on the meta device (shapes and dtypes,
    no storage), in the checkpoint's dtype (``torch_dtype``/``dtype``, else bfloat16), in eval mode. Raises
    :class:`InputError` as :func:`hf_config_object` does, or when transformers has no causal LM for it."""
    config = hf_config_object(data, source)
    dtype = _torch_dtype(data, source)
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError, ImportError) as err:
        raise InputError("architectures", f"transformers cannot build a causal LM: {err}", source) from None
    return model.to(dtype).eval()


def export_meta(model: torch.nn.Module, seq_len: int = 8) -> torch.export.ExportedProgram:
    """``torch.export.export`` of :class:`LogitsOnly` around ``model`` with ``input_ids`` of shape
    ``[1, seq_len]`` on the meta device."""
    ids = torch.zeros(1, seq_len, dtype=torch.long, device="meta")
    return torch.export.export(LogitsOnly(model).eval(), (ids,))


def _owner(node) -> tuple[str, str] | None:
    """(module path, class name) of the innermost module a graph node ran in, or None."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path, cls = list(stack.values())[-1]
    return path, cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"


def config_from_program(ep: torch.export.ExportedProgram, *, data: dict | None, name: str,
                        source: str) -> ModelConfig:
    """The :class:`ModelConfig` of an exported causal LM (see the module docstring for how each field is read),
    after checking every module (:func:`~seesaw.ir.frontends.check_module`) and that the exported parameters are
    exactly the IR's weights (:func:`~seesaw.ir.frontends.check_weights`). ``data``: the ``config.json`` object
    for the non-shape facts (None: transformers' defaults). Raises :class:`InputError` (source ``source``)."""
    modules: dict[str, str] = {}
    for node in ep.graph.nodes:
        for path, cls in (node.meta.get("nn_module_stack") or {}).values():
            modules.setdefault(path, cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}")
    roots = sorted((p for p, c in modules.items() if c.endswith("ForCausalLM")), key=len)
    if not roots:
        raise InputError("model", "the export holds no *ForCausalLM module", source)
    root = roots[0]
    for path, cls in modules.items():
        if (rel := relative_path(path, root)) is not None:
            check_module(rel, cls, source)

    def rel_owner(node) -> str | None:
        owner = _owner(node)
        return relative_path(owner[0], root) if owner else None

    nodes = {n.name: n for n in ep.graph.nodes}
    params: dict[str, tuple[str, Any]] = {}  # placeholder -> (parameter name relative to the root, fake tensor)
    for placeholder, fqn in ep.graph_signature.inputs_to_parameters.items():
        rel = relative_path(fqn, root)
        if rel is None:
            raise InputError(fqn, "a parameter outside the causal LM module", source)
        params[placeholder] = (rel, nodes[placeholder].meta["val"])
    users = {ph: {rel_owner(u) for u in nodes[ph].users} for ph in params}
    embed = next((ph for ph, mods in users.items() if "model.embed_tokens" in mods), None)
    tied = embed is not None and "lm_head" in users[embed]
    weights = {(EMBED if tied and ph == embed else rel): tuple(val.shape) for ph, (rel, val) in params.items()}

    q_path = "model.layers.0.self_attn.q_proj"
    head_dim = next((int(u.meta["val"].shape[-1]) for n in ep.graph.nodes if rel_owner(n) == q_path
                     for u in n.users if str(u.target) in _VIEWS and rel_owner(u) != q_path), None)
    if head_dim is None:
        raise InputError("model.layers.0.self_attn", "no view of q_proj's output into heads found", source)
    q_val = next((val for rel, val in params.values() if rel == f"{q_path}.weight"), None)
    dtype = str(q_val.dtype).removeprefix("torch.") if q_val is not None else "bfloat16"
    arch = modules[root].rsplit(".", 1)[-1]
    return config_from_weights(weights, architecture=arch, head_dim=head_dim, tied=tied, dtype=dtype,
                               facts=non_shape_facts(arch, data), name=name, source=source)


def config_from_export(hf_config: dict | str | Path, *, name: str | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of a Hugging Face model derived from its ``torch.export`` on the meta device.

    ``hf_config``: a ``config.json`` object (``dict``; its name is ``name`` or ``"model"``, errors say
    ``torch.export``) or anything :func:`~seesaw.ir.config.load_model_config` takes (a ``config.json`` path, a
    folder holding one, a cached Hugging Face id, a shipped name). Equal, for the dense architectures the IR
    models, to ``load_model_config`` of the same config (fingerprint and :func:`build_graph` node for node).

    Raises :class:`InputError` naming the config file and the field or module: a module the IR does not model
    (checked on ``model.named_modules()`` before the export, and on the export), a parameter that is not a
    weight of the IR (or a weight the export lacks), quantized weights, or an export that fails.
    """
    from seesaw.ir.config import read_hf_config  # noqa: PLC0415

    if isinstance(hf_config, dict):
        data, nm, source = hf_config, name or "model", "torch.export"
    else:
        data, nm, source = read_hf_config(hf_config)
        nm = name or nm
    model = meta_model(data, source)
    for path, module in model.named_modules():  # refuse what the IR does not model before exporting it
        check_module(path, type(module).__name__, source)
    try:
        ep = export_meta(model)
    except Exception as err:  # noqa: BLE001 (any failure of the exporter is this input's problem)
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputError("model", f"torch.export failed: {type(err).__name__}: {first}", source) from None
    return config_from_program(ep, data=data, name=nm, source=source)
