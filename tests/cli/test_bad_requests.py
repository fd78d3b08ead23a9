"""Bad requests to the analysis commands (evaluate, hessian, predictiveness, inputspace, attention): each is refused
with exit ≠ 0, one stderr line starting with "error:", no traceback and no result file; one writer per output."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from landscape import save_checkpoint
from landscape.cli import main  # registers every command on the group
from landscape.training import seeded_model

HUGE = "1000000000000"  # 1e12: more samples, points or vectors than any machine holds, so the refusal is certain


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small untrained resnet8 and se_resnet8 for digits, the same with finite weights that overflow to NaN on every
    input, and a resnet8 whose scaled first layer overflows only on inputs far from the data."""
    root = tmp_path_factory.mktemp("bad-requests")
    out = {}
    for key, name in (("plain", "resnet8"), ("se", "se_resnet8")):
        out[key] = save_checkpoint(root / f"{key}.pt", seeded_model(name, num_classes=10, in_channels=1, seed=0,
                                                                    width=0.25), {"dataset": "digits"})
    for key, src in (("overflow", "resnet8"), ("se_overflow", "se_resnet8"), ("scaled", "resnet8")):
        model = seeded_model(src, num_classes=10, in_channels=1, seed=0, width=0.25)
        with torch.no_grad():
            if key == "scaled":  # finite on the data, overflowing only far from it
                model.conv1.weight.mul_(1e9)
            else:  # finite, so the checkpoint loads; every activation overflows
                model.conv1.weight.fill_(3e38)
        out[key] = save_checkpoint(root / f"{key}.pt", model, {"dataset": "digits"})
    return out


def evaluate(c: Path, *extra: str) -> list[str]:
    return ["evaluate", str(c), "--n-samples", "16", "--device", "cpu", *extra]


def hessian(c: Path, *extra: str) -> list[str]:
    return ["hessian", str(c), "--n-samples", "16", "--quiet", "--device", "cpu", *extra]


def predictiveness(c: Path, *extra: str) -> list[str]:
    return ["predictiveness", str(c), "--batches", "1", "--batch-size", "8", "--n-samples", "16", "--quiet",
            "--device", "cpu", *extra]


def inputspace(c: Path, *extra: str) -> list[str]:
    return ["inputspace", str(c), "--quiet", "--device", "cpu", *extra]


def attention(c: Path, *extra: str) -> list[str]:
    return ["attention", str(c), "--samples", "8", "--quiet", "--device", "cpu", *extra]


# (id, checkpoint key, argv builder, extra arguments, fragment the message must hold)
CASES = [
    # Synthetic datasets: empty, degenerate, malformed, too large to build.
    ("synthetic-0-channels", "plain", evaluate, ["--dataset", "synthetic-0x8x8"], "empty dimension"),
    ("synthetic-0-rows", "plain", evaluate, ["--dataset", "synthetic-1x0x8"], "empty dimension"),
    ("synthetic-1-value", "plain", hessian, ["--dataset", "synthetic-1x1x1"], "single value"),
    ("synthetic-malformed", "plain", evaluate, ["--dataset", "synthetic-1x8"], "unknown dataset"),
    ("synthetic-huge", "plain", evaluate, ["--dataset", "synthetic-1x1000000x1000000"], "needs about"),
    ("synthetic-huge-hessian", "plain", hessian, ["--dataset", f"synthetic-1x{HUGE}x8"], "needs about"),
    ("seed-2^64-evaluate", "plain", evaluate, ["--seed", str(2**64)], "seed"),
    # Hessian requests beyond the operator or the machine.
    ("top-k-huge", "plain", hessian, ["--top-k", HUGE], "exceeds"),
    ("trace-probes-huge", "plain", hessian, ["--top-k", "0", "--trace", "--probes", HUGE], "exact trace"),
    ("lanczos-steps-huge", "plain", hessian, ["--top-k", "0", "--density", "--lanczos-steps", HUGE], "exceeds"),
    ("density-vectors-huge", "plain", hessian, ["--top-k", "0", "--density", "--lanczos-steps", "2",
                                                "--density-vectors", HUGE], "needs about"),
    ("params-no-match", "plain", hessian, ["--params", "nothing*"], "matches no parameter"),
    ("params-empty", "plain", hessian, ["--params", ","], "matches no parameter"),
    ("nan-hvp", "overflow", hessian, [], "NaN/inf"),
    ("train-bn-batch-of-1-hessian", "plain", hessian, ["--dataset", "synthetic-1x1x2", "--mode", "train",
                                                       "--batch-size", "1"], "one value per channel"),
    # Step-size grids.
    ("eta-grid-huge", "plain", predictiveness, ["--eta", f"0.1:0.2:{HUGE}"], "at most"),
    ("eta-grid-too-many", "plain", predictiveness, ["--eta", "0.1:0.2:20000"], "at most 10,000"),
    ("eta-num-0", "plain", predictiveness, ["--eta", "0.1:1:0"], "at least 1"),
    ("eta-num-negative", "plain", predictiveness, ["--eta", "0.1:1:-3"], "at least 1"),
    ("eta-huge-range", "plain", predictiveness, ["--eta", "0.1:1e300:3"], "1e+30"),
    ("eta-huge-value", "plain", predictiveness, ["--eta", "1e31"], "1e+30"),
    ("eta-inf", "plain", predictiveness, ["--eta", "inf"], "finite"),
    ("eta-nan", "plain", predictiveness, ["--eta", "0.1,nan"], "finite"),
    ("eta-overflow-literal", "plain", predictiveness, ["--eta", "1e400"], "finite"),
    ("eta-zero", "plain", predictiveness, ["--eta", "0:0.1:2"], "not positive"),
    ("eta-empty", "plain", predictiveness, ["--eta", ","], "empty"),
    ("eta-not-numbers", "plain", predictiveness, ["--eta", "0.1,abc"], "MIN:MAX:NUM"),
    ("batches-huge", "plain", predictiveness, ["--batches", HUGE], "samples"),
    ("nan-loss-predictiveness", "overflow", predictiveness, [], "not finite"),
    ("train-bn-batch-of-1-predictiveness", "plain", predictiveness, ["--dataset", "synthetic-1x1x2",
                                                                     "--batch-size", "1"], "one value per channel"),
    # Radius, noise and segment grids; sizes that cannot be held.
    ("radius-huge-range", "plain", inputspace, ["--samples", "2", "--radius", "0:1e300:3"], "1e+30"),
    ("radius-inf", "plain", inputspace, ["--samples", "2", "--radius", "0:inf:3"], "finite"),
    ("radius-nan", "plain", inputspace, ["--samples", "2", "--radius", "0:nan:3"], "radius"),
    ("radius-num-0", "plain", inputspace, ["--samples", "2", "--radius", "0:1:0"], "at least 1"),
    ("radius-num-negative", "plain", inputspace, ["--samples", "2", "--radius", "0:1:-1"], "at least 1"),
    ("radius-grid-huge", "plain", inputspace, ["--samples", "2", "--radius", f"0:1:{HUGE}"], "at most"),
    ("radius-single", "plain", inputspace, ["--samples", "2", "--radius", "0:1:1"], "at least 2"),
    ("n-directions-huge", "plain", inputspace, ["--samples", "2", "--n-directions", HUGE], "needs about"),
    ("samples-huge", "plain", inputspace, ["--samples", HUGE], "samples"),
    ("sigma-negative", "plain", inputspace, ["--mode", "noise", "--samples", "2", "--sigma", "-1:1:3"], "≥ 0"),
    ("sigma-grid-huge", "plain", inputspace, ["--mode", "noise", "--samples", "2", "--sigma", f"0:1:{HUGE}"],
     "at most"),
    ("draws-huge", "plain", inputspace, ["--mode", "noise", "--samples", "2", "--draws", HUGE], "needs about"),
    ("steps-huge", "plain", inputspace, ["--mode", "between", "--pairs", "2", "--steps", HUGE], "too many"),
    ("pairs-huge", "plain", inputspace, ["--mode", "between", "--pairs", HUGE], "needs about"),
    ("nan-loss-inputspace", "overflow", inputspace, ["--samples", "2", "--radius", "0:1:2"], "not finite"),
    # Attention and evaluate.
    ("attention-samples-huge", "se", attention, ["--samples", HUGE], "samples"),
    ("attention-no-modules", "plain", attention, [], "no attention modules"),
    ("nan-loss-attention", "se_overflow", attention, [], "not finite"),
    ("nan-loss-evaluate", "overflow", evaluate, [], "NaN"),
]
# --out naming the checkpoint: refused even with --force, and the checkpoint stays (see the test).
CASES += [(f"out-is-checkpoint-{b.__name__}", "plain" if b is not attention else "se", b, ["--force"],
           "checkpoint itself") for b in (hessian, predictiveness, inputspace, attention)]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_request_is_one_line(case: tuple, ckpts: dict[str, Path], tmp_path: Path) -> None:
    _, key, build, extra, fragment = case
    out = tmp_path / "result.h5"
    argv = build(ckpts[key], *extra)
    if case[0].startswith("out-is-checkpoint"):
        out = tmp_path / "model.pt"
        out.write_bytes(ckpts[key].read_bytes())
        argv = build(out, *extra, "--out", str(out))
    if argv[0] != "evaluate" and "--out" not in argv:
        argv += ["--out", str(out)]
    result = CliRunner().invoke(main, argv)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exit_code not in (0, None), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert fragment.lower() in lines[0].lower(), lines[0]
    left = sorted(p.name for p in tmp_path.iterdir())
    if case[0].startswith("out-is-checkpoint"):
        assert left == ["model.pt"] and out.read_bytes() == ckpts[key].read_bytes()
    else:
        assert left == []  # no result, and no temporary or lock file beside it


def test_table_covers_every_analysis_command() -> None:
    assert {c[2].__name__ for c in CASES} == {"evaluate", "hessian", "predictiveness", "inputspace", "attention"}


# One writer per output: while another process holds the lock on --out, each command is refused naming it before
# anything else (the checkpoint it names is not even opened), and an existing file is left as is, even with --force.
HOLDER = """
import contextlib, sys
from landscape.core.fs import output_lock
with contextlib.ExitStack() as stack:
    for path in sys.argv[1:]:
        stack.enter_context(output_lock(path))
    print("ready", flush=True)
    sys.stdin.read()
"""

LOCKED = [("hessian", "plain", hessian, ["--top-k", "1"]),
          ("predictiveness", "plain", predictiveness, ["--eta", "0.1"]),
          ("inputspace", "plain", inputspace, ["--samples", "2", "--radius", "0:1:2"]),
          ("attention", "se", attention, [])]


def test_second_writer_is_refused_naming_the_holder(ckpts: dict[str, Path], tmp_path: Path) -> None:
    outs = {name: tmp_path / f"{name}.h5" for name, *_ in LOCKED}
    outs["inputspace"].write_text("keep")  # an existing output: --force must not replace it under a running writer
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, outs.values())], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        for name, _, build, extra in LOCKED:
            missing = tmp_path / "no-such-checkpoint.pt"
            result = CliRunner().invoke(main, build(missing, *extra, "--out", str(outs[name]), "--force"))
            lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
            assert result.exit_code == 1, (name, result.output)
            assert len(lines) == 1 and lines[0].startswith(f"error: landscape process {holder.pid} "), lines
            assert "is writing" in lines[0]
        assert outs["inputspace"].read_text() == "keep"
        assert not any(outs[name].exists() for name in ("hessian", "predictiveness", "attention"))
    finally:
        holder.communicate("", timeout=30)
    # Once the holder is gone, the same command goes through.
    name, key, build, extra = LOCKED[1]
    result = CliRunner().invoke(main, build(ckpts[key], *extra, "--out", str(outs[name])))
    assert result.exit_code == 0, result.output
    assert outs[name].exists() and not list(tmp_path.glob(".*.lock"))


# Results that overflow only far from the data are kept, with one warning line saying where.
@pytest.mark.parametrize("key, argv, fragment", [
    ("plain", lambda c: predictiveness(c, "--eta", "0.1,1e29"), "η=1e+29"),
    ("scaled", lambda c: inputspace(c, "--mode", "noise", "--samples", "2", "--sigma", "0:1e30:2"), "σ=1e+30"),
])
def test_partial_overflow_is_warned_and_kept(key: str, argv, fragment: str, ckpts: dict[str, Path],
                                             tmp_path: Path) -> None:
    out = tmp_path / "r.h5"
    result = CliRunner().invoke(main, [*argv(ckpts[key]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning:") and fragment in lines[0], result.stderr
    assert out.exists()


def test_pace_warns_when_the_whole_would_take_days() -> None:
    from landscape.core._eval import Pace

    pace = Pace(10**12, what="the test analysis")
    pace.add(1)  # the first report starts the clock: setup time is not counted
    time.sleep(0.6)
    with pytest.warns(UserWarning, match=r"the test analysis \(1,000,000,000,000 points\) will take about .* days"):
        pace.add(1)
