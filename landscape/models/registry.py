"""Model names -> constructors, and ``package.module:callable`` for users' own models."""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from landscape.errors import LandscapeError
from landscape.models.resnet import cifar_resnet, imagenet_resnet

CIFAR_DEPTHS = (8, 20, 32, 44, 56, 110)
IMAGENET_DEPTHS = (18, 34)
FAMILIES: dict[str, dict[str, Any]] = {
    "resnet": {"merge": "add"},
    "fmmnet": {"merge": "mul"},
    "se_resnet": {"merge": "add", "attention": "se"},
    "se_fmmnet": {"merge": "mul", "attention": "se"},
    "cbam_resnet": {"merge": "add", "attention": "cbam"},
    "cbam_fmmnet": {"merge": "mul", "attention": "cbam"},
}

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    """Register ``builder(*, num_classes, in_channels, **options)`` under ``name``."""
    _REGISTRY[name] = builder


def _builder(depth: int, defaults: dict[str, Any]) -> Callable[..., nn.Module]:
    make = cifar_resnet if depth in CIFAR_DEPTHS else imagenet_resnet

    def build(**options: Any) -> nn.Module:
        return make(depth, **{**defaults, **options})

    return build


for _family, _defaults in FAMILIES.items():
    for _depth in CIFAR_DEPTHS + IMAGENET_DEPTHS:
        register_model(f"{_family}{_depth}", _builder(_depth, _defaults))
for _depth in CIFAR_DEPTHS + IMAGENET_DEPTHS:
    register_model(f"resnet{_depth}_noshort", _builder(_depth, {"merge": "none"}))


def list_models() -> list[str]:
    """Every registered model name, in registration order."""
    return list(_REGISTRY)


def _import_callable(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise LandscapeError(f"model '{spec}' is not of the form package.module:callable")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise LandscapeError(f"cannot import module '{module_name}' for model '{spec}': {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise LandscapeError(f"module '{module_name}' has no attribute '{attr}' (model '{spec}')")
        obj = getattr(obj, part)
    if not callable(obj):
        raise LandscapeError(f"'{spec}' is not callable; point it at a function or class that returns a model")
    return obj


def _call_user(fn: Callable[..., Any], spec: str, **kwargs: Any) -> nn.Module:
    try:
        params = inspect.signature(fn).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in kwargs.items() if takes_any or k in params}
    except (TypeError, ValueError):
        pass
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise LandscapeError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    return model


@functools.lru_cache(maxsize=1)
def _option_names() -> tuple[str, ...]:
    params = inspect.signature(cifar_resnet).parameters
    from landscape.models.resnet import ResNet

    ctor = inspect.signature(ResNet.__init__).parameters
    names = [p for p in params if p not in ("depth", "options")] + [
        p for p in ctor if p not in ("self", "blocks", "widths", "num_classes", "in_channels")
    ]
    return tuple(names)


def build_model(name: str, *, num_classes: int, in_channels: int, **options: Any) -> nn.Module:
    """Build a registered model (``landscape models`` lists them) or a user's ``package.module:callable``.

    The returned module carries ``landscape_spec`` (name, options, num_classes, in_channels) so checkpoints can
    record how to rebuild it.
    """
    if ":" in name:
        model = _call_user(_import_callable(name), name, num_classes=num_classes, in_channels=in_channels, **options)
    else:
        if name not in _REGISTRY:
            close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise LandscapeError(f"unknown model '{name}'{hint} ('landscape models' lists all, or use pkg.module:callable)")
        unknown = sorted(set(options) - set(_option_names()))
        if unknown:
            raise LandscapeError(
                f"model {name} does not take option(s) {', '.join(unknown)}; it takes {', '.join(_option_names())}"
            )
        try:
            model = _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, **options)
        except ValueError as exc:
            raise LandscapeError(f"model {name}: {exc}") from None
    model.landscape_spec = {
        "model": name, "model_options": dict(options), "num_classes": num_classes, "in_channels": in_channels,
    }
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
