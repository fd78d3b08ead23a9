"""Every analysis is one call at the top level, returns its frozen result type, and ``landscape.load`` gives the
same type back from the saved file."""

import dataclasses

import numpy as np
import pytest
import torch

import landscape


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    x, y = torch.randn(48, 8), torch.randint(0, 3, (48,))
    net = torch.nn.Sequential(torch.nn.Linear(8, 12), torch.nn.ReLU(), torch.nn.Linear(12, 3))
    return net, (x, y)


CALLS = {
    "surface": lambda net, data: landscape.surface(net, data, x="-1:1:3"),
    "hessian": lambda net, data: landscape.hessian(net, data, top_k=1),
    "predictiveness": lambda net, data: landscape.predictiveness(net, data, n_batches=2, batch_size=16),
    "inputspace": lambda net, data: landscape.inputspace(net, data, mode="noise", sigma="0:1:3"),
    "sharpness": lambda net, data: landscape.sharpness(net, data, measures="worst", steps=2),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_one_call_result_saves_and_loads_as_its_type(name, tiny, tmp_path):
    net, data = tiny
    before = {k: v.clone() for k, v in net.state_dict().items()}
    result = CALLS[name](net, data)
    assert dataclasses.is_dataclass(result) and type(result).__dataclass_params__.frozen
    for k, v in net.state_dict().items():  # the model is left as found
        assert torch.equal(v, before[k]), k
    path = tmp_path / f"{name}.h5"
    result.save(path)
    back = landscape.load(path)
    assert type(back) is type(result)
    assert back.attrs["weights_sha256"] == result.attrs["weights_sha256"]
    with pytest.raises(landscape.LandscapeError, match="overwrite=True"):
        result.save(path)


def test_connect_between_a_model_and_itself_has_no_barrier(tiny, tmp_path):
    net, data = tiny
    r = landscape.connect(net, net, data, points=3)
    back = landscape.load(r.save(tmp_path / "c.h5").path)
    assert type(back) is type(r)
    assert back.barrier("linear", "train")[0] == 0.0
    np.testing.assert_array_equal(back.t, np.linspace(0, 1, 3))


def test_entry_points_carry_the_engines_signatures():
    import inspect

    for fn in (landscape.predictiveness, landscape.inputspace, landscape.attention, landscape.sharpness,
               landscape.connect, landscape.invariance_check):
        params = inspect.signature(fn).parameters
        assert "out" in params or "alpha" in params, fn


def test_hessian_per_block_through_the_one_call(tiny):
    net, data = tiny
    r = landscape.hessian(net, data, top_k=0, per_block=True, block_by="module", lanczos_steps=8)
    js = np.asarray(r.per_block["js_distance"])
    assert js.shape == (2, 2) and np.allclose(np.diag(js), 0) and np.allclose(js, js.T)


def test_surface_fast_paths_through_the_one_call(tiny):
    net, data = tiny
    plain = landscape.surface(net, data, x="-1:1:3")
    fast = landscape.surface(net, data, x="-1:1:3", precision="bf16")
    assert fast.attrs["precision"] == "bf16" and plain.attrs["precision"] == "fp32"
    np.testing.assert_allclose(fast.loss, plain.loss, rtol=3e-2)


def test_hessian_hvp_modes_agree_through_the_one_call(tiny):
    net, data = tiny
    a = landscape.hessian(net, data, top_k=2, tol=1e-6, density=True, lanczos_steps=6)
    b = landscape.hessian(net, data, top_k=2, tol=1e-6, hvp="forward", density=True, lanczos_steps=6,
                          reorthogonalize=False)
    np.testing.assert_allclose(a.eigenvalues, b.eigenvalues, rtol=1e-4)
    assert (a.attrs["hvp"], b.attrs["hvp"], b.attrs["density_reorthogonalize"]) == ("reverse", "forward", False)
