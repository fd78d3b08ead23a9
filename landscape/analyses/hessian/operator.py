"""Symmetric linear operators: the loss Hessian of a model (exact HVPs) and a dense matrix (for tests).

Algorithms (``krylov.lanczos``, ``hutch.trace``, ``slq.density``) see only ``size``, ``dtype``, ``device`` and
``matvec``.
"""

from __future__ import annotations

import contextlib
import fnmatch
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from landscape.core._eval import batchnorm_guard
from landscape.core.budget import require_memory, warn_if_long
from landscape.core.state import ModelState
from landscape.errors import LandscapeError

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@runtime_checkable
class SymmetricOperator(Protocol):
    """What the algorithms need: a symmetric map on flat vectors of length ``size``."""

    size: int
    dtype: torch.dtype
    device: torch.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor: ...


NONFINITE = ("the Hessian-vector product returned NaN/inf: the weights or the loss are not finite at this point; "
             "check the checkpoint (evaluate it) and the data")


class CountingMatvec:
    """``op.matvec`` in the work dtype (see :func:`work_dtype`), counting its calls and reporting the count to
    ``callback`` after each.

    A product holding NaN/inf is refused with a one-line :class:`LandscapeError`: every algorithm would otherwise
    turn it into NaN results or die in LAPACK. With ``expected`` (the matvecs the run will make), the first call
    is timed and a warning says when the whole run will take more than a day.
    """

    def __init__(self, op: SymmetricOperator, callback: Callable[[int], None] | None = None, *,
                 expected: int | None = None, what: str = "the Hessian computation") -> None:
        self.op, self.callback, self.count = op, callback, 0
        self.expected, self.what = expected, what
        self.dtype = work_dtype(op.dtype)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.op.matvec(v).to(self.dtype)
        if not bool(torch.isfinite(out).all()):
            raise LandscapeError(NONFINITE)
        self.count += 1
        if self.count == 1 and self.expected:
            warn_if_long((time.perf_counter() - t0) * self.expected, what=f"{self.what} ({self.expected:,} HVPs)")
        if self.callback is not None:
            self.callback(self.count)
        return out


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype of the algorithms' vectors for an operator of ``dtype``: float64 stays float64 (the oracle tests),
    everything else works in float32 (half the memory of float64; scalars are still accumulated in float64)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def require_workspace(nbytes: float, device: torch.device, *, what: str, fix: str) -> None:
    """Refuse, before any HVP, a basis or sketch of ``nbytes`` that ``device`` cannot hold (one line, estimate)."""
    available = None
    if device.type == "cuda":
        available = int(torch.cuda.mem_get_info(device)[0])
    require_memory(nbytes, what=what, fix=fix, available=available)


class DenseOperator:
    """A symmetric matrix as an operator; counts its matvecs."""

    def __init__(self, matrix: torch.Tensor | Any) -> None:
        m = torch.as_tensor(matrix)
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise LandscapeError(f"DenseOperator needs a square matrix, got shape {tuple(m.shape)}")
        self.matrix = m
        self.size = int(m.shape[0])
        self.dtype = m.dtype
        self.device = m.device
        self.n_matvec = 0

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.n_matvec += 1
        return self.matrix @ v.to(self.dtype)


def _as_batches(data: Batch | Iterable[Batch]) -> Iterable[Batch]:
    """One batch ``(inputs, targets)`` or an iterable of them; one-shot iterators are materialised."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        return [(data[0], data[1])]
    if isinstance(data, Iterator):
        return list(data)
    return data


def select_parameters(model: nn.Module, patterns: str | Sequence[str] | None) -> list[tuple[str, nn.Parameter]]:
    """Named parameters matching glob ``patterns`` (a module prefix such as ``layer1`` matches its parameters)."""
    named = list(model.named_parameters())
    if patterns is None:
        return named
    if isinstance(patterns, str):
        patterns = [p.strip() for p in patterns.split(",") if p.strip()]
    chosen = [(n, p) for n, p in named
              if any(fnmatch.fnmatchcase(n, pat) or fnmatch.fnmatchcase(n, pat + ".*") for pat in patterns)]
    if not chosen:
        sample = ", ".join(n for n, _ in named[:4])
        raise LandscapeError(f"params={','.join(patterns)!r} matches no parameter; names look like: {sample}, ...")
    return chosen


Hvp = Literal["reverse", "forward"]
HVPS = ("reverse", "forward")


class HessianOperator:
    """The Hessian of the mean loss over ``data`` w.r.t. (a subset of) the model's parameters.

    Over several batches the operator is ``Σ_b (n_b / N) H_b`` (weighted by batch size). ``matvec`` takes any float
    vector and returns one in the parameters' dtype (float32 HVPs for a float32 model). Use as a context manager: the
    model's mode and ``requires_grad`` flags are set on entry and, with its buffers, restored on exit, and any
    cached autograd graph is dropped.

    ``hvp="reverse"`` (default) differentiates the gradient again (double backprop; with one batch the gradient's
    graph is built once and reused); ``"forward"`` is forward-over-reverse, ``torch.func.jvp`` of ``torch.func.grad``
    through ``functional_call``, recomputed at every product (see ``benchmarks/hessian.py`` for the timings).
    ``data`` may be a :class:`~landscape.analyses.hessian.distributed.Shard` (this process's share of the batches
    under torchrun): products and the loss are then summed over every process, so each sees the whole operator.
    """

    def __init__(self, model: nn.Module, data: Batch | Iterable[Batch], *, loss_fn: LossFn | None = None,
                 params: str | Sequence[str] | None = None, train_mode: bool = False,
                 keep_graph: bool | None = None, seed: int = 0, hvp: Hvp = "reverse") -> None:
        if hvp not in HVPS:
            raise LandscapeError(f"hvp={hvp!r} is not one of {', '.join(HVPS)}")
        self.model = model
        self.shard = getattr(data, "distributed", None)  # a Shard's reduction (None: this process holds all data)
        self.first_index = int(getattr(data, "offset", 0))  # global index of the first batch (dropout seeds)
        self.batches = _as_batches(data)
        self.loss_fn = loss_fn or nn.functional.cross_entropy
        self.named_params = select_parameters(model, params)
        self.names = [n for n, _ in self.named_params]
        self.shapes = [p.shape for _, p in self.named_params]
        self.numels = [p.numel() for _, p in self.named_params]
        self.size = sum(self.numels)
        first = self.named_params[0][1]
        self.device = first.device
        self.param_dtype = first.dtype
        self.dtype = work_dtype(first.dtype)  # float32 products for float32 (and lower-precision) models
        self.train_mode = train_mode
        self.seed = seed
        self.hvp = hvp
        # Measured on resnet8 / 1000 digits / 2 CPU cores (benchmarks/hessian.py): double backprop through a cached
        # gradient graph is the cheapest product; forward-over-reverse recomputes the forward and backward at every
        # product. So: double backprop, with the graph cached when there is a single batch (the default).
        single = isinstance(self.batches, list) and len(self.batches) == 1
        self.keep_graph = (single if keep_graph is None else keep_graph) and hvp == "reverse"
        self.n_hvp = 0
        self.n_forward = 0
        self.n_samples = 0
        self.loss = float("nan")
        self._graphs: list[tuple[int, tuple[torch.Tensor, ...]]] | None = None
        self._state: ModelState | None = None  # set while the operator is open (``with``)

    # -- model state ---------------------------------------------------------------------------------------
    def __enter__(self) -> HessianOperator:
        # Values too: in train mode every forward updates the BN running statistics.
        state = ModelState(self.model, mode="train" if self.train_mode else "eval")
        state.__enter__()
        self._state = state
        chosen = {id(p) for _, p in self.named_params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in chosen)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop cached graphs and restore the model as found."""
        self._graphs = None
        state, self._state = self._state, None
        if state is not None:
            state.__exit__(None, None, None)

    # -- evaluation ----------------------------------------------------------------------------------------
    def _seeded(self, index: int) -> contextlib.AbstractContextManager[object]:
        """Same dropout masks at every matvec (and in every process), or the operator would not be a fixed matrix."""
        if not self.train_mode:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []))
        torch.manual_seed(self.seed * 1_000_003 + self.first_index + index)
        return stack

    def _on_device(self, batch: Batch) -> Batch:
        return (batch[0].to(self.device, non_blocking=True), batch[1].to(self.device, non_blocking=True))

    def _batch_grads(self, index: int, batch: Batch) -> tuple[int, float, tuple[torch.Tensor, ...]]:
        inputs, targets = self._on_device(batch)
        with self._seeded(index), torch.enable_grad(), batchnorm_guard(int(inputs.shape[0])):
            loss = self.loss_fn(self.model(inputs), targets)
            # Unused parameters (e.g. a frozen branch) get zero gradients, hence zero Hessian rows.
            grads = torch.autograd.grad(loss, [p for _, p in self.named_params], create_graph=True,
                                        allow_unused=True, materialize_grads=True)
        self.n_forward += 1
        return int(inputs.shape[0]), float(loss.detach()), grads

    def _iter_graphs(self) -> Iterator[tuple[int, tuple[torch.Tensor, ...]]]:
        if self._graphs is not None:
            yield from self._graphs
            return
        store: list[Any] = []
        total, loss_sum = 0, 0.0
        for index, batch in enumerate(self.batches):
            n, loss, grads = self._batch_grads(index, batch)
            total += n
            loss_sum += n * loss
            if self.keep_graph:
                store.append((n, grads))
            yield n, grads
            del grads
        self._record(total, loss_sum)
        if self.keep_graph:
            self._graphs = store

    def _forward_hvp(self, index: int, batch: Batch, vs: list[torch.Tensor]
                     ) -> tuple[int, float, list[torch.Tensor]]:
        """Forward-over-reverse: ``jvp(grad(loss), θ, v)``; buffers enter as copies made inside the transform, so a
        train-mode BN may update them (the model's own are restored by ModelState anyway)."""
        from torch.func import functional_call, grad, jvp

        inputs, targets = self._on_device(batch)
        primals = {n: p.detach() for n, p in self.named_params}
        buffers = dict(self.model.named_buffers())

        def loss_of(theta: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            state = {**theta, **{k: b.clone() for k, b in buffers.items()}}
            loss = self.loss_fn(functional_call(self.model, state, (inputs,)), targets)
            return loss, loss.detach()

        with self._seeded(index), batchnorm_guard(int(inputs.shape[0])):
            primal_out, tangent_out = jvp(grad(loss_of, has_aux=True), (primals,),
                                          (dict(zip(self.names, vs)),))  # type: ignore[misc]
        loss, hv = primal_out[1], tangent_out[0]
        self.n_forward += 1
        return int(inputs.shape[0]), float(loss), [hv[n] for n in self.names]

    def _record(self, total: int, loss_sum: float) -> None:
        """The loss and sample count over all the data (every process's share under torchrun)."""
        if self.shard is not None:
            total, loss_sum = self.shard.sum_scalars(total, loss_sum)
        if total == 0:
            raise LandscapeError("the data holds no samples; check n_samples= and the dataset")
        self.n_samples, self.loss = int(total), loss_sum / total

    def split(self, v: torch.Tensor) -> list[torch.Tensor]:
        """A flat vector as a list of tensors shaped like the parameters (views)."""
        return [c.view(s) for c, s in zip(torch.split(v, self.numels), self.shapes)]

    def _add(self, out: torch.Tensor, hv: Sequence[torch.Tensor], weight: float) -> None:
        """``out += weight · hv`` slice by slice (no concatenated copy of ``hv``)."""
        start = 0
        for h, numel in zip(hv, self.numels):
            out[start:start + numel].add_(h.reshape(-1).to(out.dtype), alpha=weight)
            start += numel

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``H v`` for a flat vector (any float dtype); returns a vector of ``self.dtype`` on the operator's device."""
        if self._state is None:
            raise RuntimeError("use HessianOperator as a context manager: `with HessianOperator(...) as op:`")
        vs = self.split(v.to(device=self.device, dtype=self.param_dtype))
        out = torch.zeros(self.size, dtype=self.dtype, device=self.device)
        if self.hvp == "forward":
            total, loss_sum = 0, 0.0
            for index, batch in enumerate(self.batches):
                n, loss, fhv = self._forward_hvp(index, batch, vs)
                self._add(out, fhv, float(n))
                total, loss_sum = total + n, loss_sum + n * loss
                del fhv
            self._record(total, loss_sum)
        else:
            for n, grads in self._iter_graphs():
                live = [i for i, g in enumerate(grads) if g.requires_grad]  # a gradient constant in θ has H = 0
                if live:
                    hv = torch.autograd.grad([grads[i] for i in live], [p for _, p in self.named_params],
                                             [vs[i] for i in live], retain_graph=self.keep_graph,
                                             allow_unused=True, materialize_grads=True)
                    self._add(out, hv, float(n))
                    del hv
        if self.shard is not None:
            self.shard.sum_vector_(out)
        self.n_hvp += 1
        return out.div_(self.n_samples)

    def parameter_dict(self, v: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat vector as ``{parameter name: tensor}`` (detached copies on CPU)."""
        return {n: t.detach().cpu().clone() for n, t in zip(self.names, self.split(v))}
