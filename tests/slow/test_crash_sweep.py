"""kill -9 at many seeded moments (LANDSCAPE_CRASH_TRIALS per command, default 20) for surface, train with probes
and a study; every trial must resume to a bit-identical result with no litter. Prints the counts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from reliability._support import CLI, record_figure
from reliability.test_crash_resume import JOBS, make_reference, trial

TRIALS = int(os.environ.get("LANDSCAPE_CRASH_TRIALS", "20"))
TOTALS: dict[str, tuple[int, int]] = {}


@pytest.mark.parametrize("name", list(JOBS))
def test_many_kills_all_resume_bit_identically(name: str, cli: CLI, tiny_run: Path, tmp_path: Path) -> None:
    job = JOBS[name]
    ref = make_reference(cli, job, tiny_run, tmp_path / "ref")
    failures = []
    for seed in range(100, 100 + TRIALS):
        try:
            trial(cli, job, ref, tiny_run, tmp_path / f"t{seed}", seed)
        except AssertionError as exc:
            failures.append(f"seed {seed}: {str(exc).splitlines()[0]}")
    TOTALS[name] = (TRIALS, TRIALS - len(failures))
    tried, survived = (sum(v[i] for v in TOTALS.values()) for i in (0, 1))
    print(f"\n{name}: {TRIALS} kill -9 trials, {TRIALS - len(failures)} survived")
    record_figure("crash", tried=tried, survived=survived)
    for line in failures:
        print("  FAILED", line)
    assert not failures, "\n".join(failures)
