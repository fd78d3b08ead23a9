"""The registered MLP: its layers, options, one-line errors, and a checkpoint that rebuilds it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from landscape import LandscapeError, build_model, load_checkpoint
from landscape.core.checkpoint import save_checkpoint


def test_mlp_layers_follow_the_options():
    m = build_model("mlp", num_classes=10, in_channels=1)
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert [(mod.in_features, mod.out_features) for mod in linears] == [(64, 100), (100, 100), (100, 10)]
    assert sum(isinstance(mod, nn.Tanh) for mod in m.modules()) == 2
    m = build_model("mlp", num_classes=4, in_channels=3, hidden=8, depth=3, activation="relu", input_size=32,
                    width=0.5)
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert [(mod.in_features, mod.out_features) for mod in linears] == [(3072, 4), (4, 4), (4, 4), (4, 4)]
    assert sum(isinstance(mod, nn.ReLU) for mod in m.modules()) == 3
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    # By hand: the forward is the layer chain.
    x = torch.randn(5, 3, 32, 32)
    h = x.flatten(1)
    for i, layer in enumerate(linears):
        h = layer(h)
        if i < len(linears) - 1:
            h = torch.relu(h)
    assert torch.allclose(m(x), h)


@pytest.mark.parametrize("options,fragment", [
    ({"hidden": 0}, "hidden=0 must be a whole number"), ({"depth": 1.5}, "depth=1.5 must be"),
    ({"activation": "gelu"}, "activation='gelu'; use one of tanh, relu, elu"), ({"width": -1}, "width=-1 must be"),
])
def test_bad_options_are_one_line(options, fragment):
    with pytest.raises(LandscapeError, match=fragment):
        build_model("mlp", num_classes=3, in_channels=1, **options)


def test_checkpoint_rebuilds_the_mlp(tmp_path):
    m = build_model("mlp", num_classes=10, in_channels=1, hidden=6)
    save_checkpoint(tmp_path / "m.pt", m)
    back, meta = load_checkpoint(tmp_path / "m.pt")
    assert meta["model"] == "mlp" and meta["model_options"] == {"hidden": 6}
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(back(x), m.eval()(x))
