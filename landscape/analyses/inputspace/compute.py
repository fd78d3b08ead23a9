"""Input-space landscapes near and between real samples, noise robustness, and input-Jacobian norms.

Three analyses of a classifier ``f`` (logits) with the mean cross-entropy loss, all in eval mode:

- :func:`paths_around`: loss, true-class probability and prediction along ``x + r d`` for real samples ``x``, unit-L2
  directions ``d`` (random, or the input gradient of the loss) and radii ``r``;
- :func:`paths_between`: the same along ``(1 - α) x_i + α x_j`` for seeded same- and different-class pairs;
- :func:`noise_robustness`: loss and accuracy under additive Gaussian noise ``x + σ ε``, averaged over seeded draws.

Each curve gets smoothness statistics (:func:`curve_stats`); :func:`jacobian_norms` gives the Frobenius norm of the
input-Jacobian of the **logits** (Novak et al. 2018's sensitivity), exactly, by autograd.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from landscape.core._eval import Pace
from landscape.core._eval import on_model_device as _setup
from landscape.core._eval import readonly as _ro
from landscape.core.budget import require_memory
from landscape.core.evaluate import evaluate
from landscape.core.state import ModelState
from landscape.errors import LandscapeError

Directions = Literal["random", "gradient"]


@dataclass(frozen=True)
class CurveStats:
    """Smoothness of loss curves, one entry per curve (arrays share the curves' leading shape).

    ``total_variation`` = Σ|Δloss|; ``max_second_diff`` = max|loss[k+1] − 2 loss[k] + loss[k−1]| (grid assumed
    uniform); ``lipschitz`` = max|Δloss| / ‖Δx‖ over neighbouring grid points; ``flips`` = number of neighbouring
    grid points whose predicted classes differ.
    """

    total_variation: np.ndarray
    max_second_diff: np.ndarray
    lipschitz: np.ndarray
    flips: np.ndarray


@dataclass(frozen=True)
class AroundResult:
    """Paths ``x + r d`` from S real samples along K unit directions each; curves have shape (S, K, N)."""

    radius: np.ndarray
    directions: str
    loss: np.ndarray
    prob: np.ndarray
    pred: np.ndarray
    target: np.ndarray
    grad_norm: np.ndarray  # (S,) ‖∇ₓ loss‖ at each sample
    jacobian_norm: np.ndarray  # (S,) ‖∂logits/∂x‖_F at each sample
    stats: CurveStats
    n_forward: int
    seconds: float
    seed: int
    mode: str = field(default="around", init=False)


@dataclass(frozen=True)
class BetweenResult:
    """Paths ``(1 − α) x_i + α x_j`` for P pairs; curves have shape (P, N).

    ``loss_i``/``loss_j`` are the cross-entropies w.r.t. the labels of ``x_i``/``x_j``; ``loss`` is the mixup loss
    ``(1 − α) loss_i + α loss_j`` (equal to both for same-class pairs), on which the statistics are computed.
    ``chord_deviation`` = max over α of |loss(α) − ((1 − α) loss(0) + α loss(1))|: how far the path strays from the
    straight line between its ends (0 for a perfectly predictable path).
    """

    alpha: np.ndarray
    pair_index: np.ndarray  # (P, 2) indices into the given samples
    pair_target: np.ndarray  # (P, 2)
    same_class: np.ndarray  # (P,) bool
    distance: np.ndarray  # (P,) ‖x_j − x_i‖
    loss: np.ndarray
    loss_i: np.ndarray
    loss_j: np.ndarray
    prob_i: np.ndarray
    prob_j: np.ndarray
    pred: np.ndarray
    jacobian_norm: np.ndarray  # (P, 2) at x_i and x_j
    stats: CurveStats
    chord_deviation: np.ndarray
    n_forward: int
    seconds: float
    seed: int
    mode: str = field(default="between", init=False)


@dataclass(frozen=True)
class NoiseResult:
    """Mean loss and accuracy on N samples under ``x + σ ε``: arrays (D draws, len(sigma))."""

    sigma: np.ndarray
    loss: np.ndarray
    acc: np.ndarray
    n_samples: int
    n_forward: int
    seconds: float
    seed: int
    mode: str = field(default="noise", init=False)

    @property
    def loss_mean(self) -> np.ndarray:
        return self.loss.mean(axis=0)

    @property
    def acc_mean(self) -> np.ndarray:
        return self.acc.mean(axis=0)


def _evaluate(model: nn.Module, points: torch.Tensor, labels: torch.Tensor, batch_size: int,
              *, labels2: torch.Tensor | None = None, pace: Pace | None = None) -> tuple[np.ndarray, ...]:
    """Per-point loss and label probability (float64) and predicted class, in batches of ``batch_size``.

    Local rather than ``landscape.core.evaluate.evaluate``: the paths need every point's own loss, the
    probabilities of one or two labels and the prediction, where the evaluator returns means.
    """
    losses: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    preds: list[torch.Tensor] = []
    losses2: list[torch.Tensor] = []
    probs2: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, points.shape[0], batch_size):
            logits = model(points[start:start + batch_size]).double()
            if pace is not None:
                pace.add(logits.shape[0])
            logp = torch.log_softmax(logits, dim=1)
            for y, ls, ps in ((labels, losses, probs), (labels2, losses2, probs2)):
                if y is None:
                    continue
                lp = logp.gather(1, y[start:start + batch_size, None])[:, 0]
                ls.append(-lp)
                ps.append(lp.exp())
            preds.append(logits.argmax(dim=1))
    out = [torch.cat(losses), torch.cat(probs), torch.cat(preds)]
    if labels2 is not None:
        out += [torch.cat(losses2), torch.cat(probs2)]
    return tuple(t.cpu().numpy() for t in out)


def _cross_entropy64(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of the logits taken in float64, as along the paths."""
    return F.cross_entropy(logits.double(), targets, reduction="none")


def curve_stats(loss: np.ndarray, pred: np.ndarray, step_length: np.ndarray | float) -> CurveStats:
    """Smoothness statistics of curves along the last axis; ``step_length`` = ‖Δx‖ between neighbours.

    ``step_length`` broadcasts against ``loss[..., :-1]`` (a scalar, the grid spacings (N−1,), or per curve).
    """
    loss = np.asarray(loss, dtype=np.float64)
    d1 = np.diff(loss, axis=-1)
    d2 = np.diff(loss, n=2, axis=-1)
    step = np.broadcast_to(np.asarray(step_length, dtype=np.float64), d1.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        slopes = np.where(step > 0, np.abs(d1) / np.where(step > 0, step, 1.0), 0.0)
    empty = loss.shape[:-1]
    return CurveStats(
        total_variation=_ro(np.abs(d1).sum(axis=-1)),
        max_second_diff=_ro(np.abs(d2).max(axis=-1) if d2.shape[-1] else np.zeros(empty)),
        lipschitz=_ro(slopes.max(axis=-1) if d1.shape[-1] else np.zeros(empty)),
        flips=_ro((np.diff(np.asarray(pred), axis=-1) != 0).sum(axis=-1).astype(np.int64)),
    )


def jacobian_norms(model: nn.Module, inputs: torch.Tensor, *, batch_size: int = 128) -> np.ndarray:
    """Frobenius norm of ∂logits/∂x at each sample (of the logits, not the probabilities), exact, float64.

    One backward pass per class over each batch (samples are independent in eval mode). The model is left as found.
    """
    dummy = torch.zeros(inputs.shape[0], dtype=torch.long)
    x_all, _ = _setup(model, inputs, dummy, batch_size)
    out = []
    with ModelState(model, mode="eval", values=False):
        for start in range(0, x_all.shape[0], batch_size):
            x = x_all[start:start + batch_size].detach().requires_grad_(True)
            with torch.enable_grad():
                logits = model(x)
                sq = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
                for k in range(logits.shape[1]):
                    (g,) = torch.autograd.grad(logits[:, k].sum(), x, retain_graph=k + 1 < logits.shape[1])
                    sq += g.double().flatten(1).pow(2).sum(dim=1)
            out.append(sq.sqrt().cpu())
    return torch.cat(out).numpy()


def _unit(v: torch.Tensor) -> torch.Tensor:
    norms = v.flatten(1).norm(dim=1).clamp_min(torch.finfo(v.dtype).tiny)
    return v / norms.view(-1, *([1] * (v.ndim - 1)))


def _check_grid(name: str, grid: np.ndarray | list[float] | torch.Tensor) -> np.ndarray:
    arr = np.asarray(grid, dtype=np.float64).reshape(-1)
    if arr.size < 2 or not np.all(np.isfinite(arr)):
        raise LandscapeError(f"{name} needs at least 2 finite values, got {arr.tolist()}; e.g. 0:1:11")
    return arr


# ---------------------------------------------------------------------------------------------------- analyses


def paths_around(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, radii: np.ndarray | list[float],
                 directions: Directions = "random", n_directions: int = 1, seed: int = 0,
                 batch_size: int = 128, progress: bool | None = None) -> AroundResult:
    """Loss, true-class probability and prediction along ``x + r d`` at every radius, for every sample.

    ``directions="gradient"`` uses d = ∇ₓ loss / ‖∇ₓ loss‖ (the steepest ascent; ``n_directions`` must be 1);
    ``"random"`` uses ``n_directions`` Gaussian directions per sample, scaled to unit L2 norm, drawn from a private
    generator seeded with ``seed``.
    """
    t0 = time.perf_counter()
    radius = _check_grid("radii", radii)
    if directions not in ("random", "gradient"):
        raise LandscapeError(f"directions={directions!r}; use 'random' or 'gradient'")
    if n_directions < 1 or (directions == "gradient" and n_directions != 1):
        raise LandscapeError(f"n_directions={n_directions}: use ≥ 1 for random directions and 1 for the gradient")
    x, y = _setup(model, inputs, targets, batch_size)
    s, k, n = x.shape[0], n_directions, radius.size
    dim, item = x[0].numel(), x.element_size()
    # Curves (loss, prob, pred and the statistics' differences: ~8 float64 per point), the directions (drawn, then
    # scaled) and one chunk of path points with its broadcast intermediates (at least one sample's k·n points).
    require_memory(8 * 8.0 * s * k * n + 2.0 * item * s * k * dim + 3.0 * item * max(batch_size, k * n) * dim,
                   what=f"paths from {s:,} samples along {k:,} directions at {n:,} radii",
                   fix="use fewer samples, directions or radii")
    pace = Pace(s * k * n, what="the input-space paths")
    with ModelState(model, mode="eval", values=False):
        grad = torch.cat([_loss_grad(model, x[i:i + batch_size], y[i:i + batch_size])
                          for i in range(0, s, batch_size)])
        grad_norm = grad.double().flatten(1).norm(dim=1)
        if directions == "gradient":
            d = _unit(grad)[:, None]
        else:
            gen = torch.Generator().manual_seed(seed)
            d = _unit(torch.randn((s * k, *x.shape[1:]), generator=gen).to(x)).view(s, k, *x.shape[1:])
        r = torch.as_tensor(radius, dtype=x.dtype, device=x.device)
        loss = np.empty((s, k, n))
        prob = np.empty((s, k, n))
        pred = np.empty((s, k, n), dtype=np.int64)
        per_sample = max(1, batch_size // (k * n))  # samples whose whole curve set fits one evaluation chunk
        bar = tqdm(total=s, desc="around", unit="sample", disable=None if progress is None else not progress)
        for i in range(0, s, per_sample):
            xs, ds = x[i:i + per_sample], d[i:i + per_sample]
            shape = (xs.shape[0], k, n, *x.shape[1:])
            pts = (xs[:, None, None] + r.view(1, 1, n, *([1] * (x.ndim - 1))) * ds[:, :, None]).reshape(-1, *x.shape[1:])
            labels = y[i:i + per_sample, None].expand(-1, k * n).reshape(-1)
            lo, pr, pd = _evaluate(model, pts, labels, batch_size, pace=pace)
            loss[i:i + per_sample] = lo.reshape(shape[:3])
            prob[i:i + per_sample] = pr.reshape(shape[:3])
            pred[i:i + per_sample] = pd.reshape(shape[:3])
            bar.update(xs.shape[0])
        bar.close()
    jac = jacobian_norms(model, x, batch_size=batch_size)
    return AroundResult(
        radius=_ro(radius), directions=directions, loss=_ro(loss), prob=_ro(prob), pred=_ro(pred),
        target=_ro(y.cpu().numpy()), grad_norm=_ro(grad_norm.cpu().numpy()), jacobian_norm=_ro(jac),
        stats=curve_stats(loss, pred, np.abs(np.diff(radius))),
        n_forward=s * k * n, seconds=time.perf_counter() - t0, seed=seed,
    )


def _loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇ₓ of each sample's own cross-entropy (the sum over the batch separates per sample in eval mode)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), x)
    return g.detach()


def draw_pairs(targets: torch.Tensor | np.ndarray, *, pairs: int, same_class_fraction: float = 0.5,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` distinct index pairs (i ≠ j): ``round(pairs · same_class_fraction)`` same-class, the rest not.

    Returns ``(pair_index (P, 2), same_class (P,))``; seeded, reproducible.
    """
    y = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if pairs < 1 or not 0.0 <= same_class_fraction <= 1.0:
        raise LandscapeError(f"pairs={pairs} must be ≥ 1 and same_class_fraction={same_class_fraction} in [0, 1]")
    rng = np.random.default_rng(seed)
    n_same = round(pairs * same_class_fraction)
    want = [True] * n_same + [False] * (pairs - n_same)
    counts = np.bincount(y)
    if n_same and (counts >= 2).sum() == 0:
        raise LandscapeError("no class has two samples, so no same-class pair exists; use more samples")
    if pairs - n_same and (counts > 0).sum() < 2:
        raise LandscapeError("all samples share one class, so no different-class pair exists; use more samples")
    out = []
    for same in want:
        for _ in range(10_000):  # rejection sampling; the checks above make success near-certain
            i, j = rng.choice(y.size, size=2, replace=False)
            if (y[i] == y[j]) == same:
                out.append((i, j))
                break
        else:
            raise LandscapeError(f"could not find enough {'same' if same else 'different'}-class pairs; use more samples")
    return np.asarray(out, dtype=np.int64).reshape(-1, 2), np.asarray(want, dtype=bool)


def paths_between(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                  alphas: np.ndarray | list[float] | None = None, pairs: int = 100,
                  pair_index: np.ndarray | None = None, same_class_fraction: float = 0.5, seed: int = 0,
                  batch_size: int = 128, progress: bool | None = None) -> BetweenResult:
    """Loss (mixup), both labels' probabilities and the prediction along the segment between pairs of samples.

    Pairs are drawn with :func:`draw_pairs` unless ``pair_index`` (P, 2) is given; ``alphas`` default to 21 points
    from 0 to 1.
    """
    t0 = time.perf_counter()
    x, y = _setup(model, inputs, targets, batch_size)
    n_pairs = pairs if pair_index is None else int(np.asarray(pair_index).size // 2)
    n_alpha = 21 if alphas is None else int(np.asarray(alphas).size)
    # Curves and statistics (~12 float64 per point) and one chunk of points (at least one pair's segment).
    require_memory(12 * 8.0 * n_pairs * n_alpha + 3.0 * x.element_size() * max(batch_size, n_alpha) * x[0].numel(),
                   what=f"{n_pairs:,} segments of {n_alpha:,} points", fix="use fewer pairs or steps")
    alpha = _check_grid("alphas", np.linspace(0.0, 1.0, 21) if alphas is None else alphas)
    if pair_index is None:
        pair_index, _ = draw_pairs(y, pairs=pairs, same_class_fraction=same_class_fraction, seed=seed)
    pair_index = np.asarray(pair_index, dtype=np.int64).reshape(-1, 2)
    if pair_index.min() < 0 or pair_index.max() >= x.shape[0]:
        raise LandscapeError(f"pair_index must lie in [0, {x.shape[0]}), got {pair_index.min()}..{pair_index.max()}")
    yn = y.cpu().numpy()
    p, n = pair_index.shape[0], alpha.size
    a = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).view(1, n, *([1] * (x.ndim - 1)))
    ii, jj = (torch.as_tensor(pair_index[:, c], device=x.device) for c in (0, 1))
    per_pair = max(1, batch_size // n)
    pace = Pace(p * n, what="the input-space segments")
    cols = [np.empty((p, n)) for _ in range(4)]
    pred = np.empty((p, n), dtype=np.int64)
    with ModelState(model, mode="eval", values=False):
        bar = tqdm(total=p, desc="between", unit="pair", disable=None if progress is None else not progress)
        for s in range(0, p, per_pair):
            xi, xj = x[ii[s:s + per_pair]], x[jj[s:s + per_pair]]
            pts = ((1 - a) * xi[:, None] + a * xj[:, None]).reshape(-1, *x.shape[1:])
            yi = y[ii[s:s + per_pair], None].expand(-1, n).reshape(-1)
            yj = y[jj[s:s + per_pair], None].expand(-1, n).reshape(-1)
            lo_i, pr_i, pd, lo_j, pr_j = _evaluate(model, pts, yi, batch_size, labels2=yj, pace=pace)
            m = xi.shape[0]
            for col, vals in zip(cols, (lo_i, lo_j, pr_i, pr_j)):
                col[s:s + m] = vals.reshape(m, n)
            pred[s:s + m] = pd.reshape(m, n)
            bar.update(m)
        bar.close()
    loss_i, loss_j, prob_i, prob_j = cols
    loss = (1 - alpha) * loss_i + alpha * loss_j
    distance = (x[jj] - x[ii]).double().flatten(1).norm(dim=1).cpu().numpy()
    chord = (1 - alpha) * loss[:, :1] + alpha * loss[:, -1:]
    used, where = np.unique(pair_index, return_inverse=True)  # Jacobians only at the pairs' endpoints
    jac = jacobian_norms(model, x[torch.as_tensor(used, device=x.device)], batch_size=batch_size)[where.reshape(-1, 2)]
    return BetweenResult(
        alpha=_ro(alpha), pair_index=_ro(pair_index), pair_target=_ro(yn[pair_index]),
        same_class=_ro(yn[pair_index[:, 0]] == yn[pair_index[:, 1]]), distance=_ro(distance),
        loss=_ro(loss), loss_i=_ro(loss_i), loss_j=_ro(loss_j), prob_i=_ro(prob_i), prob_j=_ro(prob_j),
        pred=_ro(pred), jacobian_norm=_ro(jac),
        stats=curve_stats(loss, pred, np.abs(np.diff(alpha))[None, :] * distance[:, None]),
        chord_deviation=_ro(np.abs(loss - chord).max(axis=1)),
        n_forward=p * n, seconds=time.perf_counter() - t0, seed=seed,
    )


def noise_robustness(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                     sigmas: np.ndarray | list[float], draws: int = 5, seed: int = 0, batch_size: int = 128,
                     progress: bool | None = None) -> NoiseResult:
    """Mean loss and accuracy under ``x + σ ε``, ε ~ N(0, I), for each σ and each of ``draws`` seeded draws.

    Draw ``d`` uses the generator seeded with ``seed + d`` and the same ε for every σ (common random numbers, so
    curves over σ are not jagged by resampling). Noise is drawn per sample in input order on the CPU, so results do
    not depend on ``batch_size`` or device. Means are weighted by batch size and accumulated in float64.
    """
    t0 = time.perf_counter()
    sigma = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if sigma.size < 1 or np.any(sigma < 0) or not np.all(np.isfinite(sigma)):
        raise LandscapeError(f"sigmas must be finite and ≥ 0, got {sigma.tolist()}; e.g. 0:1:11")
    if draws < 1:
        raise LandscapeError(f"draws={draws} must be at least 1")
    x, y = _setup(model, inputs, targets, batch_size)
    n = x.shape[0]
    require_memory(4 * 8.0 * draws * sigma.size + 3.0 * x.element_size() * min(batch_size, n) * x[0].numel(),
                   what=f"{draws:,} draws at {sigma.size:,} noise levels", fix="use fewer draws or noise levels")
    pace = Pace(draws * sigma.size * n, what="the noise robustness")
    loss = np.zeros((draws, sigma.size))
    correct = np.zeros((draws, sigma.size))
    with ModelState(model, mode="eval", values=False):
        bar = tqdm(total=draws * n, desc="noise", unit="sample", disable=None if progress is None else not progress)
        for d in range(draws):
            gen = torch.Generator().manual_seed(seed + d)
            for start in range(0, n, batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                eps = torch.stack([torch.randn(xb.shape[1:], generator=gen) for _ in range(xb.shape[0])]).to(xb)
                for si, s in enumerate(sigma):
                    # One batch of noisy inputs: its mean loss and accuracy, weighted by its size below.
                    ev = evaluate(model, xb + float(s) * eps, yb, batch_size=batch_size, loss_fn=_cross_entropy64)
                    pace.add(xb.shape[0])
                    loss[d, si] += ev.loss * ev.n
                    correct[d, si] += round(ev.acc * ev.n)
                bar.update(xb.shape[0])
        bar.close()
    return NoiseResult(sigma=_ro(sigma), loss=_ro(loss / n), acc=_ro(correct / n), n_samples=n,
                       n_forward=draws * sigma.size * n, seconds=time.perf_counter() - t0, seed=seed)


def to_arrays(result: AroundResult | BetweenResult | NoiseResult) -> dict[str, np.ndarray]:
    """The result's arrays under the names of the ``landscape.inputspace/1`` layout (for the store)."""
    skip = {"stats", "directions", "mode", "n_forward", "seconds", "seed", "n_samples"}
    out = {k: np.asarray(v) for k, v in vars(result).items() if k not in skip}
    if hasattr(result, "stats"):
        out.update({k: np.asarray(v) for k, v in vars(result.stats).items()})
    return out


def result_attrs(result: AroundResult | BetweenResult | NoiseResult) -> dict[str, object]:
    """Scalar settings and diagnostics of a result (root attributes in the store)."""
    attrs: dict[str, object] = {"mode": result.mode, "seed": result.seed, "n_forward": result.n_forward,
                                "seconds": result.seconds}
    if isinstance(result, AroundResult):
        attrs.update(directions=result.directions, n_samples=int(result.loss.shape[0]),
                     n_directions=int(result.loss.shape[1]))
    elif isinstance(result, BetweenResult):
        attrs.update(n_pairs=int(result.loss.shape[0]), n_same_class=int(result.same_class.sum()))
    else:
        attrs.update(n_samples=result.n_samples, draws=int(result.loss.shape[0]))
    return attrs
