"""``Attention``: the in-memory result, its file (the command writes through it), plots and the one-call API."""

from __future__ import annotations

import copy
import dataclasses

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import landscape
from landscape import load_checkpoint, load_dataset
from landscape.analyses.attention.result import Attention, compute
from landscape.analyses.attention.schema import write_attention
from landscape.cli import main
from landscape.errors import LandscapeError
from landscape.models import build_model


def _model() -> nn.Module:
    torch.manual_seed(0)
    return build_model("se_resnet8", num_classes=4, in_channels=1, width=0.5).double()


def _data(n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn((n, 1, 6, 6), generator=g, dtype=torch.float64), torch.arange(n) % 4


def _cli(*args: object) -> object:
    # One thread, as the library calls here run with (conftest): then both compute bit for bit alike.
    return CliRunner().invoke(main, ["--threads", "1", "attention", *map(str, args)])


def _same(a: Attention, b: Attention) -> None:
    assert a.names == b.names and [m.kind for m in a.modules] == [m.kind for m in b.modules]
    for ma, mb in zip(a.modules, b.modules):
        np.testing.assert_array_equal(ma.mean_weight, mb.mean_weight)
        np.testing.assert_array_equal(ma.importance, mb.importance)
        np.testing.assert_equal(tuple(vars(ma.correlation).values()), tuple(vars(mb.correlation).values()))
    for c in ("pooled", "pooled_within"):  # NaN where undefined: equal as NaN
        np.testing.assert_equal(tuple(vars(getattr(a, c)).values()), tuple(vars(getattr(b, c)).values()))


@pytest.mark.parametrize("importance", ["ablation", "taylor"])
def test_compute_gives_what_the_command_writes(se_digits_ckpt, tmp_path, importance):
    out = tmp_path / "cli.h5"
    res = _cli(se_digits_ckpt, "--n-samples", 24, "--importance", importance, "--batch-size", 10, "--out", out,
               "--quiet")
    assert res.exit_code == 0, res.output
    from_cli = landscape.load(out)
    assert isinstance(from_cli, Attention) and from_cli.path == str(out)

    model, meta = load_checkpoint(se_digits_ckpt)
    x, y = load_dataset("digits", split="test", n=24, seed=0)
    mem = compute(model, x, y, importance=importance, batch_size=10, dataset="digits", split="test", subset=True,
                  checkpoint_meta=meta)
    assert mem.path == ""
    _same(mem, from_cli)
    # The same file, but for the time taken: the command writes through the result.
    saved = mem.save(tmp_path / "lib.h5")
    differ = {k for k in saved.attrs if saved.attrs[k] != from_cli.attrs[k]}
    assert set(saved.attrs) == set(from_cli.attrs) and differ == {"seconds"}
    assert from_cli.attrs["checkpoint"] == str(se_digits_ckpt.resolve())
    assert from_cli.attrs["n_samples"] == 24 and from_cli.attrs["batch_size"] == 10
    assert from_cli.importance == importance and from_cli.attrs["label"] == "se_resnet8"
    # Still the public layout: schema /1, one group per module with float64 datasets.
    with h5py.File(out, "r") as f:
        assert f.attrs["schema"] == "landscape.attention/1" and int(f.attrs["n_modules"]) == 3
        assert f["modules/000/importance"].dtype == np.float64


def test_save_and_load_round_trip(tmp_path):
    x, y = _data()
    r = landscape.attention(_model(), (x, y), importance="taylor", batch_size=3)
    assert isinstance(r, Attention) and r.path == "" and r.importance == "taylor"
    assert r.attrs["n_samples"] == 7 and r.attrs["dataset"] is None and r.attrs["subset"] is False
    back = r.save(tmp_path / "a.h5")
    assert back.path == str(tmp_path / "a.h5")
    _same(r, back)
    assert {k: v for k, v in back.attrs.items() if k != "schema"} == r.attrs
    assert back.provenance.weights_sha256 == r.provenance.weights_sha256
    loaded = landscape.load(tmp_path / "a.h5")
    assert type(loaded) is Attention
    _same(r, loaded)
    for m in (*r.modules, *loaded.modules):
        with pytest.raises(ValueError):
            m.importance[0] = 1.0
        with pytest.raises(ValueError):
            m.mean_weight[0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.path = "x"  # type: ignore[misc]
    assert r.module("stages.1.0.attention") is r.modules[1] and r.module(-1) is r.modules[2]
    with pytest.raises(LandscapeError, match="module='nope' is not an attention module"):
        r.module("nope")


def test_save_refuses_an_existing_file_unless_overwrite(tmp_path):
    x, y = _data(4)
    r = landscape.attention(_model(), (x, y), importance="taylor")
    path = tmp_path / "a.h5"
    path.write_text("keep")
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True") as info:
        r.save(path)
    assert "\n" not in str(info.value) and path.read_text() == "keep"
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        landscape.attention(_model(), (x, y), importance="taylor", out=path)
    assert path.read_text() == "keep"
    _same(r, r.save(path, overwrite=True))
    _same(r, landscape.attention(_model(), (x, y), importance="taylor", out=path, overwrite=True))
    assert not list(tmp_path.glob(".*"))  # no lock or temporary file left


def test_the_command_refuses_an_existing_output_unless_overwrite(se_digits_ckpt, tmp_path):
    out = tmp_path / "a.h5"
    out.write_text("keep")
    res = _cli(se_digits_ckpt, "--n-samples", 4, "--importance", "taylor", "--out", out, "--quiet")
    assert res.exit_code == 1 and "exists" in res.output and out.read_text() == "keep"
    for flag in ("--force", "--overwrite"):  # --force is the old name
        res = _cli(se_digits_ckpt, "--n-samples", 4, "--importance", "taylor", "--out", out, "--quiet", flag)
        assert res.exit_code == 0, res.output
        assert isinstance(landscape.load(out), Attention)


def test_samples_is_an_alias_of_n_samples(se_digits_ckpt, tmp_path):
    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    assert _cli(se_digits_ckpt, "--samples", 9, "--importance", "taylor", "--out", old, "--quiet").exit_code == 0
    assert _cli(se_digits_ckpt, "--n-samples", 9, "--importance", "taylor", "--out", new, "--quiet").exit_code == 0
    a, b = Attention.from_file(old), Attention.from_file(new)
    assert a.attrs["n_samples"] == b.attrs["n_samples"] == 9
    _same(a, b)


def test_default_output_name(se_digits_ckpt, tmp_path):
    import shutil

    ckpt = tmp_path / "final.pt"
    shutil.copy(se_digits_ckpt, ckpt)
    res = _cli(ckpt, "--n-samples", 4, "--importance", "taylor", "--quiet")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "final.attention-taylor.h5").exists()


def test_a_file_of_the_first_layout_loads(tmp_path):
    # A landscape.attention/1 file as the command wrote it before the result type (no provenance record, no
    # batch_size) and one from before the within-module pooling (no within_* attributes).
    path = tmp_path / "old.h5"
    corr = {"spearman": 0.5, "spearman_p": 0.1, "kendall": 0.4, "kendall_p": 0.2}
    modules = [{"name": "stages.0.0.attention", "kind": "SqueezeExcitation", "mean_weight": [0.2, 0.4, 0.9],
                "importance": [0.01, -0.02, 0.3], **corr},
               {"name": "stages.1.0.attention", "kind": "SqueezeExcitation", "mean_weight": [0.5, 0.6],
                "importance": [0.1, 0.2], "spearman": 1.0, "spearman_p": float("nan"), "kendall": 1.0,
                "kendall_p": 1.0}]
    write_attention(path, modules=modules, attrs={
        "importance": "ablation", "base_loss": 0.25, "n_samples": 360, "n_forward": 1800, "seconds": 3.5,
        "seed": 0, **corr, "checkpoint": "/runs/se/final.pt", "checkpoint_sha256": "ab" * 32,
        "model": "se_resnet8", "model_options": None, "dataset": "digits", "split": "test", "label": "se_resnet8"})
    r = landscape.load(path)
    assert isinstance(r, Attention) and r.importance == "ablation" and r.base_loss == 0.25
    assert r.names == ("stages.0.0.attention", "stages.1.0.attention")
    np.testing.assert_array_equal(r.modules[0].importance, [0.01, -0.02, 0.3])
    np.testing.assert_array_equal(r.modules[1].mean_weight, [0.5, 0.6])
    assert r.modules[1].correlation.spearman == 1.0 and np.isnan(r.modules[1].correlation.spearman_p)
    assert r.pooled.kendall == 0.4 and all(np.isnan(v) for v in vars(r.pooled_within).values())
    assert r.attrs["model_options"] is None and r.attrs["checkpoint"] == "/runs/se/final.pt"
    assert r.provenance.weights_sha256 == "ab" * 32  # older files: the checkpoint's hash stands in
    assert len(r.plot().collections) == 2
    # and it saves again, as /1
    again = r.save(tmp_path / "again.h5")
    _same(r, again)


def _offsets(ax) -> list[np.ndarray]:
    return [np.asarray(c.get_offsets()) for c in ax.collections]


def test_plot_draws_the_stored_points_on_the_given_axes(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from landscape.analyses.attention import plot as plot_module

    x, y = _data()
    r = landscape.attention(_model(), (x, y), importance="taylor").save(tmp_path / "a.h5")
    fig, ax = plt.subplots()
    try:
        assert r.plot(ax) is ax
        points = _offsets(ax)
        assert len(points) == 3
        for p, m in zip(points, r.modules):
            np.testing.assert_array_equal(p, np.column_stack([m.mean_weight, m.importance]))
        assert ax.get_xlabel() == "mean attention weight" and ax.get_ylabel() == "importance (taylor)"
        assert [t.get_text() for t in ax.get_legend().get_texts()][1].startswith("stages.1.0.attention (ρ=")
        ax.clear()
        r.plot(ax, module="stages.2.0.attention", log=True, title="mine")
        (p,) = _offsets(ax)
        np.testing.assert_array_equal(p, np.column_stack([r.modules[2].mean_weight, r.modules[2].importance]))
        assert ax.get_title() == "mine" and ax.get_yscale() == "symlog"
    finally:
        plt.close(fig)
    new = r.plot()
    assert new.figure is not fig and len(_offsets(new)) == 3
    plt.close(new.figure)

    # ``landscape plot`` draws the same panels as .plot(module=k): catch its figure on the way to the file.
    figures = []
    monkeypatch.setattr(plot_module, "save_figure", lambda f, out, dpi: figures.append(f))
    plot_module.plot(r.path, out=str(tmp_path / "a.png"))
    (figure,) = figures
    panels = [a for a in figure.axes if a.get_visible()]
    assert len(panels) == 3
    for panel, m in zip(panels, r.modules):
        (p,) = _offsets(panel)
        np.testing.assert_array_equal(p, np.column_stack([m.mean_weight, m.importance]))
        assert panel.get_title().startswith(m.name)
    plt.close(figure)


def test_one_call_ablation_equals_the_loss_increase_with_the_channel_zeroed():
    model = _model()
    model.train()
    model.stages[1].eval()  # mixed modes must come back as they were
    model.fc.weight.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _data()
    r = landscape.attention(model, (x, y), batch_size=3)  # ablation by default; batches of 3, 3 and 1
    assert r.importance == "ablation"

    # By hand, on a copy in eval mode: mean cross-entropy with channel c of the module's output zeroed, minus the
    # intact mean cross-entropy.
    ref = copy.deepcopy(model).eval()
    module = ref.get_submodule("stages.1.0.attention")
    with torch.no_grad():
        base = nn.functional.cross_entropy(ref(x), y).item()
    for c in (0, 3):
        def zero(_m, _i, out, c=c):
            out = out.clone()
            out[:, c] = 0
            return out

        h = module.register_forward_hook(zero)
        with torch.no_grad():
            ablated = nn.functional.cross_entropy(ref(x), y).item()
        h.remove()
        assert r.module("stages.1.0.attention").importance[c] == pytest.approx(ablated - base, abs=1e-12)
    assert r.base_loss == pytest.approx(base, rel=1e-12)

    # The model is left exactly as found.
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_one_call_on_a_dataset_name_caps_the_default_at_the_split(se_digits_ckpt):
    model, _ = load_checkpoint(se_digits_ckpt)
    r = landscape.attention(model, "digits", importance="taylor", n_samples=None)
    assert r.attrs["n_samples"] == 360 and r.attrs["split"] == "test" and r.attrs["dataset"] == "digits"
    with pytest.raises(LandscapeError, match=r"n_samples=361 is more than the 360 samples of the test split"):
        landscape.attention(model, "digits", importance="taylor", n_samples=361)


def test_one_call_refusals_are_one_line():
    x, y = _data(3)
    plain = build_model("resnet8", num_classes=4, in_channels=1, width=0.5).double()
    with pytest.raises(LandscapeError) as info:
        landscape.attention(plain, (x, y))
    assert "\n" not in str(info.value) and "se_resnet8" in str(info.value)
    with pytest.raises(LandscapeError, match="importance='gradient'"):
        landscape.attention(_model(), (x, y), importance="gradient")
    with pytest.raises(LandscapeError, match="device='meta' but the model is on cpu"):
        landscape.attention(_model(), (x, y), device="meta")
