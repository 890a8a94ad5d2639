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


@pytest.mark.parametrize("name", list_examples())
def test_parameters_match_transformers(name):
    model = hf_model(name)
    graph = build_graph(load_model_config(name))
    assert graph.num_parameters() == sum(p.numel() for p in model.parameters())
    hf_shapes = {k: tuple(p.shape) for k, p in model.named_parameters()}  # tied tensors once
    assert {w.name: w.shape for w in graph.weights()} == hf_shapes
    assert type(model).__name__ == load_model_config(name).architecture
