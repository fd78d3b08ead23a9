"""Two writers on one output started 0–300 ms apart in steps of LANDSCAPE_RACE_STEP_MS (default 50), in both
orders and with --overwrite/--force on either side; each start must be refused or proceed alone. Prints counts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from reliability._support import CLI, record_figure
from reliability.test_concurrency import WRITERS, race

STEP = int(os.environ.get("LANDSCAPE_RACE_STEP_MS", "50"))
DELAYS = list(range(0, 301, STEP))
COMBOS = {"surface": [([], []), ([], ["--overwrite"]), (["--overwrite"], [])],
          "train": [([], []), ([], ["--resume"]), (["--resume"], [])],
          "hessian": [([], ["--force"]), (["--force"], [])]}
TOTALS: dict[str, tuple[int, int]] = {}


@pytest.mark.parametrize("name", list(COMBOS))
def test_concurrent_starts_sweep(name: str, cli: CLI, tiny_run: Path, tmp_path: Path) -> None:
    w = WRITERS[name]
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    shutil.copyfile(tiny_run / "final.pt", ref_dir / "model.pt")
    res = cli.run(w.argv([]), cwd=ref_dir, timeout=300)
    assert res.returncode == 0, res.summary()
    failures, tried = [], 0
    for first, second in COMBOS[name]:
        for delay in DELAYS:
            tried += 1
            folder = tmp_path / f"r{tried}"
            folder.mkdir()
            shutil.copyfile(tiny_run / "final.pt", folder / "model.pt")
            try:
                race(cli, w, folder, ref_dir / w.output, delay=delay / 1000, first_extra=first, second_extra=second)
            except AssertionError as exc:
                failures.append(f"{first} then {second} {delay} ms: {str(exc).splitlines()[0]}")
    TOTALS[name] = (tried, tried - len(failures))
    print(f"\n{name}: {tried} concurrent starts, {tried - len(failures)} with exactly one writer")
    record_figure("concurrency", tried=sum(v[0] for v in TOTALS.values()),
                  refused=sum(v[1] for v in TOTALS.values()))
    for line in failures:
        print("  FAILED", line)
    assert not failures, "\n".join(failures)
