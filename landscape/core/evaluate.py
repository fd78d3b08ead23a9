"""The one batched evaluator: per-sample losses in one float64 buffer, size-weighted means, optional early stop.

Loss contract: ``loss_fn(outputs, targets)`` returns one loss per sample, shape ``(B,)``. A loss that returns the
batch mean (``F.cross_entropy`` with its default reduction) keeps the mean right but hides the spread, so the
standard error would be wrong: it is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from landscape.errors import LandscapeError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, the default loss."""
    return F.cross_entropy(outputs, targets, reduction="none")


def check_per_sample(values: torch.Tensor, batch: int) -> torch.Tensor:
    """``values`` as shape ``(batch,)``, or a one-line error saying what the loss function must return."""
    if values.dim() == 0 or values.numel() != batch:
        raise LandscapeError(f"loss_fn returned shape {tuple(values.shape)} for a batch of {batch}; it must return "
                             "one loss per sample, shape (B,), e.g. F.cross_entropy(out, y, reduction='none')")
    return values.reshape(batch)


@dataclass(frozen=True)
class Evaluation:
    """Mean loss, accuracy (NaN for non-integer targets), standard error s/√n and the samples used."""

    loss: float
    acc: float
    stderr: float
    n: int


def evaluate(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, batch_size: int,
             loss_fn: LossFn = cross_entropy, precision_target: float | None = None,
             min_samples: int = 4000) -> Evaluation:
    """Evaluate ``model`` as it is (mode untouched: wrap in :class:`ModelState` to choose one) over ``inputs`` in
    their order, in inference mode, with every batch weighted by its size and sums in float64.

    With ``precision_target`` it stops after the first batch at which at least ``min_samples`` were seen and the
    standard error is below the target (the data's order should then be random, see ``surface``).
    """
    total = len(inputs)
    if total == 0:
        raise LandscapeError("no samples to evaluate")
    if batch_size < 1:
        raise LandscapeError(f"batch_size={batch_size} must be at least 1")
    classify = not targets.is_floating_point()
    # Per-sample losses go into one float64 buffer (one copy per batch, no per-batch reductions: the loop costs
    # little more than the forward passes); mean and variance are taken once, two-pass, in float64.
    losses = torch.empty(total, dtype=torch.float64, device=inputs.device)
    hits = torch.zeros(total if classify else 0, dtype=torch.bool, device=inputs.device)
    count, shift, s1, s2 = 0, 0.0, 0.0, 0.0
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            out = model(inputs[start:stop])
            losses[start:stop] = check_per_sample(loss_fn(out, targets[start:stop]), stop - start)
            if classify:
                torch.eq(out.argmax(dim=1), targets[start:stop], out=hits[start:stop])
            count = stop
            if precision_target is not None:
                # Running sums around a shift (the first batch's mean) keep the variance free of cancellation.
                seg = losses[start:stop]
                if start == 0:
                    shift = float(seg.mean())
                seg = seg - shift
                s1, s2 = s1 + float(seg.sum()), s2 + float((seg * seg).sum())
                if min_samples <= count < total and count > 1:
                    var = max(s2 - s1 * s1 / count, 0.0) / (count - 1)
                    if math.sqrt(var / count) < precision_target:
                        break
    used = losses[:count]
    nan = used.new_tensor(math.nan)
    # One host transfer per evaluation (a GPU surface syncs once per point, not three times).
    loss, std, hit = torch.stack([used.mean(), used.std() if count > 1 else nan,
                                  hits[:count].sum().double() if classify else nan]).tolist()
    stderr = std / math.sqrt(count) if count > 1 and math.isfinite(loss) else math.nan
    acc = hit / count if classify else math.nan
    return Evaluation(loss, acc, stderr, count)
