"""Full-batch gradient descent, Adam and the MSE loss in the training loop and ``landscape train``."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from landscape import LandscapeError
from landscape.cli import main
from landscape.training import train
from landscape.training.losses import mse, per_sample


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def data(n: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.randint(3, (n,), generator=g)


class _Steps:
    def __init__(self):
        self.seen = []

    def on_step(self, ctx):
        self.seen.append((ctx.step, ctx.epoch, len(ctx.targets), ctx.lr, type(ctx.optimizer).__name__))
        assert torch.equal(ctx.inputs, self.x)  # the whole set, in its stored order


def test_gd_takes_one_full_batch_step_per_epoch_and_equals_plain_gradient_descent(tmp_path):
    x, y = data()
    steps = _Steps()
    steps.x = x
    model = linear()
    ref = linear()
    result = train(model, (x, y), None, epochs=3, lr=0.3, optimizer="gd", loss="mse", schedule="constant",
                   out_dir=tmp_path, callbacks=[steps], progress=False)
    assert result.steps == 3 and [s[:3] for s in steps.seen] == [(0, 1, 10), (1, 2, 10), (2, 3, 10)]
    assert all(s[3] == 0.3 and s[4] == "SGD" for s in steps.seen)
    # The oracle: w ← w − η ∇ mean ½‖f(x) − onehot(y)‖², by hand (no momentum, no weight decay).
    for _ in range(3):
        loss = (0.5 * (ref(x) - F.one_hot(y, 3).float()).square().sum(1)).mean()
        grads = torch.autograd.grad(loss, list(ref.parameters()))
        with torch.no_grad():
            for p, g in zip(ref.parameters(), grads):
                p -= 0.3 * g
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]


def test_checkpoints_record_optimizer_and_loss(tmp_path):
    from landscape.core.checkpoint import checkpoint_meta, read_checkpoint_file

    x, y = data()
    train(linear(), (x, y), None, epochs=1, lr=0.01, optimizer="adam", batch_size=4, out_dir=tmp_path, progress=False)
    meta = checkpoint_meta(read_checkpoint_file(tmp_path / "final.pt"), tmp_path / "final.pt")
    assert meta["optimizer"] == "adam" and meta["loss"] == "cross_entropy"
    config = meta["train_config"]
    assert config["optimizer"] == "adam" and config["betas"] == [0.9, 0.999] and config["eps"] == 1e-8
    assert config["weight_decay"] == 0.0


def test_adam_resume_equals_uninterrupted(tmp_path):
    class Crash:
        def on_epoch_end(self, *, epoch, metrics):
            if epoch == 2:
                raise KeyboardInterrupt

    x, y = data(20)
    kw = dict(epochs=3, lr=0.01, optimizer="adam", batch_size=6, loss="mse", progress=False)
    full = linear()
    train(full, (x, y), None, out_dir=tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(linear(), (x, y), None, out_dir=tmp_path / "cut", callbacks=[Crash()], **kw)
    cut = linear()
    train(cut, (x, y), None, out_dir=tmp_path / "cut", resume=True, **kw)
    for a, b in zip(full.state_dict().values(), cut.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(LandscapeError, match="optimizer: run 'adam' vs now 'sgd'"):
        train(linear(), (x, y), None, out_dir=tmp_path / "cut", resume=True,
              **{**kw, "optimizer": "sgd"})


def test_runs_from_before_optimizers_resume_as_sgd(tmp_path):
    """A last.pt whose train_config has no optimizer/loss (older runs) resumes as SGD with cross-entropy."""
    import json

    class Crash:
        def on_epoch_end(self, *, epoch, metrics):
            if epoch == 2:
                raise KeyboardInterrupt

    x, y = data(20)
    kw = dict(lr=0.05, batch_size=5, epochs=3, progress=False)
    full = linear()
    train(full, (x, y), None, out_dir=tmp_path / "full", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(linear(), (x, y), None, out_dir=tmp_path / "old", callbacks=[Crash()], **kw)
    state = torch.load(tmp_path / "old" / "last.pt", weights_only=True)
    meta = json.loads(state["meta"])
    for key in ("optimizer", "loss"):
        del meta["train_config"][key]
    state["meta"] = json.dumps(meta)
    del state["callbacks"]
    torch.save(state, tmp_path / "old" / "last.pt")
    old = linear()
    assert train(old, (x, y), None, out_dir=tmp_path / "old", resume=True, **kw).resumed_from_epoch == 1
    for a, b in zip(full.state_dict().values(), old.state_dict().values()):
        assert torch.equal(a, b)


def test_mse_is_half_the_squared_distance_to_the_one_hot_target():
    out = torch.tensor([[1.0, 0.0, 2.0], [0.5, 0.5, 0.5]])
    y = torch.tensor([2, 0])
    assert torch.equal(mse(out, y), torch.tensor([0.5 * (1 + 0 + 1), 0.5 * (0.25 + 0.25 + 0.25)]))
    assert per_sample("cross_entropy")(out, y).shape == (2,)


@pytest.mark.parametrize("kwargs,fragment", [
    ({"optimizer": "lbfgs"}, "optimizer='lbfgs'; use one of sgd, gd, adam"),
    ({"optimizer": "gd", "batch_size": 4}, "leave batch_size= unset"),
    ({"optimizer": "gd", "augment": True}, "turn augment off"),
    ({"optimizer": "sgd"}, "optimizer='sgd' needs batch_size="),
    ({"optimizer": "adam", "batch_size": 4, "momentum": 0.9}, "no momentum="),
    ({"optimizer": "adam", "batch_size": 4, "betas": (0.9, 1.0)}, "betas=(0.9, 1.0) must both lie in"),
    ({"optimizer": "gd", "loss": "hinge"}, "loss='hinge'; use one of cross_entropy, mse"),
])
def test_bad_options_are_one_line(tmp_path, kwargs, fragment):
    with pytest.raises(LandscapeError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        train(linear(), data(), None, epochs=1, lr=0.1, out_dir=tmp_path, progress=False, **kwargs)


@pytest.mark.parametrize("args,fragment", [
    (["--optimizer", "gd", "--batch-size", "8"], "--optimizer gd steps on the whole training set at once; drop "
                                                 "--batch-size"),
    (["--track-trace"], "--track-trace need --track-curvature EVERY"),
    (["--track-samples", "9", "--track-tol", "0.01"], "--track-samples/--track-tol need --track-curvature"),
    (["--betas", "0.9,0.99"], "--betas is Adam's; --optimizer is sgd"),
    (["--optimizer", "adam", "--betas", "0.9"], "--betas '0.9' is not two comma-separated numbers"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--optimizer 'adam' has no --momentum; its first-moment decay is the "
                                                   "first of --betas"),
])
def test_cli_refuses_bad_combinations_in_one_line(tmp_path, args, fragment):
    res = CliRunner().invoke(main, ["train", "mlp", "--n-train", "16", "--epochs", "1", "--quiet", "--device", "cpu",
                                    "--out", str(tmp_path / "r"), *args])
    assert res.exit_code == 1 and f"error: {fragment}" in res.output, res.output
    assert "Traceback" not in res.output


def test_cli_resume_without_tracking_is_refused_when_the_run_tracked(tmp_path):
    base = ["train", "mlp", "--optimizer", "gd", "--n-train", "16", "--epochs", "2", "--quiet", "--device", "cpu",
            "--out", str(tmp_path / "r"), "--model-option", "hidden=4"]
    assert CliRunner().invoke(main, [*base, "--track-curvature", "1"]).exit_code == 0
    res = CliRunner().invoke(main, [*base, "--resume"])
    assert res.exit_code == 1 and "trained with curvature tracking (curvature.h5)" in res.output
    res = CliRunner().invoke(main, [*base, "--resume", "--track-curvature", "2"])
    assert res.exit_code == 1 and "every: file 1 vs now 2" in res.output


def test_probe_file_records_the_training_data(tmp_path):
    """``train --probe-every`` stores data_dir, n_samples (the training subset's size) and subset in the probe file,
    so its provenance record says which samples the run saw."""
    import h5py

    from landscape.core.store import read_attrs

    run = tmp_path / "r"
    res = CliRunner().invoke(main, ["train", "mlp", "--n-train", "32", "--batch-size", "16", "--epochs", "1",
                                    "--probe-every", "1", "--probe-eta", "0.1", "--device", "cpu", "--quiet",
                                    "--out", str(run)])
    assert res.exit_code == 0, res.output
    with h5py.File(run / "predictiveness.h5", "r") as f:
        attrs = read_attrs(f)
    assert attrs["n_samples"] == 32 and attrs["subset"] is True and attrs["data_dir"] == "null"
    assert attrs["batch_size"] == 16
