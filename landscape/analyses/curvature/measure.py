"""One curvature measurement at a model's current weights: the top Hessian eigenvalue (Lanczos, optionally
warm-started), the Hutch++ trace, and for Adam the preconditioned sharpness λmax(P^{-1/2} H P^{-1/2}).

Uses the Hessian analysis's public pieces (``HessianOperator``, ``lanczos``, ``trace``). The model is left as
found (``HessianOperator`` restores parameters, buffers, modes and ``requires_grad``; ``.grad`` is never written:
products come from ``torch.autograd.grad``), and the global RNG state is restored, so measuring during training
never changes the trajectory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from landscape.analyses.hessian.hutch import trace
from landscape.analyses.hessian.krylov import lanczos, random_unit
from landscape.analyses.hessian.operator import HessianOperator, SymmetricOperator
from landscape.errors import LandscapeError

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# A warm start is the previous top eigenvector plus this much of a seeded random unit vector. Without it, a start
# vector that is still (nearly) an eigenvector, but no longer the top one after the eigenvalues crossed, would meet
# the tolerance at the first product and report the second eigenvalue; with it, the Krylov space always sees
# every direction. 0.1 costs a few products over the pure warm start (benchmarks/curvature.py).
WARM_NOISE = 0.1


def fixed_set(inputs: torch.Tensor, targets: torch.Tensor, *, n_samples: int, seed: int) -> Batch:
    """The measured samples: ``n_samples`` drawn by a permutation seeded with ``seed`` (a private generator), or
    all of them, in order, when ``n_samples`` is at least their number."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise LandscapeError(f"n_samples={n_samples!r} must be a whole number ≥ 1")
    if n_samples >= len(targets):
        return inputs, targets
    idx = torch.randperm(len(targets), generator=torch.Generator().manual_seed(int(seed)))[:n_samples]
    return inputs[idx], targets[idx]


class ScaledOperator:
    """``D A D`` for a symmetric operator ``A`` and a positive diagonal ``D = diag(d)``: symmetric, with the
    eigenvalues of ``D² A`` (so ``d = P^{-1/2}`` gives those of ``P⁻¹H``)."""

    def __init__(self, op: SymmetricOperator, d: torch.Tensor) -> None:
        if d.shape != (op.size,):
            raise ValueError(f"the diagonal has shape {tuple(d.shape)} for an operator of size {op.size}")
        self.op, self.size, self.dtype, self.device = op, op.size, op.dtype, op.device
        self.d = d.to(device=op.device, dtype=op.dtype)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        dv = v.to(device=self.device, dtype=self.dtype) * self.d
        return self.op.matvec(dv).to(self.dtype).mul_(self.d)


def adam_preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[nn.Parameter]) -> torch.Tensor:
    """The diagonal ``P^{-1/2}`` (flat, float64, in the order of ``params``) of the Adam update about to be taken.

    The step uses ``P = sqrt(v̂) + ε`` with ``v = β₂ v_prev + (1 − β₂) g²`` (``g`` = ``p.grad`` plus the L2 term
    ``weight_decay · p``) and ``v̂ = v / (1 − β₂ᵗ)``, as ``torch.optim.Adam`` computes it; the optimizer's own state is
    only read. Needs ``p.grad`` (call after ``backward()``, before ``step()``).
    """
    if not isinstance(optimizer, torch.optim.Adam):
        raise LandscapeError(f"the preconditioned sharpness needs an Adam optimizer, not {type(optimizer).__name__}")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    parts = []
    for p in params:
        group = group_of.get(id(p))
        if group is None:
            raise LandscapeError("a measured parameter is not in the optimizer; measure only the trained parameters")
        if group.get("amsgrad"):
            raise LandscapeError("the preconditioned sharpness follows plain Adam; amsgrad=True is not supported")
        beta2, eps, wd = float(group["betas"][1]), float(group["eps"]), float(group["weight_decay"])
        g = torch.zeros_like(p, dtype=torch.float64) if p.grad is None else p.grad.detach().double()
        if wd:
            g = g + wd * p.detach().double()
        state = optimizer.state.get(p, {})
        t = int(state["step"]) + 1 if "step" in state else 1
        v = (1 - beta2) * g.square()
        if "exp_avg_sq" in state:
            v = v + beta2 * state["exp_avg_sq"].detach().double()
        denom = (v / (1 - beta2 ** t)).sqrt() + eps
        parts.append(denom.rsqrt().reshape(-1))
    return torch.cat(parts).cpu()


@dataclass(frozen=True)
class Measurement:
    """One measurement (see ``schema`` for the meaning of each number); ``vector``/``precond_vector``: the top
    eigenvectors found (work dtype, on the model's device), to warm-start the next one."""

    lambda_max: float
    lambda_residual: float
    lambda_converged: bool
    lambda_matvecs: int
    loss: float
    trace: float
    trace_stderr: float
    trace_matvecs: int
    precond_lambda_max: float
    precond_residual: float
    precond_matvecs: int
    seconds: float
    vector: torch.Tensor
    precond_vector: torch.Tensor | None


def _start(v0: torch.Tensor | None, size: int, *, seed: int, device: torch.device) -> torch.Tensor | None:
    """The warm start: ``v0`` (normalised) plus ``WARM_NOISE`` of a seeded random unit vector; None: cold."""
    if v0 is None:
        return None
    if v0.shape != (size,):
        raise LandscapeError(f"v0 has {v0.numel()} values for {size} parameters; start cold (v0=None)")
    v = v0.to(device=device, dtype=torch.float64)
    norm = float(v.norm())
    if not (math.isfinite(norm) and norm > 0):
        return None
    return v / norm + WARM_NOISE * random_unit(size, seed=seed + 1, device=device)


def measure(model: nn.Module, batches: Batch | Sequence[Batch], *, loss_fn: LossFn, tol: float = 1e-3,
            seed: int = 0, v0: torch.Tensor | None = None, max_matvec: int | None = None,
            trace_probes: int = 0, preconditioner: torch.Tensor | None = None,
            precond_v0: torch.Tensor | None = None) -> Measurement:
    """Measure the Hessian of the mean ``loss_fn`` over ``batches`` (eval mode) at the model's current weights.

    ``v0``: the previous top eigenvector (warm start; None starts from a seeded random vector). ``trace_probes``:
    Hutch++ probes for the trace (0: none). ``preconditioner``: the diagonal ``d = P^{-1/2}`` (flat, over the
    trainable parameters in order) for the preconditioned sharpness λmax(D H D), warm-started from ``precond_v0``.
    """
    if not (math.isfinite(tol) and tol > 0):
        raise LandscapeError(f"tol={tol} must be a finite positive number, e.g. 1e-3")
    if trace_probes and trace_probes < 4:
        raise LandscapeError(f"trace_probes={trace_probes} is too few for Hutch++; use at least 4 (or 0: no trace)")
    t0 = time.perf_counter()
    named = list(model.named_parameters())
    trainable = [n for n, p in named if p.requires_grad]
    if not trainable:
        raise LandscapeError("the model has no trainable parameters (requires_grad=False everywhere)")
    params = None if len(trainable) == len(named) else trainable
    device = next(model.parameters()).device
    data = [batches] if isinstance(batches, tuple) else list(batches)
    # fork_rng: nothing here draws from the global generator, but a model's forward might; the training run's
    # random stream must not move.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            HessianOperator(model, data, loss_fn=loss_fn, params=params, seed=seed) as op:
        eig = lanczos(op, k=1, which="LA", tol=tol, seed=seed, max_matvec=max_matvec, return_eigenvectors=True,
                      v0=_start(v0, op.size, seed=seed, device=op.device))
        assert eig.eigenvectors is not None
        loss = float(op.loss)
        tr_value, tr_err, tr_count = math.nan, math.nan, 0
        if trace_probes:
            tr = trace(op, n_probes=trace_probes, method="hutch++", seed=seed)
            tr_value, tr_err, tr_count = tr.estimate, tr.stderr, tr.n_matvec
        p_value, p_res, p_count, p_vec = math.nan, math.nan, 0, None
        if preconditioner is not None:
            pop = ScaledOperator(op, preconditioner)
            peig = lanczos(pop, k=1, which="LA", tol=tol, seed=seed + 2, max_matvec=max_matvec,
                           return_eigenvectors=True, v0=_start(precond_v0, op.size, seed=seed + 2, device=op.device))
            assert peig.eigenvectors is not None
            p_value, p_res, p_count = float(peig.eigenvalues[0]), float(peig.residuals[0]), peig.n_matvec
            p_vec = peig.eigenvectors[0]
    return Measurement(
        lambda_max=float(eig.eigenvalues[0]), lambda_residual=float(eig.residuals[0]),
        lambda_converged=bool(eig.converged[0]), lambda_matvecs=eig.n_matvec, loss=loss, trace=tr_value,
        trace_stderr=tr_err, trace_matvecs=tr_count, precond_lambda_max=p_value, precond_residual=p_res,
        precond_matvecs=p_count, seconds=time.perf_counter() - t0, vector=eig.eigenvectors[0],
        precond_vector=p_vec)


def thresholds(optimizer: str, lr: float, *, momentum: float = 0.0, beta1: float = 0.9) -> tuple[float, float]:
    """The stability thresholds at step size ``lr``: of λmax (``(2 + 2μ)/η`` for gradient descent or SGD with
    heavy-ball momentum μ; NaN for Adam) and of the preconditioned λmax (Adam: ``(2 + 2β₁)/((1 − β₁)η)``; NaN
    otherwise)."""
    if optimizer == "adam":
        return math.nan, (2 + 2 * beta1) / ((1 - beta1) * lr)
    return (2 + 2 * momentum) / lr, math.nan
