"""``CurvatureTracker``: a training callback that measures the curvature every ``every`` steps and appends a row to
an HDF5 file (``landscape.curvature/1``), as ``PredictivenessProbe`` does for gradient predictiveness.

Each measurement is taken at the step's weights before its update, on a fixed seeded set of training samples, with
Lanczos warm-started from the previous top eigenvector. The warm-start vectors are part of the run's resumable
state (``state_dict``, saved in ``last.pt``), so a resumed run writes the same rows as an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape.analyses.curvature import schema as store
from landscape.analyses.curvature.measure import adam_preconditioner, fixed_set, measure, thresholds
from landscape.errors import LandscapeError

# Settings a resumed file must share with the run that continues it.
_RESUME_KEYS = ("every", "n_samples", "tol", "seed", "trace_probes", "optimizer", "warm_start")


def _write(path: Path, write: Callable[[], Any]) -> Any:
    """One write of the file; a failed one (full disk, file-size limit, I/O error) is one line."""
    try:
        return write()
    except OSError as exc:
        raise LandscapeError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another "
                             "output folder, then resume") from None


class CurvatureTracker:
    """Training callback: every ``every`` steps, the top Hessian eigenvalue on ``n_samples`` samples of ``data``
    (drawn once with ``seed``), 2/η, and optionally the Hutch++ trace (``trace_probes`` > 0); for Adam also the
    preconditioned sharpness. ``tol``: the Lanczos tolerance ``‖Hv − λv‖ ≤ tol·|λ|``; ``warm_start=False`` starts
    every Lanczos run from a fresh seeded vector. ``attrs``: extra settings stored in the file (model, dataset…).

    The Hessian is of the training loss (the step's ``loss_fn``) in eval mode (BatchNorm with running statistics).
    On a resumed run rows at or past the restart step are dropped and the file continues; the settings must match.
    """

    state_key = "curvature"

    def __init__(self, path: str | os.PathLike[str], *, data: tuple[torch.Tensor, torch.Tensor], every: int,
                 n_samples: int = 256, seed: int = 0, tol: float = 1e-3, trace_probes: int = 0,
                 warm_start: bool = True, batch_size: int = 1024, max_matvec: int | None = None,
                 attrs: Mapping[str, Any] | None = None) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise LandscapeError(f"every={every!r} must be a whole number of steps ≥ 1")
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and 0 < tol < 1):
            raise LandscapeError(f"tol={tol!r} must lie in (0, 1), e.g. 1e-3")
        if isinstance(trace_probes, bool) or not isinstance(trace_probes, int) or trace_probes < 0 or \
                0 < trace_probes < 4:
            raise LandscapeError(f"trace_probes={trace_probes!r}: Hutch++ needs at least 4 (0: no trace)")
        if batch_size < 1:
            raise LandscapeError(f"batch_size={batch_size} must be at least 1")
        self.path = Path(path)
        self.every, self.tol, self.seed = int(every), float(tol), int(seed)
        self.trace_probes, self.warm_start, self.max_matvec = int(trace_probes), bool(warm_start), max_matvec
        x, y = fixed_set(data[0], data[1], n_samples=n_samples, seed=seed)
        self.n_samples = len(y)
        self._batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(y), batch_size)]
        self.attrs = dict(attrs or {})
        self._vector: torch.Tensor | None = None
        self._precond_vector: torch.Tensor | None = None
        self._ready = False
        self._rows = 0
        self._optimizer_name: str | None = None
        self.n_measurements = 0
        self.seconds = 0.0

    # -- resumable state (saved in last.pt by the training loop) -------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"vector": None if self._vector is None else self._vector.detach().cpu().clone(),
                "precond_vector": None if self._precond_vector is None else self._precond_vector.detach().cpu().clone()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._vector = state.get("vector")
        self._precond_vector = state.get("precond_vector")

    # -- callback ----------------------------------------------------------------------------------------------------
    def _settings(self) -> dict[str, Any]:
        return {"optimizer": None, **self.attrs, "source": "training", "every": self.every,
                "n_samples": self.n_samples, "tol": self.tol, "seed": self.seed, "trace_probes": self.trace_probes,
                "warm_start": self.warm_start, "hessian_mode": "eval"}

    def _provenance(self, model: nn.Module) -> dict[str, Any]:
        from landscape.core.provenance import provenance

        known = self.attrs
        return provenance(model, dataset=known.get("dataset"), data_dir=known.get("data_dir"), split="train",
                          n_samples=self.n_samples, subset=known.get("subset"), seed=self.seed).attrs()

    def on_train_begin(self, *, model: nn.Module, start_step: int, resumed: bool) -> None:
        """Create the file, or check and truncate a resumed one."""
        if resumed and self.path.exists():
            attrs = store.read_attributes(self.path)
            now = {k: "null" if v is None else v for k, v in self._settings().items()}  # None is stored as "null"
            mismatch = [f"{k}: file {attrs.get(k)!r} vs now {now[k]!r}" for k in _RESUME_KEYS if attrs.get(k) != now[k]]
            if mismatch:
                raise LandscapeError(f"cannot resume the curvature file {self.path} with other settings "
                                     f"({'; '.join(mismatch)}); use the run's settings or delete the file")
            self._rows = _write(self.path, lambda: store.truncate(self.path, before_step=start_step))
        else:
            attrs = {**self._provenance(model), **self._settings(), "start_step": start_step}
            _write(self.path, lambda: store.create(self.path, attrs=attrs))
            self._rows = 0
        self._ready = True

    def on_step(self, ctx: Any) -> None:
        if ctx.step % self.every:
            return
        optimizer = ctx.optimizer
        if not self._ready:  # used outside the training loop's on_train_begin
            self.on_train_begin(model=ctx.model, start_step=ctx.step, resumed=False)
        t0 = time.perf_counter()
        model: nn.Module = ctx.model
        device = next(model.parameters()).device
        batches = [(x.to(device), y.to(device)) for x, y in self._batches]
        precond = None
        if isinstance(optimizer, torch.optim.Adam):
            precond = adam_preconditioner(optimizer, [p for p in model.parameters() if p.requires_grad])
        m = measure(model, batches, loss_fn=ctx.loss_fn, tol=self.tol, seed=self.seed + ctx.step,
                    v0=self._vector if self.warm_start else None, max_matvec=self.max_matvec,
                    trace_probes=self.trace_probes, preconditioner=precond,
                    precond_v0=self._precond_vector if self.warm_start else None)
        lr = float(ctx.lr)
        group = optimizer.param_groups[0] if optimizer is not None else {}
        threshold, precond_threshold = thresholds(
            "adam" if precond is not None else "sgd", lr, momentum=float(group.get("momentum", 0.0) or 0.0),
            beta1=float(group.get("betas", (0.9, 0.999))[0]))
        row = {"step": ctx.step, "epoch": ctx.epoch, "lr": lr, "two_over_lr": 2.0 / lr, "threshold": threshold,
               "precond_threshold": precond_threshold, "lambda_max": m.lambda_max,
               "lambda_residual": m.lambda_residual, "lambda_converged": int(m.lambda_converged),
               "lambda_matvecs": m.lambda_matvecs, "loss": m.loss, "trace": m.trace, "trace_stderr": m.trace_stderr,
               "trace_matvecs": m.trace_matvecs, "precond_lambda_max": m.precond_lambda_max,
               "precond_residual": m.precond_residual, "precond_matvecs": m.precond_matvecs, "seconds": m.seconds}
        n_rows = _write(self.path, lambda: store.append(self.path, {k: [v] for k, v in row.items()}))
        # Exactly one more row than before: another writer (or a lost write) would leave duplicated or missing rows.
        if n_rows != self._rows + 1:
            raise LandscapeError(f"{self.path} holds {n_rows} curvature rows after writing row {self._rows + 1}; "
                                 "another process wrote to it: delete the file and train again")
        self._rows = n_rows
        self._vector = m.vector.detach()
        self._precond_vector = None if m.precond_vector is None else m.precond_vector.detach()
        self.n_measurements += 1
        self.seconds += time.perf_counter() - t0

    def on_train_end(self) -> None:
        """Nothing to close: the file is opened only while a row is written."""
