"""``landscape.curvature(models, data, …)``: λmax along snapshots, against dense Hessians."""

import numpy as np
import pytest
import torch

import landscape


def _snapshots():
    torch.manual_seed(0)
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    nets = []
    for scale in (0.5, 1.0, 2.0):
        net = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 3)).double()
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(scale)
        nets.append(net)
    return nets, (x, y)


def _dense_lambda_max(net, x, y):
    params = dict(net.named_parameters())
    names = list(params)
    shapes = [params[n].shape for n in names]
    flat = torch.cat([params[n].detach().reshape(-1) for n in names])

    def loss(v):
        chunks, i = {}, 0
        for n, s in zip(names, shapes):
            k = int(np.prod(s))
            chunks[n] = v[i:i + k].reshape(s)
            i += k
        out = torch.func.functional_call(net, chunks, (x,))
        return torch.nn.functional.cross_entropy(out, y)

    return float(torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss, flat)).max())


def test_lambda_max_along_snapshots_matches_dense_hessians(tmp_path):
    nets, (x, y) = _snapshots()
    before = [{k: v.clone() for k, v in n.state_dict().items()} for n in nets]
    r = landscape.curvature(nets, (x, y), lr=[0.1, 0.1, 0.05], n_samples=None, tol=1e-8, steps=[0, 10, 20])
    exact = [_dense_lambda_max(n, x, y) for n in nets]
    np.testing.assert_allclose(r.lambda_max, exact, rtol=1e-6)
    np.testing.assert_array_equal(r.step, [0, 10, 20])
    np.testing.assert_allclose(r.two_over_lr, [20, 20, 40])
    for n, b in zip(nets, before):
        for k, v in n.state_dict().items():
            assert torch.equal(v, b[k])
    cold = landscape.curvature(nets, (x, y), n_samples=None, tol=1e-8, warm_start=False)
    np.testing.assert_allclose(cold.lambda_max, r.lambda_max, rtol=1e-6)
    back = landscape.load(r.save(tmp_path / "c.h5").path)
    np.testing.assert_array_equal(back.lambda_max, r.lambda_max)


def test_bad_arguments_are_one_line():
    nets, data = _snapshots()
    with pytest.raises(landscape.LandscapeError, match="lr= gives 2 step sizes for 3 models"):
        landscape.curvature(nets, data, lr=[0.1, 0.2])
    with pytest.raises(landscape.LandscapeError, match="models must be"):
        landscape.curvature([], data)
    with pytest.raises(landscape.LandscapeError, match=r"shape \(B,\)"):
        landscape.curvature(nets[0], data, loss_fn=lambda o, t: torch.nn.functional.cross_entropy(o, t))
