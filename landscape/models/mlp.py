"""A fully connected network: the small model of the edge-of-stability experiments (Cohen et al. 2021 use tanh
MLPs trained by full-batch gradient descent)."""

from __future__ import annotations

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


class MLP(nn.Module):
    """``Flatten → (Linear → activation) × depth → Linear``.

    No residual merge, shortcut or attention (the attributes say so, for listings that describe every model by
    them).
    """

    merge = "none"
    shortcut = None
    attention = None

    def __init__(self, *, num_classes: int, in_features: int, hidden: int, depth: int, activation: str) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), ACTIVATIONS[activation]()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.layers(x)


def mlp(*, num_classes: int, in_channels: int, hidden: int = 100, depth: int = 2, activation: str = "tanh",
        input_size: int = 8, width: float = 1.0) -> MLP:
    """An MLP on ``in_channels × input_size × input_size`` images (8: digits; 32: CIFAR) with ``depth`` hidden
    layers of ``round(hidden × width)`` units."""
    from landscape.errors import LandscapeError

    for name, value in (("hidden", hidden), ("depth", depth), ("input_size", input_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LandscapeError(f"model mlp: option {name}={value!r} must be a whole number ≥ 1")
    if activation not in ACTIVATIONS:
        raise LandscapeError(f"model mlp: option activation={activation!r}; use one of {', '.join(ACTIVATIONS)}")
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise LandscapeError(f"model mlp: option width={width!r} must be a number > 0")
    return MLP(num_classes=num_classes, in_features=in_channels * input_size * input_size,
               hidden=max(1, round(hidden * width)), depth=depth, activation=activation)
