"""The torch.export and ONNX frontends give the same IR as the config path (seesaw.ir.frontends).

Same IR: equal :meth:`ModelConfig.fingerprint`, and :func:`build_graph` equal node for node (ids, kinds, weights
with their names, shapes and sharding rules, dims, edges) with equal FLOPs and bytes per pass.

To keep the file fast (about a minute on 2 cores), models are exported with ``num_hidden_layers=2`` and compared
with the config path given the same override: the frontends read every size from layer 0 and count the layers, so
depth changes nothing else (a full-depth Llama-3-8B torch.export takes about 10 s on the meta device).

- torch.export: every shipped config (``list_examples()``), on the meta device, mixtures of experts included;
  quantized configs are refused, naming the field. (torch cannot export a mixture of experts to ONNX here, so the
  ONNX frontend is checked on the dense families only.)
- ONNX: one shipped config per architecture family (Llama with GQA, SmolLM2 with tied embeddings, Mistral, Qwen2,
  Qwen3), weightless dynamo exports from the meta device (``optimize=False``, weights as graph inputs); a tiny
  random-weight model of SmolLM2's architecture (tied Llama) through the legacy exporter, the dynamo exporter with
  and without the optimizer (opset 23: fused ``RMSNormalization`` and ``Attention``), and ``seesaw-plan``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from helpers.checkpoints import LLAMA_GQA, QWEN2_TIED, build_random_model, write_random_checkpoint  # noqa: E402

from seesaw.cli.plan import main as plan_main  # noqa: E402
from seesaw.ir import (  # noqa: E402
    InputError, ModelConfig, PassShape, build_graph, list_examples, load_model_config, valid_tp_degrees,
)
from seesaw.ir.config import read_hf_config  # noqa: E402
from seesaw.ir.frontends import check_weights  # noqa: E402
from seesaw.ir.frontends.onnx_model import config_from_onnx, export_onnx  # noqa: E402
from seesaw.ir.frontends.torch_export import config_from_export  # noqa: E402

LAYERS = 2
ONNX_FAMILIES = ["llama-3-8b", "SmolLM2-135M", "mistral-7b", "qwen2-7b", "qwen3-8b"]
#: SmolLM2-135M's architecture (tied LlamaForCausalLM, GQA, rope_theta 1e5) at a size that exports in a second.
SMOL_TINY = {**LLAMA_GQA, "num_hidden_layers": LAYERS, "tie_word_embeddings": True, "rope_theta": 100000.0}
WORKLOAD = "random:128:64:50"


def shipped(name: str, layers: int = LAYERS) -> tuple[dict, ModelConfig]:
    """A shipped config.json object with ``num_hidden_layers=layers``, and the config path's ModelConfig of it."""
    data, cfg_name, source = read_hf_config(name)
    data = {**data, "num_hidden_layers": layers}
    return data, ModelConfig.from_hf_dict(data, name=cfg_name, source=source)


def ir_rows(cfg: ModelConfig) -> tuple[list, list, list]:
    """build_graph(cfg) as comparable rows: nodes, edges, and per-op FLOPs / bytes of a prefill and a decode
    pass unsharded and under the smallest TP degree above 1 the model allows."""
    g = build_graph(cfg)
    nodes = [(n, d["section"], d["op"].kind, d["op"].layer, d["op"].weights, d["op"].dims)
             for n, d in g.g.nodes(data=True)]
    costs = [(op.name, op.flops(s, tp), op.device_bytes(s, tp, cfg.dtype_bytes), op.comm_bytes(s, cfg.dtype_bytes))
             for op in g.ops() for s in (PassShape.prefill(2, 64), PassShape.decode(8, 100))
             for tp in valid_tp_degrees(cfg)[:2]]
    return nodes, sorted(g.g.edges()), costs


def assert_same_ir(got: ModelConfig, want: ModelConfig) -> None:
    assert got.fingerprint() == want.fingerprint()
    assert ir_rows(got) == ir_rows(want)
    assert build_graph(got).num_parameters() == build_graph(want).num_parameters()


def _quantized(name: str) -> bool:
    return load_model_config(name).quantization is not None


@pytest.mark.parametrize("name", list_examples())
def test_torch_export_gives_the_config_paths_ir(name):
    """Dense and mixture-of-experts configs (transformers >= 5's fused experts renamed to the checkpoint's
    per-expert tensors); quantized ones are refused."""
    data, want = shipped(name)
    if _quantized(name):
        with pytest.raises(InputError, match=r"quantization_config"):
            config_from_export(data, name=want.name)
        return
    got = config_from_export(data, name=want.name)
    assert got == want  # non-shape facts too: they come from the same config
    assert_same_ir(got, want)


def test_torch_export_refuses_modules_the_ir_does_not_model():
    with pytest.raises(InputError, match=r"torch\.export: model\.layers\.0\.mlp\.act_fn: GELUActivation"):
        config_from_export({**LLAMA_GQA, "hidden_act": "gelu"})
    shared = {**LLAMA_GQA, "architectures": ["Qwen2MoeForCausalLM"], "model_type": "qwen2_moe", "num_experts": 4,
              "num_experts_per_tok": 2, "moe_intermediate_size": 32, "shared_expert_intermediate_size": 64}
    with pytest.raises(InputError, match=r"does not model|not supported"):  # shared experts
        config_from_export(shared)


def test_load_model_config_selects_the_frontend(tmp_path):
    data, _ = shipped("qwen3-8b")
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert load_model_config(tmp_path, frontend="torch-export") == load_model_config(tmp_path)
    with pytest.raises(InputError, match="frontend: 'jit' is not a frontend"):
        load_model_config("qwen3-8b", frontend="jit")
    (tmp_path / "m.onnx").write_text("not a protobuf")
    with pytest.raises(InputError, match=r"m\.onnx: frontend: torch-export reads a config\.json"):
        load_model_config(tmp_path / "m.onnx", frontend="torch-export")


@pytest.mark.parametrize("name", ONNX_FAMILIES)
def test_onnx_dynamo_export_gives_the_config_paths_ir(tmp_path, name):
    data, want = shipped(name)
    path = export_onnx(data, tmp_path / "model.onnx")  # meta device: weights left out, read from graph inputs
    model = onnx.load(str(path), load_external_data=False)
    assert not model.graph.initializer and any(i.name == "model.model.embed_tokens.weight" or
                                               i.name == "model.lm_head.weight" for i in model.graph.input)
    alone = config_from_onnx(path, name=want.name)  # shapes from the graph, other facts transformers' defaults
    assert_same_ir(alone, want)
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert load_model_config(path).model_copy(update={"name": want.name}) == want


@pytest.fixture(scope="module")
def smol(tmp_path_factory) -> Path:
    """A folder holding a random-weight checkpoint of SMOL_TINY, its config.json, and its legacy ONNX export."""
    folder = write_random_checkpoint(tmp_path_factory.mktemp("smol") / "smol-tiny", SMOL_TINY)
    export_onnx(build_random_model(SMOL_TINY), folder / "model.onnx", dynamo=False)
    return folder


def _op_types(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}


@pytest.mark.parametrize("exporter", ["legacy", "dynamo", "dynamo-optimized"])
def test_onnx_exporters_give_the_config_paths_ir(smol, tmp_path, exporter):
    want = load_model_config(smol / "config.json")
    if exporter == "legacy":
        path = smol / "model.onnx"
        assert not _op_types(path) & {"RMSNormalization", "Attention"}
    else:
        path = export_onnx(build_random_model(SMOL_TINY), smol / f"model-{exporter}.onnx",
                           optimize=exporter == "dynamo-optimized")
        if exporter == "dynamo-optimized":  # renamed, merged initializers; fused opset-23 ops
            assert {"RMSNormalization", "Attention"} <= _op_types(path)
    got = config_from_onnx(path, name=want.name)
    assert got == want and got.tie_word_embeddings
    assert_same_ir(got, want)


def test_legacy_onnx_ties_by_value_and_infers_the_architecture_without_config_json(smol, tmp_path):
    alone = tmp_path / "model.onnx"
    shutil.copy(smol / "model.onnx", alone)
    inits = {t.name for t in onnx.load(str(alone)).graph.initializer}
    assert "model.model.embed_tokens.weight" in inits and any(n.startswith("onnx::MatMul") for n in inits)
    assert_same_ir(config_from_onnx(alone), load_model_config(smol / "config.json"))
    for hf in ({**LLAMA_GQA, "num_hidden_layers": LAYERS}, QWEN2_TIED):  # untied Llama; Qwen2 (q/k/v biases)
        path = export_onnx(build_random_model(hf), tmp_path / "other.onnx", dynamo=False)
        assert_same_ir(config_from_onnx(path), ModelConfig.from_hf_dict(hf, name="other"))


def test_onnx_weights_must_be_the_irs(smol, tmp_path):
    qwen2 = export_onnx(build_random_model(QWEN2_TIED), tmp_path / "model.onnx", dynamo=False)
    (tmp_path / "config.json").write_text(json.dumps({**QWEN2_TIED, "architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(InputError, match=r"model\.onnx: model\.layers\.0\.self_attn\.q_proj\.bias: shape \[64\]: "
                                         r"a weight the IR of LlamaForCausalLM does not have"):
        config_from_onnx(qwen2)
    (tmp_path / "config.json").write_text(json.dumps({**QWEN2_TIED, "num_hidden_layers": 3}))
    with pytest.raises(InputError, match=r"num_hidden_layers: the ONNX graph gives 2, but .*config\.json"):
        config_from_onnx(qwen2)
    cfg = load_model_config(smol / "config.json")
    weights = {w.name: w.shape for w in build_graph(cfg).weights()}
    with pytest.raises(InputError, match=r"x: lm_head\.weight: missing"):
        check_weights(cfg.model_copy(update={"tie_word_embeddings": False}), weights, "x")


def _plan_file(capsys, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "plan.json"
    code = plan_main([*args, "--cluster", "2xcpu", "--workload", WORKLOAD, "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    return _without_timings(json.loads(out.read_text()))


def _without_timings(obj):
    if isinstance(obj, dict):
        return {k: _without_timings(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_timings(v) for v in obj]
    return obj


def test_seesaw_plan_reads_onnx_and_torch_export_as_the_config(smol, tmp_path, capsys):
    want = _plan_file(capsys, tmp_path, "--model", str(smol / "config.json"))
    assert _plan_file(capsys, tmp_path, "--model", str(smol / "model.onnx")) == want
    assert _plan_file(capsys, tmp_path, "--model", str(smol / "config.json"), "--frontend", "torch-export") == want


def _one_line_error(capsys, *args: str) -> str:
    code = plan_main([*args, "--cluster", "2xcpu", "--workload", WORKLOAD])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and captured.out == "", captured.err
    assert lines[0].startswith("seesaw-plan: error: ") and "Traceback" not in captured.err
    return lines[0]


def test_seesaw_plan_refuses_bad_onnx_in_one_line(tmp_path, capsys):
    (tmp_path / "text.onnx").write_text("this is not a model\n")
    assert "text.onnx: model: not an ONNX model" in _one_line_error(capsys, "--model", str(tmp_path / "text.onnx"))
    assert "missing.onnx: model: no such file" in _one_line_error(capsys, "--model", str(tmp_path / "missing.onnx"))
    model = build_random_model({**LLAMA_GQA, "num_hidden_layers": LAYERS})
    model.model.layers[0].input_layernorm = torch.nn.LayerNorm(LLAMA_GQA["hidden_size"])  # a norm the IR lacks
    path = export_onnx(model, tmp_path / "layernorm.onnx", dynamo=False)
    line = _one_line_error(capsys, "--model", str(path))
    assert "layernorm.onnx: model.layers.0.input_layernorm: a LayerNormalization in a norm" in line
    line = _one_line_error(capsys, "--model", "SmolLM2-135M", "--frontend", "jit")
    assert "frontend: 'jit' is not a frontend" in line
