"""Checkpoints: state dict + JSON metadata, written atomically, read with ``weights_only=True`` only."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape._fs import atomic_path
from landscape._version import __version__
from landscape.errors import LandscapeError

FORMAT = "landscape.checkpoint/1"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, for provenance."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _pickle_imports(path: Path) -> list[str] | None:
    """The globals a pickle would import (``module.name``), read from its opcodes without executing anything; None
    when ``path`` is not a pickle (or, for torch's zip format, its ``data.pkl``)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                name = next((n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
                if name is None:
                    return None
                data = z.read(name)
        else:
            data = path.read_bytes()
        # STACK_GLOBAL takes module and name from the stack; they are pushed as strings just before, or fetched
        # from the memo when repeated, so strings and the memo are followed (nothing else is needed here).
        found, strings, memo, last = [], [], {}, None
        stream = io.BytesIO(data)
        ops = []
        # torch's legacy format is several pickles in a row, then raw storage bytes: read pickles until one fails.
        with contextlib.suppress(Exception):
            while stream.tell() < len(data):
                for item in pickletools.genops(stream):
                    ops.append(item)
        if not ops:
            return None
        for op, arg, _pos in ops:
            pushed = None
            if op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif op.name == "MEMOIZE":
                memo[len(memo)] = last
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = last
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(int(arg))
            elif isinstance(arg, str):
                pushed = arg
            if isinstance(pushed, str):
                strings.append(pushed)
            if op.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                last = pushed
        return list(dict.fromkeys(found))
    except Exception:  # not a pickle, or truncated: nothing to report
        return None


def _describe(path: Path) -> str:
    """A few words on what a file that is not a checkpoint holds, for error messages."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(2)
    if size == 0:
        return "an empty file"
    if head == b"PK":
        return f"a zip archive of {size} bytes that is incomplete or not torch's format"
    if head[:1] == b"\x80":
        return f"a pickle (protocol {head[1]}) of {size} bytes that is truncated or holds objects torch cannot load"
    return f"{size} bytes that are neither a zip archive nor a pickle"


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a half-written file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(
    path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any] | None = None, **extra: Any
) -> Path:
    """Save ``model``'s state dict with JSON-able ``meta`` (model spec filled in from the model when known).

    ``extra`` holds further tensors/containers (optimizer and RNG state for resuming training).
    """
    meta = {**getattr(model, "landscape_spec", {}), **(meta or {})}
    meta.setdefault("library_version", __version__)
    try:
        meta_json = json.dumps(meta)
    except TypeError as exc:
        raise LandscapeError(f"checkpoint metadata is not JSON-able: {exc}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save({"format": FORMAT, "state_dict": state, "meta": meta_json, **extra}, path)
    return Path(path)


def read_checkpoint_file(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw content of a checkpoint, loaded with ``weights_only=True``; every failure is a one-line error."""
    path = Path(path)
    if not path.exists():
        raise LandscapeError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise LandscapeError(f"{path} is a folder; give a checkpoint file (e.g. {path}/final.pt)")
    try:
        with warnings.catch_warnings():
            # Plain pickles of protocol > 2 make torch warn before it fails; the one-line error below says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # truncated zips surface as RuntimeError, KeyError, EOFError, BadZipFile, UnpicklingError...
        imports = _pickle_imports(path)
        unsafe = [g for g in imports or () if not g.startswith(("torch.", "collections.OrderedDict", "builtins."))]
        if unsafe:
            raise LandscapeError(
                f"refusing to load {path}: it is a pickle that would import {', '.join(unsafe[:3])}, which could run "
                "code, not just tensors; load only checkpoints you trust, written by landscape train or torch.save"
            ) from None
        raise LandscapeError(
            f"{path} is not a readable PyTorch checkpoint (truncated or foreign file?): found {_describe(path)}; "
            "expected a file written by landscape train or torch.save of a state dict"
        ) from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {"format": None, "state_dict": obj, "meta": "{}"}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return {"format": None, "state_dict": obj["state_dict"], "meta": "{}"}
    raise LandscapeError(
        f"{path} holds a {type(obj).__name__}, expected a landscape checkpoint or a plain state dict of tensors"
    )


def _infer_shapes(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """in_channels from the first conv/linear weight, num_classes from the last 2-D weight."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2]
    if not weights:
        return {}
    return {"in_channels": int(weights[0].shape[1]), "num_classes": int(weights[-1].shape[0])}


def _fit_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]}")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatch(es) e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        raise LandscapeError(f"{path} does not fit model '{name}': {'; '.join(parts)}")
    model.load_state_dict(state)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    model_options: dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint and return ``(model, meta)`` with the model in eval mode.

    A plain state dict needs ``model`` (a registered name or ``pkg.module:callable``) and, where needed,
    ``model_options``. A checkpoint that records its model must not be rebuilt as another: ``model`` and
    ``model_options`` may only repeat what it records. ``meta`` gains ``sha256`` and ``path``.
    """
    from landscape.models import build_model

    path = Path(path)
    raw = read_checkpoint_file(path, map_location)
    meta: dict[str, Any] = json.loads(raw["meta"])
    state = raw["state_dict"]
    name = model or meta.get("model")
    if name is None:
        raise LandscapeError(f"{path} is a plain state dict without metadata; say which model it is with --model NAME")
    recorded = meta.get("model_options") or {}
    options = {**recorded, **(model_options or {})} if name == meta.get("model") else dict(model_options or {})
    if meta.get("model") is not None and (diff := architecture_difference(meta, {"model": name,
                                                                                  "model_options": options})):
        # Loading trained weights into another architecture would give numbers for a model never trained.
        raise LandscapeError(f"{path} records its model ({diff}); --model/--model-option are for plain state "
                             "dicts only: drop them, or save the weights as a plain state dict to reinterpret them")
    shapes = _infer_shapes(state)
    num_classes = int(meta.get("num_classes") or shapes.get("num_classes", 10))
    in_channels = int(meta.get("in_channels") or shapes.get("in_channels", 3))
    net = build_model(name, num_classes=num_classes, in_channels=in_channels, **options)
    _fit_state(net, state, path, name)
    net.eval()
    meta.update(model=name, model_options=options, num_classes=num_classes, in_channels=in_channels)
    meta["sha256"] = file_sha256(path)
    meta["path"] = str(path)
    return net, meta


def architecture_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """How the models recorded in two checkpoints' metadata differ (name or options), or ``None`` if alike."""
    if a.get("model") != b.get("model"):
        return f"{a.get('model')} vs {b.get('model')}"
    oa, ob = a.get("model_options") or {}, b.get("model_options") or {}
    diff = [f"{k}={oa.get(k)!r} vs {ob.get(k)!r}" for k in sorted(set(oa) | set(ob)) if oa.get(k) != ob.get(k)]
    return f"{a.get('model')} with {', '.join(diff)}" if diff else None
