"""Up-front refusal of requests that cannot fit: estimate memory (and time), compare with the machine, say so."""

from __future__ import annotations

import os
import warnings

from landscape.errors import LandscapeError


def available_memory() -> int:
    """Bytes of memory this process can still expect to get (MemAvailable on Linux; total RAM elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40  # unknown: do not refuse on a guess


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def require_memory(nbytes: float, *, what: str, fix: str, available: int | None = None) -> None:
    """Raise a one-line :class:`LandscapeError` when ``what`` needs more than the memory available.

    ``what`` says what would be held ("a 100000×100000 grid of float64 values"); ``fix`` how to ask for less,
    naming arguments as ``name=`` ("lower n_samples="), which the CLI shows as the command's flags.
    """
    have = available_memory() if available is None else available
    if nbytes > have:
        raise LandscapeError(f"{what} needs about {human_bytes(nbytes)} but only {human_bytes(have)} is available; "
                             f"{fix}")


def warn_if_long(seconds: float, *, what: str, threshold: float = 86400.0) -> None:
    """Warn (not refuse) when an estimate says ``what`` will take longer than ``threshold`` seconds."""
    if seconds > threshold:
        warnings.warn(f"{what} will take about {human_seconds(seconds)} at the measured speed; it can be "
                      "interrupted and resumed", stacklevel=2)
