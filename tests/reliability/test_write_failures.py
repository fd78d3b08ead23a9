"""Write failures injected inside every write path: a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: the kernel
refuses the write with EFBIG, as on a full quota) and a patched writer raising OSError(ENOSPC) at the k-th write
(see ``_zygote._install``: Python's open, os.write/pwrite/fsync, h5py and torch.save are counted).

Each failure must give one line and exit ≠ 0, leave no file that claims work it does not hold (every surface point
marked done has its values; no final.pt after a failed training; no half-written result), no temporary or lock
file, and the same command without the failure must complete and equal an uninterrupted run. The long sweep over
limits and k (tests/slow/test_write_sweep.py) reuses :func:`failure_trial`.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ._support import CLI, assert_same_h5, assert_same_run, litter, one_error_line, record_figure
from .test_crash_resume import check_run_folder, check_surface_file


@dataclass(frozen=True)
class WritePath:
    """A write path: the command, its output, how to check a partial output, how to compare a full one."""

    name: str
    argv: list
    output: str
    check_partial: Callable[[Path], None]
    compare: Callable[[Path, Path], None]
    inputs: tuple[str, ...] = ("model.pt",)


def _no_result(path: Path) -> None:
    """Commands that write their result at once leave it whole or not at all; after a failure, not at all."""
    assert not path.exists(), f"{path} exists after a failed write"


SURF = ["--n-samples", "64", "--quiet"]
PATHS = {
    "surface": WritePath("surface", ["surface", "model.pt", "--x", "-1:1:5", "--y", "-1:1:5", *SURF, "--out", "s.h5"],
                     "s.h5", check_surface_file, assert_same_h5),
    "train": WritePath("train", ["train", "resnet8", "--epochs", "2", "--n-train", "128", "--out", "run", "--quiet",
                             "--resume"], "run", lambda p: (_no_final(p), check_run_folder(p)), assert_same_run, ()),
    "train-probes": WritePath("train-probes", ["train", "resnet8", "--epochs", "2", "--n-train", "128", "--probe-every",
                                           "1", "--out", "run", "--quiet", "--resume"], "run",
                          lambda p: (_no_final(p), check_run_folder(p)), assert_same_run, ()),
    "hessian": WritePath("hessian", ["hessian", "model.pt", "--top-k", "1", "--n-samples", "32", "--quiet", "--out",
                                 "h.h5"], "h.h5", _no_result, assert_same_h5),
    "predictiveness": WritePath("predictiveness", ["predictiveness", "model.pt", "--batches", "2", "--batch-size", "16",
                                               "--n-samples", "64", "--quiet", "--out", "p.h5"], "p.h5", _no_result,
                            assert_same_h5),
    "inputspace": WritePath("inputspace", ["inputspace", "model.pt", "--samples", "4", "--radius", "0:1:3", "--quiet",
                                       "--out", "i.h5"], "i.h5", _no_result, assert_same_h5),
    "attention": WritePath("attention", ["attention", "se.pt", "--samples", "16", "--quiet", "--out", "a.h5"], "a.h5",
                       _no_result, assert_same_h5, ("se.pt",)),
    "plot": WritePath("plot", ["plot", "surface.h5", "--out", "fig.png"], "fig.png", _no_result,
                  lambda a, b: None, ("surface.h5",)),
}


def _no_final(run: Path) -> None:
    assert not (run / "final.pt").exists(), f"{run}/final.pt exists after a failed training"


@dataclass
class Inputs:
    files: dict[str, Path] = field(default_factory=dict)

    def place(self, folder: Path, names: tuple[str, ...]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for n in names:
            shutil.copyfile(self.files[n], folder / n)


@pytest.fixture(scope="module")
def inputs(cli: CLI, tiny_run: Path, tiny_se_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    root = tmp_path_factory.mktemp("wf-inputs")
    shutil.copyfile(tiny_run / "final.pt", root / "model.pt")
    res = cli.run(["surface", "model.pt", "--x", "-1:1:3", "--n-samples", "16", "--quiet", "--out", "surface.h5"],
                  cwd=root)
    assert res.returncode == 0, res.summary()
    return Inputs({"model.pt": root / "model.pt", "se.pt": tiny_se_ckpt, "surface.h5": root / "surface.h5"})


@pytest.fixture(scope="module")
def references(cli: CLI, inputs: Inputs, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wf-ref")
    out = {}
    for name, wp in PATHS.items():
        folder = root / name
        inputs.place(folder, wp.inputs)
        res = cli.run(wp.argv, cwd=folder, timeout=300)
        assert res.returncode == 0, res.summary()
        out[name] = folder / wp.output
    return out


def failure_trial(cli: CLI, wp: WritePath, inputs: Inputs, reference: Path, folder: Path, *, fsize: int | None = None,
                  inject: dict | None = None) -> str:
    """Run ``wp`` under a write failure and check the rules (module docstring); returns the error line.

    With ``inject``, the number of matching writes is logged: a trial whose k-th write never came is reported as
    such (the failure was not injected) rather than passed.
    """
    inputs.place(folder, wp.inputs)
    log = folder.parent / f"{folder.name}.events"
    if inject is not None:
        inject = {**inject, "log": str(log)}
    res = cli.run(wp.argv, cwd=folder, timeout=300, fsize=fsize, inject=inject)
    if inject is not None:
        events = log.read_text().splitlines() if log.exists() else []
        matching = [e for e in events if (not inject.get("match") or inject["match"] in e)
                    and not (inject.get("exclude") and inject["exclude"] in e)]
        assert len(matching) >= inject["k"], (f"only {len(matching)} write(s) matched {inject.get('match')!r}; "
                                              f"k={inject['k']} was never reached: {res.summary()}")
    why = one_error_line(res)
    assert why is None, f"{why}: {res.summary()}\n{res.stderr[-3000:]}"
    wp.check_partial(folder / wp.output)
    assert litter(folder) == [], f"left {litter(folder)}: {res.summary()}"
    again = cli.run(wp.argv, cwd=folder, timeout=300)
    assert again.returncode == 0, f"rerun without the failure: {again.summary()}\n{again.stderr[-2000:]}"
    wp.compare(folder / wp.output, reference)
    assert litter(folder) == [], f"rerun left {litter(folder)}"
    return res.stderr.strip()


# (path, file-size limit in bytes): small enough to fail the result file, or a checkpoint in mid-training. The
# sweep in tests/slow tries many more limits, and every k.
FSIZE = [
    ("surface", 4096),
    ("train", 400_000),  # last.pt of epoch 1 (epoch_0001.pt fits)
    ("train-probes", 400_000),
    ("hessian", 2048),
    ("predictiveness", 2048),
    ("inputspace", 2048),
    ("attention", 2048),
    ("plot", 1024),
]

# (path, substring of the write events to count, k): ENOSPC at the k-th matching write (lock files aside, but for
# the cases that target them: the holder's note in the lock file is a write too).
ENOSPC = [
    ("surface", "os.pwrite", 7),  # inside the point loop
    ("surface", ".lock", 1),
    ("train", "metrics.csv", 2),  # epoch 2's metrics
    ("train", ".pt.", 7),  # a checkpoint of epoch 2 (each is written, then synced)
    ("train-probes", "predictiveness.h5", 3),  # a row of the first probe (no last.pt yet)
    ("train-probes", "predictiveness.h5", 14),  # the first value of epoch 2's probe row (after last.pt)
    ("hessian", "h.h5", 1),
    ("predictiveness", "p.h5", 1),
    ("inputspace", "i.h5", 1),
    ("attention", "a.h5", 1),
    ("plot", "fig.png", 1),
]


@pytest.mark.parametrize(("name", "limit"), FSIZE, ids=[f"{n}-{s}B" for n, s in FSIZE])
def test_file_size_limit(name: str, limit: int, cli: CLI, inputs: Inputs, references: dict[str, Path],
                         tmp_path: Path) -> None:
    record_figure(f"write_fast_fsize_{name}_{limit}", tried=1, survived=0)
    failure_trial(cli, PATHS[name], inputs, references[name], tmp_path / "w", fsize=limit)
    record_figure(f"write_fast_fsize_{name}_{limit}", tried=1, survived=1)


@pytest.mark.parametrize(("name", "match", "k"), ENOSPC, ids=[f"{n}-{m}-{k}" for n, m, k in ENOSPC])
def test_enospc_at_kth_write(name: str, match: str, k: int, cli: CLI, inputs: Inputs, references: dict[str, Path],
                             tmp_path: Path) -> None:
    inject = {"match": match, "k": k, "exclude": None if match == ".lock" else ".lock"}
    record_figure(f"write_fast_enospc_{name}_{match}_{k}", tried=1, survived=0)
    failure_trial(cli, PATHS[name], inputs, references[name], tmp_path / "w", inject=inject)
    record_figure(f"write_fast_enospc_{name}_{match}_{k}", tried=1, survived=1)


def test_a_done_point_without_values_is_recomputed(cli: CLI, inputs: Inputs, references: dict[str, Path],
                                                    tmp_path: Path) -> None:
    """A file left by an old writer that set `done` before the values: the rerun recomputes those points."""
    import h5py
    import numpy as np

    wp = PATHS["surface"]
    folder = tmp_path / "w"
    inputs.place(folder, wp.inputs)
    shutil.copyfile(references["surface"], folder / "s.h5")
    with h5py.File(folder / "s.h5", "r+") as f:
        f["train_loss_stderr"][1, 2] = np.nan
        f["n_evaluated"][3, 3] = -1
        f["point_seconds"][0, 4] = np.nan
    info = cli.run(["info", "s.h5"], cwd=folder)
    progress = next((line for line in info.stdout.splitlines() if "progress" in line), "")
    assert info.returncode == 0 and "incomplete" in progress, info.stdout + info.stderr
    res = cli.run(wp.argv, cwd=folder)
    assert res.returncode == 0, res.summary()
    wp.compare(folder / "s.h5", references["surface"])
