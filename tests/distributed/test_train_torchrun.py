"""``torchrun -m landscape train`` on CPU with gloo: two processes (DistributedDataParallel, each with its share of
every global batch) train the weights one process trains, and probe and track curvature as it does, to float
tolerance; rank 0 alone writes the one-process files; an interrupted two-process run resumes to the uninterrupted
one bit for bit; an error on one rank ends both with one line.

Why not bit-identical to one process: one process differentiates the batch-mean loss; two processes each
differentiate their share's loss sum scaled by 2/batch and DDP's all-reduce adds the two gradients, so the same
terms are summed in another order (float32 rounding, ~1e-7 relative per step).
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed gloo backend")

# 200 samples in batches of 45: four of 45 (shares 23 + 22: unequal) and a short last one of 20 (10 + 10); probes
# every 3 steps and λmax every 4 (rank 0, on the whole batch).
ARGS = ["mlp", "--n-train", "200", "--batch-size", "45", "--epochs", "2", "--lr", "0.1", "--seed", "3",
        "--device", "cpu", "--quiet", "--probe-every", "3", "--track-curvature", "4", "--track-samples", "64"]
RUN_FILES = ["epoch_0000.pt", "epoch_0001.pt", "epoch_0002.pt", "final.pt", "last.pt", "metrics.csv"]
PROBED_FILES = sorted([*RUN_FILES, "predictiveness.h5", "curvature.h5"])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "LANDSCAPE_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(*args: object, cwd: Path, ranks: int, script: bool = False) -> subprocess.CompletedProcess:
    launch = [sys.executable] if ranks == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    target = [*map(str, args)] if script else ["-m", "landscape", *map(str, args)]
    return subprocess.run([*launch, *target], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=120)


def _errors(res: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("error: ")]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _rows(path: Path) -> list[dict[str, float]]:
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _columns(path: Path) -> dict[str, np.ndarray]:
    """The datasets of a probe or curvature file, but their clocks."""
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset) and "seconds" not in k}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same training run by one process (``one/``) and by two (``two/``)."""
    root = tmp_path_factory.mktemp("train_torchrun")
    one = _run("train", *ARGS, "--out", "one", cwd=root, ranks=1)
    assert one.returncode == 0, one.stderr
    two = _run("train", *ARGS, "--out", "two", cwd=root, ranks=2)
    assert two.returncode == 0, two.stderr[-3000:]
    # One summary line: rank 0's.
    assert two.stdout.count("mlp on digits: train loss") == 1, two.stdout
    return root


def test_two_processes_train_the_one_process_weights_and_write_its_files(runs: Path) -> None:
    one, two = runs / "one", runs / "two"
    # Exactly the one-process files (no second writer's temporaries, no lock left behind).
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir()) == PROBED_FILES
    assert sorted(p.name for p in runs.iterdir()) == ["one", "two"]
    for name in ("epoch_0001.pt", "final.pt"):
        a, b = _load(one / name), _load(two / name)
        assert list(b["state_dict"]) == list(a["state_dict"])  # the unwrapped module's keys, in order
        assert not any(key.startswith("module.") for key in b["state_dict"])
        for key, want in a["state_dict"].items():
            got = b["state_dict"][key]
            assert got.dtype == want.dtype and got.shape == want.shape
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5 * float(want.abs().max()))
        # Trained at all: the weights moved from the initial ones by far more than the tolerance.
        start = _load(one / "epoch_0000.pt")["state_dict"]
        assert max(float((b["state_dict"][k] - start[k]).abs().max()) for k in start) > 1e-2
    # last.pt: the same layout (optimizer state, generator, rows, callbacks), the generator where one process left it.
    a, b = _load(one / "last.pt"), _load(two / "last.pt")
    assert sorted(a) == sorted(b)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert sorted(a["optimizer"]["state"]) == sorted(b["optimizer"]["state"])
    assert torch.equal(a["generator"], b["generator"]) and a["epoch"] == b["epoch"] == 2
    # metrics.csv: the same rows to float tolerance (seconds apart).
    want, got = _rows(one / "metrics.csv"), _rows(two / "metrics.csv")
    assert len(got) == len(want) == 2
    for g, w in zip(got, want):
        assert (g["epoch"], g["step"], g["lr"]) == (w["epoch"], w["step"], w["lr"])
        for key in ("train_loss", "test_loss"):
            assert g[key] == pytest.approx(w[key], rel=1e-5)
        for key in ("train_acc", "test_acc"):  # one sample at most may flip at these tolerances
            assert abs(g[key] - w[key]) <= 1 / 200
    # Probes and λmax: rank 0's, on the whole batch with DDP's averaged gradient, as one process measures them.
    for name, rows in (("predictiveness.h5", 4), ("curvature.h5", 3)):
        want_cols, got_cols = _columns(one / name), _columns(two / name)
        assert sorted(got_cols) == sorted(want_cols) and len(want_cols["step"]) == rows
        for key, value in want_cols.items():
            if value.dtype.kind == "f":
                scale = float(np.nanmax(np.abs(value))) if np.isfinite(value).any() else 0.0
                np.testing.assert_allclose(got_cols[key], value, rtol=0, atol=1e-5 * scale, err_msg=key)
            else:
                assert np.array_equal(got_cols[key], value), key


def test_an_interrupted_two_process_run_resumes_to_the_uninterrupted_one(runs: Path, tmp_path: Path) -> None:
    # Rank 0 cannot write epoch 2's checkpoint (a folder is in the way): both processes stop, one line says why.
    (tmp_path / "cut" / "epoch_0002.pt").mkdir(parents=True)
    cut = _run("train", *ARGS, "--out", "cut", cwd=tmp_path, ranks=2)
    assert cut.returncode != 0
    lines = _errors(cut)
    assert len(lines) == 1 and lines[0].startswith("error: cannot write cut/epoch_0002.pt"), cut.stderr[-3000:]
    assert not re.search(r'File ".*/landscape/', cut.stderr), cut.stderr[-3000:]
    assert _load(tmp_path / "cut" / "last.pt")["epoch"] == 1
    assert _columns(tmp_path / "cut" / "predictiveness.h5")["step"].max() >= 5  # probed in epoch 2 before failing
    (tmp_path / "cut" / "epoch_0002.pt").rmdir()
    again = _run("train", *ARGS, "--out", "cut", "--resume", cwd=tmp_path, ranks=2)
    assert again.returncode == 0, again.stderr[-3000:]
    # The same arithmetic in the same order as the uninterrupted two-process run: bit for bit.
    got, want = _load(tmp_path / "cut" / "final.pt"), _load(runs / "two" / "final.pt")
    for key, value in want["state_dict"].items():
        assert torch.equal(got["state_dict"][key], value), key
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == PROBED_FILES
    rows, full = _rows(tmp_path / "cut" / "metrics.csv"), _rows(runs / "two" / "metrics.csv")
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in rows] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in full]
    # The probe rows of the failed epoch 2 were dropped and measured again: the files equal the uninterrupted ones.
    for name in ("predictiveness.h5", "curvature.h5"):
        got_cols, want_cols = _columns(tmp_path / "cut" / name), _columns(runs / "two" / name)
        assert sorted(got_cols) == sorted(want_cols)
        for key, value in want_cols.items():
            assert got_cols[key].tobytes() == value.tobytes(), (name, key)


@pytest.mark.parametrize("args, message", [
    (["mlp", "--sync-bn"], "error: --sync-bn needs CUDA processes (torch's SyncBatchNorm runs on GPUs only); on CPU "
                           "drop it: each process then normalises its own share of the batch"),
    # 40 = 13 × 3 + 1: the last batch leaves rank 1 no sample, and rank 0 one, too few for BatchNorm.
    (["resnet8", "--width", "0.25", "--batch-size", "3"],
     "error: a batch of 1 sample(s) (--batch-size 3, 40 training samples) gives some of the 2 processes fewer than "
     "2 samples, and BatchNorm needs 2 per process in train mode; choose another --batch-size (the global batch)"),
])
def test_a_refusal_is_said_once_before_anything_is_written(tmp_path: Path, args: list[str], message: str) -> None:
    res = _run("train", *args, "--n-train", "40", "--epochs", "1", "--device", "cpu", "--quiet", "--out", "r",
               cwd=tmp_path, ranks=2)
    assert res.returncode != 0
    assert _errors(res) == [message], res.stderr[-3000:]
    assert not re.search(r'File ".*/landscape/', res.stderr), res.stderr[-3000:]
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


WORKER = """
    import sys, torch
    from torch import nn
    from landscape.core import distributed
    from landscape.errors import LandscapeError
    from landscape.training import train

    FAIL = {fail!r}
    rank = distributed.world().rank
    sizes = []

    class Recorder(nn.Module):  # notes the size of every training forward on this rank
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))

        def forward(self, x):
            if self.training:
                sizes.append(len(x))
                if rank == 1 and len(sizes) == 3 and FAIL == "forward":
                    raise LandscapeError("model= needs 8 input features")
                if rank == 1 and len(sizes) == 3 and FAIL == "bug":
                    raise ZeroDivisionError("bug")
            return self.net(x)

    class Boom:  # a probe that fails on rank 0 at step 2
        def on_step(self, ctx):
            if ctx.step == 2:
                raise LandscapeError("the probe file is full")

    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(4, (50,), generator=torch.Generator().manual_seed(2))
    try:
        train(Recorder(), (x, y), None, epochs=2, batch_size=15, lr=0.1, seed=0, out_dir="run", progress=False,
              callbacks=[Boom()] if FAIL == "callback" else ())
        print(f"rank {{rank}} sizes {{sizes}}", flush=True)
    except distributed.PeerError as exc:
        print(f"rank {{rank}} PeerError: {{exc}}", flush=True)
        sys.exit(3)
    except Exception as exc:
        print(f"rank {{rank}} own {{type(exc).__name__}}: {{exc}}", flush=True)
        sys.exit(4)
    finally:
        distributed.finish()
"""


def test_each_rank_steps_on_its_share_of_every_global_batch(tmp_path: Path) -> None:
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER.format(fail=None)))
    res = _run("worker.py", cwd=tmp_path, ranks=2, script=True)
    assert res.returncode == 0, res.stderr[-3000:]
    # 50 samples in batches of 15, 15, 15, 5, split 8/7, 8/7, 8/7, 3/2, for each of 2 epochs.
    assert "rank 0 sizes [8, 8, 8, 3, 8, 8, 8, 3]" in res.stdout, res.stdout
    assert "rank 1 sizes [7, 7, 7, 2, 7, 7, 7, 2]" in res.stdout, res.stdout
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == RUN_FILES


@pytest.mark.parametrize("fail, rank0, rank1", [
    ("forward", "rank 0 PeerError: rank 1: model= needs 8 input features",
     "rank 1 PeerError: rank 1: model= needs 8 input features"),
    ("bug", "rank 0 PeerError: rank 1 failed (ZeroDivisionError: bug); its traceback is in that rank's output",
     "rank 1 own ZeroDivisionError: bug"),
    ("callback", "rank 0 PeerError: the probe file is full", "rank 1 PeerError: the probe file is full"),
])
def test_an_error_on_one_rank_mid_epoch_ends_every_rank(tmp_path: Path, fail: str, rank0: str, rank1: str) -> None:
    (tmp_path / "worker.py").write_text(textwrap.dedent(WORKER.format(fail=fail)))
    res = _run("worker.py", cwd=tmp_path, ranks=2, script=True)
    assert res.returncode != 0
    assert rank0 in res.stdout and rank1 in res.stdout, (res.stdout, res.stderr[-3000:])
    # Stopped in epoch 1: only the initial weights were written, by rank 0.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["epoch_0000.pt"]
