"""Weight matching: a permuted copy computes the same function, and alignment finds the permutation back."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape.analyses.connectivity.align import (
    align,
    apply_permutation,
    permutation_spec,
    random_permutation,
)
from landscape.analyses.connectivity.result import compute
from landscape.errors import LandscapeError
from landscape.models import build_model


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 10), nn.BatchNorm1d(10),
                        nn.Tanh(), nn.Linear(10, 3))
    with torch.no_grad():  # non-trivial BN statistics, so that forgetting to permute them would show
        net[4].running_mean.normal_()
        net[4].running_var.uniform_(0.5, 2.0)
    return net.eval()


def _resnet(name: str = "resnet8") -> nn.Module:
    torch.manual_seed(0)
    net = build_model(name, num_classes=10, in_channels=1, width=0.25)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.normal_()
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _permuted(net: nn.Module, seed: int) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    spec = permutation_spec(net)
    perms = random_permutation(spec, net.state_dict(), seed=seed)
    other = copy.deepcopy(net)
    other.load_state_dict(apply_permutation(spec, perms, net.state_dict()))
    return other, perms


def test_mlp_permuted_copy_same_outputs_and_recovered():
    net = _mlp()
    other, perms = _permuted(net, seed=3)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    assert not torch.equal(other[1].weight, net[1].weight)
    x = torch.randn(20, 12)
    torch.testing.assert_close(other(x), net(x), rtol=1e-6, atol=1e-6)
    aligned, result = align(net, other, probe=x)
    assert result.converged
    # perms[p] moved unit perms[p][i] of A to position i of B; alignment undoes it: its inverse.
    for name, perm in perms.items():
        assert np.array_equal(result.perms[name], torch.argsort(perm).numpy()), name
    for key, value in net.state_dict().items():
        assert torch.equal(aligned.state_dict()[key], value), key


def test_mlp_barrier_after_alignment_vanishes():
    net = _mlp()
    other, _ = _permuted(net, seed=5)
    x = torch.randn(40, 12)
    y = torch.randint(0, 3, (40,))
    r = compute(net, other, {"train": (x, y)}, train_data=(x, y), points=5, bn="interpolate", align=True)
    assert r.barrier("linear")[0] > 1e-3  # the permuted copy is far away in weight space
    assert abs(r.barrier("linear_aligned")[0]) <= 1e-6


@pytest.mark.parametrize("name", ["resnet8", "fmmnet8", "se_resnet8", "cbam_fmmnet8"])
def test_resnet_permuted_consistently_same_outputs_and_aligned(name):
    net = _resnet(name)
    other, perms = _permuted(net, seed=7)
    assert {"S0", "S1", "S2"} <= set(perms)  # one permutation per residual stream (stage)
    x = torch.randn(6, 1, 8, 8)
    torch.testing.assert_close(other(x), net(x), rtol=1e-5, atol=1e-5)
    aligned, result = align(net, other, probe=x)
    for key, value in net.state_dict().items():
        assert torch.equal(aligned.state_dict()[key], value), key
    assert result.objective_after > result.objective_before


def test_resnet_barrier_after_alignment_is_zero():
    net = _resnet()
    other, _ = _permuted(net, seed=11)
    x = torch.randn(32, 1, 8, 8)
    y = torch.randint(0, 10, (32,))
    r = compute(net, other, {"train": (x, y)}, train_data=(x, y), points=3, bn="recalibrate", align=True,
                recal_samples=16, batch_size=8)
    before, after = r.paths["linear"]["train_loss"], r.paths["linear_aligned"]["train_loss"]
    assert abs(before[1] - before[0]) > 1e-3  # the permuted copy is far away: its midpoint is another network
    assert np.abs(after - after[0]).max() <= 1e-6  # aligned: every point of the path is the same network
    assert abs(r.barrier("linear_aligned")[0]) <= 1e-6
    assert r.alignment is not None and r.alignment["kind"] == "resnet"


class _Conv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def test_unsupported_structure_refused_in_one_line():
    with pytest.raises(LandscapeError, match=r"align=True cannot permute _Conv: it supports MLPs .* ResNet/FMMNet"):
        permutation_spec(_Conv())
    pad = build_model("resnet8", num_classes=10, in_channels=1, width=0.25, shortcut="pad")
    with pytest.raises(LandscapeError, match="shortcut='pad'") as info:
        permutation_spec(pad)
    assert "\n" not in str(info.value)


class _Reversed(nn.Module):
    """Linear layers registered in one order, applied in another: the spec's assumption fails."""

    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Linear(6, 6)
        self.a = nn.Linear(6, 6)
        self.c = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.relu(self.b(torch.relu(self.a(x) + x))))


def test_a_forward_that_breaks_the_assumed_order_is_caught():
    torch.manual_seed(0)
    net, other = _Reversed(), _Reversed()
    with pytest.raises(LandscapeError, match="changed model_b's outputs"):
        align(net, other, probe=torch.randn(4, 6))
