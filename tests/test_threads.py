"""Thread counts: the default honours explicit settings, never oversubscribes, and ``--threads`` applies it."""

from __future__ import annotations

import os

import pytest
import torch
from click.testing import CliRunner

from landscape.core.threads import default_threads, set_threads
from landscape.errors import LandscapeError


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.fixture(autouse=True)
def _auto(monkeypatch: pytest.MonkeyPatch):
    """No explicit setting from the caller's environment; the thread count restored afterwards."""
    monkeypatch.delenv("LANDSCAPE_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _set_machine(monkeypatch: pytest.MonkeyPatch, *, cores: int, load: float) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))


def test_explicit_environment_wins(monkeypatch):
    _set_machine(monkeypatch, cores=2, load=8.0)  # a busy machine would get 1 thread
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert default_threads() == 3
    monkeypatch.setenv("LANDSCAPE_THREADS", "5")  # ours first
    assert default_threads() == 5
    monkeypatch.setenv("LANDSCAPE_THREADS", "")  # empty: unset
    assert default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "4,2")  # OpenMP's nested form: the outer level
    assert default_threads() == 4


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_bad_environment_value_is_refused(monkeypatch, value):
    monkeypatch.setenv("LANDSCAPE_THREADS", value)
    with pytest.raises(LandscapeError, match=f"LANDSCAPE_THREADS='{value}' is not a positive thread count"):
        default_threads()


def test_default_is_within_the_cores_available():
    n = default_threads()  # this machine, as it is now
    assert 1 <= n <= _cores()


def test_default_goes_down_with_load(monkeypatch):
    import landscape.core.threads as threads

    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 8)  # torch's default on an 8-core machine
    counts = []
    for load in (0.0, 0.4, 2.6, 5.0, 7.6, 20.0):
        _set_machine(monkeypatch, cores=8, load=load)
        counts.append(default_threads())
    assert counts == [8, 8, 5, 3, 1, 1]
    _set_machine(monkeypatch, cores=4, load=0.0)  # a 4-core affinity mask caps it below torch's 8
    assert default_threads() == 4


def test_default_never_exceeds_torchs_default(monkeypatch):
    import landscape.core.threads as threads

    monkeypatch.setattr(threads, "_TORCH_DEFAULT", 2)  # 4 logical cores, 2 physical
    _set_machine(monkeypatch, cores=4, load=0.0)
    assert default_threads() == 2


def test_set_threads():
    assert set_threads(1) == 1 == torch.get_num_threads()
    assert set_threads(None) == default_threads() == torch.get_num_threads()
    with pytest.raises(LandscapeError, match="threads=0 must be a positive integer"):
        set_threads(0)


def test_cli_threads_option_sets_torch():
    from landscape.cli import main

    torch.set_num_threads(2)
    result = CliRunner().invoke(main, ["--threads", "1", "models"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1


def test_cli_threads_option_refuses_negative():
    from landscape.cli import main

    result = CliRunner().invoke(main, ["--threads", "-1", "models"])
    assert result.exit_code == 2
    assert "--threads" in result.output and "x>=0" in result.output
