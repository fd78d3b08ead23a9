"""Checkpoints: state dict + JSON metadata, written atomically, read with ``weights_only=True`` only."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from landscape._version import __version__
from landscape.core._pickle_scan import unsafe_imports
from landscape.core.fs import atomic_path
from landscape.errors import LandscapeError

FORMAT = "landscape.core.checkpoint/1"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, for provenance."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a plain file"


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
    """``torch.save`` to memory, then write a temporary file in the same folder, fsync and rename: never a
    half-written file, and identical content gives identical bytes (hence the same SHA-256)."""
    # torch names the zip's top folder after the file it writes to; a temporary name would make every save of the
    # same tensors differ. Saved to a buffer, the folder is always "archive".
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        try:
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise LandscapeError(f"cannot write {path}: {exc.strerror or exc}; free some space or choose another "
                                 "output") from None


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
        mode = path.stat().st_mode
    except OSError as exc:
        raise LandscapeError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        # Opening a FIFO would block until someone writes to it; a device may never end.
        raise LandscapeError(f"{path} is not a regular file ({_file_kind(mode)}); give a checkpoint file")
    if not os.access(path, os.R_OK):
        raise LandscapeError(f"cannot read {path}: permission denied")
    try:
        with warnings.catch_warnings():
            # Plain pickles of protocol > 2 make torch warn before it fails; the one-line error below says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # truncated zips surface as RuntimeError, KeyError, EOFError, BadZipFile, UnpicklingError...
        unsafe = unsafe_imports(path)
        if unsafe:
            raise LandscapeError(
                f"refusing to load {path}: it is a pickle that would import {', '.join(unsafe[:3])}, which could run "
                "code, not just tensors; load only checkpoints you trust, written by landscape train or torch.save"
            ) from None
        raise LandscapeError(
            f"{path} is not a readable PyTorch checkpoint (truncated or foreign file?): found {_describe(path)}; "
            "expected a file written by landscape train or torch.save of a state dict"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("format"), str) and obj["format"] == FORMAT:
        if not isinstance(obj.get("meta"), str):
            raise LandscapeError(f"{path} has damaged metadata: 'meta' is a {type(obj.get('meta')).__name__}, "
                                 "not JSON text; the file was not written by landscape as it is")
        _check_state(obj.get("state_dict"), path)
        return obj
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        _check_state(obj, path)
        return {"format": None, "state_dict": obj, "meta": "{}"}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        _check_state(obj["state_dict"], path)
        return {"format": None, "state_dict": obj["state_dict"], "meta": "{}"}
    raise LandscapeError(
        f"{path} holds a {type(obj).__name__}, expected a landscape checkpoint or a plain state dict of tensors"
    )


def _check_state(state: Any, path: Path) -> None:
    if not isinstance(state, dict):
        raise LandscapeError(f"{path} has no state dict (its 'state_dict' is a {type(state).__name__}); expected "
                             "a file written by landscape train or torch.save of a state dict")
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise LandscapeError(f"{path}: state dict entry {key!r} is a {type(value).__name__}, not a tensor; "
                                 "expected a file written by landscape train or torch.save of a state dict")


# Metadata fields that code reads, and the types they must have (None is always allowed: not recorded).
_META_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,), "model_options": (dict,), "num_classes": (int,), "in_channels": (int,), "dataset": (str,),
    "data_dir": (str,), "epoch": (int,), "step": (int,), "train_config": (dict,), "metrics": (dict,),
}


def checkpoint_meta(raw: dict[str, Any], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a checkpoint read by :func:`read_checkpoint_file`, with its fields' types checked; a
    damaged field is a one-line error naming the file and the field."""
    try:
        meta = json.loads(raw["meta"])
    except (ValueError, RecursionError):
        raise LandscapeError(f"{path} has damaged metadata: it is not valid JSON; the file was not written by "
                             "landscape as it is") from None
    if not isinstance(meta, dict):
        raise LandscapeError(f"{path} has damaged metadata: a JSON {type(meta).__name__}, not an object")
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            raise LandscapeError(f"{path} has damaged metadata: '{key}' is {value!r:.60}, expected a "
                                 f"{' or '.join(t.__name__ for t in types)}")
        if key in ("num_classes", "in_channels") and isinstance(value, int) and value < 1:
            raise LandscapeError(f"{path} has damaged metadata: '{key}' is {value}, expected a whole number ≥ 1")
    if any(not isinstance(k, str) for k in meta.get("model_options") or {}):
        raise LandscapeError(f"{path} has damaged metadata: 'model_options' has a key that is not a string")
    return meta


def _nonfinite(state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """How many non-finite values the floating tensors of ``state`` hold, and in which tensors."""
    total, where = 0, []
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                total += bad
                where.append(key)
    return total, where


def _infer_shapes(state: dict[str, torch.Tensor]) -> dict[str, int]:
    """in_channels from the first weight when it is a convolution's (a first Linear's width is the number of
    input features, not image channels), num_classes from the last 2-D weight."""
    weights = [v for k, v in state.items() if k.endswith("weight") and v.dim() >= 2]
    if not weights:
        return {}
    shapes = {"num_classes": int(weights[-1].shape[0])}
    if weights[0].dim() == 4:
        shapes["in_channels"] = int(weights[0].shape[1])
    return shapes


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
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # e.g. a tensor of a dtype that cannot be copied into the parameter
        raise LandscapeError(f"{path} does not fit model '{name}': {str(exc).strip().splitlines()[-1]}") from None


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: str | None = None,
    model_options: dict[str, Any] | None = None,
    map_location: str | torch.device = "cpu",
    allow_nonfinite: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint and return ``(model, meta)`` with the model in eval mode.

    A plain state dict needs ``model`` (a registered name or ``pkg.module:callable``) and, where needed,
    ``model_options``. A checkpoint that records its model must not be rebuilt as another: ``model`` and
    ``model_options`` may only repeat what it records. A file is never trusted to name code: one that records a
    ``pkg.module:callable`` loads only when ``model`` names that same callable. Weights holding NaN or inf are
    refused unless ``allow_nonfinite``. ``meta`` gains ``sha256`` and ``path``.
    """
    from landscape.models import build_model, list_models

    path = Path(path)
    raw = read_checkpoint_file(path, map_location)
    meta = checkpoint_meta(raw, path)
    state = raw["state_dict"]
    recorded_name = meta.get("model")
    if model is not None and not isinstance(model, str):
        raise LandscapeError(f"model={model!r} must be a model name or 'package.module:callable'")
    if model_options is not None and not isinstance(model_options, dict):
        raise LandscapeError(f"model_options={model_options!r} must be a dict")
    if model is None and recorded_name is not None and recorded_name not in list_models():
        if ":" in recorded_name:
            # The hole this closes: a file that names code would run it. Only the caller may name code.
            raise LandscapeError(
                f"{path} records model '{recorded_name}', which is code named by the file; landscape never imports "
                f"code a file names: if you trust it, pass it yourself with model={recorded_name}")
        raise LandscapeError(f"{path} records model '{recorded_name}', which is not a registered model "
                             "('landscape models' lists them); was it registered in another program?")
    # From here the model built is the caller's own or a registered one: a file never chooses code to run.
    name = model or recorded_name
    if name is None:
        raise LandscapeError(f"{path} is a plain state dict without metadata; say which model it is with model=")
    recorded = meta.get("model_options") or {}
    options = {**recorded, **(model_options or {})} if name == recorded_name else dict(model_options or {})
    if recorded_name is not None and (diff := architecture_difference(meta, {"model": name,
                                                                             "model_options": options})):
        # Loading trained weights into another architecture would give numbers for a model never trained.
        raise LandscapeError(f"{path} records its model ({diff}); model= and model_options= are for plain "
                             "state dicts only: drop them, or save the weights as a plain state dict to reinterpret them")
    if not allow_nonfinite:
        count, where = _nonfinite(state)
        if count:
            more = f" (and {len(where) - 1} more tensor(s))" if len(where) > 1 else ""
            raise LandscapeError(f"{path} holds {count} non-finite value(s) in {where[0]}{more}; its training "
                                 "diverged: use an earlier checkpoint (or allow_nonfinite=True to load it anyway)")
    shapes = _infer_shapes(state)
    num_classes = int(meta.get("num_classes") or shapes.get("num_classes", 10))
    # Unknown for a plain MLP state dict: built with the default, recorded as unknown so no dataset is refused
    # for a channel count the file never stated.
    known_channels = meta.get("in_channels") or shapes.get("in_channels")
    in_channels = int(known_channels) if known_channels else None
    try:
        net = build_model(name, num_classes=num_classes, in_channels=in_channels or 3, **options)
    except LandscapeError as exc:  # say which file asked for it: its recorded options may be the cause
        raise LandscapeError(f"{path}: {exc}") from None
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
