"""AIConfigurator's measured tables as calibration samples and the catalog terms fitted to them."""
from __future__ import annotations

import pytest
import yaml

pytest.importorskip("aiconfigurator_core")

from seesaw.ir.ops import Op, OpKind, PassShape, WeightSpec, ShardRule  # noqa: E402
from seesaw.planner.calibration import aiconfigurator as aic  # noqa: E402
from seesaw.planner.calibration.aic_profile import catalog_terms  # noqa: E402
from seesaw.planner.hardware.catalog import FITTED_PATH  # noqa: E402


def test_gemm_samples_count_what_the_ir_linear_op_counts():
    table = aic.load_table("h100_sxm", "gemm", "gemm_perf")
    samples = aic.gemm_samples(table, limit=40)
    assert len(samples) == 40 and len({s.rows for s in samples}) > 5
    for s in samples[:10]:
        m, n, k = (int(x.split("=")[1]) for x in s.label.split()[1:])
        op = Op("lin", OpKind.LINEAR, 0, (WeightSpec("w", (n, k), ShardRule.COLUMN),), {"in": k, "out": n})
        shape = PassShape(m, 1, 1)
        assert (s.flops, s.nbytes) == (op.flops(shape), op.device_bytes(shape, 1, 2))


def test_attention_samples_count_what_the_ir_attention_op_counts():
    ctx = aic.load_table("h100_sxm", "attention", "context_attention_perf")
    gen = aic.load_table("h100_sxm", "attention", "generation_attention_perf")
    samples = aic.attention_samples(ctx, gen)
    kinds = {s.label.split()[0] for s in samples}
    assert kinds == {"prefill", "decode"}
    for s in samples[::37]:
        fields = dict(x.split("=") for x in s.label.split() if "=" in x)
        hq, hkv = map(int, fields["h"].split("/"))
        op = Op("attn", OpKind.ATTENTION, 0, (), {"q_heads": hq, "kv_heads": hkv, "head_dim": 128})
        shape = PassShape(int(fields["b"]), int(fields["q"]), int(fields["c"]))
        assert s.flops == pytest.approx(op.flops(shape)) and s.nbytes == pytest.approx(op.device_bytes(shape, 1, 2))
        assert s.seqs == int(fields["b"])


def test_allreduce_curves_grow_with_bytes_and_pcie_with_ranks():
    curves, source = aic.allreduce_curves("l40s")
    assert sorted(curves) == [2, 4, 8] and "nccl" in source
    for points in curves.values():
        big = [t for b, t in points if b >= 1 << 20]
        assert big == sorted(big)
    assert curves[8][-1][1] > 10 * curves[2][-1][1]  # 512 MiB: PCIe all-reduce slows with rank count


def test_unknown_system_is_an_input_error():
    with pytest.raises(Exception, match="unknown system 'v100'"):
        aic.load_table("v100", "gemm", "gemm_perf")


def test_catalog_fitted_yaml_is_a_fresh_fit():
    """The shipped fitted terms are what scripts/fit_gpu_catalog.py writes from the installed tables."""
    assert yaml.safe_load(FITTED_PATH.read_text()) == yaml.safe_load(
        yaml.safe_dump(catalog_terms(), sort_keys=False, default_flow_style=None))
