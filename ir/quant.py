"""Quantized checkpoints: the weight quantization a ``config.json`` declares, and the KV-cache dtype.

:func:`parse_quantization` reads ``quantization_config`` (or the older ``compression_config``) as Hugging Face
checkpoints write it; :func:`quantized_linear` turns a linear layer's checkpoint tensors into the tensors such a
checkpoint stores, with their exact names, shapes, dtypes and sharding rules. Formats (tensor names as the
checkpoints and vLLM's loaders spell them):

- ``"fp8"`` (vLLM ``Fp8Config``, transformers ``FineGrainedFP8Config``): e4m3 weights. With
  ``weight_block_size: [bn, bk]`` (DeepSeek-V3, Qwen3-FP8) one float32 ``weight_scale_inv`` per ``bn x bk``
  block, shape ``[ceil(out / bn), ceil(in / bk)]``; without it one float32 ``weight_scale`` per tensor (shape
  ``[]``, as AutoFP8 and Quark write it). ``activation_scheme: static`` adds a per-tensor ``input_scale``;
  ``modules_to_not_convert`` / ``ignored_layers`` list the modules kept unquantized.
- ``"compressed-tensors"`` (llm-compressor): ``config_groups`` whose ``weights`` are ``num_bits: 8, type:
  float`` (``format: float-quantized``): ``weight_scale`` per tensor ``[1]``, per channel ``[out, 1]`` or per
  ``block_structure`` block, in the model's dtype; ``input_activations`` null is weight-only FP8 (W8A16), else
  FP8 activations (``dynamic: false`` adds ``input_scale [1]``). ``num_bits: 4, type: int`` (``format:
  pack-quantized``, W4A16): ``weight_packed`` int32 ``[out, in / 8]``, ``weight_scale [out, in / group]``,
  ``weight_shape [2]``, plus ``weight_zero_point`` (asymmetric) and ``weight_g_idx`` (``actorder: group``).
  ``ignore`` lists excluded modules (``re:`` prefixes are regular expressions).
- ``"fbgemm_fp8"`` (Meta's Llama-3.1-405B-FP8): e4m3 weights, float32 ``weight_scale [out, 1]`` per output
  channel, activations quantized per row at run time; ``modules_to_not_convert``.
- ``"awq"`` (AutoAWQ ``version: gemm``, 4 bits): int32 ``qweight [in, out / 8]``, ``qzeros [in / group, out /
  8]``, float16 ``scales [in / group, out]``.
- ``"gptq"`` (4 bits): int32 ``qweight [in / 8, out]``, ``qzeros [in / group, out / 8]``, float16 ``scales
  [in / group, out]``, int32 ``g_idx [in]`` (``group_size: -1`` is one group per column).

Only the decoder layers' linear projections are quantized: embeddings, norms and the lm head keep the model's
dtype (vLLM's FP8 methods and transformers' quantizers leave the lm head alone). A scale's sharding follows
its weight's (column-parallel scales split their output rows, row-parallel block or group scales their input
columns, per-tensor and row-parallel per-channel scales are replicated); :func:`quant_tp_problem` refuses TP
degrees that would cut a block or group, as vLLM's loaders do.
"""
from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from seesaw.ir.errors import InputError
from seesaw.ir.ops import ShardRule, WeightSpec, local_heads

_R = ShardRule
FP8 = "float8_e4m3fn"
METHODS = ("fp8", "compressed-tensors", "fbgemm_fp8", "awq", "gptq")
#: ``--kv-cache-dtype`` spellings (vLLM's flag) -> the stored name; ``auto`` keeps the compute dtype.
KV_CACHE_DTYPES = {"auto": "auto", "fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"}
_PROJECTIONS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class WeightQuant(BaseModel):
    """How a checkpoint's linear weights are quantized (see the module docstring for each ``method``).

    ``weight_bits``: 8 (e4m3) or 4 (packed integers); ``scale_granularity``: one scale per ``tensor``, output
    ``channel``, ``block`` of ``block_size = (rows, columns)``, or ``group`` of ``group_size`` input columns;
    ``activation_dtype``: ``float8_e4m3fn`` when activations are quantized too (the GEMM then runs on FP8
    tensor cores), None for weight-only; ``static_input_scale``: each linear stores an ``input_scale``;
    ``scale_dtype``: the stored scales' dtype; ``zero_point``: asymmetric INT4 (zero points stored);
    ``act_order``: a ``g_idx`` permutation is stored; ``excluded``: modules kept unquantized.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["fp8", "compressed-tensors", "fbgemm_fp8", "awq", "gptq"]
    weight_bits: Literal[4, 8]
    scale_granularity: Literal["tensor", "channel", "block", "group"]
    block_size: tuple[int, int] | None = None
    group_size: int | None = None
    activation_dtype: Literal["float8_e4m3fn"] | None = None
    static_input_scale: bool = False
    scale_dtype: str = "float32"
    zero_point: bool = False
    act_order: bool = False
    excluded: tuple[str, ...] = ()

    @property
    def is_int4(self) -> bool:
        """4-bit integer weights (AWQ, GPTQ, compressed-tensors W4A16)."""
        return self.weight_bits == 4

    @property
    def fp8_gemm(self) -> bool:
        """FP8 weights and FP8 activations: the GEMM can run on FP8 tensor cores."""
        return self.weight_bits == 8 and self.activation_dtype == FP8

    def excludes(self, module: str) -> bool:
        """Whether ``module`` (e.g. ``model.layers.3.mlp.down_proj``) is kept unquantized: an entry equals it,
        names a dotted suffix or prefix of it, or (``re:`` entries) matches it as a regular expression."""
        for e in self.excluded:
            if e.startswith("re:"):
                if re.match(e[3:], module):
                    return True
            elif module == e or module.endswith("." + e) or f".{e}." in f".{module}." or module.startswith(e + "."):
                return True
        return False

    def describe(self) -> str:
        """A short human name: ``fp8 (block 128x128, W8A8)``, ``awq (int4, group 128)``."""
        kind = (f"block {self.block_size[0]}x{self.block_size[1]}" if self.block_size else
                f"group {self.group_size}" if self.scale_granularity == "group" else f"per-{self.scale_granularity}")
        bits = "int4" if self.is_int4 else ("W8A8" if self.fp8_gemm else "W8A16")
        return f"{self.method} ({bits}, {kind})"


# -- parsing ---------------------------------------------------------------------------------------------------
def _field(key: str) -> str:
    return f"quantization_config.{key}"


def _str_list(q: dict, *keys: str) -> tuple[str, ...]:
    for key in keys:
        value = q.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InputError(_field(key), f"{value!r} is not a list of module names")
        return tuple(value)
    return ()


def _pos_int(q: dict, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InputError(_field(key), f"{value!r} is not a positive integer")
    return value


def _block(q: dict, key: str) -> tuple[int, int] | None:
    value = q.get(key)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InputError(_field(key), f"{value!r} is not a pair [rows, columns]")
    return _pos_int(q, key, value[0]), _pos_int(q, key, value[1])


def _parse_fp8(q: dict) -> WeightQuant:
    scheme = str(q.get("activation_scheme", "dynamic")).lower()
    if scheme not in ("dynamic", "static"):
        raise InputError(_field("activation_scheme"), f"'{scheme}' is not dynamic or static")
    fmt = q.get("fmt", "e4m3")
    if fmt not in ("e4m3", None):
        raise InputError(_field("fmt"), f"'{fmt}' FP8 weights are not supported (supported: e4m3)")
    if q.get("scale_fmt", "float") not in ("float", None):
        raise InputError(_field("scale_fmt"), f"'{q['scale_fmt']}' scales are not supported (supported: float)")
    block = _block(q, "weight_block_size")
    return WeightQuant(method="fp8", weight_bits=8, scale_granularity="block" if block else "tensor",
                       block_size=block, activation_dtype=FP8, static_input_scale=scheme == "static",
                       excluded=_str_list(q, "modules_to_not_convert", "ignored_layers"))


def _parse_compressed_tensors(q: dict, model_dtype: str) -> WeightQuant:
    groups = q.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise InputError(_field("config_groups"), "missing or empty (expected groups with a 'weights' scheme)")
    schemes = [(g or {}).get("weights") for g in groups.values()]
    acts = [(g or {}).get("input_activations") for g in groups.values()]
    if any(not isinstance(s, dict) for s in schemes) or any(s != schemes[0] for s in schemes) or \
            any(a != acts[0] for a in acts):
        raise InputError(_field("config_groups"), "groups with different or missing weight schemes (mixed "
                         "precision) are not supported")
    w, act = schemes[0], acts[0]
    bits, kind, strategy = w.get("num_bits"), w.get("type"), w.get("strategy")
    excluded = _str_list(q, "ignore")
    if bits == 8 and kind == "float":
        if strategy not in ("tensor", "channel", "block"):
            raise InputError(_field("config_groups.weights.strategy"),
                             f"'{strategy}' FP8 weight scales are not supported (supported: tensor, channel, block)")
        block = _block(w, "block_structure") if strategy == "block" else None
        if strategy == "block" and block is None:
            raise InputError(_field("config_groups.weights.block_structure"), "missing for strategy 'block'")
        act_fp8 = isinstance(act, dict) and act.get("num_bits") == 8 and act.get("type") == "float"
        if act is not None and not act_fp8:
            raise InputError(_field("config_groups.input_activations"),
                             "only FP8 activations (num_bits 8, type float) or none are supported with FP8 weights")
        return WeightQuant(method="compressed-tensors", weight_bits=8, scale_granularity=strategy, block_size=block,
                           activation_dtype=FP8 if act_fp8 else None,
                           static_input_scale=act_fp8 and not act.get("dynamic", False),
                           scale_dtype=model_dtype, excluded=excluded)
    if bits == 4 and kind == "int":
        if strategy not in ("group", "channel"):
            raise InputError(_field("config_groups.weights.strategy"),
                             f"'{strategy}' INT4 scales are not supported (supported: group, channel)")
        if act is not None:
            raise InputError(_field("config_groups.input_activations"), "INT4 weights with quantized activations "
                             "are not supported (W4A16 only)")
        group = _pos_int(w, "config_groups.weights.group_size", w.get("group_size")) if strategy == "group" else None
        return WeightQuant(method="compressed-tensors", weight_bits=4, scale_granularity="group", group_size=group,
                           scale_dtype=model_dtype, zero_point=not w.get("symmetric", True),
                           act_order=w.get("actorder") == "group", excluded=excluded)
    raise InputError(_field("config_groups.weights"), f"num_bits {bits} type {kind} weights are not supported "
                     "(supported: 8-bit float, 4-bit int)")


def _parse_int4(q: dict, method: str) -> WeightQuant:
    bits = q.get("bits", q.get("w_bit"))
    if bits != 4:
        raise InputError(_field("bits"), f"{bits!r}-bit {method} weights are not supported (4 bits only)")
    group = q.get("group_size", q.get("q_group_size"))
    if method == "gptq" and group == -1:
        group = None  # one group per input column range: the whole input dimension
    elif not (isinstance(group, int) and not isinstance(group, bool) and group > 0):
        raise InputError(_field("group_size"), f"{group!r} is not a positive integer")
    if method == "awq":
        version = str(q.get("version", "gemm")).lower()
        if version != "gemm":
            raise InputError(_field("version"), f"AWQ '{version}' packing is not supported (supported: gemm)")
        return WeightQuant(method="awq", weight_bits=4, scale_granularity="group", group_size=group,
                           scale_dtype="float16", zero_point=bool(q.get("zero_point", True)),
                           excluded=_str_list(q, "modules_to_not_convert"))
    if q.get("lm_head"):
        raise InputError(_field("lm_head"), "a quantized lm head is not supported")
    return WeightQuant(method="gptq", weight_bits=4, scale_granularity="group", group_size=group,
                       scale_dtype="float16", zero_point=True, act_order=bool(q.get("desc_act", False)),
                       excluded=_str_list(q, "modules_to_not_convert"))


def _dtype_name(data: dict) -> str:
    """The checkpoint dtype's torch name (``bfloat16``, ``float16``, ``float32``); ``bfloat16`` when unset."""
    for key in ("torch_dtype", "dtype"):
        text = str(data.get(key) or "").removeprefix("torch.")
        if text:
            return {"half": "float16", "float": "float32"}.get(text, text)
    return "bfloat16"


def parse_quantization(data: dict) -> WeightQuant | None:
    """The :class:`WeightQuant` of a ``config.json`` object, or None when it declares no quantization.

    compressed-tensors stores its scales in the checkpoint's dtype (``torch_dtype``). Raises
    :class:`InputError` (field ``quantization_config[.key]``) for a method or scheme not listed in the module
    docstring.
    """
    key = "quantization_config" if data.get("quantization_config") is not None else "compression_config"
    q = data.get(key)
    if q is None:
        return None
    if not isinstance(q, dict):
        raise InputError(key, f"expected an object, got {type(q).__name__}")
    method = str(q.get("quant_method", "")).lower()
    if method == "fp8":
        return _parse_fp8(q)
    if method == "compressed-tensors":
        return _parse_compressed_tensors(q, _dtype_name(data))
    if method == "fbgemm_fp8":
        return WeightQuant(method="fbgemm_fp8", weight_bits=8, scale_granularity="channel", activation_dtype=FP8,
                           excluded=_str_list(q, "modules_to_not_convert"))
    if method in ("awq", "gptq"):
        return _parse_int4(q, method)
    raise InputError(f"{key}.quant_method", f"'{method or q.get('quant_method')}' quantized weights are not "
                     f"supported (supported: {', '.join(METHODS)})")


def parse_kv_cache_dtype(text: str, field: str = "--kv-cache-dtype") -> str:
    """``auto`` | ``fp8`` | ``fp8_e4m3`` | ``fp8_e5m2`` -> the stored name (``fp8`` is e4m3, as in vLLM);
    raises :class:`InputError` naming ``field`` otherwise."""
    value = KV_CACHE_DTYPES.get(str(text).strip().lower())
    if value is None:
        raise InputError(field, f"'{text}' is not a KV-cache dtype (expected auto or fp8)")
    return value


# -- the tensors of a quantized linear --------------------------------------------------------------------------
def _spec(name: str, shape: tuple[int, ...], rule: ShardRule, dim: int, unit: int, dtype: str) -> WeightSpec:
    if len(shape) == 0 or rule is _R.REPLICATED:
        return WeightSpec(name, shape, _R.REPLICATED, 0, 1, dtype)
    return WeightSpec(name, shape, rule, dim, max(1, unit), dtype)


def _fp8_tensors(q: WeightQuant, prefix: str, w: WeightSpec) -> list[WeightSpec]:
    out_f, in_f = w.shape
    rule, unit = w.shard, w.unit
    scale_name = "weight_scale_inv" if q.method == "fp8" and q.block_size else "weight_scale"
    scalar: tuple[int, ...] = () if q.method == "fp8" else (1,)
    if q.scale_granularity == "tensor":
        scale = _spec(f"{prefix}.{scale_name}", scalar, _R.REPLICATED, 0, 1, q.scale_dtype)
    elif q.scale_granularity == "channel":
        row = rule is _R.ROW  # a row-parallel rank computes every output channel: it needs all scales
        scale = _spec(f"{prefix}.{scale_name}", (out_f, 1), _R.REPLICATED if row else rule, 0, unit, q.scale_dtype)
    else:
        bn, bk = q.block_size
        shape = (-(-out_f // bn), -(-in_f // bk))
        dim, s_unit = (1, 1) if rule is _R.ROW else (0, unit // bn if unit % bn == 0 else 1)
        scale = _spec(f"{prefix}.{scale_name}", shape, rule, dim, s_unit, q.scale_dtype)
    out = [WeightSpec(w.name, w.shape, rule, w.shard_dim, unit, FP8), scale]
    if q.static_input_scale:
        out.append(_spec(f"{prefix}.input_scale", scalar, _R.REPLICATED, 0, 1, "float32"))
    return out


def _int4_tensors(q: WeightQuant, prefix: str, w: WeightSpec) -> list[WeightSpec]:
    out_f, in_f = w.shape
    rule, unit = w.shard, w.unit
    if out_f % 8 or in_f % 8:
        raise InputError("quantization_config", f"{prefix}: [{out_f}, {in_f}] cannot be packed 8 per int32")
    groups = -(-in_f // (q.group_size or in_f))
    row = rule is _R.ROW
    s_rule = _R.REPLICATED if row and q.group_size is None else rule  # one group: every row-parallel rank needs it
    if q.method == "compressed-tensors":  # [out, in]-oriented like the unquantized weight
        dim, s = (1, 1) if row else (0, unit)
        out = [_spec(f"{prefix}.weight_packed", (out_f, in_f // 8), rule, dim, s, "int32"),
               _spec(f"{prefix}.weight_scale", (out_f, groups), s_rule, dim, s, q.scale_dtype),
               _spec(f"{prefix}.weight_shape", (2,), _R.REPLICATED, 0, 1, "int64")]
        if q.zero_point:
            out.append(_spec(f"{prefix}.weight_zero_point", (out_f // 8, groups), s_rule, dim, s // 8, "int32"))
        if q.act_order:
            out.append(_spec(f"{prefix}.weight_g_idx", (in_f,), _R.REPLICATED, 0, 1, "int32"))
        return out
    dim, s = (0, 1) if row else (1, unit)  # AutoAWQ / AutoGPTQ store [in, out]-oriented tensors
    packed = (in_f, out_f // 8) if q.method == "awq" else (in_f // 8, out_f)
    out = [_spec(f"{prefix}.qweight", packed, rule, dim, s // 8 if q.method == "awq" else s, "int32"),
           _spec(f"{prefix}.qzeros", (groups, out_f // 8), s_rule, dim, s // 8, "int32"),
           _spec(f"{prefix}.scales", (groups, out_f), s_rule, dim, s, q.scale_dtype)]
    if q.method == "gptq":
        out.append(_spec(f"{prefix}.g_idx", (in_f,), _R.REPLICATED, 0, 1, "int32"))
    return out


def quantized_linear(q: WeightQuant | None, prefix: str,
                     specs: list[WeightSpec]) -> tuple[list[WeightSpec], dict[str, Any]]:
    """The checkpoint tensors of linear module ``prefix`` under ``q``, and the op dims they add.

    ``specs``: the unquantized ``[weight, (bias)]`` of the module (weight ``[out, in]`` first). Returns them
    unchanged (and no dims) when ``q`` is None or excludes the module; else the quantized weight tensors, then
    the bias (kept in the model's dtype), then scales, zero points and indices. Dims: ``unit`` (the weight's
    indivisible rows) and, for FP8 weights with FP8 activations, ``gemm_dtype: "fp8"``.
    """
    if q is None or q.excludes(prefix):
        return specs, {}
    w, rest = specs[0], specs[1:]
    tensors = _int4_tensors(q, prefix, w) if q.is_int4 else _fp8_tensors(q, prefix, w)
    dims: dict[str, Any] = {"unit": w.unit}
    if q.fp8_gemm:
        dims["gemm_dtype"] = "fp8"
    return tensors[:1] + rest + tensors[1:], dims


def quant_tp_problem(cfg: Any, tp: int, ep: int = 1) -> str | None:
    """Why ``tp``-way TP would cut a quantization block or group (or an int32 pack of 8) of a quantized
    projection of ``cfg`` (a :class:`~seesaw.ir.config.ModelConfig`), or None. vLLM's loaders refuse the same
    splits (``output_partition_size`` not divisible by the block, ``input_size_per_partition`` by the group).
    Under ``ep``-way expert parallelism the experts are split ``tp / ep`` ways only (vLLM's answer to a
    Qwen3-235B-A22B-FP8 at TP 8, whose 1,536-wide experts TP 8 would cut into 192-row slices of 128-row blocks)."""
    q = getattr(cfg, "quantization", None)
    if q is None or tp == 1 or q.scale_granularity in ("tensor", "channel"):
        return None
    kv_rows = local_heads(cfg.num_key_value_heads, tp) * cfg.head_dim
    cuts = {"self_attn.q_proj": ("output", cfg.q_size // tp), "self_attn.k_proj": ("output", kv_rows),
            "self_attn.v_proj": ("output", kv_rows), "self_attn.o_proj": ("input", cfg.q_size // tp),
            "mlp.gate_proj": ("output", cfg.intermediate_size // tp),
            "mlp.up_proj": ("output", cfg.intermediate_size // tp),
            "mlp.down_proj": ("input", cfg.intermediate_size // tp)}
    modules = {proj: [f"model.layers.{i}.{proj}" for i in range(cfg.num_hidden_layers)] for proj in _PROJECTIONS}
    if cfg.is_moe:  # the experts' projections replace the dense MLP's (their width: moe_intermediate_size)
        from seesaw.ir.graph import MOE_NAMES  # noqa: PLC0415 (graph imports this module)

        module, gate, up, down = MOE_NAMES[cfg.architecture]
        width = cfg.moe_intermediate_size // (tp // ep)
        for proj in ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            modules.pop(proj)
        for name, side in ((gate, "output"), (up, "output"), (down, "input")):
            proj = f"{module}.experts.{name}"
            cuts[proj] = (side, width)
            modules[proj] = [f"model.layers.{i}.{module}.experts.{j}.{name}" for i in range(cfg.num_hidden_layers)
                             for j in range(cfg.num_experts)]
    for proj, names in modules.items():
        if all(q.excludes(n) for n in names):
            continue
        side, size = cuts[proj]
        if q.block_size:
            step = q.block_size[0] if side == "output" else q.block_size[1]
            what = f"the {step}-wide quantization blocks"
        elif side == "input":
            if q.group_size is None:
                continue  # per-channel scales: nothing to cut along the input
            step, what = q.group_size, f"the {q.group_size}-column quantization groups"
        else:
            step, what = 8, "the int32 packs of 8 weights"
        if size % step:
            return f"tp={tp} gives {proj} {size} {side} features per rank, which cuts {what}"
    return None
