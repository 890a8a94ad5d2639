"""Synthetic calibration timings with known parameters (tests of planner/calibration/fit.py and fit_links.py):
each generated through the cost model's own functions, with 0.2 % multiplicative log-normal noise."""
from __future__ import annotations

import numpy as np

from seesaw.planner.cost.roofline import step_overhead_s
from seesaw.planner.hardware import GPUSpec, build_cluster
from seesaw.planner.calibration.fit import CommSample, StepSample

NOISE = 0.002
TRUTH = GPUSpec(name="truth", memory_gb=4, dtype_bytes=4, bf16_tflops=0.12, matmul_efficiency=0.8,
                memory_gb_per_s=20, memory_efficiency=0.7, matmul_half_rows=24, matmul_pack_ratio=0.6, compute_memory_overlap=0.4,
                op_overhead_us=15, elementwise_overhead_us=25, lm_head_efficiency=0.7, attention_seq_overhead_us=8,
                attention_efficiency=0.3,
                attention_memory_efficiency=0.25, link="gloo",
                gpu_link_gb_per_s=1.5, gpu_link_latency_us=60, collective_launch_us=30, host_link_gb_per_s=12,
                link_efficiency=1.0)
MiB = 2**20


def _noise(rng: np.random.Generator) -> float:
    return float(np.exp(rng.normal(0.0, NOISE)))


def synthetic_comm_samples(gpu: GPUSpec, seed: int = 1) -> list[CommSample]:
    rng = np.random.default_rng(seed)
    sizes = (4, 4096, 64 * 1024, MiB, 16 * MiB)
    out = []
    for world in (2, 3, 4):
        cluster = build_cluster(gpu, world, "test", "test")
        for nbytes in sizes:
            out.append(CommSample("all_reduce", world, nbytes, cluster.allreduce_s(nbytes, world) * _noise(rng)))
            if world == 2:
                out.append(CommSample("send_recv", 2, nbytes, cluster.send_recv_s(nbytes) * _noise(rng)))
    return out


def synthetic_step_samples(overhead_us: float, slopes_us: dict[str, float], setup_share: float = 0.4,
                           seed: int = 3) -> list[StepSample]:
    """Round trips of decode and prefill batches of 1, 8 and 32 sequences: the cost model's constant
    (step_overhead_s of a profile with ``overhead_us``) plus ``slopes_us[mode]`` per sequence, with noise;
    the worker set-up is ``setup_share`` of each."""
    rng = np.random.default_rng(seed)
    cluster = build_cluster(TRUTH.model_copy(update={"step_overhead_us": overhead_us}), 1, "test", "test")
    out = []
    for mode, slope in slopes_us.items():
        for seqs in (1, 8, 32):
            t = (step_overhead_s(cluster) + slope * 1e-6 * seqs) * _noise(rng)
            tokens = seqs if mode == "decode" else 256 * seqs
            out.append(StepSample(mode, seqs, tokens, t, setup_share * t, f"{mode} {seqs}"))
    return out
