"""Tests for seesaw.runtime.host_allocator: glibc keeps freed memory (no page faults when a freed block is
allocated again), the workspace size arithmetic, and the opt-out."""
import os
import subprocess
import sys

import pytest

from seesaw.runtime import host_allocator
from seesaw.runtime.host_allocator import WORKSPACE_MARGIN, prefault, prefill_workspace_bytes

# In a fresh interpreter (mallopt changes the whole process): free a 64 MiB tensor, allocate and write a
# 48 MiB one (12,288 pages of 4 KiB, which fit in the freed block), print whether the setting was applied and
# the minor page faults of the second write.
_PROBE = """
import resource, sys, torch
from seesaw.runtime import host_allocator
applied = host_allocator.retain_freed_memory() if sys.argv[1] == "retain" else False
x = torch.empty(64 << 20, dtype=torch.uint8); x.fill_(1); del x
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
y = torch.empty(48 << 20, dtype=torch.uint8); y.fill_(2)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _probe(mode: str, env: dict | None = None) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})}).stdout.split()
    return out[0] == "True", int(out[1])


needs_glibc = pytest.mark.skipif(host_allocator._libc() is None, reason="mallopt is glibc's")


@needs_glibc
def test_retained_memory_is_not_faulted_again():
    applied, faults = _probe("retain")
    assert applied
    assert faults < 100  # only bookkeeping pages may fault


@needs_glibc
def test_glibc_default_faults_a_large_block_in_again():
    applied, faults = _probe("default")
    assert not applied
    assert faults > 8_000  # the 64 MiB block went back to the OS (munmap); the new one is faulted in


@needs_glibc
def test_opt_out_leaves_the_defaults():
    applied, faults = _probe("retain", {"SEESAW_HOST_ALLOCATOR": "default"})
    assert not applied
    assert faults > 8_000


def test_workspace_bytes_arithmetic():
    # even-heads model, TP 1, fp32: (4 * 512 + 3 * 1536 + 512 + 2 * 256) * 4 = 30,720 bytes per token
    assert prefill_workspace_bytes(4096, 512, 1536, 512, 256, 4) == int(4096 * 30_720 * WORKSPACE_MARGIN)
    assert prefill_workspace_bytes(10, 8, 16, 8, 4, 2) == int(10 * (32 + 48 + 8 + 8) * 2 * WORKSPACE_MARGIN)
    assert prefill_workspace_bytes(0, 512, 1536, 512, 256, 4) == 0
    assert prefill_workspace_bytes(-5, 512, 1536, 512, 256, 4) == 0


def test_prefault_nothing_costs_nothing():
    assert prefault(0) == 0.0
    assert prefault(-1) == 0.0
    assert prefault(1 << 20) > 0.0
