"""The model-state guard and the one batched evaluator, against hand-computed oracles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.core import ModelState, evaluate
from landscape.errors import LandscapeError


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Dropout(0.3), nn.Linear(6, 3))
    net[1].train()  # mixed per-module modes: a flat model.train(flag) would lose them
    net[3].eval()
    return net.double()


def _snapshot(net: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool], list[bool]]:
    return ({k: v.clone() for k, v in net.state_dict().items()}, [m.training for m in net.modules()],
            [p.requires_grad for p in net.parameters()])


def _same(a: tuple, b: tuple) -> bool:
    return all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1] == b[1] and a[2] == b[2]


def test_model_state_restores_everything_even_when_the_block_raises():
    net = _net()
    net[4].bias.requires_grad_(False)
    before = _snapshot(net)
    with pytest.raises(RuntimeError, match="boom"), ModelState(net, mode="train"):
        assert all(m.training for m in net.modules())
        net(torch.randn(8, 4, dtype=torch.float64))  # train-mode BN moves its running statistics
        with torch.no_grad():
            net[0].weight.add_(1.0)
        net[0].weight.requires_grad_(False)
        net.eval()
        raise RuntimeError("boom")
    assert _same(before, _snapshot(net))


def test_model_state_restore_within_the_block_and_values_off():
    net = _net()
    before = _snapshot(net)
    with ModelState(net, mode="eval") as m:
        assert m is net and not any(x.training for x in net.modules())
    assert _same(before, _snapshot(net))
    with ModelState(net, values=False):
        net.eval()
    assert _snapshot(net)[1] == before[1]


def test_evaluate_weights_batches_by_size_and_matches_numpy():
    torch.manual_seed(1)
    net = nn.Linear(5, 4).double().eval()
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randint(0, 4, (12,))
    per = F.cross_entropy(net(x), y, reduction="none").detach().numpy()
    acc = float((net(x).argmax(1) == y).double().mean())
    for bs in (12, 5, 3, 1):  # 5 gives batches of 5+5+2: equal per-batch averaging would be wrong here
        r = evaluate(net, x, y, batch_size=bs)
        assert r.n == 12
        assert abs(r.loss - per.mean()) < 1e-12
        assert abs(r.stderr - per.std(ddof=1) / math.sqrt(12)) < 1e-12
        assert r.acc == acc


def test_evaluate_refuses_a_batch_mean_loss():
    net = nn.Linear(5, 4).double()
    x, y = torch.randn(6, 5, dtype=torch.float64), torch.randint(0, 4, (6,))
    with pytest.raises(LandscapeError, match=r"one loss per sample, shape \(B,\)"):
        evaluate(net, x, y, batch_size=4, loss_fn=F.cross_entropy)


def test_evaluate_stops_early_at_the_precision_target():
    net = nn.Linear(3, 2).double()
    x, y = torch.randn(400, 3, dtype=torch.float64), torch.randint(0, 2, (400,))
    full = evaluate(net, x, y, batch_size=50)
    early = evaluate(net, x, y, batch_size=50, precision_target=10 * full.stderr, min_samples=100)
    assert early.n == 100  # the first batch boundary at or past min_samples, since the target is loose
    per = F.cross_entropy(net(x[:100]), y[:100], reduction="none").detach().numpy()
    assert abs(early.loss - per.mean()) < 1e-12
    never = evaluate(net, x, y, batch_size=50, precision_target=1e-12, min_samples=100)
    assert never.n == 400 and never.loss == full.loss


def test_evaluate_regression_targets_have_nan_accuracy():
    net = nn.Linear(3, 1).double()
    x, y = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 1, dtype=torch.float64)
    r = evaluate(net, x, y, batch_size=3, loss_fn=lambda o, t: ((o - t) ** 2).sum(dim=1))
    assert math.isnan(r.acc)
    assert abs(r.loss - float(((net(x) - y) ** 2).mean().detach())) < 1e-12
    assert np.isfinite(r.stderr)


def test_weights_hash_follows_the_tensors_and_provenance_round_trips():
    from landscape.core.provenance import Provenance, provenance, weights_sha256

    net = _net()
    h = weights_sha256(net)
    assert weights_sha256(net) == h
    with torch.no_grad():
        net[0].weight[0, 0] += 1e-12  # the smallest change still changes the identity
    assert weights_sha256(net) != h
    p = provenance(net, dataset="digits", split="test", n_samples=12, subset=True, seed=3)
    assert p.model == "Sequential" and p.dtype == "float64" and p.threads == torch.get_num_threads()
    assert Provenance.from_attrs(p.attrs()) == p


def test_buffers_only_restores_bn_statistics_and_leaves_parameters_untouched():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Linear(6, 2))
    net.eval()
    x = torch.randn(16, 4)
    held = net[0](x).sum()  # a graph through parameters (not BN buffers) that the caller keeps across the block
    versions = [p._version for p in net.parameters()]
    stats = {k: v.clone() for k, v in net.named_buffers()}
    with ModelState(net, mode="train", values="buffers"):
        net(x)  # BatchNorm in train mode moves its running statistics
        assert not torch.equal(net[1].running_mean, stats["1.running_mean"])
    for k, v in net.named_buffers():
        assert torch.equal(v, stats[k]), k
    assert [p._version for p in net.parameters()] == versions  # never written: the held graph stays valid
    assert not net.training
    held.backward()


def test_values_must_be_a_known_choice():
    with pytest.raises(ValueError, match="values="):
        ModelState(torch.nn.Linear(2, 2), values="params")
