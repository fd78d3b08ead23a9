"""Write failures everywhere: for each write path, file-size limits from 512 B up to the output's size, and ENOSPC
at every k-th write (every write event a normal run makes, up to LANDSCAPE_WRITE_MAX_K per path). Prints counts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from reliability._support import CLI, record_figure
from reliability.test_write_failures import PATHS, Inputs, failure_trial

MAX_K = int(os.environ.get("LANDSCAPE_WRITE_MAX_K", "40"))
TOTALS: dict[str, tuple[int, int]] = {}


@pytest.fixture(scope="module")
def inputs(cli: CLI, tiny_run: Path, tiny_se_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("ws-inputs")
    shutil.copyfile(tiny_run / "final.pt", root / "model.pt")
    res = cli.run(["surface", "model.pt", "--x", "-1:1:3", "--n-samples", "16", "--quiet", "--out", "surface.h5"],
                  cwd=root)
    assert res.returncode == 0, res.summary()
    return Inputs({"model.pt": root / "model.pt", "se.pt": tiny_se_ckpt, "surface.h5": root / "surface.h5"})


def _size(path: Path) -> int:
    """The largest file written (RLIMIT_FSIZE limits each file, not their total)."""
    return max(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


@pytest.mark.parametrize("name", list(PATHS))
def test_write_failure_sweep(name: str, cli: CLI, inputs: Inputs, tmp_path: Path) -> None:
    wp = PATHS[name]
    ref = tmp_path / "ref"
    inputs.place(ref, wp.inputs)
    log = tmp_path / "ref.events"
    res = cli.run(wp.argv, cwd=ref, timeout=300, inject={"log": str(log)})
    assert res.returncode == 0, res.summary()
    events = [e for e in log.read_text().splitlines()]
    biggest = max(_size(ref / wp.output), 4096)
    limits = sorted({512, 2048, *(int(biggest * f) for f in (0.1, 0.25, 0.5, 0.75, 0.9, 0.99))})
    failures, tried = [], 0
    for limit in limits:
        tried += 1
        try:
            failure_trial(cli, wp, inputs, ref / wp.output, tmp_path / f"f{limit}", fsize=limit)
        except AssertionError as exc:
            failures.append(f"fsize {limit}: {str(exc).splitlines()[0]}")
    for k in range(1, min(len(events), MAX_K) + 1):
        tried += 1
        try:
            failure_trial(cli, wp, inputs, ref / wp.output, tmp_path / f"k{k}", inject={"k": k})
        except AssertionError as exc:
            failures.append(f"ENOSPC at write {k} ({events[k - 1]}): {str(exc).splitlines()[0]}")
    TOTALS[name] = (tried, tried - len(failures))
    print(f"\n{name}: {tried} write failures, {tried - len(failures)} survived")
    record_figure("write", tried=sum(v[0] for v in TOTALS.values()), survived=sum(v[1] for v in TOTALS.values()))
    for line in failures:
        print("  FAILED", line)
    assert not failures, "\n".join(failures)
