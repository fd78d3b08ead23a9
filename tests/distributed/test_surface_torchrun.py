"""``torchrun -m landscape surface`` on CPU with gloo: two processes give the file one process gives, bit for bit;
they finish a half-done file exactly; an error on one rank ends both with one line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed gloo backend")

GRID = ["--x", "-1:1:5", "--y", "-0.5:0.5:4", "--n-samples", "150", "--batch-size", "40", "--quiet"]
ARRAYS = ("train_loss", "train_acc", "train_loss_stderr", "n_evaluated", "done")


def _env() -> dict[str, str]:
    # One thread in every process: the same arithmetic (oneDNN's blocking may follow the thread count).
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "LANDSCAPE_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _one(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "landscape", *map(str, args)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=120)


def _torchrun(*args: object, cwd: Path, script: bool = False) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    target = [*map(str, args)] if script else ["-m", "landscape", *map(str, args)]
    return subprocess.run([*launch, *target], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120)


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ARRAYS}


def _assert_bit_identical(a: Path, b: Path) -> None:
    got, want = _arrays(a), _arrays(b)
    for key in ARRAYS:
        assert got[key].dtype == want[key].dtype
        # Bit for bit, NaN included: compare the raw bytes.
        assert got[key].tobytes() == want[key].tobytes(), (key, got[key], want[key])


def test_two_processes_write_the_one_process_file_bit_for_bit(tmp_path, digits_ckpt):
    ckpt = shutil.copy(digits_ckpt, tmp_path / "net.pt")
    one = _one("surface", ckpt, *GRID, "--out", "one.h5", cwd=tmp_path)
    assert one.returncode == 0, one.stderr
    two = _torchrun("surface", ckpt, *GRID, "--out", "two.h5", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    # One writer: one summary line (rank 0), every point written once, the file complete.
    assert two.stdout.count("point(s) computed") == 1, two.stdout
    assert "two.h5: 20 point(s) computed, 20 in all" in two.stdout
    _assert_bit_identical(tmp_path / "two.h5", tmp_path / "one.h5")
    with h5py.File(tmp_path / "two.h5") as f:
        assert f.attrs["complete"] and f.attrs["processes"] == 2 and f.attrs["precision"] == "fp32"
        assert f.attrs["batch_size"] == 40
        # The directions are the one-process file's, key by key.
        with h5py.File(tmp_path / "one.h5") as g:
            for axis in ("x", "y"):
                for key in g[f"directions/{axis}"]:
                    assert np.array_equal(f[f"directions/{axis}/{key}"][()], g[f"directions/{axis}/{key}"][()])


def _blank(path: Path, flat: list[int]) -> None:
    """Unmark points as an interrupted run leaves them (values NaN/−1, not done)."""
    with h5py.File(path, "r+") as f:
        f.attrs["complete"] = False
        shape = f["done"].shape
        for index in flat:
            at = np.unravel_index(index, shape)
            for name in ("train_loss", "train_acc", "train_loss_stderr", "point_seconds"):
                f[name][at] = np.nan
            f["n_evaluated"][at] = -1
            f["done"][at] = False


def test_two_processes_finish_a_half_done_file_exactly(tmp_path, digits_ckpt):
    ckpt = shutil.copy(digits_ckpt, tmp_path / "net.pt")
    full = _one("surface", ckpt, *GRID, "--out", "full.h5", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    shutil.copy(tmp_path / "full.h5", tmp_path / "half.h5")
    blanked = [1, 2, 5, 8, 9, 10, 13, 17, 18, 19, 4]  # 11 of 20, uneven between two ranks
    _blank(tmp_path / "half.h5", blanked)
    before = _arrays(tmp_path / "half.h5")
    two = _torchrun("surface", ckpt, *GRID, "--out", "half.h5", cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert f"half.h5: {len(blanked)} point(s) computed, 20 in all" in two.stdout, two.stdout
    _assert_bit_identical(tmp_path / "half.h5", tmp_path / "full.h5")
    after = _arrays(tmp_path / "half.h5")
    kept = np.ones(20, dtype=bool)
    kept[blanked] = False
    assert np.array_equal(after["train_loss"].reshape(-1)[kept], before["train_loss"].reshape(-1)[kept])
    with h5py.File(tmp_path / "half.h5") as f:
        assert f.attrs["complete"]


def test_an_error_on_rank_0_ends_both_processes_with_one_line(tmp_path, digits_ckpt):
    ckpt = shutil.copy(digits_ckpt, tmp_path / "net.pt")
    first = _one("surface", ckpt, *GRID, "--out", "s.h5", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    # Rank 0 alone reads the file: the settings differ, and both ranks stop; the line names the flags.
    two = _torchrun("surface", ckpt, *GRID, "--seed", "1", "--out", "s.h5", cwd=tmp_path)
    assert two.returncode != 0
    lines = [line for line in (two.stdout + two.stderr).splitlines() if line.startswith("error: ")]
    assert lines == ["error: s.h5 was made with --seed 0, this run asks for --seed 1; pass --overwrite to start "
                     "afresh or choose another --out"], two.stderr
    # No traceback from landscape's processes (torchrun's launcher prints its own failure report).
    assert not re.search(r'File ".*/landscape/', two.stderr), two.stderr


WORKER = """
    import sys, torch
    from torch import nn
    import torch.nn.functional as F
    from landscape.analyses.surface.compute import SurfaceSettings, compute_surface
    from landscape.analyses.surface.directions import build_directions
    from landscape.core import distributed, params
    from landscape.core.grid import Grid, parse_axis

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    x = torch.randn(30, 6, generator=torch.Generator().manual_seed(1))
    y = torch.randint(3, (30,), generator=torch.Generator().manual_seed(2))
    rank = distributed.world().rank
    calls = [0]

    def loss(out, t):  # rank 1 fails on its third point (batch 10: three calls a point)
        calls[0] += 1
        if rank == 1 and calls[0] > 6:
            raise {error}
        return F.cross_entropy(out, t, reduction="none")

    grid = Grid(parse_axis("-1:1:4"), parse_axis("-1:1:3"))
    s = SurfaceSettings(checkpoint="mlp", checkpoint_sha256="-", model="mlp", dataset="t", split="train", seed=0,
                        norm="filter", ignore="biasbn", dir_type="weights", direction="random", xspec=grid.x.spec,
                        yspec=grid.y.spec, batch_size=10)
    dirs = lambda: build_directions("random", params.get_tensors(model), ndim=2, seed=0)
    try:
        compute_surface(model, x, y, out="e.h5", grid=grid, settings=s, directions=dirs, loss_fn=loss,
                        progress=False)
    except distributed.PeerError as exc:
        print(f"rank {{rank}} PeerError: {{exc}}", flush=True)
        sys.exit(3)
    except Exception as exc:
        print(f"rank {{rank}} own {{type(exc).__name__}}: {{exc}}", flush=True)
        sys.exit(4)
    finally:
        distributed.finish()
"""


@pytest.mark.parametrize("error, rank1, rank0", [
    ('__import__("landscape.errors").errors.LandscapeError("loss_fn= needs labels in 0..2")',
     "rank 1 PeerError: rank 1: loss_fn= needs labels in 0..2", "rank 0 PeerError: rank 1: loss_fn= needs labels"),
    ('ZeroDivisionError("bug")', "rank 1 own ZeroDivisionError: bug",
     "rank 0 PeerError: rank 1 failed (ZeroDivisionError: bug); its traceback is in that rank's output"),
])
def test_an_error_on_one_rank_ends_every_rank_and_keeps_the_finished_points(tmp_path, error, rank1, rank0):
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER.format(error=error)))
    run = _torchrun("worker.py", cwd=tmp_path, script=True)
    assert run.returncode != 0
    out = run.stdout
    assert rank1 in out and rank0 in out, (out, run.stderr)
    # Each rank finished two points (rounds of one point each) before rank 1 failed: 4 points kept, written by
    # rank 0, the file not complete; a rerun would compute the other 8.
    with h5py.File(tmp_path / "e.h5") as f:
        assert int(f["done"][()].sum()) == 4 and not f.attrs["complete"]
        assert sorted(np.flatnonzero(f["done"][()].reshape(-1))) == [0, 1, 2, 3]
