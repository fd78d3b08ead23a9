"""The engine: the loss as a function of a perturbation of (some of) the weights, and the three sharpness measures
built on it — worst case (projected gradient ascent), average case (Gaussian draws) and PAC-Bayes σ (bisection).

A perturbation is written ``ε = T ⊙ δ`` with ``δ`` the variable the measure bounds or draws and ``T`` the scale:
``T = 1`` for the plain measures, ``T = |w| + ξ`` (elementwise, from the weights as found) for the adaptive ones
(Kwon et al. 2021; Andriushchenko et al. 2023). The weights are moved in place, always from the stored base
``w + T ⊙ δ`` (no drift), inside one :class:`~landscape.core.state.ModelState`, so the model is left as found.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from landscape.core._eval import batchnorm_guard
from landscape.core.evaluate import LossFn, check_per_sample, evaluate
from landscape.errors import LandscapeError

Norm = Literal["l2", "linf"]
Ignore = Literal["none", "biasbn"]

# The ascent's "last improvement" is the last step that raised the best value by more than this fraction of it:
# later gains are rounding-sized and say nothing about convergence.
IMPROVEMENT = 1e-3


def perturbed_parameters(model: nn.Module, params: str | Sequence[str] | None, ignore: Ignore
                         ) -> list[tuple[str, nn.Parameter]]:
    """The parameters a measure perturbs: those matching ``params`` (globs; all when None), without tensors of
    dim ≤ 1 (biases, BN/LayerNorm affine) when ``ignore="biasbn"``."""
    from landscape.analyses.hessian.operator import select_parameters

    if ignore not in ("none", "biasbn"):
        raise LandscapeError(f"ignore={ignore!r}; use 'none' (perturb every chosen parameter) or 'biasbn'")
    chosen = select_parameters(model, params)
    if ignore == "biasbn":
        chosen = [(n, p) for n, p in chosen if p.dim() > 1]
        if not chosen:
            raise LandscapeError("ignore='biasbn' leaves no parameter to perturb (all chosen ones are biases or "
                                 "normalisation weights); use ignore='none' or widen params=")
    return chosen


class Objective:
    """``L(w + T ⊙ δ)`` on (subsets of) fixed data, with its gradient in ``δ``; use inside ``ModelState``.

    ``delta`` and gradients are lists of tensors shaped like the chosen parameters; losses are means over the
    samples, every batch weighted by its size, accumulated in float64. ``mode="train"`` fixes the dropout masks:
    every pass over the same samples draws the same ones (so the loss is a function of the weights).
    """

    def __init__(self, model: nn.Module, named: list[tuple[str, nn.Parameter]], inputs: torch.Tensor,
                 targets: torch.Tensor, *, loss_fn: LossFn, batch_size: int, mode: Literal["eval", "train"],
                 seed: int) -> None:
        self.model, self.loss_fn, self.batch_size, self.mode, self.seed = model, loss_fn, batch_size, mode, seed
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]
        self.base = [p.detach().clone() for p in self.params]
        self.inputs, self.targets = inputs, targets
        self.size = sum(p.numel() for p in self.params)
        self.device = self.params[0].device
        self.n_passes = 0  # passes over a set of samples (forward, or forward + backward)

    def scale(self, adaptive: bool, xi: float) -> list[torch.Tensor] | None:
        """``T``: None (plain) or ``|w| + ξ``."""
        return [b.abs() + xi for b in self.base] if adaptive else None

    @torch.no_grad()
    def set(self, delta: Sequence[torch.Tensor] | None, scale: Sequence[torch.Tensor] | None = None,
            coef: float = 1.0) -> None:
        """Weights ``w + coef · T ⊙ δ`` (``w`` when ``delta`` is None)."""
        for i, (p, b) in enumerate(zip(self.params, self.base)):
            p.copy_(b)
            if delta is not None:
                p.add_(delta[i] if scale is None else delta[i] * scale[i], alpha=coef)

    @contextlib.contextmanager
    def _rng(self) -> Iterator[None]:
        if self.mode != "train":
            yield
            return
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.seed)
            yield

    def loss(self, index: torch.Tensor | None = None) -> float:
        """Mean loss at the current weights over the samples ``index`` (all when None)."""
        x, y = (self.inputs, self.targets) if index is None else (self.inputs[index], self.targets[index])
        self.n_passes += 1
        with self._rng(), batchnorm_guard(min(self.batch_size, len(x))):
            value = evaluate(self.model, x, y, batch_size=self.batch_size, loss_fn=self.loss_fn).loss
        return value

    def loss_and_grad(self, index: torch.Tensor | None, scale: Sequence[torch.Tensor] | None
                      ) -> tuple[float, list[torch.Tensor]]:
        """Mean loss at the current weights over ``index`` and its gradient in ``δ`` (``T ⊙ ∇_w L``)."""
        x, y = (self.inputs, self.targets) if index is None else (self.inputs[index], self.targets[index])
        n = len(x)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        grads = [torch.zeros_like(p) for p in self.params]
        with self._rng(), torch.enable_grad(), batchnorm_guard(min(self.batch_size, n)):
            for start in range(0, n, self.batch_size):
                xb, yb = x[start:start + self.batch_size], y[start:start + self.batch_size]
                losses = check_per_sample(self.loss_fn(self.model(xb), yb), len(xb))
                total += losses.detach().double().sum()
                # Gradients by autograd.grad, never .backward: the parameters' .grad stays as the caller left it.
                g = torch.autograd.grad(losses.sum() / n, self.params, allow_unused=True, materialize_grads=True)
                for acc, gi in zip(grads, g):
                    acc.add_(gi)
        self.n_passes += 1
        if scale is not None:
            grads = [g * s for g, s in zip(grads, scale)]
        return float(total) / n, grads


def _norm(tensors: Sequence[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def _project(delta: list[torch.Tensor], rho: float, norm: Norm) -> list[torch.Tensor]:
    if norm == "linf":
        return [d.clamp(-rho, rho) for d in delta]
    size = _norm(delta)
    return delta if size <= rho else [d * (rho / size) for d in delta]


def _start(shapes: Sequence[torch.Tensor], rho: float, norm: Norm, generator: torch.Generator,
           device: torch.device) -> list[torch.Tensor]:
    """A uniform draw from the ball (drawn on the CPU generator, so CPU and GPU runs start alike)."""
    if norm == "linf":
        return [((torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1) * rho)
                .to(device=device, dtype=p.dtype) for p in shapes]
    z = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in shapes]
    n = sum(p.numel() for p in shapes)
    radius = rho * float(torch.rand((), generator=generator, dtype=torch.float64)) ** (1.0 / n)
    size = _norm(z)
    return [(t * (radius / size)).to(device=device, dtype=p.dtype) for t, p in zip(z, shapes)]


@dataclass(frozen=True)
class Ascent:
    """One projected gradient ascent: ``value`` = best ``L_S(w + ε) − L_S(w)``; ``history`` (steps + 1,) the rise
    at every iterate tried (index 0: the start); ``last_improvement`` the step of the last gain above
    ``IMPROVEMENT`` of the best value (0: none after the start)."""

    value: float
    base: float
    history: np.ndarray
    last_improvement: int


def ascent(obj: Objective, index: torch.Tensor | None, *, rho: float, norm: Norm, steps: int,
           step_size: float, random_start: bool, scale: list[torch.Tensor] | None,
           generator: torch.Generator) -> Ascent:
    """Maximise ``L_S(w + T ⊙ δ)`` over ``‖δ‖ ≤ ρ`` (L2 or L∞) from a random point of the ball (or 0).

    Each step moves from the best iterate so far by ``step_size`` along the normalised gradient (L2) or its sign
    (L∞) and projects back; a step that does not improve halves the step size (an APGD-like schedule), so the
    sequence of best values never decreases and settles once the step is below what matters.
    """
    obj.set(None)
    base = obj.loss(index)
    delta = (_start(obj.params, rho, norm, generator, obj.device) if random_start
             else [torch.zeros_like(p) for p in obj.params])
    obj.set(delta, scale)
    value, grad = obj.loss_and_grad(index, scale)
    history = np.full(steps + 1, np.nan)
    history[0] = value - base
    best, best_delta, best_grad = value, delta, grad
    eta, last = step_size, 0
    for t in range(1, steps + 1):
        if norm == "linf":
            direction = [g.sign() for g in best_grad]
        else:
            size = _norm(best_grad)
            if size == 0.0:  # a stationary point of the loss: nothing to follow (history stays NaN)
                break
            direction = [g / size for g in best_grad]
        cand = _project([d + eta * s for d, s in zip(best_delta, direction)], rho, norm)
        obj.set(cand, scale)
        value, grad = obj.loss_and_grad(index, scale)
        history[t] = value - base
        if value > best:
            if value - best > IMPROVEMENT * abs(best - base):
                last = t
            best, best_delta, best_grad = value, cand, grad
        else:
            eta /= 2
    obj.set(None)
    return Ascent(value=best - base, base=base, history=history, last_improvement=last)


def subsets(n: int, m: int | None, seed: int) -> list[torch.Tensor] | None:
    """The sample subsets of m-sharpness: consecutive chunks of ``m`` of a permutation seeded with ``seed``
    (samples past the last whole chunk are left out); None for ``m`` ≥ ``n`` (one subset, all samples, in order)."""
    if m is None or m >= n:
        return None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return [order[i:i + m] for i in range(0, n - m + 1, m)]


@dataclass(frozen=True)
class Draws:
    """``E_z L(w + σ T ⊙ z) − L(w)`` from ``samples`` (one rise per draw) with its standard error."""

    value: float
    stderr: float
    samples: np.ndarray


def _noise(obj: Objective, generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.randn(p.shape, generator=generator, dtype=torch.float64).to(device=obj.device, dtype=p.dtype)
            for p in obj.params]


def gaussian_rise(obj: Objective, sigma: float, *, draws: int, scale: list[torch.Tensor] | None, seed: int,
                  base: float) -> Draws:
    """Average loss rise under ``draws`` Gaussian perturbations ``σ T ⊙ z``; the draws depend on ``seed`` only,
    so every σ sees the same ``z`` (common random numbers: the rise is smooth in σ)."""
    generator = torch.Generator().manual_seed(int(seed))
    rises = np.empty(draws)
    for k in range(draws):
        obj.set(_noise(obj, generator), scale, coef=sigma)
        rises[k] = obj.loss() - base
    obj.set(None)
    stderr = float(rises.std(ddof=1) / math.sqrt(draws)) if draws > 1 else math.nan
    return Draws(value=float(rises.mean()), stderr=stderr, samples=rises)


@dataclass(frozen=True)
class Bisection:
    """The largest σ found whose mean rise is ≤ ``target`` (``sigma``: the bracket's lower end; ``upper``: its
    upper end), with the rise there ± stderr, and every σ tried with its rise."""

    sigma: float
    upper: float
    rise: float
    stderr: float
    tried_sigma: np.ndarray
    tried_rise: np.ndarray


def pac_bayes_sigma(obj: Objective, *, target: float, draws: int, steps: int, scale: list[torch.Tensor] | None,
                    seed: int, base: float, start: float = 1e-2) -> Bisection:
    """Bisection (geometric) for ``max σ`` with ``E_z L(w + σ T ⊙ z) − L(w) ≤ target`` (Jiang et al. 2019).

    The bracket is found by factors of 4 from ``start``; then ``steps`` halvings of its log-width, stopping early
    once its ends are within 1e-4 relative.
    """
    tried: list[tuple[float, Draws]] = []

    def rise(sigma: float) -> Draws:
        d = gaussian_rise(obj, sigma, draws=draws, scale=scale, seed=seed, base=base)
        tried.append((sigma, d))
        return d

    lo, hi = 0.0, start
    lo_draw: Draws | None = None
    first = rise(hi)
    if first.value <= target:
        lo, lo_draw = hi, first
        for _ in range(40):
            hi = lo * 4
            d = rise(hi)
            if d.value > target:
                break
            lo, lo_draw = hi, d
        else:  # the loss never rose enough (it ignores these weights, or is bounded below the target)
            hi = math.inf
    else:
        for _ in range(40):
            cand = hi / 4
            d = rise(cand)
            if d.value <= target:
                lo, lo_draw = cand, d
                break
            hi = cand
    if lo > 0 and math.isfinite(hi):
        for _ in range(steps):
            if hi / lo - 1 < 1e-4:
                break
            mid = math.sqrt(lo * hi)
            d = rise(mid)
            if d.value <= target:
                lo, lo_draw = mid, d
            else:
                hi = mid
    return Bisection(sigma=lo, upper=hi, rise=lo_draw.value if lo_draw else math.nan,
                     stderr=lo_draw.stderr if lo_draw else math.nan,
                     tried_sigma=np.array([s for s, _ in tried]), tried_rise=np.array([d.value for _, d in tried]))


class Clock:
    """Times the first pass over the data and warns once when the whole request will take more than a day."""

    def __init__(self, obj: Objective, passes: int, what: str) -> None:
        self.obj, self.passes, self.what, self.t0 = obj, passes, what, time.perf_counter()

    def check(self) -> None:
        from landscape.core.budget import warn_if_long

        if self.obj.n_passes and self.passes:
            per_pass = (time.perf_counter() - self.t0) / self.obj.n_passes
            warn_if_long(per_pass * self.passes, what=f"{self.what} ({self.passes:,} passes over the data)")
            self.passes = 0


Callback = Callable[[str], None]
