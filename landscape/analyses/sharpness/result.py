"""``Sharpness``: sharpness measures of a model in memory (worst case, average case, PAC-Bayes σ; plain and
adaptive), with ``.save(path)`` and ``.plot(ax)``; ``compute``, which needs no file; and ``run``, the engine behind
``landscape.sharpness(model, data, …)``."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from landscape.errors import LandscapeError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from landscape.analyses.sharpness.compute import Ignore, Norm
    from landscape.analyses.sharpness.invariance import Invariance
    from landscape.api import Data, LossFn
    from landscape.core.provenance import Provenance

MEASURES = ("worst", "worst_adaptive", "average", "average_adaptive", "pac_bayes", "pac_bayes_adaptive")
Radii = float | Sequence[float] | str


@dataclass(frozen=True)
class Sharpness:
    """Sharpness of a model at its weights: ``loss`` ``L(w)`` on the data; ``rho`` (R,) the radii of the worst-case
    measures, ``sigma`` (S,) the standard deviations of the average-case ones; ``measures`` maps each measure
    computed to its arrays:

    - ``worst``/``worst_adaptive``: ``value`` (R,) the m-sharpness (mean over subsets of the best rise found),
      ``per_subset`` (R, K), ``base`` (K,) ``L_S(w)``, ``history`` (R, K, steps + 1) the rise at every iterate,
      ``last_improvement`` (R, K) the step of the ascent's last gain (see ``IMPROVEMENT``);
    - ``average``/``average_adaptive``: ``value`` (S,) ``E L(w + ε) − L(w)``, ``stderr`` (S,), ``samples`` (S, draws);
    - ``pac_bayes``/``pac_bayes_adaptive``: ``sigma`` the largest σ with mean rise ≤ the target, ``upper`` the end
      of the final bracket, ``rise``/``stderr`` at ``sigma``, ``tried_sigma``/``tried_rise`` the bisection.

    ``subsets`` (K, m): the sample indices of each subset (None when m covers all samples). ``invariance``: the
    table of :func:`invariance_check` when run. ``attrs``: every setting, the cost and the provenance record.
    """

    attrs: dict[str, Any]
    loss: float
    rho: np.ndarray
    sigma: np.ndarray
    measures: dict[str, dict[str, np.ndarray]]
    subsets: np.ndarray | None = field(default=None, repr=False)
    invariance: Invariance | None = None
    path: str = ""

    def values(self) -> dict[str, np.ndarray | float]:
        """The headline of each measure: worst (R,) and average (S,) rises, PAC-Bayes σ (a float)."""
        out: dict[str, np.ndarray | float] = {}
        for name, m in self.measures.items():
            out[name] = float(m["sigma"]) if name.startswith("pac_bayes") else np.asarray(m["value"])
        return out

    @property
    def provenance(self) -> Provenance:
        """The provenance record stored in ``attrs``."""
        from landscape.core.provenance import Provenance

        return Provenance.from_attrs(self.attrs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Sharpness:
        """Read a sharpness file (schema ``landscape.sharpness/1``)."""
        from landscape.analyses.sharpness.schema import read_sharpness

        return read_sharpness(path)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Sharpness:
        """Write to ``path`` (layout ``landscape.sharpness/1``, atomically); returns the result read back."""
        from landscape.analyses.sharpness.schema import write_sharpness
        from landscape.core.fs import output_lock

        with output_lock(path):
            if os.path.exists(path) and not overwrite:
                raise LandscapeError(f"{os.fspath(path)} exists; pass overwrite=True to replace it or choose "
                                     "another path")
            write_sharpness(path, self)
        return Sharpness.from_file(path)

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """The measures on ``ax`` (a new figure when None): bars at one radius, or the rise against ρ and σ when
        several were given. Options of ``landscape plot``: ``log``, ``title``. Returns the Axes."""
        from landscape.analyses.sharpness.plot import draw
        from landscape.core.figure import PlotOptions

        return draw(self, ax=ax, options=PlotOptions(**options))


def load(path: str | os.PathLike[str]) -> Sharpness:
    """A sharpness file as a :class:`Sharpness` (``landscape.load`` dispatches here)."""
    return Sharpness.from_file(path)


def radii(value: Radii, *, name: str) -> tuple[float, ...]:
    """Positive finite radii from a number, a sequence or ``"0.01,0.05"``."""
    if isinstance(value, str):
        parts = [v.strip() for v in value.split(",") if v.strip()]
        try:
            values = [float(v) for v in parts]
        except ValueError:
            raise LandscapeError(f"{name}={value!r} is not a comma-separated list of numbers, e.g. 0.01,0.05"
                                 ) from None
    else:
        values = list(np.atleast_1d(np.asarray(value, dtype=np.float64)).reshape(-1))
    if not values:
        raise LandscapeError(f"{name}= is empty; give at least one radius, e.g. {name}=0.05")
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise LandscapeError(f"{name}={bad[0]:g} must be a positive finite number")
    return tuple(float(v) for v in values)


def measure_names(measures: str | Sequence[str], *, allowed: Sequence[str] = MEASURES) -> tuple[str, ...]:
    """Measure names from ``"worst,average"``, a sequence or ``"all"`` (dashes read as underscores)."""
    if not isinstance(measures, str) and len(measures) == 0:
        return ()  # an empty sequence: only L(w) (the invariance check's Hessian-only tables)
    items = [m for m in (measures.split(",") if isinstance(measures, str) else measures)]
    names = [str(m).strip().lower().replace("-", "_") for m in items if str(m).strip()]
    if names == ["all"]:
        return tuple(allowed)
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        what = f"measures={unknown[0]!r} is unknown" if unknown else f"measures={measures!r} names none"
        raise LandscapeError(f"{what}; choose from {', '.join(allowed)} or all")
    return tuple(dict.fromkeys(names))  # once each, in the order given


def _whole(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise LandscapeError(f"{name}={value!r} must be a whole number, at least {low}")
    return int(value)


def _positive(value: Any, name: str, *, zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LandscapeError(f"{name}={value!r} is not a number") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not zero):
        raise LandscapeError(f"{name}={value!r} must be a finite number {'≥' if zero else '>'} 0")
    return v


def require_room(named: Sequence[tuple[str, Any]], device: torch.device) -> None:
    """Refuse up front what cannot fit: the ascent holds about six copies of the perturbed weights (base, scale,
    δ, best δ, gradient, best gradient) besides the model's own snapshot."""
    import torch

    from landscape.core.budget import require_memory

    nbytes = 7 * sum(p.numel() * p.element_size() for _, p in named)
    available = int(torch.cuda.mem_get_info(device)[0]) if device.type == "cuda" else None
    require_memory(nbytes, what=f"sharpness of {sum(p.numel() for _, p in named):,} weights",
                   fix="restrict the weights with params= (globs such as 'layer3.*')", available=available)


def compute(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *,
            measures: str | Sequence[str] = ("worst", "worst_adaptive", "average", "average_adaptive"),
            rho: Radii = 0.05, sigma: Radii = 0.01, norm: Norm = "l2", m: int | None = None, steps: int = 20,
            step_size: float | None = None, random_start: bool = True, xi: float = 0.0, draws: int = 20,
            pac_target: float = 0.1, pac_draws: int = 10, pac_steps: int = 20, params: str | None = None,
            ignore: Ignore = "none", mode: Literal["eval", "train"] = "eval", loss_fn: LossFn | None = None,
            batch_size: int = 128, seed: int = 0, dataset: str | None = None, data_dir: str | None = None,
            split: str | None = None, subset: bool | None = None, checkpoint_meta: dict[str, Any] | None = None,
            progress: bool = False) -> Sharpness:
    """Sharpness measures of ``model`` at its weights on ``(inputs, targets)``; the model is left as found.

    ``measures``: any of ``worst`` (max over ``‖ε‖ ≤ ρ`` of the loss rise, by projected gradient ascent; ``norm``
    l2 or linf; ``steps`` ascent steps of ``step_size`` (default ρ), halved after a step that does not improve;
    from a uniform point of the ball with ``random_start``; per subset of ``m`` samples, then averaged),
    ``average`` (mean rise over ``draws`` Gaussian ε of standard deviation σ), ``pac_bayes`` (the largest σ whose
    mean rise over ``pac_draws`` draws is ≤ ``pac_target``, by ``pac_steps`` bisection steps), each also
    ``*_adaptive`` (ε = (|w| + ``xi``) ⊙ δ, elementwise). ``rho``/``sigma``: one radius or several. ``params``:
    globs of the parameters perturbed (all by default); ``ignore="biasbn"`` leaves biases and normalisation
    weights (tensors of dim ≤ 1) alone. ``loss_fn(outputs, targets)`` returns one loss per sample, shape ``(B,)``.
    ``dataset``, ``data_dir``, ``split``, ``subset`` and ``checkpoint_meta`` (from ``load_checkpoint``) only go
    into the provenance record.
    """
    from landscape.analyses.sharpness import compute as C
    from landscape.core.evaluate import cross_entropy
    from landscape.core.provenance import provenance
    from landscape.core.state import ModelState

    names = measure_names(measures)
    rhos, sigmas = radii(rho, name="rho"), radii(sigma, name="sigma")
    if norm not in ("l2", "linf"):
        raise LandscapeError(f"norm={norm!r}; use 'l2' or 'linf'")
    if mode not in ("eval", "train"):
        raise LandscapeError(f"mode={mode!r}; use 'eval' or 'train'")
    steps, batch_size = _whole(steps, "steps", 0), _whole(batch_size, "batch_size", 1)
    draws, pac_draws, pac_steps = _whole(draws, "draws", 2), _whole(pac_draws, "pac_draws", 2), \
        _whole(pac_steps, "pac_steps", 1)
    xi, pac_target = _positive(xi, "xi", zero=True), _positive(pac_target, "pac_target")
    if step_size is not None:
        step_size = _positive(step_size, "step_size")
    n = len(targets)
    if n == 0 or len(inputs) != n:
        raise LandscapeError(f"inputs ({len(inputs)}) and targets ({n}) must hold the same, non-zero number of "
                             "samples")
    if m is not None and not 1 <= _whole(m, "m", 1) <= n:
        raise LandscapeError(f"m={m} is more than the {n} samples given; use m ≤ {n} (or m=None for all)")
    named = C.perturbed_parameters(model, params, ignore)
    p0 = named[0][1]
    require_room(named, p0.device)
    inputs, targets = inputs.to(p0.device), targets.to(p0.device)
    if inputs.is_floating_point():
        inputs = inputs.to(p0.dtype)
    chunks = C.subsets(n, m, seed)
    worst = [x for x in names if x.startswith("worst")]
    passes = (len(worst) * len(rhos) * (steps + 2) + sum(x.startswith("average") for x in names)
              * len(sigmas) * draws + sum(x.startswith("pac") for x in names) * 30 * pac_draws)
    record = provenance(model, checkpoint_meta=checkpoint_meta, dataset=dataset, data_dir=data_dir, split=split,
                        n_samples=n,
                        subset=subset, seed=seed)
    t0 = time.perf_counter()
    out: dict[str, dict[str, np.ndarray]] = {}
    chosen = {id(p) for _, p in named}
    with ModelState(model, mode=mode):
        for p in model.parameters():
            p.requires_grad_(id(p) in chosen)  # gradients for the perturbed weights only (restored on exit)
        obj = C.Objective(model, named, inputs, targets, loss_fn=loss_fn or cross_entropy, batch_size=batch_size,
                          mode=mode, seed=seed)
        clock = C.Clock(obj, passes, "the sharpness measures")
        base = obj.loss()
        clock.check()
        for name in names:
            scale = obj.scale(name.endswith("_adaptive"), xi)
            if name.startswith("worst"):
                out[name] = _worst(obj, chunks, rhos, norm=norm, steps=steps, step_size=step_size,
                                   random_start=random_start, scale=scale, seed=seed)
            elif name.startswith("average"):
                d = [C.gaussian_rise(obj, s, draws=draws, scale=scale, seed=seed, base=base) for s in sigmas]
                out[name] = {"value": np.array([x.value for x in d]), "stderr": np.array([x.stderr for x in d]),
                             "samples": np.stack([x.samples for x in d])}
            else:
                b = C.pac_bayes_sigma(obj, target=pac_target, draws=pac_draws, steps=pac_steps, scale=scale,
                                      seed=seed, base=base)
                out[name] = {"sigma": np.float64(b.sigma), "upper": np.float64(b.upper), "rise": np.float64(b.rise),
                             "stderr": np.float64(b.stderr), "tried_sigma": b.tried_sigma,
                             "tried_rise": b.tried_rise}
            clock.check()
    loss_name = "cross_entropy" if loss_fn is None else getattr(loss_fn, "__qualname__", type(loss_fn).__name__)
    attrs: dict[str, Any] = {
        **record.attrs(), "measures": list(names), "norm": norm, "m": m if chunks is not None else None,
        "n_subsets": 1 if chunks is None else len(chunks), "steps": steps,
        "step_size": step_size, "step_rule": "default ρ, halved after a step that does not improve",
        "random_start": random_start, "xi": xi, "adaptive_scale": "|w| + xi", "draws": draws,
        "pac_target": pac_target, "pac_draws": pac_draws, "pac_steps": pac_steps, "params": params,
        "ignore": ignore, "n_perturbed": obj.size, "mode": mode, "loss_fn": loss_name, "batch_size": batch_size,
        "improvement_tol": C.IMPROVEMENT, "n_passes": obj.n_passes, "seconds": time.perf_counter() - t0,
    }
    return Sharpness(attrs=attrs, loss=base, rho=np.array(rhos), sigma=np.array(sigmas), measures=out,
                     subsets=None if chunks is None else np.stack([c.numpy() for c in chunks]))


def _worst(obj: Any, chunks: list[Any] | None, rhos: tuple[float, ...], *, norm: Norm, steps: int,
           step_size: float | None, random_start: bool, scale: Any, seed: int) -> dict[str, np.ndarray]:
    import torch

    from landscape.analyses.sharpness.compute import ascent

    parts = [None] if chunks is None else chunks
    per, hist, last = [], [], []
    base = np.empty(len(parts))
    for r, rho in enumerate(rhos):
        generator = torch.Generator().manual_seed(int(seed) + r)
        runs = [ascent(obj, idx, rho=rho, norm=norm, steps=steps, step_size=step_size or rho,
                       random_start=random_start, scale=scale, generator=generator) for idx in parts]
        per.append([a.value for a in runs])
        hist.append([a.history for a in runs])
        last.append([a.last_improvement for a in runs])
        base[:] = [a.base for a in runs]
    per_subset = np.array(per)
    return {"value": per_subset.mean(axis=1), "per_subset": per_subset, "base": base, "history": np.array(hist),
            "last_improvement": np.array(last, dtype=np.int64)}


def run(model: nn.Module, data: Data, *,
        measures: str | Sequence[str] = ("worst", "worst_adaptive", "average", "average_adaptive"),
        rho: Radii = 0.05, sigma: Radii = 0.01, norm: Norm = "l2", m: int | None = None, steps: int = 20,
        step_size: float | None = None, random_start: bool = True, xi: float = 0.0, draws: int = 20,
        pac_target: float = 0.1, pac_draws: int = 10, pac_steps: int = 20, params: str | None = None,
        ignore: Ignore = "none", mode: Literal["eval", "train"] = "eval", loss_fn: LossFn | None = None,
        split: str = "train", n_samples: int | None = None, batch_size: int = 128, seed: int = 0,
        out: str | os.PathLike[str] | None = None, overwrite: bool = False, device: str | None = None,
        threads: int | None = None, progress: bool = False) -> Sharpness:
    """Sharpness of ``model`` on ``data`` (an ``(inputs, targets)`` pair, a ``DataLoader`` or a dataset name, its
    ``split``, a seeded subset of ``n_samples``): worst-case ρ-sharpness (L2 or L∞, m-sharpness), average-case
    Gaussian sharpness with its stderr, PAC-Bayes σ, each plain or adaptive (see :func:`compute` for the options).
    Returns a frozen :class:`Sharpness` (``.save``, ``.plot``, ``.values()``); with ``out`` it is also written
    there (``overwrite`` to replace a file). The model is left as found."""
    from landscape.api import _device_of, as_tensors

    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    _device_of(model, device)
    if out is not None and os.path.exists(out) and not overwrite:  # before the work; save checks again
        raise LandscapeError(f"{os.fspath(out)} exists; pass overwrite=True to replace it or choose another path")
    inputs, targets, name = as_tensors(data, split=split, n_samples=n_samples, seed=seed)
    result = compute(model, inputs, targets, measures=measures, rho=rho, sigma=sigma, norm=norm, m=m, steps=steps,
                     step_size=step_size, random_start=random_start, xi=xi, draws=draws, pac_target=pac_target,
                     pac_draws=pac_draws, pac_steps=pac_steps, params=params, ignore=ignore, mode=mode,
                     loss_fn=loss_fn, batch_size=batch_size, seed=seed, dataset=name,
                     split=split if name else None, subset=n_samples is not None, progress=progress)
    return result if out is None else result.save(out, overwrite=overwrite)
