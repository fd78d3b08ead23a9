"""One writer per output: two processes on one output, started 0–300 ms apart in either order, give exactly one
run that proceeds and one refusal in one line naming the holder; the output equals an uninterrupted single run.

The deterministic variant holds ``landscape.core.fs.output_lock`` in this process and checks that every writing command
is refused without touching anything. The long sweep (tests/slow/test_concurrency_sweep.py) reuses :func:`race`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from landscape.core.fs import output_lock

from ._support import (
    CLI,
    Result,
    assert_same_h5,
    assert_same_run,
    litter,
    one_error_line,
    record_figure,
    snapshot,
)


@dataclass(frozen=True)
class Writer:
    """A writing command: its command line (``extra`` appended to the second process's), its output (relative to
    the folder) and how two outputs are compared."""

    name: str
    argv: Callable[[list[str]], list]
    output: str
    compare: Callable[[Path, Path], None]


def _surface(extra: list[str]) -> list:
    return ["surface", "model.pt", "--x", "-1:1:9", "--y", "-1:1:9", "--n-samples", "256", "--quiet", "--out", "s.h5",
            *extra]


def _train(extra: list[str]) -> list:
    return ["train", "resnet8", "--epochs", "3", "--n-train", "512", "--out", "run", "--quiet", *extra]


def _hessian(extra: list[str]) -> list:
    return ["hessian", "model.pt", "--top-k", "2", "--tol", "1e-4", "--n-samples", "128", "--quiet", "--out", "h.h5",
            *extra]


WRITERS = {
    "surface": Writer("surface", _surface, "s.h5", assert_same_h5),
    "train": Writer("train", _train, "run", assert_same_run),
    "hessian": Writer("hessian", _hessian, "h.h5", assert_same_h5),
}


def _prepare(folder: Path, run: Path) -> Path:
    folder.mkdir(parents=True)
    shutil.copyfile(run / "final.pt", folder / "model.pt")
    return folder


@pytest.fixture(scope="module")
def single_runs(cli: CLI, tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each writer's output from one uninterrupted run."""
    root = tmp_path_factory.mktemp("single")
    out = {}
    for name, w in WRITERS.items():
        folder = _prepare(root / name, tiny_run)
        res = cli.run(w.argv([]), cwd=folder, timeout=300)
        assert res.returncode == 0, res.summary()
        out[name] = folder / w.output
    return out


def race(cli: CLI, w: Writer, folder: Path, reference: Path, *, delay: float, first_extra: list[str],
         second_extra: list[str]) -> tuple[Result, Result]:
    """Start ``w`` twice on one output, ``delay`` seconds apart; check one proceeds, one is refused naming it."""
    a = cli.start(w.argv(first_extra), cwd=folder)
    time.sleep(delay)
    b = cli.start(w.argv(second_extra), cwd=folder)
    ra, rb = a.result(300), b.result(300)
    outcome = f"first: {ra.summary()} | second: {rb.summary()}"
    winners = [r for r in (ra, rb) if r.returncode == 0]
    assert len(winners) == 1, f"{len(winners)} of 2 proceeded (delay {delay * 1000:.0f} ms): {outcome}"
    loser = rb if winners[0] is ra else ra
    assert one_error_line(loser) is None, f"{one_error_line(loser)}: {outcome}"
    assert str(winners[0].pid) in loser.stderr, f"the refusal does not name the holder {winners[0].pid}: {outcome}"
    w.compare(folder / w.output, reference)
    assert litter(folder) == [], litter(folder)
    return ra, rb


# (writer, delay in ms, extra options of the first process, of the second)
RACES = [
    ("surface", 0, [], []),
    ("surface", 150, [], ["--overwrite"]),
    ("surface", 300, ["--overwrite"], []),
    ("train", 100, [], []),
    ("hessian", 50, [], ["--force"]),
]


@pytest.mark.parametrize(("name", "delay_ms", "first", "second"), RACES,
                         ids=[f"{n}-{d}ms-{'+'.join(a) or 'plain'}-then-{'+'.join(b) or 'plain'}"
                              for n, d, a, b in RACES])
def test_two_writers_on_one_output_one_proceeds(name: str, delay_ms: int, first: list[str], second: list[str],
                                                cli: CLI, tiny_run: Path, single_runs: dict[str, Path],
                                                tmp_path: Path) -> None:
    folder = _prepare(tmp_path / "race", tiny_run)
    record_figure(f"concurrency_fast_{name}_{delay_ms}", tried=1, refused=0)
    race(cli, WRITERS[name], folder, single_runs[name], delay=delay_ms / 1000, first_extra=first,
         second_extra=second)
    record_figure(f"concurrency_fast_{name}_{delay_ms}", tried=1, refused=1)


# -- Deterministic: this process holds the lock; every writer is refused, naming this process, touching nothing.
def _locked_cases(tmp: Path, run: Path) -> dict[str, tuple[list, Path]]:
    ckpt = tmp / "model.pt"
    return {
        "surface": (["surface", ckpt, "--x", "-1:1:3", "--n-samples", "16", "--quiet", "--out", tmp / "s.h5"],
                    tmp / "s.h5"),
        "surface-overwrite": (["surface", ckpt, "--x", "-1:1:3", "--n-samples", "16", "--quiet", "--out",
                               tmp / "s.h5", "--overwrite"], tmp / "s.h5"),
        "hessian": (["hessian", ckpt, "--top-k", "1", "--n-samples", "16", "--quiet", "--out", tmp / "h.h5"],
                    tmp / "h.h5"),
        "predictiveness": (["predictiveness", ckpt, "--batches", "1", "--batch-size", "8", "--n-samples", "16",
                            "--quiet", "--out", tmp / "p.h5", "--force"], tmp / "p.h5"),
        "inputspace": (["inputspace", ckpt, "--samples", "2", "--radius", "0:1:2", "--quiet", "--out", tmp / "i.h5",
                        "--force"], tmp / "i.h5"),
        "attention": (["attention", tmp / "se.pt", "--samples", "8", "--quiet", "--out", tmp / "a.h5", "--force"],
                      tmp / "a.h5"),
        "train": (["train", "resnet8", "--epochs", "1", "--n-train", "64", "--out", tmp / "run", "--quiet"],
                  tmp / "run"),
        "train-resume": (["train", "resnet8", "--epochs", "1", "--n-train", "64", "--out", tmp / "run", "--quiet",
                          "--resume"], tmp / "run"),
        "study": (["study", tmp / "study.toml", "--out", tmp / "study-out"], tmp / "study-out"),
        "plot": (["plot", tmp / "surface.h5", "--out", tmp / "fig.png"], tmp / "fig.png"),
    }


STUDY = '[[models]]\nmodel = "resnet8"\n[train]\nn-train = 64\nepochs = 1\nquiet = true\n'


@pytest.mark.parametrize("name", list(_locked_cases(Path("/x"), Path("/x"))))
def test_cli_refuses_an_output_whose_lock_is_held(name: str, cli: CLI, tiny_run: Path, tiny_se_ckpt: Path,
                                                  tmp_path: Path) -> None:
    shutil.copyfile(tiny_run / "final.pt", tmp_path / "model.pt")
    shutil.copyfile(tiny_se_ckpt, tmp_path / "se.pt")
    (tmp_path / "study.toml").write_text(STUDY)
    if name == "plot":
        res = cli.run(["surface", tmp_path / "model.pt", "--x", "-1:1:3", "--n-samples", "16", "--quiet", "--out",
                       tmp_path / "surface.h5"], cwd=tmp_path)
        assert res.returncode == 0, res.summary()
    argv, target = _locked_cases(tmp_path, tiny_run)[name]
    before = snapshot(tmp_path)
    with output_lock(target):
        res = cli.run(argv, cwd=tmp_path, timeout=120)
        during = snapshot(tmp_path)
    assert one_error_line(res) is None, f"{one_error_line(res)}: {res.summary()}"
    assert str(os.getpid()) in res.stderr, f"the refusal does not name the holder {os.getpid()}: {res.summary()}"
    lock = f".{target.name}.lock"
    assert {k: v for k, v in during.items() if not k.endswith(lock)} == before, "the refused run touched files"
