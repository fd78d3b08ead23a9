"""``ModelState``: leave a model exactly as found — parameters, buffers, per-module train/eval modes, requires_grad.

Every analysis that moves weights, switches modes or runs BN in train mode does it inside one ``ModelState`` block,
so there is one rule for restoring a model (hessian-eigenthings restores parameters only; neither it nor curvlinops
protects BN buffers or per-module modes).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Mode = Literal["eval", "train"]


class ModelState:
    """Context manager that snapshots ``model`` on entry and restores it on exit, also on error.

    ``mode``: put the whole model in eval or train mode for the block (``None`` leaves modes alone). ``values``:
    snapshot and restore parameter and buffer values (``False`` for read-only analyses that only switch modes,
    which saves a copy of the weights; ``"buffers"`` for blocks that never move parameters but run BatchNorm in
    train mode: the running statistics come back, the parameters are neither copied nor written, so their
    version counters and any autograd graph a caller holds stay valid). Per-module ``training`` flags and
    ``requires_grad`` are always restored.
    """

    def __init__(self, model: nn.Module, *, mode: Mode | None = None,
                 values: bool | Literal["buffers"] = True) -> None:
        if mode not in (None, "eval", "train"):
            raise ValueError(f"mode={mode!r}; use 'eval', 'train' or None")
        if values not in (True, False, "buffers"):
            raise ValueError(f"values={values!r}; use True, False or 'buffers'")
        self.model = model
        self.mode = mode
        self.values = values
        self._modes: list[tuple[nn.Module, bool]] = []
        self._grad: list[tuple[nn.Parameter, bool]] = []
        self._saved: dict[str, torch.Tensor] = {}

    def __enter__(self) -> nn.Module:
        self._modes = [(m, m.training) for m in self.model.modules()]
        self._grad = [(p, p.requires_grad) for p in self.model.parameters()]
        if self.values == "buffers":
            self._saved = {k: v.detach().clone() for k, v in self.model.named_buffers()}
        elif self.values:
            self._saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.mode is not None:
            self.model.train(self.mode == "train")
        return self.model

    def restore(self) -> None:
        """Put everything back now (the block may go on)."""
        if self.values:
            live = dict(self.model.named_buffers()) if self.values == "buffers" else self.model.state_dict()
            with torch.no_grad():
                for k, v in self._saved.items():
                    live[k].copy_(v)
        for m, training in self._modes:
            m.training = training
        for p, flag in self._grad:
            p.requires_grad_(flag)

    def __exit__(self, *exc: object) -> None:
        self.restore()
        self._saved = {}
