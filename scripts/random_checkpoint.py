"""Write a random-weight Hugging Face checkpoint for a model config, with SmolLM2's tokenizer.

    python scripts/random_checkpoint.py --config examples/validation/llama-even-heads.json --out DIR

Used by ``seesaw-validate`` runs (docs/validation/) on a config whose head counts are even, so TP 2 works
(SmolLM2-135M has 9 query / 3 KV heads). Weights: ``transformers``' own initialisation under
``torch.manual_seed(--seed)``, float32 safetensors. The tokenizer files come from the SmolLM2-135M GGUF
folder (``seesaw.runtime.assets``, fetched and converted once, cached), so ShareGPT prompts tokenize with
the same 49,152-token vocabulary the config declares. Nothing is written when ``DIR/config.json`` exists
with the same config (re-runs are cheap).
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def write(config_path: Path, out: Path, seed: int) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from seesaw.runtime.assets import smollm2_gguf_path
    from seesaw.runtime.checkpoint import prepare_checkpoint

    raw = json.loads(config_path.read_text())
    marker = out / "seesaw-random.json"
    if marker.exists() and json.loads(marker.read_text()) == {"config": raw, "seed": seed}:
        return out
    cfg = dict(raw)
    model_type = cfg.pop("model_type")
    cfg.pop("torch_dtype", None)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **cfg), dtype=torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    smol = prepare_checkpoint(smollm2_gguf_path())
    for name in TOKENIZER_FILES:
        if (smol / name).exists():
            shutil.copy(smol / name, out / name)
    marker.write_text(json.dumps({"config": raw, "seed": seed}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="config.json of the model")
    ap.add_argument("--out", type=Path, required=True, help="checkpoint folder to write")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(write(args.config, args.out, args.seed))


if __name__ == "__main__":
    main()
