"""``Attention``: attention weight vs channel importance in memory, with ``.save(path)`` and ``.plot(ax)``;
``compute`` (model and tensors, no file) and ``run``, the engine behind ``landscape.attention(model, data, …)``."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from landscape.analyses.attention.compute import Correlation, Importance, ModuleAttention
from landscape.errors import LandscapeError

if TYPE_CHECKING:
    from landscape.api import Data
    from landscape.core.provenance import Provenance

# Without n_samples, a dataset named by its name is measured on this many seeded samples, or on the whole split when
# it is smaller (digits' test split holds 360): what the command does too.
DEFAULT_SAMPLES = 500
_CORRELATION = ("spearman", "spearman_p", "kendall", "kendall_p")


def _readonly(a: Any) -> np.ndarray:
    a = np.array(a, dtype=np.float64)  # a copy: freezing it never freezes the caller's array
    a.flags.writeable = False
    return a


def _correlation(values: Mapping[str, Any], prefix: str = "") -> Correlation:
    """The four correlation numbers stored under ``prefix``; NaN where a file predates them."""
    return Correlation(*(float(values.get(prefix + k, np.nan)) for k in _CORRELATION))


def _plain(key: str, value: Any) -> Any:
    """An attribute as it was before it was stored: ``None`` (stored as ``"null"``), ``model_options`` a dict."""
    if isinstance(value, str) and value == "null":
        return None
    if key == "model_options" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class Attention:
    """Per attention module (forward order): ``name``, ``kind``, ``mean_weight`` (C,) and ``importance`` (C,)
    (read-only float64 arrays) and their rank ``correlation`` (Spearman ρ, Kendall τ-b, two-sided p-values);
    ``pooled`` over all channels of all modules on the raw values, ``pooled_within`` on ranks within each module.

    ``attrs`` holds the settings (``importance``, ``batch_size``, ``seed``), diagnostics (``base_loss``,
    ``n_samples``, ``n_forward``, ``seconds``) and the provenance record (weights SHA-256, model, data, device,
    threads, versions). ``path`` is the file it was read from or written to, ``""`` in memory.
    """

    modules: tuple[ModuleAttention, ...]
    pooled: Correlation
    pooled_within: Correlation
    attrs: dict[str, Any]
    path: str = ""

    @property
    def importance(self) -> str:
        """How importance was measured: ``"ablation"`` or ``"taylor"``."""
        return str(self.attrs["importance"])

    @property
    def base_loss(self) -> float:
        """Mean cross-entropy of the intact model on the samples (ablation importances are measured from it)."""
        return float(self.attrs["base_loss"])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules)

    @property
    def provenance(self) -> Provenance:
        from landscape.core.provenance import Provenance

        return Provenance.from_attrs(self.attrs)

    def module(self, key: int | str) -> ModuleAttention:
        """One module's result, by its position (forward order) or its qualified name."""
        if isinstance(key, str):
            for m in self.modules:
                if m.name == key:
                    return m
            raise LandscapeError(f"module={key!r} is not an attention module of this result; it has "
                                 f"{', '.join(self.names)}")
        if not -len(self.modules) <= key < len(self.modules):
            raise LandscapeError(f"module={key} is out of range; this result has {len(self.modules)} modules")
        return self.modules[key]

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Attention:
        """Read an attention file (``landscape.attention/1``; files from before ``pooled_within`` give NaN there)."""
        from landscape.analyses.attention.schema import read_attention

        attrs, modules = read_attention(path)
        mods = tuple(ModuleAttention(name=str(m["name"]), kind=str(m["kind"]), mean_weight=_readonly(m["mean_weight"]),
                                     importance=_readonly(m["importance"]), correlation=_correlation(m))
                     for m in modules)
        skip = {*_CORRELATION, *("within_" + k for k in _CORRELATION), "n_modules"}
        return cls(modules=mods, pooled=_correlation(attrs), pooled_within=_correlation(attrs, "within_"),
                   attrs={k: _plain(k, v) for k, v in attrs.items() if k not in skip}, path=os.fspath(path))

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Attention:
        """Write to ``path`` (layout ``landscape.attention/1``, atomically, one writer at a time); an existing file
        is refused unless ``overwrite=True``. Returns the result read back from there."""
        from landscape.analyses.attention.schema import write_attention
        from landscape.core.fs import output_lock

        with output_lock(path):
            if os.path.exists(path) and not overwrite:
                raise LandscapeError(f"{os.fspath(path)} exists; pass overwrite=True to replace it or choose another "
                                     "path")
            modules = [{"name": m.name, "kind": m.kind, "mean_weight": m.mean_weight, "importance": m.importance,
                        **vars(m.correlation)} for m in self.modules]
            attrs = {k: v for k, v in self.attrs.items() if k not in ("schema", "library_version")}
            attrs.update(vars(self.pooled))
            attrs.update({f"within_{k}": v for k, v in vars(self.pooled_within).items()})
            write_attention(path, modules=modules, attrs=attrs)
        return Attention.from_file(path)

    def plot(self, ax: Any = None, *, module: int | str | None = None, **options: Any) -> Any:
        """Scatter of importance against mean attention weight on a matplotlib ``Axes`` (a new figure when None):
        every module in its own colour, or with ``module`` (position or name) the panel ``landscape plot`` draws
        for that module. ``options``: ``log`` (symlog importance axis), ``title``. Returns the Axes."""
        from landscape.analyses.attention.plot import draw
        from landscape.core.figure import PlotOptions

        return draw(self, ax=ax, module=module, options=PlotOptions(**options))


def load(path: str | os.PathLike[str]) -> Attention:
    """An attention file as an :class:`Attention` (``landscape.load`` dispatches here)."""
    return Attention.from_file(path)


def compute(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, importance: Importance = "ablation",
            batch_size: int = 256, seed: int = 0, dataset: str | None = None, data_dir: str | None = None,
            split: str | None = None, subset: bool | None = None,
            checkpoint_meta: Mapping[str, Any] | None = None, progress: bool | None = False) -> Attention:
    """Mean channel attention weights, channel importances (``importance``: ``"ablation"``, the loss increase when
    a channel is zeroed, or ``"taylor"``, mean ``|activation × gradient|``) and their rank correlations, for every
    attention module of ``model`` on ``(inputs, targets)``. The model is left as found.

    ``dataset``, ``data_dir``, ``split``, ``subset`` and ``checkpoint_meta`` (from ``load_checkpoint``) are only
    recorded; ``seed`` too (it picked the samples, if anyone did).
    """
    from landscape.analyses.attention.compute import attention_importance
    from landscape.core.provenance import provenance

    record = provenance(model, checkpoint_meta=checkpoint_meta, dataset=dataset, data_dir=data_dir, split=split,
                        n_samples=len(targets), subset=subset, seed=seed)
    r = attention_importance(model, inputs, targets, importance=importance, batch_size=batch_size, seed=seed,
                             progress=progress)
    checkpoint = (checkpoint_meta or {}).get("path")
    attrs = {**record.attrs(), "checkpoint": os.path.abspath(checkpoint) if checkpoint else None,
             "label": record.model, "importance": r.importance, "batch_size": batch_size, "base_loss": r.base_loss,
             "n_samples": r.n_samples, "n_forward": r.n_forward, "seconds": r.seconds, "seed": seed}
    return Attention(modules=r.modules, pooled=r.pooled, pooled_within=r.pooled_within, attrs=attrs)


def select(data: Data, *, split: str = "test", n_samples: int | None = None, seed: int = 0,
           data_dir: str | None = None) -> tuple[torch.Tensor, torch.Tensor, str | None, bool]:
    """``(inputs, targets, dataset name or None, subset drawn)``: ``n_samples`` seeded samples of ``data``; without
    ``n_samples`` all the tensors given, or for a dataset name ``DEFAULT_SAMPLES`` capped at the split's size."""
    from landscape.api import as_tensors

    x, y, name = as_tensors(data, split=split, seed=seed, data_dir=data_dir)
    if n_samples is None and name is not None:
        n_samples = min(DEFAULT_SAMPLES, len(y))
    if n_samples is None:
        return x, y, name, False
    if n_samples > len(y):
        where = f"the {split} split of {name}" if name is not None else "the data given"
        raise LandscapeError(f"n_samples={n_samples} is more than the {len(y)} samples of {where}; lower n_samples=")
    # The same seeded draw as load_dataset(name, n=n_samples, seed=seed).
    x, y, _ = as_tensors((x, y), n_samples=n_samples, seed=seed)
    return x, y, name, True


def run(model: nn.Module, data: Data, *, importance: Importance = "ablation", n_samples: int | None = None,
        split: str = "test", batch_size: int = 256, seed: int = 0, out: str | os.PathLike[str] | None = None,
        overwrite: bool = False, device: str | None = None, threads: int | None = None,
        progress: bool = False) -> Attention:
    """Attention weight vs channel importance of ``model``'s attention modules (SE, CBAM) on ``data``.

    ``data``: an ``(inputs, targets)`` pair of tensors, a ``DataLoader``, or a dataset name (then ``split``, test by
    default: importance is measured on inputs the model did not train on). ``n_samples`` takes a seeded subset
    (default: all tensors given; for a dataset name 500, or the whole split when smaller). ``importance``:
    ``"ablation"`` (loss increase when a channel is zeroed) or ``"taylor"`` (mean ``|activation × gradient|``).
    Returns a frozen :class:`Attention` (``.save``, ``.plot``); with ``out`` it is also written there
    (``overwrite=True`` to replace a file). The model is left as found.
    """
    from landscape.api import _device_of

    if threads is not None:
        from landscape.core.threads import set_threads

        set_threads(threads)
    _device_of(model, device)
    if out is not None and os.path.exists(out) and not overwrite:  # before the work, not after it
        raise LandscapeError(f"{os.fspath(out)} exists; pass overwrite=True to replace it or choose another out=")
    x, y, name, subset = select(data, split=split, n_samples=n_samples, seed=seed)
    result = compute(model, x, y, importance=importance, batch_size=batch_size, seed=seed, dataset=name,
                     split=split if name is not None else None, subset=subset, progress=progress)
    return result if out is None else result.save(out, overwrite=overwrite)
