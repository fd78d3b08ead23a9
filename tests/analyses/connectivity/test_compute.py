"""The engine: exact barriers, curve endpoints, resumable curve training, models left as found."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.connectivity import compute as E
from landscape.analyses.connectivity.curve import CurveSettings, coefficients, train_curve
from landscape.analyses.connectivity.result import compute
from landscape.analyses.surface.compute import recalibrate_bn
from landscape.core.evaluate import evaluate
from landscape.errors import LandscapeError
from landscape.models import build_model


def _net(seed: int, name: str = "resnet8") -> nn.Module:
    torch.manual_seed(seed)
    return build_model(name, num_classes=10, in_channels=1, width=0.25).eval()


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    from landscape import load_dataset

    return load_dataset("digits", n=96, seed=0)


def test_barrier_of_a_model_with_itself_is_exactly_zero(data):
    x, y = data
    net = _net(0)
    for bn in ("recalibrate", "interpolate"):
        r = compute(net, copy.deepcopy(net), {"train": (x, y), "test": (x[:40], y[:40])}, train_data=(x, y),
                    points=7, bn=bn, recal_samples=50, batch_size=32)
        for split in ("train", "test"):
            b = r.barriers["linear"][split]
            assert b["height"] == 0.0 and b["stderr"] == 0.0, (bn, split, b)
            loss = r.paths["linear"][f"{split}_loss"]
            assert np.all(loss == loss[0])


def test_barrier_and_its_stderr_by_hand():
    ts = np.array([0.0, 0.5, 1.0])
    samples = np.array([[1.0, 3.0, 2.0, 2.0], [4.0, 6.0, 3.0, 5.0], [3.0, 1.0, 2.0, 2.0]])
    b = E.barrier(ts, samples)
    # means 2, 4.5, 2 -> chord 2 at t=0.5 -> barrier 2.5; d_i = ℓ_i(½) − (ℓ_i(0) + ℓ_i(1))/2 = 2, 4, 1, 3
    d = np.array([2.0, 4.0, 1.0, 3.0])
    assert b.t == 0.5 and b.height == pytest.approx(2.5, abs=1e-15) and b.max_loss == 4.5
    assert b.stderr == pytest.approx(d.std(ddof=1) / math.sqrt(4), abs=1e-15)


def test_linear_endpoints_with_interpolated_bn_are_the_models(data):
    x, y = data
    a, b = _net(0), _net(1)
    r = compute(a, b, {"train": (x, y)}, train_data=(x, y), points=5, bn="interpolate", batch_size=32)
    for t_index, model in ((0, a), (-1, b)):
        own = evaluate(model, x, y, batch_size=32)
        assert r.paths["linear"]["train_loss"][t_index] == pytest.approx(own.loss, abs=1e-6)
        assert r.paths["linear"]["train_acc"][t_index] == own.acc


@pytest.mark.parametrize(("name", "kind"), [("resnet8", "bezier"), ("se_fmmnet8", "polychain")])
def test_curve_endpoints_reproduce_the_endpoint_losses_after_recalibration(data, name, kind):
    x, y = data
    a, b = _net(0, name), _net(1, name)
    r = compute(a, b, {"train": (x, y)}, train_data=(x, y), points=5, curve=kind, curve_epochs=1,
                curve_batch_size=32, recal_samples=64, batch_size=32, seed=3)
    # Like with like: each endpoint with its BN statistics recomputed on the same seeded training batches.
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(3))
    recal = x[order[:64]]
    for t_index, model in ((0, a), (-1, b)):
        own = copy.deepcopy(model)
        recalibrate_bn(own, recal, batch_size=32)
        expected = evaluate(own.eval(), x, y, batch_size=32).loss
        assert abs(r.paths["curve"]["train_loss"][t_index] - expected) <= 1e-6
    assert r.curve is not None and r.curve["kind"] == kind and len(r.curve["history"]) == 1


def test_coefficients_are_exact_at_the_ends():
    for kind in ("bezier", "polychain"):
        assert coefficients(kind, 0.0) == (1.0, 0.0, 0.0) and coefficients(kind, 1.0) == (0.0, 0.0, 1.0)
        assert sum(coefficients(kind, 0.3)) == pytest.approx(1.0)


def test_resumed_curve_training_gives_the_same_bend(tmp_path, data):
    x, y = data
    a, b = _net(0), _net(1)
    sa, sb = E.float_state(a), E.float_state(b)
    settings = CurveSettings(kind="bezier", epochs=3, batch_size=32, seed=4)
    whole, history = train_curve(a, sa, sb, x, y, settings=settings, loss_fn=E.cross_entropy)

    class Stop(Exception):
        pass

    def stop_after_two(epoch: int, loss: float) -> None:
        if epoch == 2:
            raise Stop

    ckpt = tmp_path / "curve.pt"
    with pytest.raises(Stop):
        train_curve(a, sa, sb, x, y, settings=settings, loss_fn=E.cross_entropy, checkpoint=ckpt,
                    callback=stop_after_two)
    seen = []
    resumed, history2 = train_curve(a, sa, sb, x, y, settings=settings, loss_fn=E.cross_entropy, checkpoint=ckpt,
                                    resume=True, callback=lambda e, _: seen.append(e))
    assert seen == [3]  # only the last epoch ran again
    assert history2 == history
    for k, v in whole.items():
        assert torch.equal(resumed[k], v), k
    # The checkpoint's bytes depend on its content only.
    first = ckpt.read_bytes()
    train_curve(a, sa, sb, x, y, settings=settings, loss_fn=E.cross_entropy, checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == first
    with pytest.raises(LandscapeError, match=r"cannot resume .*lr: checkpoint 0.05 vs now 0.1"):
        train_curve(a, sa, sb, x, y, settings=CurveSettings(epochs=3, batch_size=32, seed=4, lr=0.1),
                    loss_fn=E.cross_entropy, checkpoint=ckpt, resume=True)


def test_models_are_left_as_found(data):
    x, y = data
    a, b = _net(0), _net(1)
    b.train()
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in (a, b)]
    compute(a, b, {"train": (x, y)}, train_data=(x, y), points=3, align=True, curve="polychain", curve_epochs=1,
            curve_batch_size=32, plane=3, batch_size=32)
    for m, saved in zip((a, b), before):
        for k, v in m.state_dict().items():
            assert torch.equal(v, saved[k]), k
    assert not a.training and b.training


def test_plane_holds_the_three_points_and_the_curve(data):
    x, y = data
    r = compute(_net(0), _net(1), {"train": (x, y)}, train_data=(x, y), points=5, curve="bezier",
                curve_epochs=1, curve_batch_size=32, plane=4, batch_size=32)
    p = r.plane
    assert p is not None and p["loss"].shape == (4, 4) and np.isfinite(p["loss"]).all()
    assert np.array_equal(p["points"][:2], [[0.0, 0.0], [1.0, 0.0]]) and p["points"][2, 1] > 0
    assert np.allclose(p["curve"][[0, -1]], [[0.0, 0.0], [1.0, 0.0]])
    assert p["x"][0] < 0 < 1 < p["x"][-1]


def test_mismatched_models_are_one_line_errors(data):
    x, y = data
    wider = build_model("resnet8", num_classes=10, in_channels=1, width=0.5)
    for other, fragment in ((nn.Linear(3, 3), "tensor '.*' is in one only"),
                            (wider, r"model_b does not match model_a: tensor 'conv1.weight' is \(8, 1, 3, 3\)")):
        with pytest.raises(LandscapeError, match=fragment) as info:
            compute(_net(0), other, {"train": (x, y)}, train_data=(x, y))
        assert "\n" not in str(info.value)
    with pytest.raises(LandscapeError, match="plane= needs a curve"):
        compute(_net(0), _net(1), {"train": (x, y)}, train_data=(x, y), plane=3)
    with pytest.raises(LandscapeError, match="points=2 must be between 3"):
        compute(_net(0), _net(1), {"train": (x, y)}, train_data=(x, y), points=2)


def test_one_call_api_splits_and_subsets(data):
    from landscape.analyses.connectivity.result import run

    x, y = data
    a, b = _net(0), _net(1)
    r = run(a, b, "digits", n_samples=500, points=3, recal_samples=32)  # 500 > the 360 test images: capped
    assert r.attrs["n_train"] == 500 and r.attrs["n_test"] == 360 and r.attrs["dataset"] == "digits"
    r = run(a, b, (x, y), test_data=(x[:10], y[:10]), points=3, recal_samples=32)
    assert r.attrs["splits"] == ["train", "test"] and r.attrs["n_test"] == 10
    assert set(r.barriers["linear"]) == {"train", "test"}
    r = run(a, b, (x, y), points=3, recal_samples=32)
    assert r.attrs["splits"] == ["train"]
    with pytest.raises(LandscapeError, match="n_samples=500 must be between 1 and the 96"):
        run(a, b, (x, y), n_samples=500)
