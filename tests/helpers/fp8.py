"""Test helpers (import as ``helpers.fp8``): tiny FP8 checkpoints quantized from a seeded random model.

:func:`write_fp8_checkpoint` quantizes every decoder linear of :func:`helpers.checkpoints.build_random_model` to
e4m3 in one of the formats :mod:`seesaw.ir.quant` reads, writes the FP8 folder (``config.json`` with its
``quantization_config`` + ``model.safetensors``) and, beside it, the dequantized weights as a plain float32
checkpoint: the model the FP8 one stands for, which ``transformers`` loads without any quantizer.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from helpers.checkpoints import build_random_model

E4M3_MAX = 448.0  # largest finite float8_e4m3fn value

#: format -> (quantization_config, scale tensor name, scale granularity)
FORMATS: dict[str, tuple[dict[str, Any], str, str]] = {
    "fp8-block": ({"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [16, 16]},
                  "weight_scale_inv", "block"),
    "fp8-tensor-static": ({"quant_method": "fp8", "activation_scheme": "static", "ignored_layers": ["lm_head"]},
                          "weight_scale", "tensor"),
    "ct-channel": ({"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
                    "config_groups": {"group_0": {
                        "targets": ["Linear"], "output_activations": None,
                        "weights": {"num_bits": 8, "type": "float", "strategy": "channel", "symmetric": True,
                                    "dynamic": False, "group_size": None, "block_structure": None},
                        "input_activations": {"num_bits": 8, "type": "float", "strategy": "token",
                                              "symmetric": True, "dynamic": True}}}},
                   "weight_scale", "channel"),
    "fbgemm": ({"quant_method": "fbgemm_fp8", "activation_scale_ub": 1200.0, "modules_to_not_convert": ["lm_head"]},
               "weight_scale", "channel"),
}


def quantize(w: torch.Tensor, granularity: str, block: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """``(e4m3 weight, float32 scale)`` with ``weight * scale ~= w``: one scale per tensor (shape ``[]``), per
    output row (``[out, 1]``) or per ``block x block`` tile (``[out / block, in / block]``)."""
    out_f, in_f = w.shape
    if granularity == "tensor":
        s = w.abs().max() / E4M3_MAX
        return (w / s).to(torch.float8_e4m3fn), s.reshape(()).float()
    if granularity == "channel":
        s = w.abs().amax(dim=1, keepdim=True) / E4M3_MAX
        return (w / s).to(torch.float8_e4m3fn), s.float()
    tiles = w.reshape(out_f // block, block, in_f // block, block)
    s = tiles.abs().amax(dim=(1, 3)) / E4M3_MAX
    q = (tiles / s[:, None, :, None]).reshape(out_f, in_f).to(torch.float8_e4m3fn)
    return q, s.float()


def dequantize(q: torch.Tensor, s: torch.Tensor, granularity: str, block: int = 16) -> torch.Tensor:
    """The float32 weight ``q * s`` (the inverse of :func:`quantize`'s layout)."""
    x = q.float()
    if granularity in ("tensor", "channel"):
        return x * s
    out_f, in_f = x.shape
    return (x.reshape(out_f // block, block, in_f // block, block) * s[:, None, :, None]).reshape(out_f, in_f)


def write_fp8_checkpoint(root: str | Path, hf_config: dict[str, Any], fmt: str, seed: int = 1) -> tuple[Path, Path]:
    """``(fp8 folder, dequantized folder)`` under ``root`` for a random model of ``hf_config`` quantized in
    format ``fmt`` (a key of :data:`FORMATS`). Static formats also store a per-tensor ``input_scale``."""
    root = Path(root)
    quant_cfg, scale_name, granularity = FORMATS[fmt]
    model = build_random_model(hf_config, seed)
    fp8, plain = {}, {}
    for name, t in model.state_dict().items():
        t = t.detach().contiguous()
        if name.endswith("_proj.weight") and ".layers." in name:
            q, s = quantize(t, granularity)
            if fmt.startswith("ct-"):
                s = s.reshape(-1, 1) if granularity == "channel" else s.reshape(1)
            fp8[name], fp8[name[: -len("weight")] + scale_name] = q, s
            if quant_cfg.get("activation_scheme") == "static":
                fp8[name[: -len("weight")] + "input_scale"] = torch.tensor(0.01)
            plain[name] = dequantize(q, s, granularity)
        else:
            fp8[name] = plain[name] = t
    fp8_dir, plain_dir = root / f"{fmt}-fp8", root / f"{fmt}-plain"
    for folder, tensors, extra in ((fp8_dir, fp8, {"quantization_config": quant_cfg}), (plain_dir, plain, {})):
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps({**hf_config, **extra}, indent=1))
    return fp8_dir, plain_dir


def write_fp8_moe_checkpoint(root: str | Path, hf_config: dict[str, Any], seed: int = 1) -> tuple[Path, Path]:
    """``(fp8 folder, dequantized folder)`` for a random mixture-of-experts model of ``hf_config``: every attention
    projection and expert projection block-wise e4m3 (blocks of 16, ``weight_scale_inv``), the router and lm head
    kept (``modules_to_not_convert``). The tensors are taken as ``save_pretrained`` writes them (one per expert,
    the checkpoint names), not from the in-memory model (transformers >= 5 fuses the experts there)."""
    from safetensors.torch import load_file

    root = Path(root)
    quant_cfg = {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": [16, 16],
                 "modules_to_not_convert": ["gate", "lm_head"]}
    saved = root / "moe-saved"
    build_random_model(hf_config, seed).save_pretrained(saved)
    fp8, plain = {}, {}
    for name, t in load_file(str(saved / "model.safetensors")).items():
        t = t.float().contiguous()
        if ".layers." in name and name.endswith(".weight") and t.dim() == 2 and not name.endswith("mlp.gate.weight"):
            q, s = quantize(t, "block")
            fp8[name], fp8[name[: -len("weight")] + "weight_scale_inv"] = q, s
            plain[name] = dequantize(q, s, "block")
        else:
            fp8[name] = plain[name] = t
    fp8_dir, plain_dir = root / "moe-fp8", root / "moe-plain"
    for folder, tensors, extra in ((fp8_dir, fp8, {"quantization_config": quant_cfg}), (plain_dir, plain, {})):
        folder.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / "config.json").write_text(json.dumps({**hf_config, **extra}, indent=1))
    return fp8_dir, plain_dir
