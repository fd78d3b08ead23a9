"""Attention modules (squeeze-and-excitation, CBAM) whose weights are visible to forward hooks.

Each module computes attention weights and applies them to its input with a merge that is an option:
``"mul"`` (the usual ``x * w``) or ``"add"`` (``x + w``), so one can ask whether attention helps through the
weights or through the multiplication. The weights pass through an :class:`AttentionWeights` identity module;
a forward hook on it sees them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

ATTENTION_MERGES = ("mul", "add")


class AttentionWeights(nn.Identity):
    """Identity marker: its input and output are attention weights (hook it to read them)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class AttentionModule(nn.Module):
    """Base class of attention modules: ``channel_weights`` is the hookable channel attention."""

    channel_weights: AttentionWeights

    def __init__(self, merge: str) -> None:
        super().__init__()
        if merge not in ATTENTION_MERGES:
            raise ValueError(f"attention_merge={merge!r}; use one of {ATTENTION_MERGES}")
        self.merge = merge

    def apply_weights(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * w if self.merge == "mul" else x + w


def _hidden(channels: int, reduction: int) -> int:
    return max(channels // reduction, 4)


class SqueezeExcitation(AttentionModule):
    """Hu et al. 2018: channel weights ``σ(W₂ ReLU(W₁ avgpool(x)))``."""

    def __init__(self, channels: int, *, reduction: int = 16, merge: str = "mul") -> None:
        super().__init__(merge)
        hidden = _hidden(channels, reduction)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1)
        )
        self.channel_weights = AttentionWeights("channel")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.channel_weights(torch.sigmoid(self.fc(x.mean(dim=(2, 3), keepdim=True))))
        return self.apply_weights(x, w)


class CBAM(AttentionModule):
    """Woo et al. 2018: channel attention (avg- and max-pool through a shared MLP), then spatial attention."""

    def __init__(self, channels: int, *, reduction: int = 16, kernel_size: int = 7, merge: str = "mul") -> None:
        super().__init__(merge)
        hidden = _hidden(channels, reduction)
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )
        self.spatial = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.channel_weights = AttentionWeights("channel")
        self.spatial_weights = AttentionWeights("spatial")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        mx = self.mlp(x.amax(dim=(2, 3), keepdim=True))
        x = self.apply_weights(x, self.channel_weights(torch.sigmoid(avg + mx)))
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.apply_weights(x, self.spatial_weights(torch.sigmoid(self.spatial(pooled))))


# Constructors taking (channels, *, reduction, merge); the base class's own __init__ takes only merge.
ATTENTIONS: dict[str, Callable[..., AttentionModule]] = {"se": SqueezeExcitation, "cbam": CBAM}
