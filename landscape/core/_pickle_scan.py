"""What a pickle would import, read from its opcodes without executing anything, and what torch's ``weights_only``
loader allows: the checkpoint reader names the imports of a file it refuses (a hostile pickle vs a damaged file)."""

from __future__ import annotations

import _compat_pickle
import contextlib
import io
import pickletools
import zipfile
from pathlib import Path
from typing import Any


def _py3_name(module: str, name: str = "") -> str:
    """``module.name`` as Python 3 reads a protocol-2 global (``__builtin__ exec`` is ``builtins.exec``)."""
    module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
    return f"{_compat_pickle.IMPORT_MAPPING.get(module, module)}.{name}"


def pickle_imports(path: Path) -> list[str] | None:
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
        found: list[str] = []
        strings: list[str] = []
        memo: dict[int, Any] = {}
        last: Any = None
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
                found.append(_py3_name(*str(arg).split(" ", 1)))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
            elif op.name == "MEMOIZE":
                memo[len(memo)] = last
            elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = last  # type: ignore[arg-type]  # these opcodes carry an int
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed = memo.get(int(arg))  # type: ignore[arg-type]
            elif isinstance(arg, str):
                pushed = arg
            if isinstance(pushed, str):
                strings.append(pushed)
            if op.name not in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                last = pushed
        return list(dict.fromkeys(found))
    except Exception:  # not a pickle, or truncated: nothing to report
        return None


# What torch's weights_only loader needs when its private table is unavailable (older/newer torch): tensors,
# storages, dtypes and the containers a state dict uses. Nothing else may be imported by a checkpoint.
_FALLBACK_GLOBALS = frozenset({
    "collections.OrderedDict", "collections.Counter", "builtins.set", "builtins.frozenset", "builtins.bytearray",
    "builtins.complex", "_codecs.encode", "torch.Size", "torch.Tensor", "torch.device",
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state", "torch.nn.parameter.Parameter",
    "torch._tensor._rebuild_from_type_v2", "torch.serialization._get_layout",
} | {f"torch.{t}{k}" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte",
                                 "Bool", "ComplexFloat", "ComplexDouble") for k in ("Storage", "Tensor")}
  | {f"torch.{d}" for d in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
                            "uint8", "bool", "complex64", "complex128", "UntypedStorage", "strided")})


def allowed_globals() -> frozenset[str]:
    """The exact ``module.name`` globals torch's ``weights_only`` loader accepts (plus any the user allow-listed)."""
    try:
        from torch import _weights_only_unpickler as w

        names = set(w._get_allowed_globals()) | set(w._get_user_allowed_globals())
    except Exception:  # a private table: if torch moves it, fall back to the tensors-and-containers list
        return _FALLBACK_GLOBALS
    return frozenset(names | _FALLBACK_GLOBALS)


def unsafe_imports(path: Path) -> list[str]:
    """The globals the pickle in ``path`` would import beyond what ``weights_only`` allows (empty when none, or
    when ``path`` is not a pickle)."""
    allowed = allowed_globals()
    return [g for g in pickle_imports(path) or () if g not in allowed]
