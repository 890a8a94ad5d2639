"""The Seesaw paper's own setups (Fig. 10 and 11 of Su et al., MLSys 2025), planned and compared.

``bench/data/seesaw_paper.jsonl`` holds the paper's cells with verbatim quotes: for Fig. 10 (A10 and L4,
PCIe 4.0 x8) the best static vLLM layout and Seesaw's prefill -> decode layouts of each (model, GPU,
dataset); for Fig. 11 (A100 40 GB, PCIe against NVLink) the measured speedups. :func:`plan_cell` plans each
setup as the paper ran it (4 GPUs for the 15B model, 8 otherwise; 80 GiB of host memory per GPU; ShareGPT
and arXiv-summarization samples as its artifact draws them) and reports the chosen layouts, whether they
re-shard in the paper's direction (more PP in prefill, more TP in decode) and the predicted speedup over
the best static plan. Both sides are costed in device time (engine ``gpu-time``): the paper compares its
own Python engine with vLLM 0.5.4, and neither's host time per step is published.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from seesaw.ir.layout import Layout

PAPER_HOST_MEMORY_GB_PER_GPU = 80 * 2**30 / 1e9  # "we allocate 80 GiB of CPU memory per GPU" (section 6.1)
PAPER_ENGINE = "gpu-time"


class PaperCell(BaseModel):
    """One cell of the paper's Fig. 10 or 11."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    figure: str
    gpu: str
    num_gpus: int
    model: str
    seesaw_model: str
    dataset: str
    workload: str
    best_static: str | None
    seesaw_prefill: str | None
    seesaw_decode: str | None
    speedup: float | None
    quote: str
    source: str
    notes: str = ""


def load_cells(path: str | Path) -> list[PaperCell]:
    return [PaperCell(**json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]


def _layout(text: str | None, num_gpus: int) -> Layout | None:
    if not text:
        return None
    lay = Layout.parse(text)
    return lay if lay.world_size == num_gpus else Layout(num_gpus // lay.replica_size, lay.tp, lay.pp)


def in_paper_direction(prefill: Layout, decode: Layout) -> bool:
    """Re-sharding as the paper does: prefill with more PP and decode with more TP (DESIGN.md section 1)."""
    return prefill.pp > decode.pp and decode.tp > prefill.tp


@dataclass(frozen=True)
class CellResult:
    """The planner's choice for a cell: layouts, speedup over its best static plan, and the paper's."""

    cell: PaperCell
    prefill: Layout
    decode: Layout
    best_static: Layout | None
    speedup: float
    closed_form_speedup: float

    @property
    def direction(self) -> bool:
        return in_paper_direction(self.prefill, self.decode)

    @property
    def same_layouts(self) -> bool:
        c = self.cell
        return (_layout(c.seesaw_prefill, c.num_gpus), _layout(c.seesaw_decode, c.num_gpus)) == (self.prefill, self.decode)

    @property
    def same_static(self) -> bool:
        return _layout(self.cell.best_static, self.cell.num_gpus) == self.best_static


def plan_cell(cell: PaperCell, simulate: bool = True) -> CellResult:
    """Plan the cell's setup (see the module docstring); the speedup is the plan's predicted throughput over
    its best static plan's (1.0 when the plan keeps one layout), by simulation and by the closed form."""
    from seesaw.ir import load_model_config  # noqa: PLC0415
    from seesaw.planner.hardware import get_gpu  # noqa: PLC0415
    from seesaw.planner.hardware.cluster import build_cluster  # noqa: PLC0415
    from seesaw.planner.optimize.solve import plan  # noqa: PLC0415
    from seesaw.planner.workload import load_workload  # noqa: PLC0415

    gpu = get_gpu(cell.gpu)
    cluster = build_cluster(gpu, cell.num_gpus, "paper", f"Seesaw paper section 6.1 ({cell.num_gpus}x{gpu.name})",
                            host_memory_gb=PAPER_HOST_MEMORY_GB_PER_GPU * min(cell.num_gpus, gpu.gpus_per_node))
    cfg, wl = load_model_config(cell.seesaw_model), load_workload(cell.workload)
    closed = plan(cfg, cluster, wl, simulate=False, engine=PAPER_ENGINE)
    p = plan(cfg, cluster, wl, simulate=simulate, engine=PAPER_ENGINE) if simulate else closed

    def speedup(q) -> float:
        s = q.best_static
        return q.prediction.tokens_per_s / s.prediction.tokens_per_s if s else math.nan

    return CellResult(cell, p.prefill.layout, p.decode.layout, p.best_static.phase.layout if p.best_static else None,
                      speedup(p), speedup(closed))


def geomean(values: list[float]) -> float:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else math.nan
