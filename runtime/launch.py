"""Starting a run under ``torchrun`` (one or many nodes).

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        -m seesaw.cli.run plan.json --checkpoint PATH --prompts prompts.jsonl --output out.jsonl

Every process joins the launcher's process group (NCCL on GPUs, gloo on CPU) and a gloo control group.
Rank 0 validates every input (so bad input is one line and status 2 on rank 0, and the other ranks exit
with status 2 too), then runs the scheduler and worker 0; the other ranks serve broadcast command rounds
(:func:`seesaw.runtime.transport.serve_collective`). The host KV buffer is one shared-memory file per
node, so with a host buffer each DP replica must sit inside one node.
"""
from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from seesaw.ir.errors import InputError


class _Served:
    """What the factory returns on ranks other than 0 after they served the whole run."""

    ready: dict = {}

    def close(self, wait_s: float = 5.0) -> None:
        pass


def torchrun_start(env: tuple[int, int, int], prepare, plan: Path, checkpoint: Path, engine_kw: dict):
    """Join the job; on rank 0 return ``(plan, folder, ckpt, tokenizer, seqs, engine_factory)``; on the other
    ranks serve until the run ends and return None. Raises InputError on rank 0 for bad input."""
    from seesaw.codegen.validate import validate_plan_file  # noqa: PLC0415
    from seesaw.runtime.checkpoint import prepare_checkpoint  # noqa: PLC0415
    from seesaw.runtime.engine import Engine  # noqa: PLC0415
    from seesaw.runtime.kv_cache import host_memory_dir  # noqa: PLC0415
    from seesaw.runtime.transport import CollectiveWorkers, serve_collective  # noqa: PLC0415
    from seesaw.runtime.worker import Worker  # noqa: PLC0415

    rank, world, local = env
    cuda = engine_kw.get("device") == "cuda" or (engine_kw.get("device") is None and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(local % max(1, torch.cuda.device_count()))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=120))
    control = dist.new_group(backend="gloo")
    status: list = [None]
    prepared = None
    if rank == 0:
        try:
            prepared = prepare()
            exec_plan = prepared[0]
            if exec_plan.prefill.layout.dp * exec_plan.prefill.layout.tp * exec_plan.prefill.layout.pp != world:
                raise InputError("torchrun", f"the plan needs {exec_plan.summary.prefill.dp * exec_plan.summary.prefill.tp * exec_plan.summary.prefill.pp} "
                                             f"processes but WORLD_SIZE is {world}")
        except InputError as e:
            status = [str(e)]
            dist.broadcast_object_list(status, src=0, group=control)
            raise
    dist.broadcast_object_list(status, src=0, group=control)
    if status[0] is not None:
        sys.exit(2)
    if rank == 0:
        exec_plan, folder = prepared[0], prepared[1]
    else:
        exec_plan, folder = validate_plan_file(plan), prepare_checkpoint(checkpoint)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    replica = world // exec_plan.prefill.layout.dp
    if exec_plan.kv.host_buffer_tokens_per_replica > 0 and replica > local_world:
        raise InputError("torchrun", f"a DP replica spans {replica} ranks but a node runs {local_world}: the host "
                                     "KV buffer is per node, so each replica must fit in one node")
    run_id = os.environ.get("TORCHELASTIC_RUN_ID", "run")
    kw = dict(engine_kw, host_buffer_path=os.path.join(host_memory_dir(), f"seesaw-{run_id}-{os.environ['MASTER_PORT']}.kv"))
    if rank == 0:
        factory = lambda: Engine(exec_plan, str(folder), workers_factory=lambda cfg: CollectiveWorkers(  # noqa: E731
            Worker(0, cfg), control), **kw)
        return (*prepared, factory)

    def serve(cfg):
        serve_collective(Worker(rank, cfg), control)
        return _Served()

    Engine(exec_plan, str(folder), workers_factory=serve, **kw).close()
    return None
