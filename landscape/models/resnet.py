"""ResNets whose residual merge is an option: addition (ResNet), multiplication (FMMNet), gated, or none.

A block computes ``F(x) = BN(conv(ReLU(BN(conv(x)))))`` (then the optional attention module) and a shortcut
``S(x)`` (identity, or a 1×1 conv + BN projection where the shape changes), and returns:

- ``merge="add"``:  ``ReLU(F(x) + S(x))``            (He et al. 2016)
- ``merge="mul"``:  ``ReLU(F(x) ⊙ S(x))``            (FMMNet, Ye et al. 2021: the literal swap of + for ⊙)
- ``merge="gate"``: ``ReLU(S(x) ⊙ sigmoid(F(x)))``   (a sigmoid-gated product: F acts as an attention mask on S)
- ``merge="none"``: ``ReLU(F(x))``                  (plain net, Li et al.'s ``noshort``)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from landscape.models.attention import ATTENTIONS

MERGES = ("add", "mul", "gate", "none")
SHORTCUTS = ("projection", "pad")


class _PadShortcut(nn.Module):
    """He et al.'s option A: subsample and zero-pad the new channels (no parameters)."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a configurable merge of branch and shortcut (see the module docstring)."""

    def __init__(
        self,
        in_planes: int,
        planes: int,
        stride: int = 1,
        *,
        merge: str = "add",
        attention: str | None = None,
        attention_merge: str = "mul",
        reduction: int = 16,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        if merge not in MERGES:
            raise ValueError(f"merge={merge!r}; use one of {MERGES}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut={shortcut!r}; use one of {SHORTCUTS}")
        if shortcut == "pad" and merge in ("mul", "gate"):
            # Zero-padded channels would multiply the branch by zero: half the block's outputs would be dead.
            raise ValueError(f"shortcut='pad' zeroes channels of a product; use shortcut='projection' with merge={merge!r}")
        self.merge = merge
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.attention = (
            ATTENTIONS[attention](planes, reduction=reduction, merge=attention_merge) if attention else None
        )
        self.shortcut: nn.Module | None
        if merge == "none":
            self.shortcut = None
        elif stride == 1 and in_planes == planes:
            self.shortcut = nn.Identity()
        elif shortcut == "projection":
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        else:
            self.shortcut = _PadShortcut(in_planes, planes, stride)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch ``F(x)`` (attention included)."""
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return self.attention(out) if self.attention is not None else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.branch(x)
        if self.shortcut is None:
            return F.relu(f)
        s = self.shortcut(x)
        if self.merge == "add":
            out = f + s
        elif self.merge == "mul":
            out = f * s
        else:
            out = s * torch.sigmoid(f)
        return F.relu(out)


class ResNet(nn.Module):
    """A stem conv, stages of :class:`BasicBlock`, global average pooling and a linear classifier.

    The first stage keeps the resolution; each later stage halves it. Works on any input size ≥ 1 pixel per
    stage (digits' 8×8 included).
    """

    def __init__(
        self,
        blocks: list[int],
        widths: list[int],
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        merge: str = "add",
        attention: str | None = None,
        attention_merge: str = "mul",
        reduction: int = 16,
        shortcut: str = "projection",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        in_planes = widths[0]
        for i, (n, planes) in enumerate(zip(blocks, widths)):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride, merge=merge, attention=attention,
                                         attention_merge=attention_merge, reduction=reduction, shortcut=shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.stages(out)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


def _scaled(base: list[int], width: float) -> list[int]:
    if width <= 0:
        raise ValueError(f"width={width} must be positive")
    return [max(1, round(b * width)) for b in base]


def cifar_resnet(depth: int, *, width: float = 1, **options) -> ResNet:
    """He et al.'s CIFAR ResNet: 3 stages of (depth − 2) / 6 basic blocks, widths 16/32/64 × ``width``."""
    if (depth - 2) % 6:
        raise ValueError(f"depth={depth}: CIFAR ResNets need depth = 6n + 2 (8, 20, 32, 44, 56, 110, …)")
    n = (depth - 2) // 6
    return ResNet([n, n, n], _scaled([16, 32, 64], width), **options)


_IMAGENET_BLOCKS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}


def imagenet_resnet(depth: int, *, width: float = 1, **options) -> ResNet:
    """ResNet-18/34 with basic blocks and widths 64…512 × ``width``, stem adapted to 32×32 inputs (3×3, no pool)."""
    return ResNet(_IMAGENET_BLOCKS[depth], _scaled([64, 128, 256, 512], width), **options)
