"""The engine: loss and accuracy along a path ``θ(t)``, the barrier with its standard error, and the plane.

Every point of a path is evaluated from its own weights (no drift), in eval mode, by the one batched evaluator
(:func:`landscape.core.evaluate.evaluate`: float64, size-weighted), whose per-sample losses are kept for the
barrier. BN statistics are either interpolated with the weights or recalibrated at every point (reset, then a
size-weighted cumulative average over a fixed, seeded set of training batches with only the BN layers in train
mode, no gradients; then eval). The linear path is ``θ_A + t(θ_B − θ_A)`` up to ``t = ½`` and
``θ_B + (1 − t)(θ_A − θ_B)`` beyond, so both ends are the endpoints bit for bit, and ``θ_A = θ_B`` gives the same
weights at every ``t`` (a barrier of exactly 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from landscape.core.evaluate import LossFn, cross_entropy
from landscape.core.evaluate import evaluate as core_evaluate
from landscape.errors import LandscapeError

BN = Literal["interpolate", "recalibrate"]
BN_MODES = ("interpolate", "recalibrate")
Point = Callable[[float], Mapping[str, torch.Tensor]]
Splits = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


def float_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the floating-point entries of ``model``'s state dict (parameters and BN statistics)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}


def has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in model.modules())


def check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    """A one-line error unless both models have the same state-dict keys, shapes and dtypes."""
    sa, sb = model_a.state_dict(), model_b.state_dict()
    missing = [k for k in sa if k not in sb] + [k for k in sb if k not in sa]
    if missing:
        raise LandscapeError(f"model_b does not match model_a: tensor '{missing[0]}' is in one only "
                             f"({len(missing)} differ); give two models of the same architecture")
    for k, v in sa.items():
        if v.shape != sb[k].shape or v.dtype != sb[k].dtype:
            raise LandscapeError(f"model_b does not match model_a: tensor '{k}' is {tuple(sb[k].shape)} "
                                 f"{sb[k].dtype} in model_b and {tuple(v.shape)} {v.dtype} in model_a; give two "
                                 "models of the same architecture")
        if v.device != sb[k].device:
            raise LandscapeError(f"model_b is on {sb[k].device} and model_a on {v.device}; move both to one device")


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """``(1 − t)a + tb``, exact at both ends (and for ``a = b``)."""
    return a + t * (b - a) if t <= 0.5 else b + (1.0 - t) * (a - b)


def linear_path(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> Point:
    return lambda t: {k: lerp(a[k], b[k], t) for k in a}


@dataclass(frozen=True)
class PathValues:
    """Per split: ``loss``, ``acc``, ``stderr`` shaped ``(T,)``, and the per-sample losses ``(T, n)``."""

    loss: dict[str, np.ndarray]
    acc: dict[str, np.ndarray]
    stderr: dict[str, np.ndarray]
    samples: dict[str, np.ndarray]
    seconds: float


def _recording(loss_fn: LossFn, kept: list[torch.Tensor]) -> LossFn:
    """``loss_fn`` that also keeps its per-sample values (the evaluator returns only their mean and spread)."""

    def recording(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        values = loss_fn(outputs, targets)
        kept.append(values.detach().reshape(-1).double().cpu())
        return values

    return recording


@torch.no_grad()
def evaluate_path(net: nn.Module, path: Point, ts: np.ndarray, splits: Splits, *, bn: BN = "recalibrate",
                  recal_inputs: torch.Tensor | None = None, batch_size: int = 128, loss_fn: LossFn = cross_entropy,
                  progress: bool = False, desc: str = "path") -> PathValues:
    """Evaluate ``net`` (a scratch model: its tensors are overwritten) at ``path(t)`` for every ``t`` of ``ts``."""
    import time

    from tqdm.auto import tqdm

    from landscape.analyses.surface.compute import recalibrate_bn

    if bn not in BN_MODES:
        raise LandscapeError(f"bn={bn!r}; use interpolate or recalibrate")
    recalibrate = bn == "recalibrate" and has_bn(net)
    if recalibrate and recal_inputs is None:
        raise LandscapeError("bn='recalibrate' needs training inputs to recompute the BN statistics")
    live = net.state_dict()
    out = {key: {s: np.full(len(ts), np.nan) for s in splits} for key in ("loss", "acc", "stderr")}
    samples = {s: np.full((len(ts), len(y)), np.nan) for s, (_, y) in splits.items()}
    t0 = time.perf_counter()
    for i, t in enumerate(tqdm(ts, desc=desc, unit="t", disable=not progress or None, leave=False)):
        for k, v in path(float(t)).items():
            live[k].copy_(v)
        net.eval()
        if recalibrate:
            assert recal_inputs is not None  # checked above
            recalibrate_bn(net, recal_inputs, batch_size=batch_size)
        for split, (x, y) in splits.items():
            kept: list[torch.Tensor] = []
            r = core_evaluate(net, x, y, batch_size=batch_size, loss_fn=_recording(loss_fn, kept))
            out["loss"][split][i], out["acc"][split][i], out["stderr"][split][i] = r.loss, r.acc, r.stderr
            samples[split][i] = torch.cat(kept).numpy()
    return PathValues(out["loss"], out["acc"], out["stderr"], samples, time.perf_counter() - t0)


@dataclass(frozen=True)
class Barrier:
    """``height = max_t [L(t) − (L(0) + t(L(1) − L(0)))]`` at ``t``; ``stderr`` from the per-sample differences
    ``d_i = ℓ_i(t*) − ℓ_i(0) − t*(ℓ_i(1) − ℓ_i(0))`` at the maximising ``t*`` (s/√n; the choice of ``t*`` on the
    same data is not accounted for). ``max_loss``: the largest loss on the path."""

    height: float
    stderr: float
    t: float
    max_loss: float


def barrier(ts: np.ndarray, samples: np.ndarray) -> Barrier:
    """The loss barrier of a path from its per-sample losses ``(T, n)`` on a grid ``ts`` from 0 to 1."""
    if ts[0] != 0.0 or ts[-1] != 1.0:
        raise LandscapeError("the t grid must start at 0 and end at 1 for a barrier")
    mean = samples.mean(axis=1)
    excess = mean - (mean[0] + ts * (mean[-1] - mean[0]))
    i = int(np.nanargmax(excess)) if np.isfinite(excess).any() else 0
    d = samples[i] - samples[0] - ts[i] * (samples[-1] - samples[0])
    n = d.shape[0]
    stderr = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return Barrier(float(excess[i]), stderr, float(ts[i]), float(np.nanmax(mean)))


@dataclass(frozen=True)
class Plane:
    """The plane through ``θ_A`` (0, 0), ``θ_B`` (1, 0) and the bend: ``x`` along ``θ_B − θ_A``, ``y`` along the
    bend's offset orthogonal to it, scaled to the same length. ``loss``/``acc`` ``[i, j]`` at ``(x[i], y[j])``;
    ``points`` (3, 2): A, B, bend; ``curve`` (T, 2): the curve's points in plane coordinates."""

    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    acc: np.ndarray
    points: np.ndarray
    curve: np.ndarray


def plane(net: nn.Module, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
          bend: Mapping[str, torch.Tensor], *, kind: str, ts: np.ndarray, inputs: torch.Tensor,
          targets: torch.Tensor, num: int, margin: float, bn: BN, recal_inputs: torch.Tensor | None,
          batch_size: int, loss_fn: LossFn, progress: bool = False) -> Plane:
    """Loss and accuracy over a ``num × num`` grid of the plane through the three points, evaluated by the surface
    engine (:func:`landscape.analyses.surface.compute.compute_points`, base θ_A and these two directions)."""
    from tqdm.auto import tqdm

    from landscape.analyses.connectivity.curve import coefficients
    from landscape.analyses.surface.compute import compute_points
    from landscape.core import params
    from landscape.core.grid import Axis, Grid

    keys = list(bend)
    u = {k: (b[k] - a[k]).double() for k in keys}
    v = {k: (bend[k] - a[k]).double() for k in keys}
    uu = params.dot(u, u)
    if uu == 0.0:
        raise LandscapeError("model_a and model_b have the same weights: there is no plane through them")
    cx = params.dot(v, u) / uu
    w = {k: v[k] - cx * u[k] for k in keys}
    cy = params.norm(w) / math.sqrt(uu)
    if not cy > 1e-9:
        raise LandscapeError("the bend lies on the line through θ_A and θ_B (was the curve trained?): no plane")
    dx = {k: (b[k] - a[k]) for k in keys}
    dy = {k: (w[k] / cy).to(a[k].dtype) for k in keys}
    points = np.array([[0.0, 0.0], [1.0, 0.0], [cx, cy]])
    curve = np.array([[c[1] * cx + c[2], c[1] * cy] for c in (coefficients(kind, float(t)) for t in ts)])
    lo, hi = points.min(axis=0) - margin, points.max(axis=0) + margin
    grid = Grid(Axis(float(lo[0]), float(hi[0]), num), Axis(float(lo[1]), float(hi[1]), num))
    loss, acc = np.full(grid.shape, np.nan), np.full(grid.shape, np.nan)
    base = {k: a[k].detach().clone() for k in keys}
    bn_mode = "recalibrate" if bn == "recalibrate" and has_bn(net) else "eval"
    with tqdm(total=grid.size, desc="plane", unit="pt", disable=not progress or None, leave=False) as bar:
        for r in compute_points(net, range(grid.size), grid=grid, base=base, directions=[dx, dy], inputs=inputs,
                                targets=targets, batch_size=batch_size, loss_fn=loss_fn, bn=bn_mode,  # type: ignore[arg-type]
                                recal_inputs=recal_inputs):
            at = grid.unravel(r.index)
            loss[at], acc[at] = r.loss, r.acc
            bar.update(1)
    return Plane(grid.x.coords, grid.y.coords if grid.y is not None else np.zeros(0), loss, acc, points, curve)
