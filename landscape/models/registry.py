"""Model names -> constructors, and ``package.module:callable`` for users' own models."""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import math
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from torch import nn

from landscape.core.budget import require_memory
from landscape.errors import LandscapeError
from landscape.models.mlp import mlp
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
_DEPTHS: dict[str, int] = {}  # the built-in ResNets, whose options and size are checked before building


def register_model(name: str, builder: Callable[..., nn.Module]) -> None:
    """Register ``builder(*, num_classes, in_channels, **options)`` under ``name``."""
    _REGISTRY[name] = builder
    _DEPTHS.pop(name, None)


def _builder(depth: int, defaults: dict[str, Any]) -> Callable[..., nn.Module]:
    make = cifar_resnet if depth in CIFAR_DEPTHS else imagenet_resnet

    def build(**options: Any) -> nn.Module:
        return make(depth, **{**defaults, **options})

    return build


for _family, _defaults in FAMILIES.items():
    for _depth in CIFAR_DEPTHS + IMAGENET_DEPTHS:
        register_model(f"{_family}{_depth}", _builder(_depth, _defaults))
        _DEPTHS[f"{_family}{_depth}"] = _depth
for _depth in CIFAR_DEPTHS + IMAGENET_DEPTHS:
    register_model(f"resnet{_depth}_noshort", _builder(_depth, {"merge": "none"}))
    _DEPTHS[f"resnet{_depth}_noshort"] = _depth
register_model("mlp", mlp)  # tanh by default: the edge-of-stability model (docs/curvature.md)


def list_models() -> list[str]:
    """Every registered model name, in registration order."""
    return list(_REGISTRY)


def _one_line(exc: BaseException) -> str:
    """``TypeName: first line of the message``, for errors raised by code landscape does not own."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working directory was removed
        return None


def _import_from_cwd(module_name: str) -> ModuleType:
    """Import ``module_name`` with the working directory first on ``sys.path``, as ``python -m`` has it (a console
    script's ``sys.path`` starts at its own folder instead); ``sys.path`` is restored afterwards."""
    cwd = _cwd()
    added = cwd if cwd is not None and cwd not in sys.path else None
    if added is not None:
        sys.path.insert(0, added)
    importlib.invalidate_caches()  # a module written since the last import is found
    try:
        return importlib.import_module(module_name)
    finally:
        if added is not None and added in sys.path:
            sys.path.remove(added)


def _import_callable(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise LandscapeError(f"model '{spec}' is not of the form package.module:callable")
    try:
        module = _import_from_cwd(module_name)
    except ImportError as exc:
        missing = isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
            module_name == exc.name or module_name.startswith(exc.name + "."))
        where = (f" (looked in the working directory {_cwd() or '(unreadable)'} and on sys.path; "
                 "PYTHONPATH can add folders)") if missing else ""
        raise LandscapeError(f"cannot import module '{module_name}' for model '{spec}': {exc}{where}") from None
    except (Exception, SystemExit) as exc:  # the user's module runs at import: any failure there is theirs to fix
        raise LandscapeError(f"importing module '{module_name}' for model '{spec}' failed with {_one_line(exc)}"
                             ) from None
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
    except (TypeError, ValueError):  # no signature to read (some builtins): pass everything and let it say
        params = None
    if params is not None:
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in kwargs.items() if takes_any or k in params}
        needed = [n for n, p in params.items() if p.default is p.empty and n not in kwargs
                  and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        positional = [n for n, p in params.items() if p.default is p.empty and p.kind is p.POSITIONAL_ONLY]
        if needed or positional:
            raise LandscapeError(
                f"model '{spec}' needs argument(s) {', '.join(needed + positional)} that landscape does not give "
                "(it passes num_classes, in_channels and the model options); give keyword ones with "
                "model options (--model-option KEY=VALUE), or give them defaults")
    try:
        model = fn(**kwargs)
    except LandscapeError:
        raise
    except Exception as exc:  # the user's code: whatever it raises is a one-line error, not a traceback
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise LandscapeError(f"model '{spec}' raised {_one_line(exc)} when called with {given}") from None
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_options(name: str, options: dict[str, Any]) -> None:
    """Types and ranges of the registered ResNets' options, so a bad value is named before anything is built."""
    from landscape.models.attention import ATTENTION_MERGES, ATTENTIONS
    from landscape.models.resnet import MERGES, SHORTCUTS

    choices = {"merge": MERGES, "shortcut": SHORTCUTS, "attention_merge": ATTENTION_MERGES,
               "attention": tuple(ATTENTIONS)}
    for key, value in options.items():
        if key == "width":
            if not (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and value > 0):
                raise LandscapeError(f"model {name}: option width={value!r} must be a finite number > 0")
        elif key == "reduction":
            if not (_is_int(value) and value >= 1):
                raise LandscapeError(f"model {name}: option reduction={value!r} must be a whole number ≥ 1")
        elif key in choices and not (value is None and key == "attention") and value not in choices[key]:
            raise LandscapeError(f"model {name}: option {key}={value!r}; use one of {', '.join(choices[key])}")


def _parameter_estimate(depth: int, *, width: float, num_classes: int, in_channels: int) -> float:
    """About how many parameters a registered ResNet of ``depth`` has (convolutions and classifier, which dominate;
    BN and attention add a few percent). Cheap: nothing is built."""
    from landscape.models.resnet import _IMAGENET_BLOCKS

    if depth in CIFAR_DEPTHS:
        blocks, base = [(depth - 2) // 6] * 3, [16, 32, 64]
    else:
        blocks, base = _IMAGENET_BLOCKS[depth], [64, 128, 256, 512]
    widths = [max(1.0, b * float(width)) for b in base]
    total = 9.0 * in_channels * widths[0]
    p = widths[0]
    for n, q in zip(blocks, widths):
        total += 9.0 * (p * q + (2 * n - 1) * q * q) + (p * q if p != q else 0.0)
        p = q
    return total + p * num_classes


def build_model(name: str, *, num_classes: int, in_channels: int, **options: Any) -> nn.Module:
    """Build a registered model (``landscape models`` lists them) or a user's ``package.module:callable``.

    A ``package.module:callable`` is imported and called: pass only names you trust (never one read from a file).
    The returned module carries ``landscape_spec`` (name, options, num_classes, in_channels) so checkpoints can
    record how to rebuild it.
    """
    if not isinstance(name, str):
        raise LandscapeError(f"model name {name!r} must be a string")
    for arg, value in (("num_classes", num_classes), ("in_channels", in_channels)):
        if not (_is_int(value) and value >= 1):
            raise LandscapeError(f"{arg}={value!r} must be a whole number ≥ 1 (model {name})")
    if name not in _REGISTRY and ":" in name:
        model = _call_user(_import_callable(name), name, num_classes=num_classes, in_channels=in_channels, **options)
    else:
        if name not in _REGISTRY:
            close = difflib.get_close_matches(name, _REGISTRY, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise LandscapeError(f"unknown model '{name}'{hint} ('landscape models' lists all, or use pkg.module:callable)")
        depth = _DEPTHS.get(name)
        if depth is not None:
            unknown = sorted(set(options) - set(_option_names()))
            if unknown:
                raise LandscapeError(
                    f"model {name} does not take option(s) {', '.join(unknown)}; it takes {', '.join(_option_names())}"
                )
            _check_options(name, options)
            n = _parameter_estimate(depth, width=options.get("width", 1), num_classes=num_classes,
                                    in_channels=in_channels)
            require_memory(4.0 * n, what=f"model {name} with {n:.3g} parameters (width={options.get('width', 1)!r}, "
                           f"num_classes={num_classes}, in_channels={in_channels})",
                           fix="ask for a smaller width, num_classes or in_channels")
        try:
            model = _REGISTRY[name](num_classes=num_classes, in_channels=in_channels, **options)
        except LandscapeError:
            raise
        except (TypeError, ValueError, KeyError, ZeroDivisionError, OverflowError, RuntimeError) as exc:
            given = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no options"
            raise LandscapeError(f"model {name} with {given}: {_one_line(exc)}") from None
    model.landscape_spec = {  # type: ignore[assignment]  # nn.Module's attribute typing knows only tensors
        "model": name, "model_options": dict(options), "num_classes": num_classes, "in_channels": in_channels,
    }
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
