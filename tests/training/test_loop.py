"""Training: accuracy on digits, determinism, exact resume, run-folder contents, callbacks."""

from __future__ import annotations

import csv

import pytest
import torch

from landscape import LandscapeError, load_checkpoint, load_dataset
from landscape.training import lr_at, seeded_model, train, trajectory


def _metrics(run):
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("run_fixture", ["digits_run", "digits_fmm_run"])
def test_resnet8_and_fmmnet8_reach_95_percent_on_digits(run_fixture, request):
    run = request.getfixturevalue(run_fixture)
    rows = _metrics(run)
    assert len(rows) == 10
    assert float(rows[-1]["test_acc"]) >= 0.95
    _model, meta = load_checkpoint(run / "final.pt")
    assert meta["epoch"] == 10 and meta["dataset"] == "digits"
    assert meta["metrics"]["test_acc"] == pytest.approx(float(rows[-1]["test_acc"]))


def test_run_folder_holds_the_trajectory(digits_run):
    files = trajectory(digits_run)
    assert [f.name for f in files] == [f"epoch_{e:04d}.pt" for e in range(11)]
    a, _ = load_checkpoint(files[-1])
    b, _ = load_checkpoint(digits_run / "final.pt")
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def _small_run(out, epochs=3, callbacks=(), resume=False, **kw):
    data = load_dataset("digits", n=256, seed=1)
    model = seeded_model("resnet8", num_classes=10, in_channels=1, seed=5)
    return train(model, data, None, epochs=epochs, batch_size=64, lr=0.05, seed=5, out_dir=out,
                 callbacks=callbacks, resume=resume, progress=False, augment=True, **kw)


def _final_state(run):
    return load_checkpoint(run / "final.pt")[0].state_dict()


def test_same_seed_same_weights(tmp_path):
    _small_run(tmp_path / "a")
    _small_run(tmp_path / "b")
    for (k, v), w in zip(_final_state(tmp_path / "a").items(), _final_state(tmp_path / "b").values()):
        assert torch.equal(v, w), k


class _Crash:
    def on_epoch_end(self, *, epoch, metrics):
        if epoch == 2:
            raise KeyboardInterrupt


class _Recorder:
    def __init__(self):
        self.calls = []

    def on_train_begin(self, *, model, start_step, resumed):
        self.calls.append(("begin", start_step, resumed))

    def on_step(self, ctx):
        assert ctx.model.training and all(p.grad is not None for p in ctx.model.parameters())
        self.calls.append(("step", ctx.step, ctx.epoch, len(ctx.targets)))

    def on_train_end(self):
        self.calls.append(("end",))


def test_resume_after_interrupt_equals_uninterrupted_run(tmp_path):
    _small_run(tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        _small_run(tmp_path / "cut", callbacks=[_Crash()])
    assert not (tmp_path / "cut" / "final.pt").exists()
    rec = _Recorder()
    result = _small_run(tmp_path / "cut", resume=True, callbacks=[rec])
    assert result.resumed_from_epoch == 1
    assert rec.calls[0] == ("begin", 4, True) and rec.calls[1][:3] == ("step", 4, 2) and rec.calls[-1] == ("end",)
    for (k, v), w in zip(_final_state(tmp_path / "full").items(), _final_state(tmp_path / "cut").values()):
        assert torch.equal(v, w), k
    assert [r["train_loss"] for r in _metrics(tmp_path / "full")] == [r["train_loss"] for r in _metrics(tmp_path / "cut")]


def test_resume_refuses_other_settings_and_fresh_runs_refuse_old_folders(tmp_path):
    _small_run(tmp_path / "r", epochs=1)
    with pytest.raises(LandscapeError, match="already holds a training run"):
        _small_run(tmp_path / "r", epochs=1)
    with pytest.raises(LandscapeError, match="epochs: run 1 vs now 2"):
        _small_run(tmp_path / "r", epochs=2, resume=True)


def test_learning_rate_schedules():
    assert lr_at(0, total_steps=100, lr=0.1, schedule="cosine") == pytest.approx(0.1)
    assert lr_at(50, total_steps=100, lr=0.1, schedule="cosine") == pytest.approx(0.05)
    assert lr_at(100, total_steps=100, lr=0.1, schedule="cosine") == pytest.approx(0.0, abs=1e-12)
    assert [lr_at(s, total_steps=100, lr=1.0, schedule="step") for s in (0, 49, 50, 75)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.01])
    assert lr_at(99, total_steps=100, lr=0.3, schedule="constant") == 0.3


def test_bad_training_arguments(tmp_path):
    with pytest.raises(LandscapeError, match="schedule"):
        _small_run(tmp_path / "x", schedule="linear")


def test_cli_resume_refuses_another_model_dataset_or_dropped_probes(tmp_path):
    from click.testing import CliRunner

    from landscape.cli import main

    def run(*args):
        return CliRunner().invoke(main, ["train", *map(str, args), "--epochs", "1", "--n-train", "64", "--quiet"])

    assert run("resnet8", "--out", tmp_path / "r").exit_code == 0
    cases = [(["fmmnet8"], "model: run vs now resnet8 vs fmmnet8"),
             (["se_resnet8"], "model: run vs now resnet8 vs se_resnet8"),
             (["resnet8", "--model-option", "merge=mul"], "merge=None vs 'mul'"),
             (["resnet8", "--dataset", "synthetic"], "dataset: run 'digits' vs now 'synthetic'")]
    for args, fragment in cases:
        res = run(*args, "--out", tmp_path / "r", "--resume")
        assert res.exit_code == 1 and fragment in res.output and res.output.count("\n") == 1, res.output
    assert run("resnet8", "--out", tmp_path / "p", "--probe-every", 1).exit_code == 0
    res = run("resnet8", "--out", tmp_path / "p", "--resume")
    assert res.exit_code == 1 and "trained with probes" in res.output
    for args, fragment in ((["--lr", "nan"], "--lr nan must be a finite positive"),
                           (["--momentum", "-1"], "--momentum -1.0 must be"),
                           (["--weight-decay", "inf"], "--weight-decay inf must be")):
        res = run("resnet8", "--out", tmp_path / "bad", *args)
        assert res.exit_code == 1 and fragment in res.output and res.output.count("\n") == 1, res.output
        assert not (tmp_path / "bad").exists()


def test_cli_interrupt_says_how_to_continue(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import landscape.training
    from landscape.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(landscape.training, "train", interrupted)
    res = CliRunner().invoke(main, ["train", "resnet8", "--epochs", "1", "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 130 and "add --resume" in res.output


def test_evaluate_is_the_one_evaluator_and_leaves_every_module_as_found():
    from landscape.training import evaluate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6), torch.nn.BatchNorm1d(6),
                                torch.nn.Dropout(0.5), torch.nn.Linear(6, 3))
    model.train()
    model(torch.randn(16, 12))  # BN running statistics that differ from the batch statistics
    model[3].eval()  # a mixed model: train overall, one module in eval
    modes = [m.training for m in model.modules()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(10, 12), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    loss, acc = evaluate(model, (x, y), batch_size=3)  # batches of 3, 3, 3, 1: weighted by size
    # The oracle: one eval-mode pass over all ten samples.
    with torch.no_grad():
        out = model.eval()(x)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(out.double(), y).item(), rel=1e-6)
    assert acc == int((out.argmax(1) == y).sum()) / 10
    model.train()
    model[3].eval()
    loss_again, _ = evaluate(model, (x, y), batch_size=3)
    assert [m.training for m in model.modules()] == modes  # per-module flags restored, not flattened
    assert loss_again == loss
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k  # eval mode: BN statistics untouched
