"""Curves between two minima with one bend θ: a quadratic Bézier curve or a polygonal chain (Garipov et al. 2018).

``θ(t) = Σ c_k(t)·P_k`` over the points ``(θ_A, bend, θ_B)``; the coefficients are exactly ``(1, 0, 0)`` at
``t = 0`` and ``(0, 0, 1)`` at ``t = 1``, so the curve's ends are the endpoints bit for bit. The bend is trained
(endpoints fixed, bend initialised at the midpoint) by sampling one ``t ~ U(0, 1)`` per step and minimising the loss
of ``torch.func.functional_call(model, θ(t), x)``: any ``nn.Module`` works unchanged, BN in train mode with batch
statistics. Training checkpoints after every epoch (bend, optimizer, generator and RNG state, written atomically
with byte-reproducible content) and resumes exactly.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from landscape.errors import LandscapeError

Kind = Literal["bezier", "polychain"]
KINDS = ("bezier", "polychain")
FORMAT = "landscape.connectivity.curve/1"
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def coefficients(kind: str, t: float) -> tuple[float, float, float]:
    """The weights of ``(θ_A, bend, θ_B)`` at ``t``."""
    if kind == "bezier":
        return (1.0 - t) ** 2, 2.0 * t * (1.0 - t), t * t
    if kind == "polychain":
        return (1.0 - 2.0 * t, 2.0 * t, 0.0) if t < 0.5 else (0.0, 2.0 - 2.0 * t, 2.0 * t - 1.0)
    raise LandscapeError(f"curve={kind!r}; use one of {', '.join(KINDS)}")


def point(kind: str, a: Mapping[str, torch.Tensor], bend: Mapping[str, torch.Tensor],
          b: Mapping[str, torch.Tensor], t: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """``θ(t)`` for every tensor of ``bend`` (differentiable in ``bend``)."""
    ca, cc, cb = coefficients(kind, float(t))
    return {k: ca * a[k] + cc * bend[k] + cb * b[k] for k in bend}


@dataclass(frozen=True)
class CurveSettings:
    """What defines a curve's training; a checkpoint resumes only when these agree."""

    kind: str = "bezier"
    epochs: int = 20
    lr: float = 0.05
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0

    def check(self) -> None:
        coefficients(self.kind, 0.0)
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise LandscapeError(f"curve_{name}={getattr(self, name)} must be at least 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise LandscapeError(f"curve_lr={self.lr} must be a finite positive number")
        for name in ("momentum", "weight_decay"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise LandscapeError(f"curve_{name}={v} must be a finite number ≥ 0")


def _load(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign: one line
        raise LandscapeError(f"{path} is not a readable curve checkpoint; delete it (or pass overwrite=True) to "
                             "train the curve afresh") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LandscapeError(f"{path} is not a curve checkpoint written by landscape connect")
    return state


def train_curve(model: nn.Module, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                inputs: torch.Tensor, targets: torch.Tensor, *, settings: CurveSettings, loss_fn: LossFn,
                identity: Mapping[str, Any] | None = None, checkpoint: str | os.PathLike[str] | None = None,
                resume: bool = False, progress: bool = False,
                callback: Callable[[int, float], None] | None = None) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train the bend between the parameters ``a`` and ``b`` of ``model``'s architecture on ``(inputs, targets)``;
    returns the bend (detached) and the mean training loss of each epoch. ``model`` itself is not changed.

    ``checkpoint``: written after every epoch; with ``resume`` an existing one is continued (refused when its
    settings or ``identity`` — e.g. the endpoints' hashes — differ). ``callback(epoch, loss)`` runs after each
    epoch's checkpoint (an exception there stops training with the checkpoint in place).
    """
    from torch.func import functional_call
    from tqdm.auto import tqdm

    from landscape.core.checkpoint import atomic_torch_save
    from landscape.training.loop import lr_at

    settings.check()
    net = copy.deepcopy(model)
    names = [n for n, _ in net.named_parameters()]
    bend = {k: nn.Parameter(0.5 * a[k].detach() + 0.5 * b[k].detach()) for k in names}
    opt = torch.optim.SGD(list(bend.values()), lr=settings.lr, momentum=settings.momentum,
                          weight_decay=settings.weight_decay)
    gen = torch.Generator().manual_seed(int(settings.seed))
    n = len(targets)
    config = {**asdict(settings), "n_train": n, **dict(identity or {})}
    history: list[float] = []
    start, rng = 0, None
    if checkpoint is not None and os.path.exists(checkpoint) and resume:
        state = _load(checkpoint)
        saved = json.loads(state["settings"])
        diff = [f"{k}: checkpoint {saved.get(k)!r} vs now {v!r}" for k, v in config.items() if saved.get(k) != v]
        if diff:
            raise LandscapeError(f"cannot resume {checkpoint}: it was trained otherwise ({'; '.join(diff)}); pass "
                                 "overwrite=True to train the curve afresh")
        with torch.no_grad():
            for k in names:
                bend[k].copy_(state["bend"][k])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        rng, start, history = state["rng"], int(state["epoch"]), list(json.loads(state["history"]))
    steps_per_epoch = math.ceil(n / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    device = inputs.device
    net.train()  # BN uses batch statistics while the curve trains
    bar = tqdm(total=total, initial=start * steps_per_epoch, desc=f"curve ({settings.kind})", unit="step",
               disable=not progress or None, leave=False)
    # Dropout draws from the global RNG: a forked, seeded one (saved in the checkpoint) keeps the caller's intact.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(settings.seed))
        if rng is not None:
            torch.set_rng_state(rng)
        try:
            for epoch in range(start, settings.epochs):
                order = torch.randperm(n, generator=gen)
                ts = torch.rand(steps_per_epoch, generator=gen, dtype=torch.float64)
                total_loss = 0.0
                for s in range(steps_per_epoch):
                    idx = order[s * settings.batch_size:(s + 1) * settings.batch_size].to(device)
                    for group in opt.param_groups:
                        group["lr"] = lr_at(epoch * steps_per_epoch + s, total_steps=total, lr=settings.lr,
                                            schedule="cosine")
                    opt.zero_grad(set_to_none=True)
                    theta = point(settings.kind, a, bend, b, float(ts[s]))
                    loss = loss_fn(functional_call(net, theta, (inputs[idx],)), targets[idx]).mean()
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        raise LandscapeError(f"curve training diverged at epoch {epoch + 1} (loss {value}); lower "
                                             "curve_lr")
                    loss.backward()
                    opt.step()
                    total_loss += value * len(idx)
                    bar.update(1)
                history.append(total_loss / n)
                if checkpoint is not None:
                    atomic_torch_save({"format": FORMAT, "bend": {k: v.detach().cpu() for k, v in bend.items()},
                                       "optimizer": opt.state_dict(), "generator": gen.get_state(),
                                       "rng": torch.get_rng_state(), "epoch": epoch + 1,
                                       "history": json.dumps(history), "settings": json.dumps(config)}, checkpoint)
                if callback is not None:
                    callback(epoch + 1, history[-1])
        finally:
            bar.close()
    return {k: v.detach() for k, v in bend.items()}, history
