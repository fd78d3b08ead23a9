"""Training (SGD, full-batch gradient descent or Adam) with per-epoch metrics, trajectory checkpoints, exact
resume and step callbacks.

A run folder holds ``metrics.csv``, ``epoch_0000.pt`` (the initial weights), ``epoch_XXXX.pt`` every
``save_every`` epochs and at the last epoch, ``final.pt``, and ``last.pt`` (optimizer, RNG and callback state for
``resume``). On CPU a resumed run ends bit-identical to an uninterrupted one.

Callbacks are objects with any of ``on_train_begin(*, model, start_step, resumed)``, ``on_step(ctx)`` (a
:class:`StepContext`), ``on_epoch_end(*, epoch, metrics)`` and ``on_train_end()``. One with a ``state_key``
attribute and ``state_dict()``/``load_state_dict(state)`` methods has its state saved in ``last.pt`` at each
epoch's end and given back before ``on_train_begin`` of a resumed run (e.g. a tracker's warm-start vector).

Under torchrun (``WORLD_SIZE`` > 1) the model is wrapped in ``DistributedDataParallel`` (gloo on CPU, NCCL on
``cuda:LOCAL_RANK``). ``batch_size`` stays the global batch: every rank draws the same seeded order, and rank ``r``
takes its contiguous share of each batch (:func:`landscape.core.distributed.shard_bounds`; shares may differ by
one sample). Each share's loss *sum* is scaled by ``world size / batch``, so DDP's average of the ranks' gradients
is the mean gradient of the whole batch, as in one process, for any batch size and the epoch's short last batch.
Rank 0 alone holds the folder's lock, reads ``last.pt`` (and sends the optimizer and RNG state to the others; DDP
sends its weights), evaluates, writes every file and runs the callbacks, on the unwrapped model and the whole batch;
the others wait at the end of each epoch. Checkpoints are the unwrapped model's: the same files as one process.
BatchNorm normalises each rank's share with its own statistics unless ``sync_bn`` (``torch.nn.SyncBatchNorm``,
CUDA only); running statistics in checkpoints are rank 0's.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import inspect
import io
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from landscape.core import distributed
from landscape.core.checkpoint import (
    architecture_difference,
    checkpoint_meta,
    read_checkpoint_file,
    save_checkpoint,
)
from landscape.core.data import augment as augment_batch
from landscape.core.device import resolve_device
from landscape.core.evaluate import evaluate as evaluate_batches
from landscape.core.fs import atomic_path, ensure_writable_dir, output_lock
from landscape.core.state import ModelState
from landscape.errors import LandscapeError
from landscape.training.losses import batch_mean, check_loss, per_sample

SCHEDULES = ("cosine", "step", "constant")
OPTIMIZERS = ("sgd", "gd", "adam")
# Settings that runs written before they existed used: resuming such a run compares against these.
_OLD_DEFAULTS: dict[str, Any] = {"optimizer": "sgd", "loss": "cross_entropy", "sync_bn": False}
_METRIC_FIELDS = ["epoch", "step", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds"]


@dataclass(frozen=True)
class StepContext:
    """What a callback sees at each step: after ``backward()`` (``p.grad`` = ∇L(W; B)), before the update.

    ``loss_fn`` is the batch-mean loss the step differentiates; ``lr`` the step size of this step's update;
    ``optimizer`` the torch optimizer (its state as before this update; read it, never change it).
    """

    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    loss: float
    step: int
    epoch: int
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    lr: float = math.nan
    optimizer: torch.optim.Optimizer | None = None


@dataclass(frozen=True)
class TrainResult:
    """Where the run is and how it went."""

    out_dir: Path
    final_checkpoint: Path
    metrics: list[dict[str, float]] = field(repr=False)
    steps: int
    seconds: float
    resumed_from_epoch: int


def lr_at(step: int, *, total_steps: int, lr: float, schedule: str) -> float:
    """Learning rate at a global step: cosine to 0, step (×0.1 at 50% and 75%), or constant."""
    frac = step / max(total_steps, 1)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * frac))
    if schedule == "step":
        return lr * (0.1 ** ((frac >= 0.5) + (frac >= 0.75)))
    return lr


def evaluate(
    model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], *, batch_size: int = 512,
    device: torch.device | str = "cpu", loss: str = "cross_entropy",
) -> tuple[float, float]:
    """Mean loss (``loss``: cross-entropy or mse) and accuracy over ``data`` in eval mode, on ``device`` (where the
    model must be).

    The one batched evaluator (``landscape.core.evaluate``: float64 sums, batches weighted by size) under the one
    state guard, so every module's own train/eval flag comes back as it was.
    """
    x, y = data
    with ModelState(model, mode="eval", values=False):
        result = evaluate_batches(model, x.to(device), y.to(device), batch_size=batch_size, loss_fn=per_sample(loss))
    return result.loss, result.acc


def trajectory(run_dir: str | os.PathLike[str]) -> list[Path]:
    """The run's model checkpoints in training order (``epoch_0000.pt`` … the last epoch)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise LandscapeError(f"training run folder not found: {run_dir}")
    files = sorted(run_dir.glob("epoch_*.pt"))
    if len(files) < 2:
        raise LandscapeError(f"{run_dir} holds {len(files)} epoch_*.pt checkpoint(s); a trajectory needs at least 2")
    return files


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn a failed write of ``path`` (full disk, quota, file-size limit, I/O error) into one line."""
    try:
        yield
    except OSError as exc:
        raise LandscapeError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another "
                             "out_dir=, then pass resume=True") from None
    except RuntimeError as exc:
        # torch.save reports a failed write as RuntimeError ("PytorchStreamWriter failed writing file ...").
        text = str(exc)
        if "write" not in text.lower():
            raise
        reason = next((os.strerror(code) for code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO)
                       if os.strerror(code).lower() in text.lower()), "the write failed")
        raise LandscapeError(f"cannot write {path}: {reason}; free some space or choose another out_dir=, "
                             "then pass resume=True") from None


def _write_metrics(path: Path, rows: list[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_METRIC_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    with _writing(path), atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def _save(path: Path, model: nn.Module, meta: dict[str, Any], **extra: Any) -> Path:
    with _writing(path):
        return save_checkpoint(path, model, meta, **extra)


def _check_finite(model: nn.Module, losses: dict[str, float], *, epoch: int) -> None:
    """Refuse an epoch whose weights, buffers or losses are not finite: the run diverged.

    The loss is checked before every step, so only this check catches a blow-up by the epoch's last update.
    """
    for kind, tensors in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in tensors:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise LandscapeError(f"training diverged at epoch {epoch}: {kind} {name} has {bad} non-finite "
                                     "value(s); lower lr=")
    for name, value in losses.items():
        if not math.isfinite(value):
            raise LandscapeError(f"training diverged at epoch {epoch}: {name} is {value}; lower lr=")


def _call(callbacks: Sequence[Any], method: str, *args: Any, **kwargs: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(*args, **kwargs)


def train(
    model: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    epochs: int,
    batch_size: int | None = None,
    lr: float,
    optimizer: str = "sgd",
    momentum: float | None = None,
    weight_decay: float | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    loss: str = "cross_entropy",
    schedule: str = "cosine",
    seed: int = 0,
    device: str | torch.device = "cpu",
    out_dir: str | os.PathLike[str],
    save_every: int = 1,
    resume: bool = False,
    augment: bool = False,
    callbacks: Sequence[Any] = (),
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    sync_bn: bool = False,
) -> TrainResult:
    """Train ``model`` on ``train_data``; see the module docstring for the run folder.

    ``optimizer``: ``"sgd"`` (minibatches of ``batch_size`` in a seeded order; ``momentum`` default 0.9,
    ``weight_decay`` 5e-4), ``"gd"`` (full-batch gradient descent: one step per epoch on the whole of
    ``train_data``, so ``batch_size`` stays unset; ``momentum`` and ``weight_decay`` default 0) or ``"adam"``
    (``betas``, ``eps``; ``weight_decay`` default 0, L2 as in ``torch.optim.Adam``). ``loss``: ``"cross_entropy"``
    or ``"mse"`` (``½‖f(x) − onehot(y)‖²``); ``lr`` is the peak of ``schedule``.

    Under torchrun, call it on every rank with the same arguments (``batch_size`` is the global batch; see the
    module docstring); ``sync_bn=True`` turns the model's BatchNorm layers into ``SyncBatchNorm`` (CUDA, several
    processes; ignored in one process). The process group is joined here and left for the caller to end
    (``landscape.core.distributed.finish()``; the CLI does).
    """
    device = distributed.device_for(resolve_device(device))
    w = distributed.init(device)
    with contextlib.ExitStack() as stack:
        with distributed.agree():  # a refusal (the same on every rank, or rank 0's lock) ends all with one line
            settings, batch_size = _check_arguments(
                model, train_data, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer,
                momentum=momentum, weight_decay=weight_decay, betas=betas, eps=eps, loss=loss, schedule=schedule,
                save_every=save_every, augment=augment, callbacks=callbacks, sync_bn=sync_bn, device=device, world=w)
            # One writer per run folder, from before anything in it is read or created to the end: two runs into
            # one folder would interleave their epochs and probe rows. Under torchrun rank 0 is that writer.
            if w.main:
                stack.enter_context(output_lock(out_dir))
                _sweep_temp_files(ensure_writable_dir(out_dir))
        return _train_locked(
            model, train_data, test_data, epochs=epochs, batch_size=batch_size, lr=lr, settings=settings,
            schedule=schedule, seed=seed, device=device, out=Path(out_dir), save_every=save_every,
            resume=resume, augment=augment, callbacks=callbacks if w.main else (), meta=meta, progress=progress,
            sync_bn=sync_bn, world=w)


def _check_arguments(
    model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor], *, epochs: int, batch_size: int | None,
    lr: float, optimizer: str, momentum: float | None, weight_decay: float | None, betas: tuple[float, float],
    eps: float, loss: str, schedule: str, save_every: int, augment: bool, callbacks: Sequence[Any], sync_bn: bool,
    device: torch.device, world: distributed.World,
) -> tuple[_Settings, int]:
    """Validate :func:`train`'s arguments: the run's settings and its (global) batch size."""
    if schedule not in SCHEDULES:
        raise LandscapeError(f"schedule='{schedule}'; use one of {', '.join(SCHEDULES)}")
    if optimizer not in OPTIMIZERS:
        raise LandscapeError(f"optimizer={optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
    check_loss(loss)
    if optimizer == "gd":
        if batch_size is not None and batch_size != len(train_data[1]):
            raise LandscapeError(f"optimizer='gd' steps on all {len(train_data[1])} training samples at once; leave "
                                 f"batch_size= unset (it is {batch_size}), and choose the samples with n_train=")
        if augment:
            raise LandscapeError("optimizer='gd' takes exact gradients of a fixed training set; augment=True would "
                                 "change the set every step: turn augment off")
        batch_size = len(train_data[1])
    elif batch_size is None:
        raise LandscapeError(f"optimizer={optimizer!r} needs batch_size=")
    if optimizer == "adam" and momentum is not None:
        raise LandscapeError("optimizer='adam' has no momentum=; its first-moment decay is the first of betas=")
    momentum = (0.9 if optimizer == "sgd" else 0.0) if momentum is None else momentum
    weight_decay = (5e-4 if optimizer == "sgd" else 0.0) if weight_decay is None else weight_decay
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("save_every", save_every)):
        if value < 1:
            raise LandscapeError(f"{name}={value} must be at least 1")
    if not (math.isfinite(lr) and lr > 0):
        raise LandscapeError(f"lr={lr} must be a finite positive number")
    for name, rate in (("momentum", momentum), ("weight_decay", weight_decay)):
        if not (math.isfinite(rate) and rate >= 0):
            raise LandscapeError(f"{name}={rate} must be a finite number ≥ 0")
    betas = (float(betas[0]), float(betas[1]))
    if not all(0 <= b < 1 for b in betas):
        raise LandscapeError(f"betas={betas} must both lie in [0, 1), e.g. (0.9, 0.999)")
    if not (math.isfinite(eps) and eps > 0):
        raise LandscapeError(f"eps={eps} must be a finite positive number, e.g. 1e-8")
    if world.size > 1:
        if sync_bn and device.type != "cuda":
            raise LandscapeError("sync_bn=True needs CUDA processes (torch's SyncBatchNorm runs on GPUs only); on "
                                 "CPU drop it: each process then normalises its own share of the batch")
        if sync_bn and callbacks:
            raise LandscapeError("callbacks= (probes, curvature tracking) run on rank 0 alone, where SyncBatchNorm "
                                 "would wait for the other processes: drop sync_bn=True or the callbacks")
        n = len(train_data[1])
        smallest = min(batch_size, n % batch_size or batch_size)
        bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
        if bn and not sync_bn and smallest // world.size < 2:
            raise LandscapeError(
                f"a batch of {smallest} sample(s) (batch_size={batch_size}, {n} training samples) gives some of the "
                f"{world.size} processes fewer than 2 samples, and BatchNorm needs 2 per process in train mode; "
                "choose another batch_size= (the global batch)")
    settings = _Settings(optimizer=optimizer, momentum=momentum, weight_decay=weight_decay, betas=betas, eps=eps,
                         loss=loss)
    return settings, batch_size


@dataclass(frozen=True)
class _Settings:
    """The optimizer and loss of a run (validated by :func:`train`)."""

    optimizer: str
    momentum: float
    weight_decay: float
    betas: tuple[float, float]
    eps: float
    loss: str

    def config(self) -> dict[str, Any]:
        """What a resume must match (``train_config`` of every checkpoint)."""
        out: dict[str, Any] = {"optimizer": self.optimizer, "momentum": self.momentum,
                               "weight_decay": self.weight_decay, "loss": self.loss}
        if self.optimizer == "adam":
            out.update(betas=list(self.betas), eps=self.eps)
        return out

    def build(self, params: Any, lr: float) -> torch.optim.Optimizer:
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)
        return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)


# The files a run writes (temporary names ``.NAME.XXXX.tmp``); other commands' files in the folder are left alone,
# since their writers may be running now under their own locks.
_RUN_FILES = ("metrics.csv", "last.pt", "final.pt", "epoch_*.pt", "predictiveness.h5", "curvature.h5")


def _sweep_temp_files(out: Path) -> None:
    """Remove temporary files that a run killed mid-write left in ``out`` (call only under the folder's lock)."""
    stale = [tmp for name in _RUN_FILES for tmp in out.glob(f".{name}.*.tmp")]
    for tmp in [*stale, out / "metrics.csv.tmp"]:  # metrics.csv.tmp: the name older versions used
        with contextlib.suppress(OSError):
            tmp.unlink()


def _callback_states(callbacks: Sequence[Any]) -> dict[str, Any]:
    return {cb.state_key: cb.state_dict() for cb in callbacks if getattr(cb, "state_key", None)}


def _train_locked(
    model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor],
    test_data: tuple[torch.Tensor, torch.Tensor] | None, *, epochs: int, batch_size: int, lr: float,
    settings: _Settings, schedule: str, seed: int, device: torch.device, out: Path,
    save_every: int, resume: bool, augment: bool, callbacks: Sequence[Any], meta: dict[str, Any] | None,
    progress: bool, sync_bn: bool, world: distributed.World,
) -> TrainResult:
    """The body of :func:`train`, run while rank 0 holds the lock of ``out`` (``callbacks``: rank 0's only)."""
    config = {"epochs": epochs, "batch_size": batch_size, "lr": lr, **settings.config(), "schedule": schedule,
              "seed": seed, "augment": augment, "n_train": len(train_data[1])}
    if sync_bn:  # only then: a one-process checkpoint keeps the layout it always had
        config["sync_bn"] = True
    meta = dict(meta or {})
    model.to(device)
    ddp = world.size > 1
    if ddp and sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = settings.build(model.parameters(), lr)
    full_batch = settings.optimizer == "gd"
    loss_name = settings.loss
    step_loss = batch_mean(loss_name)
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict[str, float]] = []
    last = out / "last.pt"
    resumed: dict[str, Any] | None = None
    with distributed.agree():  # rank 0 alone reads the folder; a refusal there ends every rank with its line
        if world.main:
            resumed = _read_resume(last, model, callbacks, config=config, sync_bn=sync_bn, meta=meta, resume=resume)
    # The other ranks get the optimizer and RNG state from rank 0, and the weights when DDP wraps the model.
    resumed = distributed.broadcast(resumed)
    start_epoch = 0
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        generator.set_state(resumed["generator"])
        rows = resumed["rows"]
        start_epoch = resumed["epoch"]
    net: nn.Module = model
    if ddp:
        # No buffer broadcast in forward: then forward holds no collective, and a failed forward on one rank is
        # agreed on after it (_shard_step); rank 0's buffers, the ones saved, are the same either way.
        ddp_class = nn.parallel.DistributedDataParallel
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp_class).parameters \
            else "broadcast_buffers"  # the name before torch 2.13
        options: dict[str, Any] = {no_sync: False}
        net = ddp_class(model, device_ids=[device.index] if device.type == "cuda" else None, **options)
    # The other ranks hold no callbacks; whether rank 0 does decides whether each step ends with an agreement.
    guard_callbacks = ddp and distributed.broadcast(bool(callbacks))

    x_train, y_train = train_data[0].to(device), train_data[1].to(device)
    n = len(y_train)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = epochs * steps_per_epoch
    step = start_epoch * steps_per_epoch

    def ckpt_meta(epoch: int) -> dict[str, Any]:
        return {**meta, "epoch": epoch, "step": epoch * steps_per_epoch, "seed": seed,
                "optimizer": settings.optimizer, "loss": loss_name,
                "metrics": rows[-1] if rows else {}, "train_config": config}

    with distributed.agree():
        if world.main:
            if start_epoch == 0:
                _save(out / "epoch_0000.pt", model, ckpt_meta(0))
            _call(callbacks, "on_train_begin", model=model, start_step=step, resumed=start_epoch > 0)
    t0 = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", disable=not (progress and world.main),
               leave=False)
    try:
        for epoch in range(start_epoch + 1, epochs + 1):
            net.train()
            # Full-batch GD draws nothing: the one step of an epoch sees the whole set in its stored order.
            perm = None if full_batch else torch.randperm(n, generator=generator).to(device)
            loss_sum, correct = 0.0, 0
            for i in range(0, n, batch_size):
                # Every rank builds the whole batch (same order, same augmentation draws) and steps on its share.
                if perm is None:
                    xb, yb = x_train, y_train
                else:
                    idx = perm[i:i + batch_size]
                    xb, yb = x_train[idx], y_train[idx]
                if augment:
                    xb = augment_batch(xb, generator=generator)
                step_lr = lr_at(step, total_steps=total_steps, lr=lr, schedule=schedule)
                for group in optimizer.param_groups:
                    group["lr"] = step_lr
                optimizer.zero_grad(set_to_none=True)
                if ddp:
                    batch_sum, batch_correct = _shard_step(net, xb, yb, loss_name=loss_name, world=world,
                                                           epoch=epoch, step=step)
                    loss_value = batch_sum / len(yb)
                else:
                    outputs = model(xb)
                    loss = step_loss(outputs, yb)
                    loss.backward()
                    loss_value = loss.item()
                    if not math.isfinite(loss_value):
                        raise LandscapeError(f"training diverged at epoch {epoch}, step {step} (loss {loss_value}); "
                                             "lower lr=")
                    batch_sum, batch_correct = loss_value * len(yb), int((outputs.argmax(1) == yb).sum())
                context = StepContext(model, xb, yb, loss_value, step, epoch, step_loss, step_lr, optimizer)
                if guard_callbacks:  # rank 0's callbacks; a failure there ends every rank
                    error = None
                    try:
                        _call(callbacks, "on_step", context)
                    except Exception as exc:
                        error = exc
                    distributed.all_sum(torch.zeros(0, dtype=torch.float64, device=device), error=error)
                else:
                    _call(callbacks, "on_step", context)
                optimizer.step()
                loss_sum += batch_sum
                correct += batch_correct
                step += 1
                bar.update(1)
            row = {"epoch": epoch, "step": step, "lr": optimizer.param_groups[0]["lr"],
                   "train_loss": loss_sum / n, "train_acc": correct / n,
                   "test_loss": float("nan"), "test_acc": float("nan"),
                   "seconds": time.perf_counter() - t0}
            with distributed.agree():  # rank 0 evaluates and writes; the others wait here; a failure ends all
                if world.main:
                    losses = {"train loss": row["train_loss"]}
                    if test_data is not None:
                        row["test_loss"], row["test_acc"] = evaluate(model, test_data, device=device, loss=loss_name)
                        losses["test loss"] = row["test_loss"]
                    else:  # without a test set, the last batch shows whether the epoch's last update blew up
                        losses["loss after the last step"] = evaluate(model, (xb, yb), device=device,
                                                                      loss=loss_name)[0]
                    # Before any of the epoch's files: a diverged epoch must not be saved, nor final.pt claim success.
                    _check_finite(model, losses, epoch=epoch)
                    rows.append(row)
                    bar.set_postfix(epoch=epoch, loss=f"{row['train_loss']:.3f}", test_acc=f"{row['test_acc']:.3f}")
                    _write_metrics(out / "metrics.csv", rows)
                    if epoch % save_every == 0 or epoch == epochs:
                        _save(out / f"epoch_{epoch:04d}.pt", model, ckpt_meta(epoch))
                    _call(callbacks, "on_epoch_end", epoch=epoch, metrics=row)
                    # last.pt is written after everything else of the epoch, so a crash never skips an epoch's files.
                    _save(last, model, ckpt_meta(epoch), optimizer=optimizer.state_dict(),
                          generator=generator.get_state(), epoch=epoch, metrics_rows=json.dumps(rows),
                          callbacks=_callback_states(callbacks))
            if ddp:
                row = distributed.broadcast(row)  # rank 0's (its test metrics and clock) on every rank
                if not world.main:
                    rows.append(row)
    finally:
        bar.close()
    with distributed.agree():
        if world.main:
            _call(callbacks, "on_train_end")
            # A resumed run that was already complete never ran an epoch above: check the weights it calls final.
            _check_finite(model, {}, epoch=epochs)
            _save(out / "final.pt", model, ckpt_meta(epochs))
    return TrainResult(out, out / "final.pt", rows, step, time.perf_counter() - t0, start_epoch)


def _read_resume(last: Path, model: nn.Module, callbacks: Sequence[Any], *, config: dict[str, Any], sync_bn: bool,
                 meta: dict[str, Any], resume: bool) -> dict[str, Any] | None:
    """Rank 0: refuse a folder that holds another run, or load ``last.pt`` into ``model`` and ``callbacks`` and
    return the optimizer and RNG state, the metric rows and the epoch to go on from (``None``: start afresh)."""
    out = last.parent
    if not (resume and last.exists()):
        if not resume and (last.exists() or (out / "final.pt").exists()):
            raise LandscapeError(f"{out} already holds a training run; pass resume=True to continue it or choose "
                                 "another out_dir=")
        return None
    state = read_checkpoint_file(last)
    saved_meta = checkpoint_meta(state, last)
    saved = saved_meta.get("train_config", {})
    diff = [f"{k}: run {saved.get(k, _OLD_DEFAULTS.get(k))!r} vs now {v!r}"
            for k, v in {**config, "sync_bn": sync_bn}.items() if saved.get(k, _OLD_DEFAULTS.get(k)) != v]
    now_meta = {**getattr(model, "landscape_spec", {}), **meta}
    if arch := architecture_difference(saved_meta, now_meta):
        diff.insert(0, f"model: run vs now {arch}")
    if saved_meta.get("dataset") != now_meta.get("dataset"):
        diff.insert(0, f"dataset: run {saved_meta.get('dataset')!r} vs now {now_meta.get('dataset')!r}")
    if diff:
        raise LandscapeError(f"cannot resume {out} with other settings ({'; '.join(diff)})")
    model.load_state_dict(state["state_dict"])
    try:
        rows = json.loads(state["metrics_rows"])
    except (KeyError, TypeError, ValueError):
        raise LandscapeError(f"{last} lacks readable training state (metrics_rows); delete it and start the run "
                             "afresh, or restore it from a backup") from None
    saved_states = state.get("callbacks") or {}
    for cb in callbacks:
        key = getattr(cb, "state_key", None)
        if key and key in saved_states:
            cb.load_state_dict(saved_states[key])
    return {"optimizer": state["optimizer"], "generator": state["generator"], "rows": rows,
            "epoch": int(state["epoch"])}


def _shard_step(net: nn.Module, xb: torch.Tensor, yb: torch.Tensor, *, loss_name: str, world: distributed.World,
                epoch: int, step: int) -> tuple[float, int]:
    """One DDP step's forward and backward on this rank's share of the global batch ``(xb, yb)``: returns the
    batch's loss sum and correct count (over every rank).

    The share's loss sum times ``world.size / len(yb)``, averaged over ranks by DDP, is the batch-mean loss: its
    gradient is the one-process gradient whatever the share sizes (they differ when the batch does not divide).
    """
    lo, hi = distributed.shard_bounds(len(yb), rank=world.rank, size=world.size)
    error: Exception | None = None
    stats = torch.zeros(2, dtype=torch.float64, device=yb.device)
    try:  # no collective in here (DDP without buffer broadcast): a failure is agreed on in the sum below
        outputs = net(xb[lo:hi])
        losses = per_sample(loss_name)(outputs, yb[lo:hi])
        stats = torch.stack([losses.detach().sum(dtype=torch.float64),
                             (outputs.detach().argmax(1) == yb[lo:hi]).sum().to(torch.float64)])
    except Exception as exc:
        error = exc
    total = distributed.all_sum(stats, error=error)
    batch_sum, correct = float(total[0]), int(total[1])
    if not math.isfinite(batch_sum):  # the same sum on every rank: each stops, rank 0 says it
        raise distributed.PeerError(f"training diverged at epoch {epoch}, step {step} (loss "
                                    f"{batch_sum / len(yb)}); lower lr=")
    (losses.sum() * (world.size / len(yb))).backward()
    return batch_sum, correct


def seeded_model(name: str, *, num_classes: int, in_channels: int, seed: int, **options: Any) -> nn.Module:
    """Build a model whose initial weights depend on ``seed`` only (the global RNG is left as found)."""
    from landscape.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(name, num_classes=num_classes, in_channels=in_channels, **options)
