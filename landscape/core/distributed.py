"""torchrun processes: rank and world from the environment, one process group, errors shared by every rank.

``torchrun --nproc_per_node N -m landscape …`` starts N copies of a command with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address in the environment. :func:`init` joins them into one process group
(gloo on CPU, NCCL on CUDA with device ``cuda:LOCAL_RANK``) only when ``WORLD_SIZE`` > 1; without torchrun every
helper here is a no-op for a world of one process, so callers write one code path.

Errors: a failure on one rank must end every rank with one line, not leave the others waiting in a collective.
Work between two collectives runs inside :func:`agree`; on the way out every rank tells the others whether it
failed, and if any did, each raises :class:`PeerError` with the first failing rank's message. Rank 0 prints it
(the CLI); the other ranks end quietly with exit status 1.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from landscape.errors import LandscapeError


class PeerError(LandscapeError):
    """An error raised on every rank together (one rank failed); rank 0 reports it, the others end quietly."""


@dataclass(frozen=True)
class World:
    """This process's place among the torchrun processes (``size`` 1 without torchrun)."""

    rank: int
    size: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise LandscapeError(f"the environment variable {name}={text!r} is not a whole number; torchrun sets it, "
                             "so start the command with torchrun or unset it") from None


def world() -> World:
    """Rank, world size and local rank: from the process group when one is running, else from torchrun's
    environment variables, else ``World(0, 1, 0)``."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise LandscapeError(f"RANK={rank} and WORLD_SIZE={size} in the environment are inconsistent; start the "
                             "command with torchrun or unset them")
    return World(rank, size, _env_int("LOCAL_RANK", 0))


def active() -> bool:
    """Whether this process is one of several in a running process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def device_for(device: torch.device) -> torch.device:
    """The device this rank computes on: ``cuda`` (no index) means ``cuda:LOCAL_RANK`` under torchrun."""
    w = world()
    if device.type == "cuda" and device.index is None and w.size > 1:
        return torch.device("cuda", w.local_rank)
    return device


def init(device: torch.device | str = "cpu", *, timeout_s: float = 1800.0) -> World:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (idempotent; a no-op for one process).

    The backend follows ``device``: NCCL for CUDA (this rank's GPU is ``cuda:LOCAL_RANK``), gloo otherwise.
    """
    w = world()
    if w.size == 1 or dist.is_initialized():
        return w
    if not dist.is_available():
        raise LandscapeError(f"WORLD_SIZE={w.size} but this torch build has no torch.distributed; run one process")
    device = torch.device(device)
    if device.type == "cuda":
        if not dist.is_nccl_available():
            raise LandscapeError("this torch build has no NCCL for CUDA processes; use device='cpu' (gloo)")
        torch.cuda.set_device(device_for(device))
        backend = "nccl"
    else:
        if not dist.is_gloo_available():
            raise LandscapeError("this torch build has no gloo backend for CPU processes; run one process")
        backend = "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as exc:
        text = str(exc).strip().splitlines()
        raise LandscapeError(f"cannot join the torchrun process group ({text[0] if text else type(exc).__name__}); "
                             "check MASTER_ADDR/--rdzv-endpoint and that every node runs the same command") from None
    return world()


def finish() -> None:
    """Leave the process group (after the last collective), if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def broadcast(obj: Any, *, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (picklable objects; itself for one process)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` on rank 0, in rank order (``None`` on the other ranks; ``[obj]`` for one process)."""
    if not active():
        return [obj]
    w = world()
    out: list[Any] | None = [None] * w.size if w.main else None
    dist.gather_object(obj, out, dst=0)
    return out


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` on every rank, in rank order."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def describe(exc: BaseException, *, rank: int) -> str:
    """The one line another rank shows for ``exc`` raised on ``rank``."""
    if isinstance(exc, LandscapeError):
        text = str(exc)
        return text if rank == 0 or text.startswith("rank ") else f"rank {rank}: {text}"
    first = (str(exc).strip().splitlines() or [""])[0]
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return f"rank {rank} failed ({what}); its traceback is in that rank's output"


def raise_first(errors: list[str | None]) -> None:
    """Raise :class:`PeerError` with the first rank's message, if any rank reported one."""
    for message in errors:
        if message is not None:
            raise PeerError(message)


@contextlib.contextmanager
def agree() -> Iterator[None]:
    """Run a block on every rank; if it fails on any rank, every rank raises :class:`PeerError` (the first
    failing rank's message) instead of some ranks waiting forever in the next collective.

    The failing rank re-raises its own exception when it is not a :class:`LandscapeError` (its traceback stays
    visible). For one process the block runs as it is.
    """
    if not active():
        yield
        return
    w = world()
    try:
        yield
    except BaseException as exc:
        errors = all_gather(describe(exc, rank=w.rank))
        if isinstance(exc, LandscapeError) or isinstance(exc, KeyboardInterrupt):
            raise_first(errors)
        raise
    raise_first(all_gather(None))


def shard_bounds(n: int, *, rank: int, size: int) -> tuple[int, int]:
    """The contiguous share ``[lo, hi)`` of ``n`` items that ``rank`` of ``size`` takes: shares differ by at most
    one item (the first ``n % size`` ranks take one more, as ``torch.tensor_split``), and may be empty."""
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


def all_sum(values: torch.Tensor, *, error: BaseException | None = None) -> torch.Tensor:
    """``values`` (a 1-D float64 tensor on this rank's device) summed over every rank, in one all-reduce that
    also says whether any rank failed: pass the exception this rank caught since the last collective (else
    ``None``). If any rank failed, every rank raises :class:`PeerError` with the first failing rank's message (the
    messages are exchanged only then); a failing rank re-raises its own exception when it is not a
    :class:`LandscapeError`. For one process: ``error`` is raised, else ``values`` come back as they are.

    The cheap form of :func:`agree` for a loop that meets every step: a tensor all-reduce, no pickling.
    """
    if not active():
        if error is not None:
            raise error
        return values
    box = torch.cat([values.detach().to(torch.float64).reshape(-1),
                     torch.tensor([float(error is not None)], dtype=torch.float64, device=values.device)])
    dist.all_reduce(box)
    if float(box[-1]) > 0:
        w = world()
        errors = all_gather(None if error is None else describe(error, rank=w.rank))
        if error is not None and not isinstance(error, (LandscapeError, KeyboardInterrupt)):
            raise error  # this rank's own bug: its traceback stays visible here
        raise_first(errors)
    return box[:-1]
