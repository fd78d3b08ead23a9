"""``torchrun -m landscape hessian`` on CPU with gloo: two processes, each with a contiguous share of the batches and
the products summed, give the eigenvalues, trace and density of one process; only rank 0 writes; an error is said
once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.distributed as dist

from landscape.analyses.hessian.schema import read_hessian

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed gloo backend")

# 5 batches of 16 (the last short): ranks hold batches [0, 2) and [2, 5). train mode: BN batch statistics and the
# dropout seeds follow the global batch index, so the operator is the one-process operator there too.
ARGS = ["--top-k", "3", "--tol", "1e-6", "--trace", "--probes", "9", "--density", "--lanczos-steps", "6",
        "--n-samples", "72", "--batch-size", "16", "--mode", "train", "--quiet"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    return {**env, "OMP_NUM_THREADS": "1", "LANDSCAPE_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(*args: object, cwd: Path, ranks: int) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "landscape"] if ranks == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), "-m",
         "landscape"]
    return subprocess.run([*launch, *map(str, args)], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained resnet8 (half width) on digits: BatchNorm, about 20 000 parameters."""
    from landscape.core.checkpoint import save_checkpoint
    from landscape.training import seeded_model

    model = seeded_model("resnet8", num_classes=10, in_channels=1, seed=0, width=0.5)
    return save_checkpoint(tmp_path_factory.mktemp("hessian_torchrun") / "net.pt", model,
                           {"dataset": "digits", "data_dir": None})


def test_two_processes_give_the_one_process_numbers(tmp_path: Path, small_ckpt: Path) -> None:
    one = _run("hessian", small_ckpt, *ARGS, "--out", "one.h5", cwd=tmp_path, ranks=1)
    assert one.returncode == 0, one.stderr
    two = _run("hessian", small_ckpt, *ARGS, "--out", "two.h5", cwd=tmp_path, ranks=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = read_hessian(tmp_path / "one.h5"), read_hessian(tmp_path / "two.h5")
    np.testing.assert_allclose(b["eigenvalues"], a["eigenvalues"], rtol=1e-5)
    assert b["trace"] == pytest.approx(a["trace"], rel=1e-5)
    np.testing.assert_allclose(b["density"]["nodes"], a["density"]["nodes"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b["density"]["weights"], a["density"]["weights"], rtol=1e-4, atol=1e-8)
    assert b["attrs"]["n_samples"] == a["attrs"]["n_samples"] == 72 and b["attrs"]["n_hvp"] == a["attrs"]["n_hvp"]
    # Only rank 0 printed (one copy of each summary line) and wrote (nothing else appeared).
    assert two.stdout.count("eigenvalues:") == 1, two.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.h5", "two.h5"]


def test_an_error_is_said_once_and_ends_every_rank(tmp_path: Path, small_ckpt: Path) -> None:
    (tmp_path / "taken.h5").write_text("")
    res = _run("hessian", small_ckpt, "--top-k", "1", "--n-samples", "32", "--quiet", "--out", "taken.h5",
               cwd=tmp_path, ranks=2)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert lines == ["error: taken.h5 exists; pass --overwrite to replace it or choose another --out"], res.stderr
    assert (tmp_path / "taken.h5").read_text() == ""
