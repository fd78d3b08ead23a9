"""The Hessian under torchrun: each process holds a contiguous share of the batches and the products are summed.

``torchrun --nproc_per_node N -m landscape hessian …`` starts N copies of the command. Each loads the same samples,
keeps batches ``[r·B/N, (r+1)·B/N)`` (whole batches, so a train-mode BatchNorm sees the same batches as one process
and dropout masks are seeded by the global batch index), and the operator sums ``Σ n_b H_b v`` and the loss over
all processes before dividing by the total N: every process holds the one-process operator, runs the same Lanczos
with the same seed and gets the same numbers. Only rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from landscape.errors import LandscapeError


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group; ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: torch.device) -> tuple[int, int]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (gloo on CPU, NCCL on CUDA); ``(rank, world size)``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_available():
        raise LandscapeError("torch.distributed is not available in this PyTorch build; run without torchrun")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return world()


def finish() -> None:
    """Leave the process group (at the end of a command that joined it)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _Reduce:
    """Sums over the process group, on the tensors' own device (NCCL needs CUDA tensors, gloo takes CPU ones)."""

    def sum_vector_(self, v: torch.Tensor) -> None:
        import torch.distributed as dist

        dist.all_reduce(v, op=dist.ReduceOp.SUM)

    def sum_scalars(self, count: int, total: float) -> tuple[int, float]:
        import torch.distributed as dist

        device = torch.device("cuda", torch.cuda.current_device()) \
            if dist.get_backend() == "nccl" else torch.device("cpu")
        t = torch.tensor([float(count), total], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return round(float(t[0])), float(t[1])


class Shard(list):  # type: ignore[type-arg]
    """This process's batches, with ``offset`` (the global index of its first batch) and ``distributed`` (the sums
    over all processes that :class:`~landscape.analyses.hessian.operator.HessianOperator` applies)."""

    def __init__(self, batches: Sequence[Any], *, offset: int) -> None:
        super().__init__(batches)
        self.offset = offset
        self.distributed = _Reduce()


def shard_batches(batches: Sequence[Any], *, rank: int, world_size: int) -> list[Any]:
    """The contiguous share of ``batches`` for ``rank`` of ``world_size`` (a plain list for one process)."""
    if world_size <= 1:
        return list(batches)
    start, stop = rank * len(batches) // world_size, (rank + 1) * len(batches) // world_size
    return Shard(batches[start:stop], offset=start)


def agree(error: str | None) -> str | None:
    """The first error any process met (each passes its own, or None), prefixed with its rank when not rank 0;
    None when every process is fine. A collective: all processes must call it."""
    _, size = world()
    if size <= 1:
        return error
    import torch.distributed as dist

    errors: list[Any] = [None] * size
    dist.all_gather_object(errors, error)
    for r, e in enumerate(errors):
        if e is not None:
            return e if r == 0 else f"on rank {r}: {e}"
    return None
