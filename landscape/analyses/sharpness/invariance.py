"""Does a measure survive a reparametrisation that leaves the function unchanged (Dinh et al. 2017)?

Two rescalings, applied to a copy of the model where it admits them:

- ``relu``: weight and bias of a Linear/Conv layer × α, weight of the next Linear/Conv × 1/α, with no normalisation
  layer between them (ReLU, max/average pooling and flattening are positively homogeneous).
- ``bn``: weight (and bias) of a Linear/Conv layer directly followed by a BatchNorm × α, with the BatchNorm's
  running mean × α, running variance × α² and ``eps`` × α², so the rescaled network computes the same function
  for every weight (not only to within ``eps``), in eval and train mode alike.

Candidates come from the order modules are registered in; each is kept only if the outputs on the data agree to
``rtol`` (relative to the largest output), so a guess that the forward pass does not bear out (a skip connection,
a tanh) is reported as rejected, never measured.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError

if TYPE_CHECKING:
    from landscape.analyses.sharpness.compute import Ignore, Norm
    from landscape.analyses.sharpness.result import Radii, Sharpness
    from landscape.api import Data, LossFn

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
OTHER_MEASURES = ("lambda_max", "trace", "surface")


@dataclass(frozen=True)
class Rescaling:
    """One function-preserving rescaling: ``kind`` relu or bn, the ``layers`` it touches, and what it does."""

    kind: Literal["relu", "bn"]
    layers: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.kind}:{'>'.join(self.layers)}"

    def describe(self, alpha: float) -> str:
        if self.kind == "relu":
            return f"{self.layers[0]} × {alpha:g}, {self.layers[1]} × 1/{alpha:g} (ReLU homogeneity)"
        return f"{self.layers[0]} × {alpha:g} before BatchNorm {self.layers[1]} (scale invariance)"


def candidates(model: nn.Module) -> list[Rescaling]:
    """The rescalings the module order suggests (to be checked on outputs): consecutive Linear/Conv pairs with no
    normalisation between them, and Linear/Conv layers directly followed by a BatchNorm."""
    leaves = [(n, m) for n, m in model.named_modules() if n and not any(True for _ in m.children())]
    out: list[Rescaling] = []
    last: str | None = None
    for i, (name, mod) in enumerate(leaves):
        if isinstance(mod, _NORMS):
            last = None
        elif isinstance(mod, _LAYERS):
            if last is not None:
                out.append(Rescaling("relu", (last, name)))
            last = name
            if i + 1 < len(leaves) and isinstance(leaves[i + 1][1], nn.modules.batchnorm._BatchNorm):
                out.append(Rescaling("bn", (name, leaves[i + 1][0])))
    return out


@torch.no_grad()
def apply(model: nn.Module, rescaling: Rescaling, alpha: float) -> None:
    """Rescale ``model`` in place (give it a copy)."""
    mods = dict(model.named_modules())
    first = mods[rescaling.layers[0]]
    first.weight.mul_(alpha)
    if getattr(first, "bias", None) is not None:
        first.bias.mul_(alpha)
    second = mods[rescaling.layers[1]]
    if rescaling.kind == "relu":
        second.weight.div_(alpha)
    else:
        assert isinstance(second, nn.modules.batchnorm._BatchNorm)
        if second.running_mean is not None and second.running_var is not None:
            second.running_mean.mul_(alpha)
            second.running_var.mul_(alpha * alpha)
        second.eps = second.eps * alpha * alpha


def output_difference(a: nn.Module, b: nn.Module, inputs: torch.Tensor, *, mode: str, seed: int
                      ) -> tuple[float, float]:
    """``(max |f_a(x) − f_b(x)|, max |f_a(x)|)`` over ``inputs`` in ``mode`` (same dropout masks for both)."""
    from landscape.core.state import ModelState

    outs = []
    for model in (a, b):
        with ModelState(model, mode=mode), torch.random.fork_rng(devices=[]), torch.inference_mode():  # type: ignore[arg-type]
            torch.manual_seed(seed)
            outs.append(model(inputs).double())
    return float((outs[0] - outs[1]).abs().max()), float(outs[0].abs().max())


@dataclass(frozen=True)
class Invariance:
    """Each measure on the model as given (row 0 of ``values``) and after each rescaling (rows 1…T), for the
    ``measures`` (columns); ``output_diff`` (T,) the largest output change each rescaling caused; ``rejected``: the
    candidates whose outputs changed (name and difference)."""

    alpha: float
    measures: tuple[str, ...]
    transforms: tuple[str, ...]
    descriptions: tuple[str, ...]
    rejected: tuple[str, ...]
    values: np.ndarray
    output_diff: np.ndarray

    def relative_change(self) -> np.ndarray:
        """``|v_t − v_0| / |v_0|`` (T, M)."""
        v = np.asarray(self.values, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(v[1:] - v[0]) / np.abs(v[0])

    def invariant(self, tol: float = 0.01) -> dict[str, bool]:
        """Measure -> whether every rescaling moved it by at most ``tol`` (relative)."""
        change = self.relative_change()
        return {m: bool(np.all(change[:, j] <= tol)) for j, m in enumerate(self.measures)}


def _hessian_loss(loss_fn: LossFn | None) -> Any:
    if loss_fn is None:
        return None  # the Hessian's own default: mean cross-entropy

    from landscape.core.evaluate import check_per_sample

    def mean_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return check_per_sample(loss_fn(outputs, targets), len(targets)).mean()

    return mean_loss


def _measure(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, names: Sequence[str],
             options: dict[str, Any], probes: int) -> tuple[Sharpness, dict[str, float]]:
    from landscape.analyses.sharpness.result import MEASURES, compute

    sharp = compute(model, inputs, targets, measures=[n for n in names if n in MEASURES], **options)
    values = {n: float(np.atleast_1d(v)[0]) for n, v in sharp.values().items()}
    common = {"loss_fn": _hessian_loss(options.get("loss_fn")), "params": options.get("params"),
              "train_mode": options.get("mode") == "train", "seed": options.get("seed", 0)}
    batch = options.get("batch_size", 128)
    batches = [(inputs[i:i + batch], targets[i:i + batch]) for i in range(0, len(inputs), batch)]
    if "lambda_max" in names:
        from landscape.analyses.hessian.compute import eigenvalues

        values["lambda_max"] = float(eigenvalues(model, batches, k=1, tol=1e-4, **common).eigenvalues[0])
    if "trace" in names:
        from landscape.analyses.hessian.compute import trace

        values["trace"] = float(trace(model, batches, n_probes=probes, method="hutch++", **common).estimate)
    if "surface" in names:
        from landscape.analyses.surface.compute import compute as surface

        s = surface(model, inputs, targets, xspec="-0.2:0.2:9", seed=options.get("seed", 0), batch_size=batch,
                    loss_fn=options.get("loss_fn"))
        values["surface"] = float(s.flatness().get("curvature", [math.nan])[0])
    return sharp, values


def check_invariance(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, alpha: float = 10.0,
                     measures: str | Sequence[str] = "all", rho: Radii = 0.05, sigma: Radii = 0.01,
                     norm: Norm = "l2", steps: int = 20, step_size: float | None = None, random_start: bool = True,
                     xi: float = 0.0,
                     draws: int = 20, pac_target: float = 0.1, pac_draws: int = 10, pac_steps: int = 20,
                     probes: int = 30, params: str | None = None, ignore: Ignore = "none",
                     mode: Literal["eval", "train"] = "eval", rtol: float = 1e-4, loss_fn: LossFn | None = None,
                     batch_size: int = 128, seed: int = 0, dataset: str | None = None,
                     data_dir: str | None = None, split: str | None = None, subset: bool | None = None,
                     checkpoint_meta: dict[str, Any] | None = None) -> Sharpness:
    """The engine of :func:`invariance_check` on given tensors (``dataset`` … ``checkpoint_meta`` only go into the
    provenance record)."""
    from dataclasses import replace

    from landscape.analyses.sharpness.result import MEASURES, measure_names
    from landscape.core.budget import require_memory

    allowed = (*MEASURES, *OTHER_MEASURES)
    if isinstance(measures, str) and measures.strip().lower() == "all":
        names = tuple(n for n in allowed if not (n == "surface" and mode == "train"))
    else:
        names = measure_names(measures, allowed=allowed)
    if "surface" in names and mode == "train":
        raise LandscapeError("measures='surface' evaluates in eval mode; drop it or use mode='eval'")
    try:
        alpha = float(alpha)
    except (TypeError, ValueError):
        raise LandscapeError(f"alpha={alpha!r} is not a number") from None
    if not (math.isfinite(alpha) and alpha > 0 and alpha != 1):
        raise LandscapeError(f"alpha={alpha!r} must be a positive finite number other than 1, e.g. alpha=10")
    if isinstance(probes, bool) or not isinstance(probes, int) or probes < 4:
        raise LandscapeError(f"probes={probes!r} must be a whole number, at least 4")
    p0 = next(model.parameters())
    inputs, targets = inputs.to(p0.device), targets.to(p0.device)
    if inputs.is_floating_point():
        inputs = inputs.to(p0.dtype)
    found = candidates(model)
    if not found:
        raise LandscapeError("the model admits none of the rescalings checked: no Linear/Conv pair without "
                             "normalisation between them, no Linear/Conv followed by BatchNorm")
    require_memory(sum(t.numel() * t.element_size() for t in model.state_dict().values()),
                   what="a rescaled copy of the model", fix="check a smaller model")
    probe = inputs[:256]
    kept: list[tuple[Rescaling, nn.Module, float]] = []
    rejected: list[str] = []
    for kind in ("relu", "bn"):
        for cand in (c for c in found if c.kind == kind):
            twin = copy.deepcopy(model)
            apply(twin, cand, alpha)
            diff, scale = output_difference(model, twin, probe, mode=mode, seed=seed)
            if diff <= rtol * max(1.0, scale):
                kept.append((cand, twin, diff))
                break
            rejected.append(f"{cand.name}: outputs changed by {diff:.3g}")
    if not kept:
        raise LandscapeError(f"no rescaling kept the outputs within rtol={rtol:g} ({'; '.join(rejected[:3])}); "
                             "the model is not a ReLU network without normalisation nor has BatchNorm after its "
                             "layers")
    options = {"rho": rho, "sigma": sigma, "norm": norm, "steps": steps, "step_size": step_size,
               "random_start": random_start, "xi": xi,
               "draws": draws, "pac_target": pac_target, "pac_draws": pac_draws, "pac_steps": pac_steps,
               "params": params, "ignore": ignore, "mode": mode, "loss_fn": loss_fn, "batch_size": batch_size,
               "seed": seed}
    record = {"dataset": dataset, "data_dir": data_dir, "split": split, "subset": subset,
              "checkpoint_meta": checkpoint_meta}
    result, first = _measure(model, inputs, targets, names, {**options, **record}, probes)
    rows = [[first[n] for n in names]]
    for _, twin, _ in kept:
        rows.append([_measure(twin, inputs, targets, names, options, probes)[1][n] for n in names])
    table = Invariance(alpha=alpha, measures=names, transforms=tuple(c.name for c, _, _ in kept),
                       descriptions=tuple(c.describe(alpha) for c, _, _ in kept), rejected=tuple(rejected),
                       values=np.array(rows), output_diff=np.array([d for _, _, d in kept]))
    attrs = {**result.attrs, "invariance_alpha": alpha, "invariance_rtol": rtol, "probes": probes}
    return replace(result, attrs=attrs, invariance=table)


def invariance_check(model: nn.Module, data: Data, *, alpha: float = 10.0,
                     measures: str | Sequence[str] = "all", rho: Radii = 0.05, sigma: Radii = 0.01,
                     norm: Norm = "l2", steps: int = 20, step_size: float | None = None, random_start: bool = True,
                     xi: float = 0.0,
                     draws: int = 20, pac_target: float = 0.1, pac_draws: int = 10, pac_steps: int = 20,
                     probes: int = 30, params: str | None = None, ignore: Ignore = "none",
                     mode: Literal["eval", "train"] = "eval", rtol: float = 1e-4, loss_fn: LossFn | None = None,
                     split: str = "train", n_samples: int | None = None, batch_size: int = 128, seed: int = 0,
                     out: str | os.PathLike[str] | None = None, overwrite: bool = False, device: str | None = None,
                     threads: int | None = None) -> Sharpness:
    """Apply the function-preserving rescalings ``model`` admits (the first of each kind, by ``alpha``; see the
    module docstring), check that the outputs on ``data`` are unchanged to ``rtol``, and measure each of
    ``measures`` (sharpness measures as in :func:`~landscape.analyses.sharpness.result.compute`, at the first
    ``rho``/``sigma``; ``lambda_max``: top Hessian eigenvalue; ``trace``: Hutch++ with ``probes`` HVPs;
    ``surface``: curvature of a 1D filter-normalised random surface; or ``"all"``) on the model and on each
    rescaled copy. Returns the :class:`Sharpness` of the model as given, with ``.invariance`` the table
    (``relative_change()``, ``invariant(tol)``); with ``out`` it is also written there. The model is left as
    found; the rescaled copies are discarded."""
    from landscape.api import _device_of, as_tensors

    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    _device_of(model, device)
    if out is not None and os.path.exists(out) and not overwrite:
        raise LandscapeError(f"{os.fspath(out)} exists; pass overwrite=True to replace it or choose another path")
    inputs, targets, name = as_tensors(data, split=split, n_samples=n_samples, seed=seed)
    result = check_invariance(model, inputs, targets, alpha=alpha, measures=measures, rho=rho, sigma=sigma,
                              norm=norm, steps=steps, step_size=step_size, random_start=random_start, xi=xi, draws=draws,
                              pac_target=pac_target, pac_draws=pac_draws, pac_steps=pac_steps, probes=probes,
                              params=params, ignore=ignore, mode=mode, rtol=rtol, loss_fn=loss_fn,
                              batch_size=batch_size, seed=seed, dataset=name, split=split if name else None,
                              subset=n_samples is not None)
    return result if out is None else result.save(out, overwrite=overwrite)
