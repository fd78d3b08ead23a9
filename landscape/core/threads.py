"""How many CPU threads torch uses: a default that does not oversubscribe a busy machine, and one setter.

torch's own default is one thread per physical core, whatever else runs. On a 2-core machine with two other busy
processes that made ``landscape demo`` take 25 minutes instead of 1 min 40 s with one thread: OpenMP threads spin
waiting for each other while the scheduler hands their cores to someone else. So the default here takes only the
cores that look free now.
"""

from __future__ import annotations

import os

import torch

from landscape.errors import LandscapeError

__all__ = ["default_threads", "set_threads"]

# torch's default (physical cores, or OMP_NUM_THREADS), read once before landscape changes it: the CLI imports this
# module before any command runs. Using more threads than torch would is never what a default should do (on SMT
# machines the extra logical cores add contention, not speed).
_TORCH_DEFAULT = torch.get_num_threads()

# Checked in this order; an explicit setting wins over the automatic count, whatever the load.
_ENV_VARS = ("LANDSCAPE_THREADS", "OMP_NUM_THREADS")


def _from_env() -> int | None:
    """The thread count set in the environment, or None."""
    for name in _ENV_VARS:
        raw = os.environ.get(name, "").strip()
        if not raw:
            continue
        first = raw.split(",")[0].strip()  # OpenMP allows a nested list "4,2": the outer level is ours
        if not first.isdigit() or int(first) < 1:
            raise LandscapeError(f"{name}={raw!r} is not a positive thread count; set it to an integer like 1 "
                                 "or unset it")
        return int(first)
    return None


def _cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _load() -> int:
    """Processes competing for the CPUs: the 1-minute load average, rounded (0 where the OS has none)."""
    try:
        return round(os.getloadavg()[0])
    except (AttributeError, OSError):  # Windows has no load average
        return 0


def default_threads() -> int:
    """The thread count used unless one is given: ``LANDSCAPE_THREADS`` or ``OMP_NUM_THREADS`` if set; otherwise
    the cores this process may use minus the current load (1-minute average), at least 1, at most torch's default.

    The load average lags by about a minute and counts the whole machine (not just this container); it errs
    towards fewer threads, which costs little for the small models landscape mostly sees, while too many threads
    on busy cores cost 10× or more.
    """
    explicit = _from_env()
    if explicit is not None:
        return explicit
    return max(1, min(_cores() - _load(), _TORCH_DEFAULT))


def set_threads(n: int | None = None) -> int:
    """Use ``n`` CPU threads in torch (None: ``default_threads()``); returns the count now in use.

    Sets the intra-op threads always, and the inter-op threads too while torch still allows it (only before any
    inter-op work has started, and only once per process).
    """
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise LandscapeError(f"threads={n!r} must be a positive integer, or None for the default "
                             f"({default_threads()} here)")
    count = default_threads() if n is None else n
    torch.set_num_threads(count)
    try:
        torch.set_num_interop_threads(count)
    except RuntimeError:  # torch refuses once set or once inter-op work began; the intra-op count is what matters
        pass
    return torch.get_num_threads()
