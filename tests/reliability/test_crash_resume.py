"""kill -9 at seeded random moments, then the same command again: the result equals an uninterrupted run bit for
bit (HDF5 arrays, checkpoint tensors, metrics.csv, the study record), with no temporary or lock file left.

After each kill, and before the rerun, what is on disk must not claim work it does not hold: every surface point
marked done has its values, and every checkpoint present loads. The fast part runs two trials per command; the
long sweep (tests/slow/test_crash_sweep.py) reuses :func:`trial` with many seeds.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from ._support import CLI, assert_same_h5, assert_same_run, litter, record_figure


@dataclass(frozen=True)
class Job:
    """A command, how to set up its folder, and how to compare its output with the reference."""

    name: str
    argv: Callable[[Path], list]  # folder -> command line (run with cwd=folder)
    setup: Callable[[Path, Path], None]  # (folder, tiny run folder) -> inputs
    compare: Callable[[Path, Path], None]  # (folder, reference folder)
    check_partial: Callable[[Path], None]  # what a kill left must not lie


def _setup_ckpt(folder: Path, run: Path) -> None:
    shutil.copyfile(run / "final.pt", folder / "model.pt")


def _surface_argv(folder: Path) -> list:
    return ["surface", "model.pt", "--x", "-1:1:7", "--y", "-1:1:7", "--n-samples", "128", "--quiet", "--out",
            "s.h5"]


def check_surface_file(path: Path) -> None:
    """A surface file, if present and readable, holds values for every point it marks done."""
    if not path.exists():
        return
    with h5py.File(path, "r", locking=False) as f:
        split = f.attrs.get("split", "train")
        split = split.decode() if isinstance(split, bytes) else str(split)
        done = f["done"][()]
        loss, stderr, secs = (f[n][()] for n in (f"{split}_loss", f"{split}_loss_stderr", "point_seconds"))
        # A diverged point may have a NaN loss (and stderr); every other done point has all its values.
        assert np.isfinite(secs[done]).all(), f"{path}: a point marked done has no time"
        assert np.isfinite(stderr[done & np.isfinite(loss)]).all(), f"{path}: a point marked done has no stderr"
        n = f["n_evaluated"][()]
        assert (n[done] > 0).all(), f"{path}: done point without a sample count"
        if f.attrs.get("complete"):
            assert done.all(), f"{path} says complete with {int((~done).sum())} points not done"


def _surface_compare(folder: Path, ref: Path) -> None:
    assert_same_h5(folder / "s.h5", ref / "s.h5")
    with h5py.File(folder / "s.h5", "r") as f:
        assert bool(f.attrs["complete"]) and f["done"][()].all()


def _train_argv(folder: Path) -> list:
    return ["train", "resnet8", "--epochs", "3", "--n-train", "256", "--probe-every", "2", "--out", "run", "--quiet",
            "--resume"]


def check_run_folder(run: Path) -> None:
    """Every checkpoint present in a run folder loads, and the probe file (if any) holds whole rows only: the rows
    it counts as written (``n_rows``, the commit of an append) are present in every per-probe dataset, and a reader
    sees exactly those."""
    import torch

    if not run.exists():
        return
    for p in run.glob("*.pt"):
        torch.load(p, map_location="cpu", weights_only=True)
    probes = run / "predictiveness.h5"
    if probes.exists():
        from landscape.analyses.predictiveness import schema as store

        with h5py.File(probes, "r", locking=False) as f:
            rows = {name: f[name].shape[0] for name in f if isinstance(f[name], h5py.Dataset) and name != "eta"}
            committed = int(f.attrs["n_rows"])
        assert min(rows.values()) >= committed, f"{probes} claims {committed} rows but holds {rows}"
        data = store.read(probes)
        assert {len(getattr(data, name)) for name in rows} == {committed}, f"{probes}: reader sees a torn row"


def _train_compare(folder: Path, ref: Path) -> None:
    assert_same_run(folder / "run", ref / "run")


STUDY = """\
[study]
out = "out"

[[models]]
model = "resnet8"
label = "r8"

[train]
n-train = 128
epochs = 1
probe-every = 1
quiet = true

[[analyses]]
command = "surface"
name = "surf"
x = "-1:1:5"
n-samples = 64
quiet = true

[[analyses]]
command = "hessian"
top-k = 1
n-samples = 32
quiet = true
"""


def _study_setup(folder: Path, run: Path) -> None:
    (folder / "study.toml").write_text(STUDY)


def _study_argv(folder: Path) -> list:
    return ["study", "study.toml"]


def _study_compare(folder: Path, ref: Path) -> None:
    import json

    out, rout = folder / "out", ref / "out"
    assert_same_run(out / "r8", rout / "r8")
    assert_same_h5(out / "r8" / "results" / "surf.h5", rout / "r8" / "results" / "surf.h5")
    assert_same_h5(out / "r8" / "results" / "hessian.h5", rout / "r8" / "results" / "hessian.h5")
    assert json.loads((out / "study.json").read_text()) == json.loads((rout / "study.json").read_text())
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in rout.glob("*.png"))


def _study_partial(folder: Path) -> None:
    check_run_folder(folder / "out" / "r8")
    check_surface_file(folder / "out" / "r8" / "results" / "surf.h5")


JOBS = {
    "surface": Job("surface", _surface_argv, _setup_ckpt, _surface_compare, lambda d: check_surface_file(d / "s.h5")),
    "train": Job("train", _train_argv, lambda d, r: None, _train_compare, lambda d: check_run_folder(d / "run")),
    "study": Job("study", _study_argv, _study_setup, _study_compare, _study_partial),
}


@dataclass
class Reference:
    folder: Path
    seconds: float


def make_reference(cli: CLI, job: Job, run: Path, folder: Path) -> Reference:
    folder.mkdir(parents=True)
    job.setup(folder, run)
    t0 = time.perf_counter()
    res = cli.run(job.argv(folder), cwd=folder, timeout=300)
    assert res.returncode == 0, res.summary() + res.stderr[-2000:]
    return Reference(folder, time.perf_counter() - t0)


def trial(cli: CLI, job: Job, ref: Reference, run: Path, folder: Path, seed: int) -> float:
    """Kill ``job`` with SIGKILL at a seeded moment, check what is left, rerun it and compare with ``ref``.

    Returns the kill time (seconds after the start).
    """
    folder.mkdir(parents=True)
    job.setup(folder, run)
    rng = random.Random(seed)
    kill_at = rng.uniform(0.0, ref.seconds)
    proc = cli.start(job.argv(folder), cwd=folder)
    time.sleep(kill_at)
    proc.kill()
    proc.wait(60)
    job.check_partial(folder)
    res = cli.run(job.argv(folder), cwd=folder, timeout=300)
    assert res.returncode == 0, f"rerun after kill at {kill_at:.2f} s: " + res.summary() + res.stderr[-2000:]
    job.compare(folder, ref.folder)
    assert litter(folder) == [], f"kill at {kill_at:.2f} s left {litter(folder)}"
    return kill_at


@pytest.fixture(scope="module")
def references(cli: CLI, tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Reference]:
    root = tmp_path_factory.mktemp("crash-ref")
    return {name: make_reference(cli, job, tiny_run, root / name) for name, job in JOBS.items()}


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("name", list(JOBS))
def test_kill_9_then_rerun_equals_an_uninterrupted_run(name: str, seed: int, cli: CLI, tiny_run: Path,
                                                       references: dict[str, Reference], tmp_path: Path) -> None:
    record_figure(f"crash_fast_{name}_{seed}", tried=1, survived=0)
    trial(cli, JOBS[name], references[name], tiny_run, tmp_path / "trial", seed)
    record_figure(f"crash_fast_{name}_{seed}", tried=1, survived=1)
