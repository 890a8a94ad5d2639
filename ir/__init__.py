"""Seesaw graph IR: model configs, operator nodes with FLOP/byte/message costs, sharding rules, and the
tensor/pipeline-parallel passes (DESIGN.md sections 2 and 4). Knows nothing of hardware."""
from seesaw.ir.config import SUPPORTED_ARCHITECTURES, ModelConfig, list_examples, load_model_config
from seesaw.ir.errors import InputError
from seesaw.ir.graph import ModelGraph, build_graph
from seesaw.ir.layout import Layout
from seesaw.ir.ops import Op, OpKind, PassShape, ShardRule, WeightSpec, local_heads
from seesaw.ir.passes import apply_pp, apply_tp, even_partition, lower, stage_ops
from seesaw.ir.sharding import check_tp, shard_range, valid_tp_degrees

__all__ = [
    "SUPPORTED_ARCHITECTURES", "InputError", "Layout", "ModelConfig", "ModelGraph", "Op", "OpKind",
    "PassShape", "ShardRule", "WeightSpec", "apply_pp", "apply_tp", "build_graph", "check_tp",
    "even_partition", "list_examples", "load_model_config", "local_heads", "lower", "shard_range",
    "stage_ops", "valid_tp_degrees",
]
