"""Gradient predictiveness and effective β-smoothness (Santurkar et al. 2018, §3.1).

At weights ``W`` with minibatch gradient ``g = ∇L(W; B)`` and step sizes ``η ∈ S`` we measure, on the same
minibatch: the loss ``L(W − ηg; B)``, the gradient change ``‖∇L(W − ηg; B) − g‖₂`` and the effective β-smoothness
``max_η ‖∇L(W − ηg; B) − g‖₂ / ‖ηg‖₂``. ``PredictivenessProbe`` does this every ``every`` training steps (a
training callback, appending to an HDF5 file); ``probe_checkpoint`` does it at one checkpoint over N batches.
``landscape.predictiveness(model, data, …)`` (this module, made callable) is
``landscape.analyses.predictiveness.result.run``: it returns a frozen ``Predictiveness``.

Probing never writes to the model: the shifted weights go in through ``torch.func.functional_call`` with
cloned buffers, and gradients come from ``torch.autograd.grad`` (nothing accumulates into ``.grad``). Per-module
modes (``ModelState``) and the RNG state are restored, also on error, so a probed training run is bit-identical
to an unprobed one on CPU.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from landscape.core._eval import batchnorm_guard
from landscape.core.budget import warn_if_long
from landscape.core.state import ModelState
from landscape.errors import LandscapeError

BNMode = Literal["train", "eval"]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Santurkar et al.'s grid is not verified from their text; 0.05..0.4 is the range commonly quoted (reference §4).
# It spans 1x-8x the peak learning rate of ``landscape train`` (0.05) and 0.5x-4x the usual CIFAR rate 0.1: from
# the step SGD actually takes to steps long enough to expose non-smoothness. Pass ``etas`` to choose another.
DEFAULT_ETAS: tuple[float, ...] = tuple(float(v) for v in np.linspace(0.05, 0.4, 8))
DEFAULT_ETA_SPEC = "0.05:0.4:8"


def parse_etas(spec: str, *, name: str = "--eta") -> tuple[float, ...]:
    """``"MIN:MAX:NUM"`` -> NUM evenly spaced step sizes (``landscape.core.grid`` rules); ``"0.1,0.2"`` -> that list.

    Every η must be positive: β divides by ``‖ηg‖``.
    """
    from landscape.core.grid import parse_axis

    text = str(spec).strip()
    if ":" in text:
        return check_etas(parse_axis(text, name=name).coords, name=name)
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        what = f"{name} '{spec}'" if name.startswith("-") else f"{name}='{spec}'"  # a flag, or an argument
        raise LandscapeError(f"{what} is not MIN:MAX:NUM (e.g. {DEFAULT_ETA_SPEC}) "
                             "or a comma-separated list of step sizes") from None
    return check_etas(values, name=name)


# Each η costs a forward and a backward pass per batch; a curve needs tens. Steps beyond 1e30 overflow the weights.
MAX_ETAS = 10_000
MAX_ETA = 1e30


def check_etas(etas: Iterable[float], *, name: str = "etas") -> tuple[float, ...]:
    """Validate a step-size grid: non-empty, finite, positive (β divides by η), at most ``MAX_ETAS`` of them."""
    try:
        values = tuple(float(v) for v in etas)
    except (TypeError, ValueError, OverflowError):
        raise LandscapeError(f"{name}: step sizes must be numbers, e.g. {DEFAULT_ETA_SPEC}") from None
    if not values:
        raise LandscapeError(f"{name}: the step-size grid is empty; give at least one η, e.g. {DEFAULT_ETA_SPEC}")
    if len(values) > MAX_ETAS:
        raise LandscapeError(f"{name}: {len(values):,} step sizes is too many (each costs a forward and a backward "
                             f"pass per batch); use at most {MAX_ETAS:,}, e.g. {DEFAULT_ETA_SPEC}")
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise LandscapeError(f"{name}: step size η={bad[0]:g} is not a finite number (e.g. {DEFAULT_ETA_SPEC})")
    bad = [v for v in values if not v > 0]
    if bad:
        raise LandscapeError(f"{name}: step size η={bad[0]:g} is not positive; every η must be > 0 "
                             f"(e.g. {DEFAULT_ETA_SPEC})")
    big = [v for v in values if v > MAX_ETA]
    if big:
        raise LandscapeError(f"{name}: step size η={big[0]:g} is beyond {MAX_ETA:g} and overflows the weights; "
                             "choose smaller steps")
    return values


def _check_bn_mode(bn_mode: str) -> None:
    if bn_mode not in ("train", "eval"):
        raise LandscapeError(f"bn_mode='{bn_mode}'; use 'train' (batch statistics) or 'eval' (running statistics)")


@dataclass(frozen=True)
class ProbeRow:
    """One probe: per-η loss and gradient change, β, and the loss and gradient norm at ``W``."""

    loss: np.ndarray
    grad_diff: np.ndarray
    beta: float
    train_loss: float
    grad_norm: float
    n_forward: int
    n_backward: int


class _RngGuard:
    """Saves the CPU (and CUDA) RNG state; every probe forward starts from it, and ``restore`` puts it back."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() \
            else None

    def for_forward(self) -> None:
        # Same dropout masks for every η (and the recomputed g), so only the weights differ between evaluations.
        if self.seed is not None:
            torch.manual_seed(self.seed)
        else:
            self.restore()

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


def _sq_norm(tensors: Iterable[torch.Tensor]) -> float:
    return float(sum(float(t.double().square().sum()) for t in tensors))


def probe_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    etas: Sequence[float] = DEFAULT_ETAS,
    bn_mode: BNMode = "train",
    loss_fn: LossFn | None = None,
    grad: Sequence[torch.Tensor | None] | None = None,
    loss: float | None = None,
    seed: int | None = None,
) -> ProbeRow:
    """Probe one minibatch at the model's current weights; the model is left exactly as found.

    ``grad``: the gradient ``g`` at ``W`` (one tensor or None per trainable parameter, in ``named_parameters``
    order), e.g. the ``.grad`` of a training step; when omitted it is computed here in ``bn_mode``, and ``loss``
    (the loss at ``W``) with it. ``seed``: the RNG seed of every probe forward (dropout); None reuses the
    current RNG state for each. ``loss_fn(outputs, targets)`` defaults to mean cross-entropy.
    """
    etas = check_etas(etas)
    _check_bn_mode(bn_mode)
    loss_fn = loss_fn or F.cross_entropy
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise LandscapeError("the model has no trainable parameters (requires_grad=False everywhere); nothing to probe")
    names = [n for n, _ in named]
    params = [p.detach() for _, p in named]
    if grad is not None and len(grad) != len(params):
        raise ValueError(f"grad has {len(grad)} tensors for {len(params)} trainable parameters")
    buffers = dict(model.named_buffers())
    rng = _RngGuard(seed)
    counts = {"forward": 0, "backward": 0}

    def evaluate(weights: list[torch.Tensor], need_grad: bool) -> tuple[float, list[torch.Tensor]]:
        rng.for_forward()
        # Cloned buffers absorb the running-statistics update of a train-mode BN forward.
        state: dict[str, torch.Tensor] = {n: b.clone() for n, b in buffers.items()} if bn_mode == "train" else {}
        state.update(zip(names, weights))
        with torch.enable_grad():
            value = loss_fn(torch.func.functional_call(model, state, (inputs,)), targets)
            counts["forward"] += 1
            if not need_grad:
                return float(value.detach().double()), []
            grads = torch.autograd.grad(value, weights, allow_unused=True)
            counts["backward"] += 1
        return float(value.detach().double()), [
            torch.zeros_like(w) if gr is None else gr.detach() for w, gr in zip(weights, grads)
        ]

    # values=False: probing never writes to parameters or buffers (functional_call, cloned buffers), so only the
    # per-module modes need restoring, and a training probe copies no weights.
    try:
        with ModelState(model, mode=bn_mode, values=False):
            if grad is None:
                loss, g = evaluate([p.clone().requires_grad_(True) for p in params], True)
            else:
                g = [torch.zeros_like(p) if gi is None else gi.detach() for p, gi in zip(params, grad)]
                if loss is None:
                    loss, _ = evaluate(list(params), False)
            g_norm = math.sqrt(_sq_norm(g))
            losses, diffs = [], []
            for eta in etas:
                shifted = [(p - eta * gi).requires_grad_(True) for p, gi in zip(params, g)]
                value, g_eta = evaluate(shifted, True)
                losses.append(value)
                # Difference in float64: for float32 models the two gradients can agree to many digits.
                diffs.append(math.sqrt(sum(float((a.double() - b.double()).square().sum())
                                           for a, b in zip(g_eta, g))))
    finally:
        rng.restore()
    etas_arr = np.asarray(etas, dtype=np.float64)
    diff_arr = np.asarray(diffs, dtype=np.float64)
    beta = float(np.max(diff_arr / (etas_arr * g_norm))) if g_norm > 0 else float("nan")
    return ProbeRow(np.asarray(losses, dtype=np.float64), diff_arr, beta, float(loss), g_norm,
                    counts["forward"], counts["backward"])


@dataclass(frozen=True)
class PredictivenessResult:
    """Predictiveness at one checkpoint: one row per batch (arrays (N, E) or (N,)) and diagnostics."""

    eta: np.ndarray
    loss: np.ndarray
    grad_diff: np.ndarray
    beta: np.ndarray
    train_loss: np.ndarray
    grad_norm: np.ndarray
    batch_sizes: np.ndarray
    bn_mode: str
    seed: int
    n_forward: int
    n_backward: int
    seconds: float

    def mean(self, name: str) -> float | np.ndarray:
        """Batch-size-weighted mean over batches of ``loss``, ``grad_diff``, ``beta``, ``train_loss``…"""
        values = np.asarray(getattr(self, name), dtype=np.float64)
        w = self.batch_sizes / self.batch_sizes.sum()
        out = np.tensordot(w, values, axes=(0, 0))
        return float(out) if out.ndim == 0 else out


def sample_batches(
    inputs: torch.Tensor, targets: torch.Tensor, *, n_batches: int, batch_size: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n_batches`` disjoint minibatches of ``batch_size`` drawn by a seeded permutation (private generator)."""
    if n_batches < 1 or batch_size < 1:
        raise LandscapeError(f"n_batches={n_batches} and batch_size={batch_size} must both be at least 1")
    need = n_batches * batch_size
    if need > len(targets):
        raise LandscapeError(f"{n_batches} batches of {batch_size} need {need} samples but the data has "
                             f"{len(targets)}; lower n_batches= or batch_size=")
    perm = torch.randperm(len(targets), generator=torch.Generator().manual_seed(seed))
    return [(inputs[idx], targets[idx]) for idx in perm[:need].split(batch_size)]


def probe_checkpoint(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    etas: Sequence[float] = DEFAULT_ETAS,
    bn_mode: BNMode = "train",
    loss_fn: LossFn | None = None,
    seed: int = 0,
    progress: bool | None = None,
) -> PredictivenessResult:
    """Probe the model at its current weights on each batch (moved to the model's device); model left as found.

    Batch ``i`` is probed with RNG seed ``seed + i`` (the dropout masks, if any), so results are reproducible.
    """
    etas = check_etas(etas)
    _check_bn_mode(bn_mode)
    device = next(model.parameters()).device
    batch_list = list(batches)
    if not batch_list:
        raise LandscapeError("no batches to probe; give at least one (n_batches=1 or more)")
    t0 = time.perf_counter()
    rows, sizes = [], []
    bar = tqdm(batch_list, desc="predictiveness", unit="batch", leave=False,
               disable=None if progress is None else not progress)
    for i, (x, y) in enumerate(bar):
        with batchnorm_guard(len(y)):
            row = probe_batch(model, x.to(device), y.to(device), etas=etas, bn_mode=bn_mode, loss_fn=loss_fn,
                              seed=seed + i)
        if not (math.isfinite(row.train_loss) and math.isfinite(row.grad_norm)):
            # Every η is measured from W: without a finite loss and gradient there, no row would mean anything.
            raise LandscapeError(f"the loss ({row.train_loss:g}) or its gradient norm ({row.grad_norm:g}) at the "
                                 f"checkpoint is not finite on batch {i}: the weights or the data are not finite")
        if i == 0:
            warn_if_long((time.perf_counter() - t0) * len(batch_list),
                         what=f"probing {len(batch_list)} batches at {len(etas)} step sizes")
        rows.append(row)
        sizes.append(len(y))
    return PredictivenessResult(
        eta=np.asarray(etas, dtype=np.float64),
        loss=np.stack([r.loss for r in rows]),
        grad_diff=np.stack([r.grad_diff for r in rows]),
        beta=np.array([r.beta for r in rows]),
        train_loss=np.array([r.train_loss for r in rows]),
        grad_norm=np.array([r.grad_norm for r in rows]),
        batch_sizes=np.array(sizes, dtype=np.int64),
        bn_mode=bn_mode,
        seed=seed,
        n_forward=sum(r.n_forward for r in rows),
        n_backward=sum(r.n_backward for r in rows),
        seconds=time.perf_counter() - t0,
    )


def save_result(result: PredictivenessResult, path: str | os.PathLike[str], *,
                attrs: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint result (rows = batches, ``step`` = batch index) atomically."""
    from landscape.analyses.predictiveness import schema as store

    settings = {"source": "checkpoint", "x_axis": "batch", "bn_mode": result.bn_mode, "seed": result.seed,
                "batch_sizes": result.batch_sizes, "n_forward": result.n_forward,
                "n_backward": result.n_backward, "seconds": result.seconds, **(attrs or {})}
    store.write(path, eta=result.eta, step=np.arange(len(result.beta)), loss=result.loss,
                grad_diff=result.grad_diff, beta=result.beta, train_loss=result.train_loss,
                grad_norm=result.grad_norm, attrs=settings)
    return Path(path)


def _probe_write(path: Path, write: Callable[[], Any]) -> Any:
    """Run one write of the probe file; a failed write (full disk, file-size limit, I/O error) is one line."""
    try:
        return write()
    except OSError as exc:
        raise LandscapeError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another "
                             "output folder, then resume") from None


class PredictivenessProbe:
    """Training callback: probe every ``every`` steps on that step's minibatch and append a row to ``path``.

    ``bn_mode="train"`` uses the step's own gradient (``p.grad``) as ``g``; ``"eval"`` (or
    ``recompute_grad=True``) recomputes ``g`` at ``W`` in the probe's mode, so ``η → 0`` gives zero change
    (use it for models with dropout too: the probe's masks differ from the step's).
    On a resumed run (``resumed=True``) rows at or past the restart step are dropped and the file continues;
    the η grid, BN mode and ``every`` must match the file's. ``attrs``: extra settings stored in the file
    (model name, dataset, lr…). A new file also records the provenance record of the model as training starts
    (its weights hash, model, dataset, seed, device, threads, versions; ``start_step``).
    """

    def __init__(self, path: str | os.PathLike[str], *, every: int, etas: Sequence[float] = DEFAULT_ETAS,
                 bn_mode: BNMode = "train", recompute_grad: bool | None = None,
                 attrs: Mapping[str, Any] | None = None) -> None:
        if every < 1:
            raise LandscapeError(f"probe every={every} steps must be at least 1")
        _check_bn_mode(bn_mode)
        self.path = Path(path)
        self.every = int(every)
        self.etas = check_etas(etas)
        self.bn_mode = bn_mode
        self.recompute_grad = bn_mode == "eval" if recompute_grad is None else bool(recompute_grad)
        self.attrs = dict(attrs or {})
        self.n_probes = 0
        self.seconds = 0.0
        self._ready = False
        self._rows = 0

    def _settings(self) -> dict[str, Any]:
        return {**self.attrs, "source": "training", "x_axis": "step", "every": self.every, "bn_mode": self.bn_mode,
                "grad_source": "recomputed" if self.recompute_grad else "step"}

    def _provenance(self, model: nn.Module) -> dict[str, Any]:
        from landscape.core.provenance import provenance

        known = self.attrs
        return provenance(model, dataset=known.get("dataset"), data_dir=known.get("data_dir"), split="train",
                          n_samples=known.get("n_samples"), subset=known.get("subset"), seed=known.get("seed")).attrs()

    def on_train_begin(self, *, model: nn.Module, start_step: int, resumed: bool) -> None:
        from landscape.analyses.predictiveness import schema as store

        if resumed and self.path.exists():
            eta, attrs = store.read_settings(self.path)
            mismatch = [f"{k}: file {attrs.get(k)!r} vs now {v!r}" for k, v in
                        (("bn_mode", self.bn_mode), ("every", self.every)) if attrs.get(k) != v]
            if not np.array_equal(eta, np.asarray(self.etas)):
                mismatch.append(f"eta: file {eta.tolist()} vs now {list(self.etas)}")
            if mismatch:
                raise LandscapeError(f"cannot resume probes in {self.path} with other settings "
                                     f"({'; '.join(mismatch)}); use the run's settings or delete the file")
            self._rows = _probe_write(self.path, lambda: store.truncate(self.path, before_step=start_step))
        else:
            # A new file records the provenance of the weights training starts from (a resumed file keeps its own).
            attrs = {**self._provenance(model), **self._settings(), "start_step": start_step}
            _probe_write(self.path, lambda: store.create(self.path, eta=self.etas, attrs=attrs))
            self._rows = 0
        self._ready = True

    def on_step(self, ctx: Any) -> None:
        if ctx.step % self.every:
            return
        from landscape.analyses.predictiveness import schema as store

        if not self._ready:
            self.on_train_begin(model=ctx.model, start_step=ctx.step, resumed=False)
        t0 = time.perf_counter()
        grad = None
        if not self.recompute_grad:
            grad = [p.grad for p in ctx.model.parameters() if p.requires_grad]
        row = probe_batch(ctx.model, ctx.inputs, ctx.targets, etas=self.etas, bn_mode=self.bn_mode,
                          loss_fn=ctx.loss_fn, grad=grad, loss=None if self.recompute_grad else ctx.loss)
        # One row per probe, written at once: an interrupted run keeps every finished probe.
        n_rows = _probe_write(self.path, lambda: store.append(
            self.path, step=[ctx.step], loss=row.loss[None], grad_diff=row.grad_diff[None], beta=[row.beta],
            train_loss=[row.train_loss], grad_norm=[row.grad_norm]))
        # Exactly one more row than before: another writer (or a lost write) would leave duplicated or missing rows.
        if n_rows != self._rows + 1:
            raise LandscapeError(f"{self.path} holds {n_rows} probe rows after writing row {self._rows + 1}; "
                                 "another process wrote to it: delete the file and train again")
        self._rows = n_rows
        self.n_probes += 1
        self.seconds += time.perf_counter() - t0

    def on_epoch_end(self, *, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Rows are already on disk after each probe; nothing to flush."""

    def on_train_end(self) -> None:
        """Nothing to close: the file is opened only while a row is written."""
