"""Tests for seesaw.planner.hardware.catalog: entries, DESIGN.md figures, aliases, sources, errors."""
from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from seesaw.ir.errors import InputError
from seesaw.planner.hardware import CATALOG_PATH, SOURCE_GROUPS, GPUSpec, get_gpu, load_catalog
from seesaw.planner.hardware.catalog import match_device_name

# DESIGN.md section 5: (bf16 TFLOP/s dense, memory GB/s, memory GB, link kind, GPU link GB/s or None)
DESIGN_5 = {
    "A10": (125, 600, 24, "pcie", None),
    "L4": (121, 300, 24, "pcie", None),
    "A100-SXM-40GB": (312, 1555, 40, "nvlink", 300),
    "A100-SXM-80GB": (312, 2039, 80, "nvlink", 300),
    "A100-PCIe-80GB": (312, 1935, 80, "pcie", 32),
    "H100-SXM": (989, 3350, 80, "nvlink", 450),
    "H100-PCIe": (756, 2000, 80, "pcie", 64),
    "H200-SXM": (989, 4800, 141, "nvlink", 450),
}


def test_every_entry_loads_with_a_source_per_figure_group():
    catalog = load_catalog()
    assert set(catalog) == set(DESIGN_5) | {"cpu", "L40S", "A100-PCIe-40GB"}
    for name, spec in catalog.items():
        assert spec.name == name
        for group in SOURCE_GROUPS:
            assert spec.source.get(group, "").strip(), f"{name} lacks a source for {group}"


@pytest.mark.parametrize("name", sorted(DESIGN_5))
def test_gpu_figures_match_design_section_5(name):
    """Datasheet peaks as DESIGN.md section 5 has them; device memory as the device reports it (between the
    nominal decimal GB less 2 % and the nominal GiB: an "80GB" card reports about 80 GiB less the driver's
    share); efficiencies fitted to measured kernels or borrowed, each with its source."""
    tflops, bw, mem, link, link_bw = DESIGN_5[name]
    spec = get_gpu(name)
    assert (spec.bf16_tflops, spec.memory_gb_per_s, spec.link) == (tflops, bw, link)
    assert 0.98 * mem <= spec.memory_gb <= mem * 2**30 / 1e9
    if link_bw is not None:
        assert spec.gpu_link_gb_per_s == link_bw
    assert spec.dtype_bytes == 2
    assert 0.5 < spec.matmul_efficiency <= 1 and 0.5 < spec.memory_efficiency <= 1
    assert "AIConfigurator" in spec.source["efficiency"]
    if spec.link == "nvlink":
        assert spec.allreduce_us[8] and "measured" in spec.source["collectives"]
    assert spec.runtime_reserve_gb == 0.94 and spec.memory_fraction == 0.9
    assert spec.gpus_per_node == 8


@pytest.mark.parametrize("name", ["A10", "L4"])
def test_a10_l4_use_the_papers_pcie_x8_and_host_memory(name):
    spec = get_gpu(name)
    gib = 2**30 / 1e9
    assert spec.gpu_link_gb_per_s == pytest.approx(16 * gib, abs=0.01)
    assert spec.host_link_gb_per_s == pytest.approx(16 * gib, abs=0.01)
    assert spec.host_memory_gb_per_gpu == pytest.approx(80 * gib, abs=0.1)


def test_nvlink_alpha_reproduces_design_section_4():
    for spec in load_catalog().values():
        if spec.link == "nvlink":
            assert spec.collective_launch_us + spec.gpu_link_latency_us * 1 == 8
            assert spec.collective_launch_us + spec.gpu_link_latency_us * 7 == 14


def test_cpu_entry_is_the_calibrated_fp32_profile():
    cpu = get_gpu("cpu")
    assert cpu.dtype_bytes == 4 and cpu.link == "gloo" and cpu.memory_gb == 4
    assert 0 < cpu.matmul_efficiency <= 1 and 0 < cpu.memory_efficiency <= 1 and cpu.link_efficiency == 1.0
    for group in ("compute", "links", "latency", "reserve", "overheads"):  # the entry is seesaw-calibrate's output
        assert "seesaw-calibrate" in cpu.source[group] and "2-core CPU" in cpu.source[group]
    assert cpu.step_overhead_us > 0 and cpu.attention_memory_efficiency < 1
    # plausible ranges for one CPU thread / loopback gloo: sanity, not a benchmark
    assert 1e9 < cpu.peak_flops < 1e12
    assert 1 < cpu.memory_gb_per_s < 200 and 0.05 < cpu.gpu_link_gb_per_s < 50
    assert cpu.gpus_per_node >= 3  # 3xcpu must fit one "node"


def test_derived_figures():
    h100 = get_gpu("H100-SXM")
    assert h100.peak_flops == pytest.approx(989e12)
    assert h100.achievable_flops == pytest.approx(h100.matmul_efficiency * 989e12)
    assert h100.budget_bytes == int(0.9 * h100.memory_bytes) - h100.runtime_reserve_bytes
    assert h100.memory_bytes == 85_050_000_000  # the CUDA-visible 85,045,477,376 bytes, to 4 digits
    assert h100.memory_bytes_per_s == pytest.approx(3350e9)
    assert h100.achievable_memory_bytes_per_s == pytest.approx(h100.memory_efficiency * 3350e9)
    assert h100.runtime_reserve_bytes == int(h100.runtime_reserve_gb * 1e9)


@pytest.mark.parametrize("alias,name", [
    ("a10", "A10"), ("A100-40GB", "A100-SXM-40GB"), ("a100-80gb", "A100-SXM-80GB"),
    ("A100_SXM_80GB", "A100-SXM-80GB"), ("h100", "H100-SXM"), ("H100-sxm", "H100-SXM"),
    ("h100-pcie", "H100-PCIe"), ("H200", "H200-SXM"), ("CPU", "cpu"), (" l4 ", "L4"),
])
def test_aliases_are_case_insensitive(alias, name):
    assert get_gpu(alias).name == name


def test_unknown_gpu_lists_known_names():
    with pytest.raises(InputError) as info:
        get_gpu("V100")
    assert info.value.field == "gpu"
    assert "unknown GPU 'V100'" in str(info.value) and "known: A10, L4," in str(info.value)


def test_spec_is_frozen_and_hashable():
    spec = get_gpu("A10")
    with pytest.raises(ValidationError):
        spec.memory_gb = 48
    assert hash(spec) == hash(get_gpu("a10")) and spec == get_gpu("a10")
    assert load_catalog() is not load_catalog()  # callers get their own dict


def _write_catalog(tmp_path, mutate):
    raw = yaml.safe_load(CATALOG_PATH.read_text())
    mutate(raw)
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_fitted_terms_merge_over_the_catalog_and_curves_need_a_source(tmp_path):
    """catalog_fitted.yaml's fields replace catalog.yaml's and add their sources; a catalog file of its own
    that sets measured curves must say where they come from."""
    h100 = get_gpu("H100-SXM")
    assert h100.allreduce_us[8] and h100.op_overhead_us > 0 and "fitted" in h100.source["efficiency"]
    raw = {"X": {**yaml.safe_load(CATALOG_PATH.read_text())["A10"], "allreduce_us": {2: [[1024, 10.0]]}}}
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="collectives"):
        load_catalog(path)


@pytest.mark.parametrize("mutate,field,problem", [
    (lambda r: r["A10"].pop("memory_gb"), "A10", "missing fields: memory_gb"),
    (lambda r: r["L4"]["source"].pop("latency"), "L4.source", "latency"),
    (lambda r: r["L4"].update(aliases=["A10"]), "L4.aliases", "already names A10"),
    (lambda r: r["H200-SXM"].update(memory_gb=-1), "H200-SXM.memory_gb", "greater than 0"),
])
def test_bad_catalog_file_names_file_and_field(tmp_path, mutate, field, problem):
    path = _write_catalog(tmp_path, mutate)
    with pytest.raises(InputError) as info:
        load_catalog(path)
    assert info.value.source == str(path) and info.value.field == field
    assert problem in info.value.problem


@pytest.mark.parametrize("device_name,entry", [
    ("NVIDIA H100 80GB HBM3", "H100-SXM"), ("NVIDIA H100 PCIe", "H100-PCIe"), ("NVIDIA A10", "A10"),
    ("NVIDIA A100-SXM4-80GB", "A100-SXM-80GB"), ("NVIDIA A100-SXM4-40GB", "A100-SXM-40GB"),
    ("NVIDIA A100 80GB PCIe", "A100-PCIe-80GB"), ("NVIDIA L4", "L4"), ("NVIDIA H200", "H200-SXM"),
])
def test_driver_device_names_match_their_entry(device_name, entry):
    assert match_device_name(device_name).name == entry


def test_unknown_device_name_matches_nothing():
    assert match_device_name("NVIDIA GeForce RTX 4090") is None


@pytest.mark.parametrize("curve, problem", [({2: [[1024, 5.0], [1024, 6.0]]}, "strictly ascending"),
                                            ({2: [[1024, 0.0]]}, "positive"), ({1: [[1024, 5.0]]}, "2 or more")])
def test_bad_measured_curves_are_refused(curve, problem):
    with pytest.raises(ValidationError, match=problem):
        GPUSpec(name="x", memory_gb=1, bf16_tflops=1, memory_gb_per_s=1, allreduce_us=curve)
