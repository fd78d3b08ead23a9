import torch
from torch import nn

from landscape.core import params


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(12, 2))


def test_names_cover_params_or_float_states():
    net = _net()
    w = params.tensor_names(net, dir_type="weights")
    s = params.tensor_names(net, dir_type="states")
    assert w == [n for n, _ in net.named_parameters()]
    assert "1.running_mean" in s and "1.running_var" in s and "1.num_batches_tracked" not in s
    assert set(w) < set(s)


def test_dot_norm_axpy_sub_float64():
    a = {"u": torch.tensor([1.0, 2.0]), "v": torch.tensor([[3.0]])}
    b = {"u": torch.tensor([0.5, -1.0]), "v": torch.tensor([[2.0]])}
    assert params.dot(a, b) == 0.5 - 2.0 + 6.0
    assert abs(params.norm(a) - 14 ** 0.5) < 1e-15
    c = params.axpy(2.0, a, b)
    assert torch.equal(c["u"], torch.tensor([2.5, 3.0])) and torch.equal(c["v"], torch.tensor([[8.0]]))
    d = params.sub(c, b)
    assert torch.equal(d["u"], 2 * a["u"])


def test_filter_norms():
    t = torch.arange(12.0).reshape(3, 2, 2)
    expected = torch.stack([t[i].norm() for i in range(3)])
    torch.testing.assert_close(params.filter_norms(t), expected)


def test_set_tensors_writes_from_base_without_drift():
    net = _net().double()
    base = params.get_tensors(net)
    live = params.live_tensors(net, base)
    d = {k: torch.ones_like(v) for k, v in base.items()}
    for a in [0.3, -0.7, 1e3, 0.1]:
        params.set_tensors(live, base, [(a, d)])
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.detach(), base[k] + 0.1, rtol=0, atol=0)
    params.set_tensors(live, base)
    for k, p in net.named_parameters():
        assert torch.equal(p.detach(), base[k])


def test_sub_names_mismatch():
    import pytest

    from landscape.errors import LandscapeError

    with pytest.raises(LandscapeError, match="shape"):
        params.sub({"a": torch.zeros(2)}, {"a": torch.zeros(3)})
    with pytest.raises(LandscapeError, match="missing"):
        params.sub({"a": torch.zeros(2)}, {"b": torch.zeros(2)})
