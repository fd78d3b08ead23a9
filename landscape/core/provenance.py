"""Provenance: what a result was computed from and on, recorded the same way by every analysis.

A checkpoint is identified by its file's SHA-256; an in-memory model by the hash of its tensors (names, dtypes,
shapes and bytes, in state-dict order), so a retrained model never passes for the one a file was made from.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape._version import __version__


def weights_sha256(model: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a model's state dict (or of a mapping of tensors): equal tensors give equal hashes."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    h = hashlib.sha256()
    for key, value in state.items():
        t = value.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        # bfloat16 and friends have no numpy dtype: hash the raw bytes through a uint8 view.
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass(frozen=True)
class Provenance:
    """Where a result came from: weights, model, data, randomness and the machine."""

    weights_sha256: str
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    model: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    data_dir: str | None = None
    split: str | None = None
    n_samples: int | None = None
    subset: bool | None = None
    seed: int | None = None
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    torch_version: str = str(torch.__version__)  # a TorchVersion (str subclass) that h5py cannot store
    library_version: str = __version__
    python_version: str = platform.python_version()

    def attrs(self) -> dict[str, Any]:
        """Flat attributes for a result file (prefixed names never clash with an analysis's settings)."""
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Provenance:
        """Read back from file attributes; fields absent from older files stay ``None``/defaults."""
        import json

        known = {f for f in cls.__dataclass_fields__}
        values: dict[str, Any] = {k: (None if v == "null" else v) for k, v in attrs.items() if k in known}
        if isinstance(values.get("model_options"), str):
            try:
                values["model_options"] = json.loads(values["model_options"])
            except ValueError:
                values["model_options"] = {}
        values.setdefault("weights_sha256", attrs.get("checkpoint_sha256") or "unknown")
        for k, v in list(values.items()):
            if isinstance(v, np.generic):
                values[k] = v.item()
        return cls(**values)


def provenance(model: nn.Module, *, checkpoint_meta: Mapping[str, Any] | None = None, dataset: str | None = None,
               data_dir: str | None = None, split: str | None = None, n_samples: int | None = None,
               subset: bool | None = None, seed: int | None = None) -> Provenance:
    """The provenance record of an analysis of ``model`` (as loaded by ``load_checkpoint`` when ``checkpoint_meta``
    is given) on the stated data."""
    meta = dict(checkpoint_meta or {})
    spec = getattr(model, "landscape_spec", {}) or {}
    p = next(iter(model.parameters()), None)
    return Provenance(
        weights_sha256=weights_sha256(model), checkpoint=meta.get("path"), checkpoint_sha256=meta.get("sha256"),
        model=meta.get("model") or spec.get("model") or type(model).__name__,
        model_options=dict(meta.get("model_options") or spec.get("model_options") or {}),
        dataset=dataset, data_dir=data_dir, split=split, n_samples=n_samples, subset=subset, seed=seed,
        device=str(p.device) if p is not None else "cpu", dtype=str(p.dtype).removeprefix("torch.") if p is not None
        else "float32", threads=torch.get_num_threads())
