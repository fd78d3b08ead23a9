"""Attention weight vs feature importance: do channels that attention weights up matter more to the loss?

For every attention module (an :class:`~landscape.models.attention.AttentionModule`, or any module with an
:class:`~landscape.models.attention.AttentionWeights` child) and every channel ``c`` of its output:

- ``mean_weight[c]``: the channel attention weight averaged over the samples (forward hook on ``channel_weights``);
- ``importance[c]``, either by **ablation** — mean loss with channel ``c`` of the module's output set to zero, minus
  the unablated mean loss (signed) — or by first-order **Taylor** — the mean over samples of
  ``|Σ_hw a_chw · ∂ℓ/∂a_chw|`` at the module's output ``a`` (Molchanov et al. 2017; the first-order estimate of the
  per-sample loss change when the channel is removed);
- Spearman's ρ and Kendall's τ-b between the two, with two-sided p-values (SciPy), per module and pooled over all
  channels of all modules: ``pooled`` on the raw values, and ``pooled_within`` on each module's values replaced by
  their normalised ranks within the module. Modules' importances differ in scale, so the raw pooled correlation can
  be low even when every module agrees; ``pooled_within`` asks only whether, module by module, weight order
  follows importance order.

The model is evaluated in eval mode inside one :class:`~landscape.core.state.ModelState` block and left exactly as
found (hooks removed, also on error; per-module train/eval flags restored; nothing is written to parameters, buffers
or ``.grad``). The result type, its file and the one-call API are in ``result.py``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from landscape.core._eval import on_model_device as _setup
from landscape.core._eval import readonly as _ro
from landscape.core.evaluate import evaluate
from landscape.core.state import ModelState
from landscape.errors import LandscapeError
from landscape.models.attention import AttentionModule, AttentionWeights

Importance = Literal["ablation", "taylor"]


@dataclass(frozen=True)
class Correlation:
    """Rank correlations of weights and importances; NaN where undefined (fewer than 2 or constant values)."""

    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float


@dataclass(frozen=True)
class ModuleAttention:
    """One attention module: per-channel mean weight and importance, and their rank correlation."""

    name: str
    kind: str
    mean_weight: np.ndarray  # (C,)
    importance: np.ndarray  # (C,)
    correlation: Correlation


@dataclass(frozen=True)
class AttentionResult:
    """Per-module results, pooled correlation over all channels, and diagnostics."""

    modules: tuple[ModuleAttention, ...]
    pooled: Correlation
    pooled_within: Correlation
    importance: str
    base_loss: float  # mean cross-entropy of the unablated model on the samples
    n_samples: int
    n_forward: int  # sample-forwards, counting each ablated copy
    seconds: float
    seed: int


def _unit_ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks scaled to [0, 1] (0.5 for a single channel), so modules of any size pool on one scale."""
    from scipy.stats import rankdata

    a = np.asarray(a, dtype=np.float64)
    return (rankdata(a) - 1) / (len(a) - 1) if len(a) > 1 else np.full(len(a), 0.5)


def rank_correlation(x: np.ndarray, y: np.ndarray) -> Correlation:
    """Spearman and Kendall (τ-b) correlations with two-sided p-values; NaN when undefined."""
    from scipy import stats

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return Correlation(float("nan"), float("nan"), float("nan"), float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho, rho_p = stats.spearmanr(x, y)
        tau, tau_p = stats.kendalltau(x, y)
    return Correlation(float(rho), float(rho_p), float(tau), float(tau_p))


def _weights_child(module: nn.Module) -> AttentionWeights | None:
    cw = getattr(module, "channel_weights", None)
    if isinstance(cw, AttentionWeights):
        return cw
    found = [c for c in module.children() if isinstance(c, AttentionWeights) and getattr(c, "kind", "") != "spatial"]
    return found[0] if found else None


def find_attention_modules(model: nn.Module) -> list[tuple[str, nn.Module, AttentionWeights]]:
    """``(qualified name, module, its channel-weights child)`` for every attention module, in forward order."""
    out = []
    for name, module in model.named_modules():
        child = _weights_child(module)
        if isinstance(module, AttentionModule) or child is not None:
            if child is None:
                raise LandscapeError(f"attention module '{name}' has no AttentionWeights child 'channel_weights'")
            out.append((name or "<model>", module, child))
    return out


def _models_with_attention() -> str:
    try:
        from landscape.models import list_models

        names = [m for m in list_models() if m.startswith(("se_", "cbam_"))]
    except ImportError:  # pragma: no cover - the registry is part of the package
        names = []
    return ", ".join(names) if names else "se_resnet<d>, se_fmmnet<d>, cbam_resnet<d>, cbam_fmmnet<d>"


def attention_importance(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
                         importance: Importance = "ablation", batch_size: int = 128, seed: int = 0,
                         progress: bool | None = None) -> AttentionResult:
    """Mean channel attention weights, channel importances and their rank correlations (see the module docstring).

    ``seed`` is recorded only (the analysis draws nothing at random; the CLI uses it to pick the samples).
    """
    t0 = time.perf_counter()
    if importance not in ("ablation", "taylor"):
        raise LandscapeError(f"importance={importance!r}; use 'ablation' or 'taylor'")
    found = find_attention_modules(model)
    if not found:
        raise LandscapeError(f"{type(model).__name__} has no attention modules (SqueezeExcitation/CBAM); "
                             f"models that have them: {_models_with_attention()}")
    x, y = _setup(model, inputs, targets, batch_size)
    # Eval mode for the block, every module's flag restored after; ablation hooks the forward pass, so its block
    # also snapshots and restores the values (the hooks never write to them: a guard, not a repair).
    with ModelState(model, mode="eval", values=importance == "ablation"):
        weights, grads_or_none, base_loss, n_fwd = _weights_and_taylor(model, found, x, y, batch_size,
                                                                       taylor=importance == "taylor")
        if not np.isfinite(base_loss):  # every importance is measured against it
            raise LandscapeError(f"the loss on the samples is not finite ({base_loss:g}): the model's outputs "
                                 "overflow or the weights are not finite; no importance would mean anything")
        if importance == "taylor":
            assert grads_or_none is not None, "taylor=True returns the scores"
            scores = grads_or_none
        else:
            scores, extra = _ablation(model, found, x, y, batch_size, base_loss, progress)
            n_fwd += extra
    mods = []
    for (name, module, _), w, s in zip(found, weights, scores):
        mods.append(ModuleAttention(name=name, kind=type(module).__name__, mean_weight=_ro(w), importance=_ro(s),
                                    correlation=rank_correlation(w, s)))
    pooled = rank_correlation(np.concatenate(weights), np.concatenate(scores))
    within = rank_correlation(np.concatenate([_unit_ranks(w) for w in weights]),
                              np.concatenate([_unit_ranks(s) for s in scores]))
    return AttentionResult(modules=tuple(mods), pooled=pooled, pooled_within=within, importance=importance,
                           base_loss=base_loss,
                           n_samples=x.shape[0], n_forward=n_fwd, seconds=time.perf_counter() - t0, seed=seed)


def _cross_entropy64(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy of float64 logits (every loss of this analysis is taken in float64)."""
    return F.cross_entropy(logits.double(), targets, reduction="none")


def _weights_and_taylor(model: nn.Module, found: list, x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                        taylor: bool) -> tuple[list[np.ndarray], list[np.ndarray] | None, float, int]:
    """One pass: summed channel weights, the base loss and (optionally) the Taylor scores, all in float64."""
    n = x.shape[0]
    w_sum: list[torch.Tensor | None] = [None] * len(found)
    t_sum: list[torch.Tensor | None] = [None] * len(found)
    outputs: list[torch.Tensor | None] = [None] * len(found)
    handles = []

    def weight_hook(i: int):
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> None:
            s = out.detach().double().flatten(2).mean(dim=2).sum(dim=0)  # (C,): mean over space (1×1 for channels)
            prev = w_sum[i]
            w_sum[i] = s if prev is None else prev + s
        return hook

    def output_hook(i: int):
        def hook(_m: nn.Module, _inp: object, out: torch.Tensor) -> torch.Tensor:
            outputs[i] = out
            return out.clone()  # an in-place op downstream (``out += identity``) must not alter what we hold
        return hook

    try:
        for i, (_, module, child) in enumerate(found):
            handles.append(child.register_forward_hook(weight_hook(i)))
            if taylor:
                handles.append(module.register_forward_hook(output_hook(i)))
        if taylor:
            base_loss = _taylor_pass(model, x, y, batch_size, outputs, t_sum)
        else:  # a plain loss evaluation: the one batched evaluator (the hooks read the weights on the way)
            base_loss = evaluate(model, x, y, batch_size=batch_size, loss_fn=_cross_entropy64).loss
    finally:
        for h in handles:
            h.remove()
    if any(w is None for w in w_sum):
        missing = [found[i][0] for i, w in enumerate(w_sum) if w is None]
        raise LandscapeError(f"attention module(s) {', '.join(missing)} never ran in the forward pass")
    weights = [(cast(torch.Tensor, w) / n).cpu().numpy() for w in w_sum]  # none is None (checked above)
    # every batch adds to every slot when taylor
    taylor_scores = [(cast(torch.Tensor, t) / n).cpu().numpy() for t in t_sum] if taylor else None
    return weights, taylor_scores, base_loss, n


def _taylor_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                 outputs: list[torch.Tensor | None], t_sum: list[torch.Tensor | None]) -> float:
    """Forward and backward over the batches, adding ``Σ_samples |Σ_hw a·∂ℓ/∂a|`` per channel into ``t_sum``
    (the output hooks fill ``outputs`` on each forward); returns the mean loss."""
    n = x.shape[0]
    loss_sum = 0.0
    for start in range(0, n, batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        with torch.enable_grad():
            # inputs require grad so the graph exists even when no parameter does
            logits = model(xb.detach().requires_grad_(True))
            per_sample = _cross_entropy64(logits, yb)
            loss_sum += float(per_sample.detach().sum())
            # the output hooks filled every slot in this forward pass
            acts = cast(list[torch.Tensor], list(outputs))
            grads = torch.autograd.grad(per_sample.sum(), acts)
        for i, (a, g) in enumerate(zip(acts, grads)):
            t = (a.detach().double() * g.double()).flatten(2).sum(dim=2).abs().sum(dim=0)
            prev = t_sum[i]
            t_sum[i] = t if prev is None else prev + t
        outputs[:] = [None] * len(outputs)
    return loss_sum / n


def _ablation(model: nn.Module, found: list, x: torch.Tensor, y: torch.Tensor, batch_size: int, base_loss: float,
              progress: bool | None) -> tuple[list[np.ndarray], int]:
    """Loss increase when each channel of each module's output is zeroed, batched over channels.

    The batch is replicated once per channel of a chunk; a forward hook zeroes channel ``c_k`` in replica ``k``.
    """
    n = x.shape[0]
    channels = _channel_counts(model, found, x[:1])
    total_ch = sum(channels)
    scores, n_fwd = [], 0
    with tqdm(total=total_ch, desc="ablation", unit="channel",
              disable=None if progress is None else not progress) as bar:
        for (_, module, _), c_count in zip(found, channels):
            sums = torch.zeros(c_count, dtype=torch.float64)
            for start in range(0, n, batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                b = xb.shape[0]
                per_chunk = max(1, batch_size // b)  # channels per forward, keeping it near batch_size samples
                for c0 in range(0, c_count, per_chunk):
                    chans = torch.arange(c0, min(c0 + per_chunk, c_count), device=x.device)
                    k = chans.numel()
                    mask = torch.ones(k, c_count, device=x.device, dtype=x.dtype)
                    mask[torch.arange(k, device=x.device), chans] = 0
                    mask = mask.repeat_interleave(b, dim=0)  # row r*b + i: replica r zeroes channel chans[r]

                    def zero_hook(_m: nn.Module, _inp: object, out: torch.Tensor, mask=mask) -> torch.Tensor:
                        return out * mask.view(*mask.shape, *([1] * (out.ndim - 2))).to(out.dtype)

                    handle = module.register_forward_hook(zero_hook)
                    try:
                        with torch.no_grad():
                            logits = model(xb.repeat(k, *([1] * (xb.ndim - 1))))
                    finally:
                        handle.remove()
                    ce = _cross_entropy64(logits, yb.repeat(k)).view(k, b).sum(dim=1)
                    sums[c0:c0 + k] += ce.cpu()
                    n_fwd += k * b
            scores.append((sums / n - base_loss).numpy())
            bar.update(c_count)
    return scores, n_fwd


def _channel_counts(model: nn.Module, found: list, x1: torch.Tensor) -> list[int]:
    """Each module's output channel count, checked against its channel-weight count (one probe forward)."""
    seen: dict[tuple[int, str], int] = {}
    handles = []
    for i, (_, module, child) in enumerate(found):
        handles.append(child.register_forward_hook(lambda _m, _i, o, i=i: seen.__setitem__((i, "w"), o.shape[1])))
        handles.append(module.register_forward_hook(lambda _m, _i, o, i=i: seen.__setitem__((i, "a"), o.shape[1])))
    try:
        with torch.no_grad():
            model(x1)
    finally:
        for h in handles:
            h.remove()
    counts = []
    for i, (name, _, _) in enumerate(found):
        if seen[(i, "w")] != seen[(i, "a")]:
            raise LandscapeError(f"attention module '{name}' weights {seen[(i, 'w')]} channels but outputs "
                                 f"{seen[(i, 'a')]}; channel importance needs one weight per output channel")
        counts.append(int(seen[(i, "a")]))
    return counts

