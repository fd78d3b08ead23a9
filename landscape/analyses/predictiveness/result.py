"""``Predictiveness``: gradient predictiveness and β-smoothness in memory (one row per probed batch or training
step) with ``.save(path)`` and ``.plot(ax)``; ``compute``, which needs no file; and ``run``, the engine behind
``landscape.predictiveness(model, data, …)``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.errors import LandscapeError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from landscape.analyses.predictiveness.compute import BNMode
    from landscape.api import Data
    from landscape.core.provenance import Provenance

Etas = str | Sequence[float] | np.ndarray
LossFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]

# Root attributes that are bookkeeping of the file, not part of the result.
_FILE_ONLY = ("n_rows",)


def _readonly(value: Any, dtype: Any) -> np.ndarray:
    a = np.array(value, dtype=dtype)  # a copy: freezing it never touches the caller's array
    a.flags.writeable = False
    return a


@dataclass(frozen=True)
class Predictiveness:
    """T probes (rows) over E step sizes; the arrays are read-only.

    ``eta`` (E,); ``step`` (T,) int64: the batch index (``attrs["x_axis"] == "batch"``, a checkpoint) or the
    training step (``"step"``, probes along training); ``loss`` (T, E) ``L(W − ηg)``; ``grad_diff`` (T, E)
    ``‖∇L(W − ηg) − g‖₂``; ``beta`` (T,) ``max_η grad_diff / (η‖g‖)`` (NaN where ``g = 0``); ``train_loss`` (T,)
    ``L(W)``; ``grad_norm`` (T,) ``‖g‖₂``. ``attrs`` holds the settings (``bn_mode``, ``seed``, ``batch_sizes`` …),
    ``n_forward``, ``n_backward``, ``seconds`` and the provenance record; ``path`` is the file it was read from or
    written to, ``""`` in memory.
    """

    eta: np.ndarray
    step: np.ndarray
    loss: np.ndarray
    grad_diff: np.ndarray
    beta: np.ndarray
    train_loss: np.ndarray
    grad_norm: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def __post_init__(self) -> None:
        for name in ("eta", "loss", "grad_diff", "beta", "train_loss", "grad_norm"):
            object.__setattr__(self, name, _readonly(getattr(self, name), np.float64))
        object.__setattr__(self, "step", _readonly(self.step, np.int64))
        object.__setattr__(self, "attrs", dict(self.attrs))

    @property
    def loss_variation(self) -> np.ndarray:
        """``L(W − ηg) − L(W)`` (T, E): how far each trial step moves the loss."""
        return self.loss - self.train_loss[:, None]

    @property
    def batch_sizes(self) -> np.ndarray | None:
        """The size of each probed batch (checkpoint results; ``None`` for probes along training)."""
        sizes = self.attrs.get("batch_sizes")
        return None if sizes is None or isinstance(sizes, str) else np.asarray(sizes, dtype=np.int64).reshape(-1)

    @property
    def provenance(self) -> Provenance:
        """The provenance record stored in ``attrs`` (weights hash, model, data, seed, device, threads, versions)."""
        from landscape.core.provenance import Provenance

        return Provenance.from_attrs(self.attrs)

    def mean(self, name: str) -> float | np.ndarray:
        """Mean over the rows of ``loss``, ``grad_diff``, ``beta``, ``train_loss``…, weighted by batch size where
        the sizes are known (equal weights otherwise)."""
        values = np.asarray(getattr(self, name), dtype=np.float64)
        sizes = self.batch_sizes
        w = (np.ones(len(values)) if sizes is None or len(sizes) != len(values) else sizes.astype(np.float64))
        out = np.tensordot(w / w.sum(), values, axes=(0, 0))
        return float(out) if out.ndim == 0 else out

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Predictiveness:
        """Read a predictiveness file: a checkpoint result or the probes of a training run
        (schema ``landscape.predictiveness/1``)."""
        from landscape.analyses.predictiveness import schema

        data = schema.read(path)
        attrs = {k: v for k, v in data.attrs.items() if k not in _FILE_ONLY}
        return cls(eta=data.eta, step=data.step, loss=data.loss, grad_diff=data.grad_diff, beta=data.beta,
                   train_loss=data.train_loss, grad_norm=data.grad_norm, attrs=attrs, path=os.fspath(path))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Predictiveness:
        """Write to ``path`` (layout ``landscape.predictiveness/1``, atomically); returns the result read back."""
        from landscape.analyses.predictiveness import schema
        from landscape.core.fs import output_lock

        with output_lock(path):
            if os.path.exists(path) and not overwrite:
                raise LandscapeError(f"{os.fspath(path)} exists; pass overwrite=True to replace it or choose "
                                     "another path")
            attrs = {k: v for k, v in self.attrs.items() if k != "schema"}
            schema.write(path, eta=self.eta, step=self.step, loss=self.loss, grad_diff=self.grad_diff,
                         beta=self.beta, train_loss=self.train_loss, grad_norm=self.grad_norm, attrs=attrs)
        return Predictiveness.from_file(path)

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """One panel of ``landscape plot`` on ``ax`` (a new figure when None); returns the Axes.

        ``metric="loss"`` (default): the band ``min_η … max_η L(W − ηg)`` over the rows; ``"grad_diff"``: the band
        of ``‖∇L(W − ηg) − g‖``; ``"beta"``: the β line. Other options: ``log``, ``title``.
        """
        from landscape.analyses.predictiveness.plot import draw
        from landscape.core.figure import PlotOptions

        return draw(self, ax=ax, options=PlotOptions(**options))


def load(path: str | os.PathLike[str]) -> Predictiveness:
    """A predictiveness file as a :class:`Predictiveness` (``landscape.load`` dispatches here)."""
    return Predictiveness.from_file(path)


def _etas(eta: Etas) -> tuple[float, ...]:
    """A step-size grid given as ``MIN:MAX:NUM``, a comma-separated list, or a sequence of numbers."""
    from landscape.analyses.predictiveness.compute import check_etas, parse_etas

    if isinstance(eta, str):
        return parse_etas(eta, name="eta")
    if isinstance(eta, (int, float)):
        return check_etas([eta], name="eta")
    try:
        values = list(np.asarray(eta, dtype=np.float64).reshape(-1))
    except (TypeError, ValueError):
        raise LandscapeError(f"eta={eta!r} is neither MIN:MAX:NUM nor a sequence of step sizes") from None
    return check_etas(values, name="eta")


def _mean_of(loss_fn: LossFn) -> LossFn:
    """The probe differentiates the batch mean; ``loss_fn`` returns one loss per sample (checked)."""
    from landscape.core.evaluate import check_per_sample

    def mean_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return check_per_sample(loss_fn(outputs, targets), len(targets)).mean()

    return mean_loss


def compute(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, n_batches: int = 10,
            batch_size: int = 128, eta: Etas = "0.05:0.4:8", bn: BNMode = "train", seed: int = 0,
            loss_fn: LossFn | None = None, dataset: str | None = None, data_dir: str | None = None,
            split: str | None = None, subset: bool | None = None,
            checkpoint_meta: Mapping[str, Any] | None = None, progress: bool | None = False) -> Predictiveness:
    """Gradient predictiveness of ``model`` at its current weights on ``n_batches`` disjoint minibatches of
    ``batch_size`` drawn from ``(inputs, targets)`` by a permutation seeded with ``seed``: for every step size of
    ``eta`` (``MIN:MAX:NUM``, ``"0.1,0.2"`` or a sequence), the loss and the gradient change after the step
    ``W − ηg``, and β. ``bn``: BatchNorm in ``train`` (batch statistics) or ``eval`` mode while probing.
    ``loss_fn(outputs, targets)`` returns one loss per sample, shape ``(B,)`` (default: cross-entropy); the probe
    uses their mean. The model is left as found. ``dataset``, ``data_dir``, ``split``, ``subset`` and
    ``checkpoint_meta`` (from ``load_checkpoint``) only go into the provenance.
    """
    from landscape.analyses.predictiveness.compute import probe_checkpoint, sample_batches
    from landscape.core.provenance import provenance

    etas = _etas(eta)
    if bn not in ("train", "eval"):
        raise LandscapeError(f"bn={bn!r}; use 'train' (batch statistics) or 'eval' (running statistics)")
    if isinstance(n_batches, bool) or not isinstance(n_batches, (int, np.integer)) or n_batches < 1:
        raise LandscapeError(f"n_batches={n_batches!r} must be a whole number, at least 1")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise LandscapeError(f"batch_size={batch_size!r} must be a whole number, at least 1")
    batches = sample_batches(inputs, targets, n_batches=n_batches, batch_size=batch_size, seed=seed)
    result = probe_checkpoint(model, batches, etas=etas, bn_mode=bn, seed=seed,
                              loss_fn=None if loss_fn is None else _mean_of(loss_fn), progress=progress)
    meta = dict(checkpoint_meta or {})
    record = provenance(model, checkpoint_meta=meta, dataset=dataset, data_dir=data_dir, split=split,
                        n_samples=len(targets), subset=subset, seed=seed)
    attrs: dict[str, Any] = {
        **record.attrs(), "source": "checkpoint", "x_axis": "batch", "bn_mode": bn, "seed": seed,
        "batch_size": batch_size, "n_batches": n_batches, "batch_sizes": result.batch_sizes,
        "loss_fn": "cross_entropy" if loss_fn is None else getattr(loss_fn, "__qualname__", type(loss_fn).__name__),
        "n_forward": result.n_forward, "n_backward": result.n_backward, "seconds": result.seconds,
    }
    if checkpoint_meta is not None:
        attrs.update(checkpoint_step=meta.get("step"), checkpoint_epoch=meta.get("epoch"))
    return Predictiveness(eta=result.eta, step=np.arange(len(result.beta)), loss=result.loss,
                          grad_diff=result.grad_diff, beta=result.beta, train_loss=result.train_loss,
                          grad_norm=result.grad_norm, attrs=attrs)


def run(model: nn.Module, data: Data, *, n_batches: int = 10, eta: Etas = "0.05:0.4:8", bn: BNMode = "train",
        batch_size: int = 128, n_samples: int | None = None, split: str = "train", seed: int = 0,
        loss_fn: LossFn | None = None, out: str | os.PathLike[str] | None = None, overwrite: bool = False,
        device: str | None = None, threads: int | None = None, progress: bool = False) -> Predictiveness:
    """Gradient predictiveness and effective β-smoothness of ``model`` on ``data`` (Santurkar et al. 2018).

    ``data``: an ``(inputs, targets)`` pair, a ``DataLoader`` or a dataset name (its ``split``, a seeded subset of
    ``n_samples``). ``n_batches`` disjoint minibatches of ``batch_size`` are probed, one row each, at every step
    size of ``eta`` (``"MIN:MAX:NUM"`` or a sequence of floats); ``bn`` is the BatchNorm mode while probing.
    ``loss_fn(outputs, targets)`` returns one loss per sample, shape ``(B,)``. Returns a frozen
    :class:`Predictiveness` (``.save``, ``.plot``); with ``out`` it is also written there (``overwrite`` to
    replace a file). The model is left as found.
    """
    from landscape.api import _device_of, as_tensors

    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    _device_of(model, device)
    etas = _etas(eta)  # a bad grid is refused before any data is loaded
    if out is not None and os.path.exists(out) and not overwrite:  # before the work; save checks again
        raise LandscapeError(f"{os.fspath(out)} exists; pass overwrite=True to replace it or choose another path")
    inputs, targets, name = as_tensors(data, split=split, n_samples=n_samples, seed=seed)
    result = compute(model, inputs, targets, n_batches=n_batches, batch_size=batch_size, eta=etas, bn=bn,
                     seed=seed, loss_fn=loss_fn, dataset=name, split=split if name else None,
                     subset=n_samples is not None, progress=progress)
    return result if out is None else result.save(out, overwrite=overwrite)
