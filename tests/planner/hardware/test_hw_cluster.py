"""Tests for seesaw.planner.hardware.cluster: shorthand, files, errors, communication model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from seesaw.ir.errors import InputError
from seesaw.planner.hardware import CATALOG_PATH, Cluster, build_cluster, get_gpu, load_cluster

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "clusters"
MiB = 2**20


# --- shorthand ---------------------------------------------------------------------------------------

def test_shorthand_8xA10():
    c = load_cluster("8xA10")
    a10 = get_gpu("A10")
    assert (c.num_gpus, c.gpus_per_node, c.num_nodes, c.gpu.name, c.gpu_link) == (8, 8, 1, "A10", "pcie")
    assert c.gpu_link_gb_per_s == a10.gpu_link_gb_per_s and c.host_link_gb_per_s == a10.host_link_gb_per_s
    assert c.host_memory_gb == pytest.approx(8 * a10.host_memory_gb_per_gpu)
    assert c.node_link_gb_per_s == 25  # PCIe entries
    assert c.source["node_link_gb_per_s"].startswith("default assumption")


def test_shorthand_multi_node_and_small():
    c = load_cluster("64xH100-SXM")
    assert (c.num_gpus, c.gpus_per_node, c.num_nodes, c.gpu_link, c.node_link_gb_per_s) == (64, 8, 8, "nvlink", 50)
    two = load_cluster("2xh100")
    assert (two.gpus_per_node, two.num_nodes) == (2, 1)
    assert two.host_memory_gb == pytest.approx(2 * two.gpu.host_memory_gb_per_gpu)
    assert load_cluster(" 8 x a100-80gb ").gpu.name == "A100-SXM-80GB"


def test_shorthand_cpu_ranks_share_one_machine():
    c = load_cluster("3xcpu")
    assert (c.num_gpus, c.gpus_per_node, c.num_nodes, c.gpu_link) == (3, 3, 1, "gloo")
    assert c.gpu.dtype_bytes == 4
    assert (c.node_link_gb_per_s, c.node_link_latency_us) == (c.gpu_link_gb_per_s, c.gpu_link_latency_us)


@pytest.mark.parametrize("spec,field,problem", [
    ("eightxA10", "cluster", "neither NxGPU shorthand"),
    ("8A10", "cluster", "neither NxGPU shorthand"),
    ("", "cluster", "neither NxGPU shorthand"),
    ("0xA10", "num_gpus", "must be > 0"),
    ("8xV100", "gpu", "unknown GPU 'V100'"),
    ("12xA10", "num_gpus", "12 is not a multiple of gpus_per_node 8"),
])
def test_bad_shorthand(spec, field, problem):
    with pytest.raises(InputError) as info:
        load_cluster(spec)
    err = info.value
    assert (err.source, err.field) == ("--cluster", field) and problem in err.problem
    assert str(err).startswith(f"--cluster: {field}: ")


# --- files -------------------------------------------------------------------------------------------

def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_and_json_files_agree(tmp_path):
    body = {"gpu": "a100-80gb", "num_gpus": 16, "gpus_per_node": 8, "node_link_gb_per_s": 25,
            "host_memory_gb": 2048}
    y = load_cluster(str(_write(tmp_path, "c.yaml", "\n".join(f"{k}: {v}" for k, v in body.items()))))
    j = load_cluster(str(_write(tmp_path, "c.json", json.dumps(body))))
    assert y.model_dump(exclude={"source"}) == j.model_dump(exclude={"source"})
    assert (y.num_nodes, y.node_link_gb_per_s, y.host_memory_gb, y.gpu_link) == (2, 25, 2048, "nvlink")
    assert y.source["node_link_gb_per_s"] == f"cluster file {tmp_path / 'c.yaml'}"
    assert y.source["gpu_link_gb_per_s"] == "catalog entry A100-SXM-80GB"


def test_example_files_load():
    a10 = load_cluster(str(EXAMPLES / "8xA10-pcie.yaml"))
    assert a10.model_dump(exclude={"source"}) == load_cluster("8xA10").model_dump(exclude={"source"})
    a100 = load_cluster(str(EXAMPLES / "2-nodes-8xA100-80GB.yaml"))
    assert (a100.num_gpus, a100.num_nodes, a100.gpu.name, a100.node_link_gb_per_s) == (16, 2, "A100-SXM-80GB", 25)
    custom = load_cluster(str(EXAMPLES / "custom-gpu.yaml"))
    assert (custom.gpu.name, custom.gpu.bf16_tflops, custom.gpu.memory_gb, custom.num_gpus) == ("L40S", 362, 48, 4)
    assert custom.gpu.matmul_efficiency == 0.7  # default
    assert custom.gpu.source["compute"] == "NVIDIA L40S datasheet (dense)"
    assert "planning assumption" in custom.gpu.source["efficiency"]


def test_custom_gpu_minimal_mapping_gets_defaults(tmp_path):
    path = _write(tmp_path, "g.json", json.dumps(
        {"gpu": {"name": "X1", "memory_gb": 16, "bf16_tflops": 100, "memory_gb_per_s": 500}, "num_gpus": 2}))
    c = load_cluster(str(path))
    assert (c.gpu.link, c.gpu.dtype_bytes, c.gpus_per_node, c.gpu_link) == ("pcie", 2, 2, "pcie")
    assert c.gpu.source["compute"] == f"cluster file {path}"
    assert c.source["gpu"].endswith("(custom GPU)")


def _one_entry_profile(tmp_path, name="my-cpu"):
    entry = yaml.safe_load(CATALOG_PATH.read_text())["cpu"]
    entry.update(op_overhead_us=3.5, source={**entry["source"], "overheads": "test"})
    (tmp_path / "profiles").mkdir(exist_ok=True)
    return _write(tmp_path / "profiles", "p.yaml", yaml.safe_dump({name: entry}))


def test_gpu_may_name_a_profile_file_relative_to_the_cluster_file(tmp_path):
    _one_entry_profile(tmp_path)
    c = load_cluster(str(_write(tmp_path, "c.yaml", "gpu: profiles/p.yaml\nnum_gpus: 2\n")))
    assert (c.gpu.name, c.gpu.op_overhead_us, c.gpu_link, c.num_gpus) == ("my-cpu", 3.5, "gloo", 2)
    assert c.source["gpu"] == f"profile {tmp_path / 'profiles' / 'p.yaml'} (my-cpu)"


@pytest.mark.parametrize("gpu, problem", [
    ("missing.yaml", "profile file"),
    (None, "holds 11 entries"),
])
def test_bad_profile_file(tmp_path, gpu, problem):
    path = _write(tmp_path, "c.yaml", f"gpu: {gpu or CATALOG_PATH}\nnum_gpus: 2\n")
    with pytest.raises(InputError) as info:
        load_cluster(str(path))
    assert (info.value.source, info.value.field) == (str(path), "gpu") and problem in info.value.problem


def test_gpus_per_node_capped_at_num_gpus(tmp_path):
    c = load_cluster(str(_write(tmp_path, "c.yaml", "gpu: H100\nnum_gpus: 4\ngpus_per_node: 8\n")))
    assert (c.gpus_per_node, c.num_nodes) == (4, 1)


GOOD = "gpu: A10\nnum_gpus: 8\n"


@pytest.mark.parametrize("name,text,field,problem", [
    ("bad.yaml", "gpu: [A10\nnum_gpus: 8\n", "cluster", "malformed YAML at line"),
    ("bad.json", '{"gpu": "A10", "num_gpus": }', "cluster", "malformed JSON at line 1"),
    ("list.yaml", "- A10\n- 8\n", "cluster", "must be a mapping"),
    ("key.yaml", GOOD + "gpu_count: 8\n", "gpu_count", "unknown key"),
    ("nogpu.yaml", "num_gpus: 8\n", "gpu", "missing"),
    ("nonum.yaml", "gpu: A10\n", "num_gpus", "missing"),
    ("unk.yaml", "gpu: B300\nnum_gpus: 8\n", "gpu", "unknown GPU 'B300'"),
    ("gtype.yaml", "gpu: 7\nnum_gpus: 8\n", "gpu", "catalog GPU name or a mapping"),
    ("zero.yaml", "gpu: A10\nnum_gpus: 0\n", "num_gpus", "must be > 0"),
    ("frac.yaml", "gpu: A10\nnum_gpus: 2.5\n", "num_gpus", "positive integer"),
    ("bool.yaml", "gpu: A10\nnum_gpus: true\n", "num_gpus", "positive integer"),
    ("neg.yaml", GOOD + "host_memory_gb: -1\n", "host_memory_gb", "must be > 0"),
    ("bw.yaml", GOOD + "gpu_link_gb_per_s: 0\n", "gpu_link_gb_per_s", "must be > 0"),
    ("str.yaml", GOOD + "node_link_gb_per_s: fast\n", "node_link_gb_per_s", "positive number"),
    ("gpn.yaml", GOOD + "gpus_per_node: 0\n", "gpus_per_node", "must be > 0"),
    ("mult.yaml", "gpu: A10\nnum_gpus: 12\ngpus_per_node: 8\n", "num_gpus", "not a multiple"),
    ("link.yaml", GOOD + "gpu_link: infiniband\n", "gpu_link", "must be one of pcie, nvlink, gloo"),
    ("relink.yaml", GOOD + "gpu_link: nvlink\n", "gpu_link_gb_per_s", "required when gpu_link"),
    ("cmiss.yaml", "gpu: {name: X, bf16_tflops: 1, memory_gb_per_s: 1}\nnum_gpus: 1\n", "gpu.memory_gb", "missing"),
    ("ckey.yaml", "gpu: {name: X, memory_gb: 1, bf16_tflops: 1, memory_gb_per_s: 1, fp8: 2}\nnum_gpus: 1\n",
     "gpu.fp8", "unknown key"),
    ("cneg.yaml", "gpu: {name: X, memory_gb: -4, bf16_tflops: 1, memory_gb_per_s: 1}\nnum_gpus: 1\n",
     "gpu.memory_gb", "must be > 0"),
    ("ceff.yaml", "gpu: {name: X, memory_gb: 4, bf16_tflops: 1, memory_gb_per_s: 1, matmul_efficiency: 1.5}\n"
     "num_gpus: 1\n", "gpu.matmul_efficiency", "less than or equal to 1"),
    ("clink.yaml", "gpu: {name: X, memory_gb: 4, bf16_tflops: 1, memory_gb_per_s: 1, link: ib}\nnum_gpus: 1\n",
     "gpu.link", "'pcie', 'nvlink' or 'gloo'"),
])
def test_bad_file_names_file_and_field(tmp_path, name, text, field, problem):
    path = _write(tmp_path, name, text)
    with pytest.raises(InputError) as info:
        load_cluster(str(path))
    err = info.value
    assert (err.source, err.field) == (str(path), field), str(err)
    assert problem in err.problem, str(err)
    assert str(err).startswith(f"{path}: {field}: ")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError) as info:
        load_cluster(str(tmp_path / "nope.yaml"))
    assert (info.value.source, info.value.field, info.value.problem) == (str(tmp_path / "nope.yaml"), "cluster",
                                                                          "file not found")
    with pytest.raises(InputError, match="not a file"):
        load_cluster(str(tmp_path))


# --- communication model -----------------------------------------------------------------------------

def _alpha_beta(spec: str) -> Cluster:
    """The cluster with its GPU's measured collective curves removed (the alpha-beta model alone)."""
    c = load_cluster(spec)
    gpu = c.gpu.model_copy(update={"allreduce_us": {}, "allgather_us": {}})
    return build_cluster(gpu, c.num_gpus, "test", "test")


def test_allreduce_reproduces_design_8xH100_at_zero_bytes():
    c = _alpha_beta("8xH100")
    assert c.allreduce_s(0, 8) == pytest.approx(14e-6)
    assert c.allreduce_s(0, 2) == pytest.approx(8e-6)
    assert c.allreduce_s(10 * MiB, 1) == 0.0


def test_allreduce_ring_formula_and_growth():
    c = _alpha_beta("8xH100")
    bw = 450e9 * 0.8
    assert c.allreduce_s(16 * MiB, 8) == pytest.approx(14e-6 + 2 * 7 / 8 * 16 * MiB / bw)
    times = [c.allreduce_s(b, 8) for b in (0, 1024, MiB, 16 * MiB, 256 * MiB)]
    assert times == sorted(times) and len(set(times)) == len(times)


def test_measured_curves_replace_alpha_beta_inside_a_node():
    """Inside a node the GPU's measured all-reduce curve gives the time: exactly at a measured size,
    log-log between sizes, the last interval's time per byte beyond; across nodes the alpha-beta model."""
    c = load_cluster("16xH100")
    points = c.gpu.allreduce_us[8]
    (b0, t0), (b1, t1) = points[3], points[4]
    assert c.allreduce_s(b0, 8) == pytest.approx(t0 * 1e-6)
    mid = c.allreduce_s((b0 * b1) ** 0.5, 8)
    assert mid == pytest.approx((t0 * t1) ** 0.5 * 1e-6)
    (bl0, tl0), (bl1, tl1) = points[-2:]
    assert c.allreduce_s(2 * bl1, 8) == pytest.approx((tl1 + (tl1 - tl0) / (bl1 - bl0) * bl1) * 1e-6)
    assert c.allreduce_s(b0, 8, spans_nodes=True) == pytest.approx(_alpha_beta("16xH100").allreduce_s(b0, 8, True))
    assert c.allreduce_s(MiB, 3) == pytest.approx(_alpha_beta("16xH100").allreduce_s(MiB, 3))  # 3 not measured


def test_pcie_allreduce_slows_with_rank_count():
    """The L40S's measured all-reduce (PCIe, two NUMA halves): 64 MiB takes far longer at 8 GPUs than at 2,
    which one bandwidth times one efficiency cannot express (DESIGN.md section 4)."""
    c = load_cluster("8xL40S")
    assert c.allreduce_s(64 * MiB, 8) > 10 * c.allreduce_s(64 * MiB, 2)


@given(a=st.integers(0, 2**34), b=st.integers(0, 2**34), n=st.integers(2, 64))
def test_allreduce_monotone_in_bytes(a, b, n):
    c = _alpha_beta("64xA100-80GB")
    lo, hi = sorted((a, b))
    assert c.allreduce_s(lo, n) <= c.allreduce_s(hi, n)
    assert c.allreduce_s(hi, n) >= c.allgather_s(hi, n)  # all-gather moves half the ring traffic


def test_node_link_used_when_spanning_nodes():
    c = load_cluster("16xH100")
    assert c.num_nodes == 2
    assert c.link_for(8, spans_nodes=False) == pytest.approx((450e9, 1e-6))
    assert c.link_for(8, spans_nodes=True) == pytest.approx((50e9, 5e-6))
    assert c.link_for(16, spans_nodes=False) == pytest.approx((50e9, 5e-6))  # larger than a node: must span
    assert c.allreduce_s(64 * MiB, 8, spans_nodes=True) > 5 * c.allreduce_s(64 * MiB, 8)
    assert c.allreduce_s(0, 8, spans_nodes=True) == pytest.approx(7e-6 + 7 * 5e-6)
    assert c.send_recv_s(MiB, spans_nodes=True) > c.send_recv_s(MiB)


def test_send_recv_allgather_host_to_device():
    c = _alpha_beta("8xA10")
    bw = c.gpu_link_gb_per_s * 1e9 * 0.8
    assert c.send_recv_s(0) == pytest.approx(7e-6 + 5e-6)
    assert c.send_recv_s(MiB) == pytest.approx(12e-6 + MiB / bw)
    assert c.allgather_s(8 * MiB, 8) == pytest.approx(7e-6 + 35e-6 + 7 / 8 * 8 * MiB / bw)
    assert c.allgather_s(MiB, 1) == 0.0
    assert c.host_to_device_s(1e9) == pytest.approx(1e9 / (17.18e9 * 0.8))
    cpu = load_cluster("2xcpu")
    assert cpu.host_to_device_s(1e9) == pytest.approx(1 / cpu.host_link_gb_per_s)  # efficiency 1.0


def test_model_rejects_misuse():
    c = load_cluster("8xA10")
    for bad in (lambda: c.allreduce_s(-1, 2), lambda: c.allreduce_s(1, 0), lambda: c.link_for(0)):
        with pytest.raises(ValueError):
            bad()


def test_cluster_is_frozen_hashable_and_validated():
    c = load_cluster("8xA10")
    assert hash(c) == hash(load_cluster("8xa10")) and c == load_cluster("8xA10")
    assert {c: 1}[load_cluster("8xA10")] == 1  # usable as a cache key
    with pytest.raises(ValidationError):
        c.num_gpus = 4
    fields = c.model_dump(exclude={"gpu"})
    with pytest.raises(ValidationError, match="not a multiple"):
        Cluster(gpu=c.gpu, **{**fields, "num_gpus": 12})
    assert Cluster.model_validate(c.model_dump()) == c  # round-trips through a plan's JSON


def test_a_stated_link_replaces_the_measured_curves(tmp_path):
    """Measured curves belong to the catalog GPU's link: a cluster file stating another link bandwidth is
    costed with the alpha-beta model of the link it states."""
    path = tmp_path / "c.yaml"
    path.write_text("gpu: H100-SXM\nnum_gpus: 8\ngpu_link_gb_per_s: 100\n")
    c = load_cluster(str(path))
    assert not c.gpu.allreduce_us
    assert c.allreduce_s(16 * MiB, 8) == pytest.approx(14e-6 + 2 * 7 / 8 * 16 * MiB / (100e9 * c.gpu.link_efficiency))
