"""Training integrity: one run per folder, no success claimed by a diverged run, one line for a failed write."""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner

from landscape import LandscapeError, load_checkpoint, load_dataset
from landscape.cli import main
from landscape.core.checkpoint import read_checkpoint_file
from landscape.training import seeded_model, train

CLI = [sys.executable, "-c", "import sys; from landscape.cli import main; main(sys.argv[1:], prog_name='landscape')"]
TRAIN = ["train", "resnet8", "--epochs", "3", "--n-train", "256", "--batch-size", "32", "--probe-every", "4",
         "--probe-eta", "0.1:0.2:2", "--quiet"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _temp_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith((".tmp", ".lock")))


def _assert_one_consistent_run(run: Path, *, epochs: int, every: int, steps_per_epoch: int) -> None:
    """Every file of the run tells the same story: epochs 1..E once each, probes every K steps once each."""
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    assert [int(r["step"]) for r in rows] == [e * steps_per_epoch for e in range(1, epochs + 1)]
    last = read_checkpoint_file(run / "last.pt")
    assert int(last["epoch"]) == epochs
    assert [r["train_loss"] for r in json.loads(last["metrics_rows"])] == pytest.approx(
        [float(r["train_loss"]) for r in rows], rel=1e-12)
    assert sorted(p.name for p in run.glob("epoch_*.pt")) == [f"epoch_{e:04d}.pt" for e in range(epochs + 1)]
    final, meta = load_checkpoint(run / "final.pt")
    at_end, _ = load_checkpoint(run / f"epoch_{epochs:04d}.pt")
    assert meta["epoch"] == epochs
    for (name, a), b in zip(final.state_dict().items(), at_end.state_dict().values()):
        assert torch.equal(a, b), name
    with h5py.File(run / "predictiveness.h5", "r") as f:
        assert f["step"][:].tolist() == list(range(0, epochs * steps_per_epoch, every))


def test_two_trainings_into_one_folder_one_wins_the_other_is_refused(tmp_path):
    run = tmp_path / "run"
    procs = [subprocess.Popen([*CLI, *TRAIN, "--out", str(run)], env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    _, _, err = next(r for r in results if r[0] == 1)
    # One line naming the holder (not a traceback, not "already holds": the two ran at the same time).
    assert err.count("\n") == 1 and err.startswith("error: landscape process ") and "is writing" in err, err
    _assert_one_consistent_run(run, epochs=3, every=4, steps_per_epoch=8)
    assert _temp_files(tmp_path) == []
    # The survivor's run is whole: resuming it finds nothing to do and changes nothing.
    before = (run / "metrics.csv").read_bytes()
    again = CliRunner().invoke(main, [*TRAIN, "--out", str(run), "--resume"])
    assert again.exit_code == 0, again.output
    assert (run / "metrics.csv").read_bytes() == before
    _assert_one_consistent_run(run, epochs=3, every=4, steps_per_epoch=8)


def test_a_locked_run_folder_is_refused_in_process_too(tmp_path):
    from landscape.core.fs import lock_path

    # Another process holds the lock: simulate with a child that takes it and waits.
    run = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from landscape.core.fs import output_lock
            with output_lock({str(run)!r}):
                print("locked", flush=True)
                sys.stdin.read()
        """)], env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        assert lock_path(run).exists()
        res = CliRunner().invoke(main, ["train", "resnet8", "--epochs", "1", "--n-train", "64", "--quiet",
                                        "--out", str(run)])
        assert res.exit_code == 1 and f"process {child.pid}" in res.stderr and res.stderr.count("\n") == 1
        assert not run.exists()
    finally:
        child.communicate("", timeout=60)


class _BlowUpAtLastStep:
    """Corrupts the last step's gradient, so the last update (the one no loss check sees) ruins the weights."""

    def __init__(self, last_step: int, value: float) -> None:
        self.last_step, self.value = last_step, value

    def on_step(self, ctx):
        if ctx.step == self.last_step:
            for p in ctx.model.parameters():
                p.grad.fill_(self.value)


@pytest.mark.parametrize(("value", "with_test", "fragment"), [
    (float("inf"), True, "has"),              # weights become inf/NaN
    (1e36, True, "test loss is"),             # finite but absurd weights: the test loss says it
    (1e36, False, "loss after the last step is"),  # no test set: the last batch says it
])
def test_divergence_on_the_last_step_is_not_saved_as_a_success(tmp_path, value, with_test, fragment):
    data = load_dataset("digits", n=128, seed=0)
    test = load_dataset("digits", split="test") if with_test else None
    model = seeded_model("resnet8", num_classes=10, in_channels=1, seed=0)
    with pytest.raises(LandscapeError, match=f"training diverged at epoch 2: .*{fragment}.*; lower lr=$") as info:
        train(model, data, test, epochs=2, batch_size=64, lr=0.05, out_dir=tmp_path / "r", progress=False,
              callbacks=[_BlowUpAtLastStep(3, value)])
    assert "\n" not in str(info.value)
    run = tmp_path / "r"
    assert not (run / "final.pt").exists() and not (run / "epoch_0002.pt").exists()
    # The folder still holds the last good epoch, so lowering nothing and resuming diverges again, honestly.
    assert int(read_checkpoint_file(run / "last.pt")["epoch"]) == 1
    with open(run / "metrics.csv") as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]
    assert _temp_files(tmp_path) == []


def test_cli_huge_learning_rate_on_the_only_step_exits_non_zero_without_final(tmp_path):
    # One epoch of one step: the loss before it is fine, the update sends the weights to ~1e29.
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["train", "resnet8", "--epochs", "1", "--n-train", "64", "--batch-size", "64",
                                    "--lr", "1e30", "--schedule", "constant", "--out", str(out), "--quiet"])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith("error: training diverged at epoch 1") and res.stderr.count("\n") == 1
    assert res.stderr.rstrip().endswith("lower --lr")
    assert not (out / "final.pt").exists() and not (out / "last.pt").exists()


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_on_metrics_is_one_line_and_leaves_no_temp_file(tmp_path, monkeypatch):
    original = Path.write_text

    def write_text(self, *args, **kwargs):
        if "metrics.csv" in self.name:
            original(self, "epoch,st")  # a partial write, then the disk is full
            _no_space()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["train", "resnet8", "--epochs", "1", "--n-train", "64", "--out", str(out),
                                    "--quiet"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert res.stderr.startswith(f"error: cannot write {out / 'metrics.csv'}: No space left on device")
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.output
    assert not (out / "metrics.csv").exists() and not (out / "final.pt").exists()
    assert _temp_files(tmp_path) == []


def test_full_disk_on_the_probe_file_is_one_line(tmp_path, monkeypatch):
    import landscape.analyses.predictiveness.schema as store

    calls = {"n": 0}
    original = store.append

    def append(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            _no_space()
        return original(*args, **kwargs)

    monkeypatch.setattr(store, "append", append)
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["train", "resnet8", "--epochs", "1", "--n-train", "64", "--batch-size", "32",
                                    "--probe-every", "1", "--out", str(out), "--quiet"])
    assert res.exit_code == 1, res.output
    assert res.stderr.startswith(f"error: cannot write {out / 'predictiveness.h5'}") and res.stderr.count("\n") == 1
    assert not (out / "final.pt").exists()
    assert _temp_files(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "setrlimit") and sys.platform != "linux", reason="needs RLIMIT_FSIZE")
@pytest.mark.parametrize(("limit", "fails"), [(100_000, "epoch_0000.pt"), (500_000, "last.pt")])
def test_file_size_limit_is_one_line_without_litter(tmp_path, limit, fails):
    # A real limit on file size, in a child process: every checkpoint write goes through it.
    out = tmp_path / "r"
    code = (f"import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
            "from landscape.cli import main; main(sys.argv[1:], prog_name='landscape')")
    proc = subprocess.run([sys.executable, "-c", code, "train", "resnet8", "--epochs", "1", "--n-train", "64",
                           "--out", str(out), "--quiet"], env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(f"error: cannot write {out / fails}: File too large"), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not (out / "final.pt").exists()
    assert _temp_files(tmp_path) == []


def test_stale_temp_files_of_a_killed_run_are_swept_on_the_next(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    stale = [out / ".last.pt.abc123.tmp", out / ".metrics.csv.x.tmp", out / "metrics.csv.tmp",
             out / ".epoch_0001.pt.q.tmp"]
    for p in stale:
        p.write_bytes(b"")
    other = out / ".surface.h5.zz.tmp"  # another command's file in the folder is not ours to remove
    other.write_bytes(b"")
    model = seeded_model("resnet8", num_classes=10, in_channels=1, seed=0)
    train(model, load_dataset("digits", n=64, seed=0), None, epochs=1, batch_size=64, lr=0.05, out_dir=out,
          progress=False)
    assert not any(p.exists() for p in stale) and other.exists()
