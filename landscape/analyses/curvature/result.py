"""``Curvature``: curvature along training in memory (one row per measurement: λmax, 2/η, thresholds, trace, Adam's
preconditioned sharpness, HVP counts) with ``.save(path)``, ``.plot(ax)`` and ``.edge_of_stability()``; and
``along_checkpoints``, which measures the checkpoints of a run folder after the fact."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.errors import LandscapeError

if TYPE_CHECKING:
    from landscape.core.provenance import Provenance

# Root attributes that are bookkeeping of the file, not part of the result.
_FILE_ONLY = ("n_rows",)


@dataclass(frozen=True)
class EdgeOfStability:
    """How closely λmax (Adam: the preconditioned one) follows its stability threshold late in training.

    ``reached_step``: the first step where it reached ``reach`` × the threshold (None: never); ``late``: the
    measurements in the last half of the steps from there on; ``fraction``: the share of them within ``±band`` of
    the threshold; ``median_ratio``: their median λ/threshold.
    """

    reached_step: int | None
    late: int
    within: int
    fraction: float
    median_ratio: float
    band: float
    reach: float
    quantity: str


@dataclass(frozen=True)
class Curvature:
    """T measurements; ``rows`` maps each field of ``schema.ROW_FIELDS`` to a read-only (T,) array (``step``,
    ``lr``, ``two_over_lr``, ``threshold``, ``lambda_max``, ``trace``, ``precond_lambda_max``… see
    ``landscape.analyses.curvature.schema``); ``attrs`` holds the settings and the provenance record; ``path`` is
    the file it was read from or written to, ``""`` in memory."""

    rows: dict[str, np.ndarray]
    attrs: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    def __post_init__(self) -> None:
        from landscape.analyses.curvature.schema import as_rows

        rows = as_rows(self.rows)
        for a in rows.values():
            a.flags.writeable = False
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "attrs", dict(self.attrs))

    def __len__(self) -> int:
        return len(self.rows["step"])

    @property
    def step(self) -> np.ndarray:
        return self.rows["step"]

    @property
    def lambda_max(self) -> np.ndarray:
        return self.rows["lambda_max"]

    @property
    def two_over_lr(self) -> np.ndarray:
        return self.rows["two_over_lr"]

    @property
    def trace(self) -> np.ndarray:
        return self.rows["trace"]

    @property
    def precond_lambda_max(self) -> np.ndarray:
        return self.rows["precond_lambda_max"]

    @property
    def has_trace(self) -> bool:
        return bool(np.isfinite(self.rows["trace"]).any())

    @property
    def is_adam(self) -> bool:
        return bool(np.isfinite(self.rows["precond_lambda_max"]).any())

    @property
    def n_hvp(self) -> int:
        """Hessian-vector products spent in all (λmax, trace and preconditioned λmax)."""
        return int(sum(self.rows[k].sum() for k in ("lambda_matvecs", "trace_matvecs", "precond_matvecs")))

    @property
    def provenance(self) -> Provenance:
        from landscape.core.provenance import Provenance

        return Provenance.from_attrs(self.attrs)

    def edge_of_stability(self, *, band: float = 0.1, reach: float = 0.9) -> EdgeOfStability:
        """The fraction of late measurements within ``±band`` of the threshold (see :class:`EdgeOfStability`);
        Adam's preconditioned sharpness against ``(2 + 2β₁)/((1 − β₁)η)``, otherwise λmax against ``threshold``."""
        if not (0 < band < 1 and 0 < reach <= 1):
            raise LandscapeError(f"band={band} and reach={reach} must lie in (0, 1)")
        quantity = "precond_lambda_max" if self.is_adam else "lambda_max"
        value = self.rows[quantity]
        limit = self.rows["precond_threshold" if self.is_adam else "threshold"]
        ratio = value / limit
        hit = np.flatnonzero(np.isfinite(ratio) & (ratio >= reach))
        if not len(hit):
            return EdgeOfStability(None, 0, 0, math.nan, math.nan, band, reach, quantity)
        start, end = int(self.step[hit[0]]), int(self.step[-1])
        late = self.step >= start + (end - start) / 2
        inside = np.abs(ratio[late] - 1) <= band
        return EdgeOfStability(start, int(late.sum()), int(inside.sum()), float(inside.mean()),
                               float(np.median(ratio[late])), band, reach, quantity)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Curvature:
        """Read a curvature file (schema ``landscape.curvature/1``)."""
        from landscape.analyses.curvature import schema

        data = schema.read(path)
        attrs = {k: v for k, v in data.attrs.items() if k not in _FILE_ONLY}
        return cls(rows=data.rows, attrs=attrs, path=os.fspath(path))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Curvature:
        """Write to ``path`` (layout ``landscape.curvature/1``, atomically); returns the result read back."""
        from landscape.analyses.curvature import schema
        from landscape.core.fs import output_lock

        with output_lock(path):
            if os.path.exists(path) and not overwrite:
                raise LandscapeError(f"{os.fspath(path)} exists; pass overwrite=True to replace it or choose "
                                     "another path")
            schema.write(path, rows=self.rows, attrs={k: v for k, v in self.attrs.items() if k != "schema"})
        return Curvature.from_file(path)

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """λmax and its threshold (2/η…) against the step on ``ax`` (a new figure when None); Adam's
        preconditioned sharpness and threshold too; ``metric="trace"`` draws the trace. Returns the Axes."""
        from landscape.analyses.curvature.plot import draw
        from landscape.core.figure import PlotOptions

        return draw(self, ax=ax, options=PlotOptions(**options))


def load(path: str | os.PathLike[str]) -> Curvature:
    """A curvature file as a :class:`Curvature` (``landscape.load`` dispatches here)."""
    return Curvature.from_file(path)


def along_checkpoints(checkpoints: Sequence[str | os.PathLike[str]], *, n_samples: int = 256, tol: float = 1e-3,
                      trace_probes: int = 0, warm_start: bool = True, seed: int = 0, dataset: str | None = None,
                      data_dir: str | None = None, device: str = "cpu", max_matvec: int | None = None,
                      progress: bool = False) -> Curvature:
    """Measure each checkpoint of a training run in order (Lanczos warm-started from the previous one's top
    eigenvector): λmax on ``n_samples`` samples of the run's own training set (its seeded subset, when it trained on
    one) drawn with ``seed``, the step size of the next update from the run's schedule, and the trace with
    ``trace_probes`` > 0. The preconditioned sharpness of Adam runs needs the optimizer state, which the epoch
    checkpoints do not keep: it is NaN here (track it during training). The loss is the run's own (cross-entropy or
    mse)."""
    from tqdm.auto import tqdm

    from landscape.analyses.curvature.measure import fixed_set, measure, thresholds
    from landscape.core.checkpoint import load_checkpoint
    from landscape.core.data import load_dataset
    from landscape.core.device import resolve_device
    from landscape.core.provenance import provenance
    from landscape.training.loop import lr_at
    from landscape.training.losses import batch_mean

    paths = [os.fspath(p) for p in checkpoints]
    if not paths:
        raise LandscapeError("no checkpoints to measure; give a run folder or checkpoint files")
    dev = resolve_device(device)
    from landscape.analyses.curvature.schema import ROW_FIELDS

    rows: dict[str, list[Any]] = {k: [] for k in ROW_FIELDS}
    vector = None
    data_key: tuple[Any, ...] | None = None
    batch = None
    subset = False
    model = meta = None
    name = None
    for path in tqdm(paths, desc="curvature", unit="checkpoint", disable=not progress, leave=False):
        model, meta = load_checkpoint(path)
        model.to(dev)
        config = meta.get("train_config") or {}
        name = dataset or meta.get("dataset")
        if not name:
            raise LandscapeError(f"{path} does not record its dataset; pass dataset=")
        key = (name, data_dir or meta.get("data_dir"), meta.get("n_train"), config.get("seed", 0))
        if key != data_key:  # every checkpoint of one run shares its data: load it once
            x, y = load_dataset(name, split="train", n=key[2], seed=int(key[3]), data_dir=key[1])
            xs, ys = fixed_set(x, y, n_samples=n_samples, seed=seed)
            batch, data_key, subset = (xs.to(dev), ys.to(dev)), key, key[2] is not None or len(ys) < len(y)
        assert batch is not None
        m = measure(model, [batch], loss_fn=batch_mean(str(config.get("loss", meta.get("loss", "cross_entropy")))),
                    tol=tol, seed=seed, v0=vector if warm_start else None, max_matvec=max_matvec,
                    trace_probes=trace_probes)
        vector = m.vector
        step = int(meta.get("step") or 0)
        lr = math.nan
        if {"lr", "schedule", "epochs", "batch_size", "n_train"} <= set(config):
            total = int(config["epochs"]) * math.ceil(int(config["n_train"]) / int(config["batch_size"]))
            lr = lr_at(step, total_steps=total, lr=float(config["lr"]), schedule=str(config["schedule"]))
        optimizer = str(config.get("optimizer", "sgd"))
        betas = config.get("betas") or (0.9, 0.999)
        threshold, precond_threshold = (thresholds(optimizer, lr, momentum=float(config.get("momentum", 0.0)),
                                                   beta1=float(betas[0])) if lr > 0 else (math.nan, math.nan))
        values = {"step": step, "epoch": int(meta.get("epoch") or 0), "lr": lr,
                  "two_over_lr": 2 / lr if lr > 0 else math.nan, "threshold": threshold,
                  "precond_threshold": precond_threshold, "lambda_max": m.lambda_max,
                  "lambda_residual": m.lambda_residual, "lambda_converged": int(m.lambda_converged),
                  "lambda_matvecs": m.lambda_matvecs, "loss": m.loss, "trace": m.trace,
                  "trace_stderr": m.trace_stderr, "trace_matvecs": m.trace_matvecs,
                  "precond_lambda_max": math.nan, "precond_residual": math.nan, "precond_matvecs": 0,
                  "seconds": m.seconds}
        for k, v in values.items():
            rows[k].append(v)
    assert model is not None and meta is not None and batch is not None
    # The record names the last checkpoint measured; ``checkpoints`` lists them all.
    record = provenance(model, checkpoint_meta=meta, dataset=name, data_dir=data_key[1] if data_key else None,
                        split="train", n_samples=len(batch[1]), subset=subset, seed=seed)
    attrs = {**record.attrs(), "source": "checkpoints", "checkpoints": paths, "n_samples": len(batch[1]),
             "tol": tol, "seed": seed, "trace_probes": trace_probes, "warm_start": warm_start,
             "optimizer": str((meta.get("train_config") or {}).get("optimizer", "sgd")), "hessian_mode": "eval"}
    return Curvature(rows={k: np.asarray(v) for k, v in rows.items()}, attrs=attrs)


def run(models: Any, data: Any, *, lr: float | Sequence[float] | None = None, steps: Sequence[int] | None = None,
        n_samples: int | None = 256, tol: float = 1e-3, trace_probes: int = 0, warm_start: bool = True,
        seed: int = 0, split: str = "train", loss_fn: Any = None, max_matvec: int | None = None,
        out: str | os.PathLike[str] | None = None, overwrite: bool = False, device: str | None = None,
        threads: int | None = None, progress: bool = False) -> Curvature:
    """Top Hessian eigenvalue (and with ``trace_probes`` ≥ 4 the Hutch++ trace) of each model in ``models`` — a
    sequence of snapshots along training, or one model — on one fixed seeded set of ``n_samples`` samples of
    ``data``, Lanczos warm-started from the previous model's eigenvector. ``lr`` (one value or one per model) gives
    the 2/η threshold of each row; ``steps`` labels the rows (default 0, 1, …). ``loss_fn`` returns one loss per
    sample (default cross-entropy). The models are left as found. With ``out`` the result is also written there."""
    from torch import nn
    from tqdm.auto import tqdm

    from landscape.analyses.curvature.measure import fixed_set, measure
    from landscape.api import _device_of, as_tensors
    from landscape.core.evaluate import check_per_sample, cross_entropy
    from landscape.core.fs import output_lock
    from landscape.core.provenance import provenance

    snapshots = [models] if isinstance(models, nn.Module) else list(models)
    if not snapshots or not all(isinstance(m, nn.Module) for m in snapshots):
        raise LandscapeError("models must be an nn.Module or a non-empty sequence of them (snapshots along "
                             "training)")
    rates = [lr] * len(snapshots) if lr is None or isinstance(lr, (int, float)) else [float(v) for v in lr]
    if len(rates) != len(snapshots):
        raise LandscapeError(f"lr= gives {len(rates)} step sizes for {len(snapshots)} models; give one, or one "
                             "per model")
    labels = list(range(len(snapshots))) if steps is None else [int(s) for s in steps]
    if len(labels) != len(snapshots):
        raise LandscapeError(f"steps= gives {len(labels)} labels for {len(snapshots)} models")
    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    dev = _device_of(snapshots[0], device)
    per_sample = loss_fn or cross_entropy

    def mean_loss(outputs: Any, targets: Any) -> Any:
        return check_per_sample(per_sample(outputs, targets), len(targets)).mean()

    inputs, targets, name = as_tensors(data, split=split, seed=seed)
    xs, ys = fixed_set(inputs, targets, n_samples=min(n_samples or len(targets), len(targets)), seed=seed)
    batch = (xs.to(dev), ys.to(dev))
    with output_lock(out) if out is not None else contextlib.nullcontext():
        if out is not None and os.path.exists(out) and not overwrite:
            raise LandscapeError(f"{os.fspath(out)} exists; pass overwrite=True to replace it or choose another out=")
        from landscape.analyses.curvature.schema import ROW_FIELDS

        rows: dict[str, list[Any]] = {k: [] for k in ROW_FIELDS}
        vector = None
        for model, rate, step in tqdm(list(zip(snapshots, rates, labels)), desc="curvature", unit="model",
                                      disable=not progress, leave=False):
            _device_of(model, str(dev))
            m = measure(model, [batch], loss_fn=mean_loss, tol=tol, seed=seed,
                        v0=vector if warm_start else None, max_matvec=max_matvec, trace_probes=trace_probes)
            vector = m.vector
            two = 2 / rate if rate is not None and rate > 0 else math.nan
            values = {"step": step, "epoch": 0, "lr": math.nan if rate is None else float(rate),
                      "two_over_lr": two, "threshold": two, "precond_threshold": math.nan,
                      "lambda_max": m.lambda_max, "lambda_residual": m.lambda_residual,
                      "lambda_converged": int(m.lambda_converged), "lambda_matvecs": m.lambda_matvecs,
                      "loss": m.loss, "trace": m.trace, "trace_stderr": m.trace_stderr,
                      "trace_matvecs": m.trace_matvecs, "precond_lambda_max": math.nan,
                      "precond_residual": math.nan, "precond_matvecs": 0, "seconds": m.seconds}
            for k, v in values.items():
                rows[k].append(v)
        record = provenance(snapshots[-1], dataset=name, split=split if name else None, n_samples=len(ys),
                            seed=seed)
        attrs = {**record.attrs(), "source": "models", "n_models": len(snapshots), "n_samples": len(ys),
                 "tol": tol, "seed": seed, "trace_probes": trace_probes, "warm_start": warm_start,
                 "optimizer": "unknown", "hessian_mode": "eval"}
        result = Curvature(rows={k: np.asarray(v) for k, v in rows.items()}, attrs=attrs)
        return result if out is None else result.save(out, overwrite=True)
