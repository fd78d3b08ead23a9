"""``Connectivity``: loss and accuracy along paths between two models (linear, aligned, curve), the barriers, the
alignment, the curve and the plane, with ``.save``/``.plot``; ``compute`` (the engine's driver) and ``run``, the
one-call ``landscape.connect(model_a, model_b, data, …)``."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError

if TYPE_CHECKING:
    from landscape.api import Data

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SPLITS = ("train", "test")


@dataclass(frozen=True)
class Connectivity:
    """``t`` (T,); ``paths[name][f"{split}_{loss|acc|stderr}"]`` (T,) for the paths ``linear``,
    ``linear_aligned`` (with alignment) and ``curve`` (with a trained curve); ``barriers[name][split]`` with
    ``height``, ``stderr``, ``t`` and ``max_loss``; ``alignment`` (permutations, sweeps, objective), ``curve``
    (kind, per-epoch training loss, the bend) and ``plane`` (x, y, loss, acc, points, curve) where computed.
    ``attrs``: settings and the provenance of model A; ``endpoint_b``: the provenance of model B. ``path``: the
    file it was read from or written to, ``""`` in memory."""

    attrs: dict[str, Any]
    t: np.ndarray
    paths: dict[str, dict[str, np.ndarray]]
    barriers: dict[str, dict[str, dict[str, float]]]
    endpoint_b: dict[str, Any] = field(default_factory=dict)
    alignment: dict[str, Any] | None = None
    curve: dict[str, Any] | None = field(default=None, repr=False)
    plane: dict[str, np.ndarray] | None = field(default=None, repr=False)
    path: str = ""

    def barrier(self, path: str = "linear", split: str = "train") -> tuple[float, float]:
        """``(height, stderr)`` of the loss barrier on ``path`` for ``split``."""
        if path not in self.barriers or split not in self.barriers[path]:
            have = ", ".join(f"{p}/{s}" for p in self.barriers for s in self.barriers[p])
            raise LandscapeError(f"no barrier for path={path!r}, split={split!r}; this result has {have}")
        b = self.barriers[path][split]
        return b["height"], b["stderr"]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Connectivity:
        from landscape.analyses.connectivity.schema import read

        return cls(**read(path), path=os.fspath(path))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Connectivity:
        """Write to ``path`` (layout ``landscape.connectivity/1``, atomically); returns the result read back."""
        from landscape.analyses.connectivity.schema import write
        from landscape.core.fs import output_lock

        with output_lock(path):
            if os.path.exists(path) and not overwrite:
                raise LandscapeError(f"{path} exists; pass overwrite=True to replace it or choose another path")
            write(path, attrs=self.attrs, t=self.t, paths=self.paths, barriers=self.barriers,
                  endpoint_b=self.endpoint_b, alignment=self.alignment, curve=self.curve, plane=self.plane)
        return Connectivity.from_file(path)

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """Loss along t for every path (train solid, test dashed) on ``ax`` (a new figure when None)."""
        from landscape.analyses.connectivity.plot import draw
        from landscape.core.figure import PlotOptions

        return draw(self, ax=ax, options=PlotOptions(**options))


def load(path: str | os.PathLike[str]) -> Connectivity:
    """A connectivity file as a :class:`Connectivity` (``landscape.load`` dispatches here)."""
    return Connectivity.from_file(path)


def _memory_check(model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], points: int,
                  n_paths: int, plane: int) -> None:
    from landscape.core.budget import require_memory

    n_params = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    per_sample = sum(len(y) for _, y in splits.values()) * points * n_paths * 8
    # Endpoints, aligned copy, bend, optimizer momentum, gradient and two scratch models.
    need = 9 * n_params + per_sample + 4 * 8 * plane * plane
    require_memory(need, what=f"{n_paths} path(s) of {points} points", fix="lower points or n_samples")


def compute(model_a: nn.Module, model_b: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], *,
            train_data: tuple[torch.Tensor, torch.Tensor], points: int = 11, bn: str = "recalibrate",
            align: bool = False, curve: str | None = None, curve_epochs: int = 20, curve_lr: float = 0.05,
            curve_batch_size: int = 64, curve_momentum: float = 0.9, curve_weight_decay: float = 5e-4,
            plane: int = 0, plane_margin: float = 0.2, recal_samples: int = 1280, batch_size: int = 128,
            seed: int = 0, loss_fn: LossFn | None = None, dataset: str | None = None, subset: bool | None = None,
            data_dir: str | None = None,
            meta_a: dict[str, Any] | None = None, meta_b: dict[str, Any] | None = None,
            curve_checkpoint: str | os.PathLike[str] | None = None, resume: bool = False, overwrite: bool = False,
            progress: bool = False, callback: Callable[[int, float], None] | None = None) -> Connectivity:
    """Paths between ``model_a`` and ``model_b`` evaluated on ``splits`` (``{"train": (x, y), "test": …}``); the
    curve trains and BN recalibrates on ``train_data``. Neither model is changed."""
    from landscape.analyses.connectivity import compute as E
    from landscape.analyses.connectivity.curve import CurveSettings, point, train_curve
    from landscape.core.evaluate import cross_entropy
    from landscape.core.provenance import provenance, weights_sha256

    t_start = time.perf_counter()
    E.check_same_architecture(model_a, model_b)
    if bn not in E.BN_MODES:
        raise LandscapeError(f"bn={bn!r}; use interpolate or recalibrate")
    if not 3 <= points <= 10_001:
        raise LandscapeError(f"points={points} must be between 3 and 10001 (t from 0 to 1)")
    if plane and curve is None:
        raise LandscapeError("plane= needs a curve (curve='bezier' or 'polychain'): the plane goes through its bend")
    if plane and not 2 <= plane <= 1001:
        raise LandscapeError(f"plane={plane} must be between 2 and 1001 points per axis")
    if recal_samples < 1:
        raise LandscapeError(f"recal_samples={recal_samples} must be at least 1")
    settings = CurveSettings(kind=curve or "bezier", epochs=curve_epochs, lr=curve_lr, batch_size=curve_batch_size,
                             momentum=curve_momentum, weight_decay=curve_weight_decay, seed=seed)
    if curve is not None:
        settings.check()
    if curve_checkpoint is not None and os.path.exists(curve_checkpoint) and not (resume or overwrite):
        raise LandscapeError(f"{curve_checkpoint} exists; pass resume=True to continue its curve or overwrite=True "
                             "to train afresh")
    loss = loss_fn or cross_entropy
    device = next(model_a.parameters()).device
    splits = {s: (x.to(device), y.to(device)) for s, (x, y) in splits.items()}
    train_x, train_y = train_data[0].to(device), train_data[1].to(device)
    n_paths = 1 + int(align) + int(curve is not None)
    _memory_check(model_a, splits, points, n_paths, plane)
    # BN statistics are training-set statistics: a fixed, seeded subset of the training data, the same at every t.
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(int(seed)))
    recal = train_x[order[:min(recal_samples, len(train_y))].to(device)]
    ts = np.linspace(0.0, 1.0, points)
    a, b = E.float_state(model_a), E.float_state(model_b)
    net = copy.deepcopy(model_a)
    common: dict[str, Any] = {"recal_inputs": recal, "batch_size": batch_size, "loss_fn": loss,
                              "progress": progress}
    values = {"linear": E.evaluate_path(net, E.linear_path(a, b), ts, splits, bn=bn, desc="linear", **common)}  # type: ignore[arg-type]
    alignment = None
    end_b = b
    if align:
        from landscape.analyses.connectivity.align import align as align_fn

        aligned, al = align_fn(model_a, model_b, probe=train_x[:8], seed=seed)
        end_b = E.float_state(aligned)
        alignment = {"perms": al.perms, "sweeps": al.sweeps, "converged": al.converged, "kind": al.kind,
                     "objective_before": al.objective_before, "objective_after": al.objective_after}
        values["linear_aligned"] = E.evaluate_path(net, E.linear_path(a, end_b), ts, splits, bn=bn,  # type: ignore[arg-type]
                                                   desc="linear (aligned)", **common)
    curve_info = None
    plane_info = None
    if curve is not None:
        names = [n for n, _ in model_a.named_parameters()]
        identity = {"weights_a": weights_sha256({k: a[k] for k in names}),
                    "weights_b": weights_sha256({k: end_b[k] for k in names}), "aligned": align}
        bend, history = train_curve(model_a, a, end_b, train_x, train_y, settings=settings, loss_fn=loss,
                                    identity=identity, checkpoint=curve_checkpoint, resume=resume,
                                    progress=progress, callback=callback)

        def on_curve(t: float) -> dict[str, torch.Tensor]:
            theta = point(curve, a, bend, end_b, t)  # type: ignore[arg-type]
            return {**{k: E.lerp(a[k], end_b[k], t) for k in a if k not in theta}, **theta}

        # Along a curve only recalibrated statistics exist (the endpoints' cannot be interpolated into the bend).
        values["curve"] = E.evaluate_path(net, on_curve, ts, splits, bn="recalibrate", desc="curve", **common)
        curve_info = {"kind": curve, "history": np.asarray(history, dtype=np.float64),
                      "bend": {k: v.detach().cpu().numpy() for k, v in bend.items()}}
        if plane:
            x, y = splits.get("train", next(iter(splits.values())))
            p = E.plane(net, a, end_b, bend, kind=curve, ts=ts, inputs=x, targets=y, num=plane, margin=plane_margin,
                        bn="recalibrate", recal_inputs=recal, batch_size=batch_size, loss_fn=loss,
                        progress=progress)
            plane_info = {k: np.asarray(getattr(p, k)) for k in ("x", "y", "loss", "acc", "points", "curve")}
    paths = {name: {f"{s}_{key}": getattr(v, key)[s] for s in splits for key in ("loss", "acc", "stderr")}
             for name, v in values.items()}
    barriers = {name: {s: asdict(E.barrier(ts, v.samples[s])) for s in splits} for name, v in values.items()}
    first = next(iter(splits))
    where: dict[str, Any] = {"dataset": dataset, "data_dir": data_dir, "split": first, "n_samples": len(splits[first][1]),
                             "subset": subset, "seed": seed}
    rec_a = provenance(model_a, checkpoint_meta=meta_a, **where)
    rec_b = provenance(model_b, checkpoint_meta=meta_b, **where)
    attrs = {**rec_a.attrs(), "splits": list(splits), **{f"n_{s}": len(y) for s, (_, y) in splits.items()},
             "points": points, "bn": bn, "bn_curve": "recalibrate" if curve else None, "align": align,
             "curve": curve, "recal_samples": len(recal), "batch_size": batch_size,
             "loss": "cross_entropy" if loss_fn is None else getattr(loss_fn, "__qualname__", "custom"),
             "has_bn": E.has_bn(model_a), "weights_sha256_b": rec_b.weights_sha256,
             "seconds": time.perf_counter() - t_start}
    if curve is not None:
        attrs.update({f"curve_{k}": v for k, v in asdict(settings).items() if k not in ("kind", "seed")},
                     curve_endpoint_b="aligned" if align else "original")
    if plane:
        attrs.update(plane=plane, plane_margin=plane_margin, plane_split=first)
    return Connectivity(attrs=attrs, t=ts, paths=paths, barriers=barriers, endpoint_b=rec_b.attrs(),
                        alignment=alignment, curve=curve_info, plane=plane_info)


def run(model_a: nn.Module, model_b: nn.Module, data: Data, *, test_data: Data | None = None,
        n_samples: int | None = None, points: int = 11, bn: str = "recalibrate", align: bool = False,
        curve: str | None = None, curve_epochs: int = 20, curve_lr: float = 0.05, curve_batch_size: int = 64,
        curve_momentum: float = 0.9, curve_weight_decay: float = 5e-4, plane: int = 0, plane_margin: float = 0.2,
        recal_samples: int = 1280, batch_size: int = 128, seed: int = 0, loss_fn: LossFn | None = None,
        out: str | os.PathLike[str] | None = None, overwrite: bool = False,
        curve_checkpoint: str | os.PathLike[str] | None = None, resume: bool = False, device: str | None = None,
        threads: int | None = None, progress: bool = False) -> Connectivity:
    """Mode connectivity of ``model_a`` and ``model_b`` (the one-call ``landscape.connect``).

    ``data``: the training data — a dataset name (then the test split is evaluated too), an ``(inputs, targets)``
    pair or a DataLoader (then ``test_data`` adds a test split). Loss and accuracy are measured on ``points`` values
    of t from 0 to 1 along the linear path (BN statistics ``bn="recalibrate"``d at every t, or ``"interpolate"``d),
    after weight-matching alignment of ``model_b`` with ``align=True``, and along a trained ``curve="bezier"`` or
    ``"polychain"`` (with a loss ``plane`` of ``plane × plane`` points through the bend). ``n_samples`` evaluates a
    seeded subset of each split; the curve trains on all of ``data``. With ``out`` the result is also saved;
    ``curve_checkpoint`` keeps the curve's training resumable (``resume=True``).
    """
    from landscape.api import _device_of, as_tensors

    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    _device_of(model_a, device)
    train_x, train_y, name = as_tensors(data, split="train", seed=seed)
    splits = {}
    for split, source in (("train", data), ("test", test_data if test_data is not None else data)):
        if split == "test" and test_data is None and name is None:
            continue  # tensors or a loader of training data only: no test split
        full = (train_x, train_y) if split == "train" else as_tensors(source, split=split, seed=seed)[:2]
        # A dataset's splits differ in size: n_samples caps each (as the command does); given tensors must hold it.
        n = None if n_samples is None else min(n_samples, len(full[1])) if name is not None else n_samples
        splits[split] = full if n is None else as_tensors(full, n_samples=n, seed=seed)[:2]
    result = compute(model_a, model_b, splits, train_data=(train_x, train_y), points=points, bn=bn, align=align,
                     curve=curve, curve_epochs=curve_epochs, curve_lr=curve_lr, curve_batch_size=curve_batch_size,
                     curve_momentum=curve_momentum, curve_weight_decay=curve_weight_decay, plane=plane,
                     plane_margin=plane_margin, recal_samples=recal_samples, batch_size=batch_size, seed=seed,
                     loss_fn=loss_fn, dataset=name, subset=n_samples is not None, curve_checkpoint=curve_checkpoint, resume=resume,
                     overwrite=overwrite, progress=progress)
    return result if out is None else result.save(out, overwrite=overwrite)
