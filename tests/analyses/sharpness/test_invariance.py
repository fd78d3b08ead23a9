"""Function-preserving rescalings: the outputs stay, the adaptive measures stay, λmax and the plain ones move."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.sharpness.invariance import apply, candidates, invariance_check
from landscape.errors import LandscapeError

from .test_compute import assert_same, snapshot

ADAPTIVE = ("worst_adaptive", "average_adaptive", "pac_bayes_adaptive")


def data(n: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def relu_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
    return net


def test_rescaling_by_ten_between_two_relu_layers_keeps_the_outputs():
    model, (x, _) = relu_mlp(), data()
    assert [c.name for c in candidates(model)] == ["relu:0>2", "relu:2>4"]
    twin = copy.deepcopy(model)
    apply(twin, candidates(model)[0], 10.0)
    assert torch.equal(twin[0].weight, 10 * model[0].weight) and torch.allclose(twin[2].weight, model[2].weight / 10)
    torch.testing.assert_close(twin(x), model(x), rtol=1e-5, atol=1e-6)


def test_adaptive_measures_survive_and_lambda_max_does_not():
    model = relu_mlp()
    before = snapshot(model)
    r = invariance_check(model, data(), alpha=10.0, draws=10, pac_draws=5, probes=12)
    assert_same(model, before)
    inv = r.invariance
    assert inv is not None and inv.transforms == ("relu:0>2",) and inv.output_diff[0] < 1e-5
    change = dict(zip(inv.measures, inv.relative_change()[0]))
    for name in ADAPTIVE:
        assert change[name] < 0.01, (name, change[name])
    assert change["surface"] < 0.01  # filter-normalised directions follow the rescaling
    assert change["lambda_max"] > 0.1 and change["trace"] > 0.1
    assert change["worst"] > 0.1 and change["pac_bayes"] > 0.1
    # Row 0 is the model as given: the same numbers as the result's own measures.
    values = r.values()
    assert inv.values[0, inv.measures.index("worst_adaptive")] == values["worst_adaptive"][0]


def test_batchnorm_scale_invariance():
    model = bn_net()
    x, y = data()
    assert [c.name for c in candidates(model)] == ["bn:0>1"]
    twin = copy.deepcopy(model).eval()
    apply(twin, candidates(model)[0], 10.0)
    torch.testing.assert_close(twin(x), model.eval()(x), rtol=1e-5, atol=1e-6)
    # On the rescaled layer's own weights, L'(αw + ε) = L(w + ε/α): its Hessian block is divided by α².
    r = invariance_check(model, (x, y), measures="worst,worst_adaptive,average_adaptive,lambda_max", alpha=10.0,
                         draws=10, params="0.weight")
    change = dict(zip(r.invariance.measures, r.invariance.relative_change()[0]))
    assert change["worst_adaptive"] < 0.01 and change["average_adaptive"] < 0.01
    lam = r.invariance.values[:, r.invariance.measures.index("lambda_max")]
    assert lam[1] / lam[0] == pytest.approx(0.01, rel=1e-3)
    assert change["worst"] > 0.5


def test_a_guess_the_outputs_refute_is_rejected_not_measured():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))  # tanh is not positively homogeneous
    with pytest.raises(LandscapeError, match=r"no rescaling kept the outputs within rtol=.*relu:0>2: outputs "
                                             r"changed by"):
        invariance_check(model, data(), measures="average")
    with pytest.raises(LandscapeError, match="admits none of the rescalings"):
        invariance_check(nn.Sequential(nn.Linear(5, 3)), data(), measures="average")


@pytest.mark.parametrize("options, fragment", [
    ({"alpha": 1.0}, "alpha=1.0 must be a positive finite number other than 1"),
    ({"measures": "lambda_min"}, "measures='lambda_min' is unknown"),
    ({"mode": "train", "measures": "surface"}, "measures='surface' evaluates in eval mode"),
])
def test_bad_arguments(options, fragment):
    with pytest.raises(LandscapeError, match=fragment):
        invariance_check(relu_mlp(), data(), **options)


def test_saved_table_reads_back(tmp_path):
    r = invariance_check(relu_mlp(), data(), measures="average_adaptive,lambda_max", draws=4,
                         out=tmp_path / "inv.h5")
    back = r.from_file(tmp_path / "inv.h5")
    assert back.invariance is not None and back.invariance.measures == ("average_adaptive", "lambda_max")
    np.testing.assert_array_equal(back.invariance.values, r.invariance.values)
    assert back.invariance.invariant(0.01) == {"average_adaptive": True, "lambda_max": False}
