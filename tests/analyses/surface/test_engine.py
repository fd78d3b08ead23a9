"""The fast paths of the surface engine against the plain float32 loop, on CPU (the CUDA code paths are the same
calls: foreach moves, autocast, layout swaps, torch.compile)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.analyses.surface import engine
from landscape.analyses.surface.compute import SurfaceSettings, compute_points, compute_surface, ordered_data
from landscape.analyses.surface.directions import build_directions
from landscape.core import params
from landscape.core.grid import Grid, parse_axis
from landscape.errors import LandscapeError

# bf16 against fp32 on the same points, inside the basin (docs/scale.md): measured 4.7e-3 relative loss and 0.35 %
# accuracy at most on the digits resnet8 over [-0.5, 0.5]² (bfloat16 keeps 8 significant bits: 2⁻⁹ ≈ 2e-3 per
# rounding).
BF16_LOSS_RTOL, BF16_ACC_ATOL = 1e-2, 1e-2


def _conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.Conv2d(6, 4, 3),
                         nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def _data(n: int = 37, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(5, (n,), generator=g)


def _points(model, x, y, *, grid, batch_size=10, **fast):
    w = params.get_tensors(model)
    ds = build_directions("random", w, ndim=2, seed=0)
    return np.array([(p.loss, p.acc, p.stderr, p.n) for p in compute_points(
        model, range(grid.size), grid=grid, base=w, directions=[ds.x, ds.y], inputs=x, targets=y,
        batch_size=batch_size, **fast)])


def _plain_loop(model, x, y, *, grid, batch_size=10):
    """The oracle: weights rebuilt per point with params.set_tensors, one forward per batch, numpy float64."""
    w = params.get_tensors(model)
    ds = build_directions("random", w, ndim=2, seed=0)
    live = params.live_tensors(model, w)
    rows = []
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for index in range(grid.size):
            params.set_tensors(live, w, zip(grid.coefficients(index), [ds.x, ds.y]))
            losses = np.concatenate([F.cross_entropy(model(x[s:s + batch_size]), y[s:s + batch_size],
                                                     reduction="none").double().numpy()
                                     for s in range(0, len(x), batch_size)])
            hits = np.concatenate([(model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).numpy()
                                   for s in range(0, len(x), batch_size)])
            rows.append((losses.mean(), hits.mean(), losses.std(ddof=1) / np.sqrt(len(losses)), len(losses)))
    model.load_state_dict(saved)
    return np.array(rows)


GRID = Grid(parse_axis("-1:1:3"), parse_axis("-0.5:0.5:2"))


def test_foreach_moves_equal_the_plain_rebuild_bit_for_bit():
    model = _conv_net()
    w = params.get_tensors(model)
    ds = build_directions("random", w, ndim=2, seed=0)
    mover = engine.Mover(params.live_tensors(model, w), w, [ds.x, ds.y])
    other = _conv_net()
    live = params.live_tensors(other, w)
    for coefs in ((0.3, -0.7), (0.0, 0.25), (-1.0, 0.0), (0.0, 0.0)):  # any order: moves never drift
        mover.move(coefs)
        params.set_tensors(live, w, zip(coefs, [ds.x, ds.y]))
        for k, t in model.state_dict().items():
            assert torch.equal(t, other.state_dict()[k]), (coefs, k)
    mover.move((0.0, 0.0))
    assert all(torch.equal(model.state_dict()[k], w[k]) for k in w)  # the centre is the checkpoint exactly


def test_fp32_engine_reproduces_the_plain_loop():
    model = _conv_net()
    x, y = _data()
    got = _points(model, x, y, grid=GRID)
    want = _plain_loop(model, x, y, grid=GRID)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


@pytest.mark.parametrize("fast", [{"channels_last": True}, {"precision": "tf32"},
                                  {"precision": "tf32", "channels_last": True}])
def test_fast_paths_match_fp32_per_point_and_leave_the_model_as_found(fast):
    model = _conv_net()
    x, y = _data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    strides = {k: v.stride() for k, v in model.state_dict().items()}
    ref = _points(model, x, y, grid=GRID)
    got = _points(model, x, y, grid=GRID, **fast)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0)  # the bound: 1e-5 relative per point
    if not fast.get("channels_last"):
        assert np.array_equal(got, ref)  # tf32 is float32 on CPU
    for k, v in model.state_dict().items():  # values and memory layout restored
        assert torch.equal(v, before[k]) and v.stride() == strides[k], k
    assert not model.training


def test_bf16_stays_within_its_documented_bound_inside_the_basin(digits_ckpt):
    from landscape import load_checkpoint, load_dataset

    model, _ = load_checkpoint(digits_ckpt)
    x, y = load_dataset("digits", n=600, seed=0)
    xs, ys = ordered_data(x, y, seed=0, device="cpu")
    grid = Grid(parse_axis("-0.5:0.5:3"), parse_axis("-0.5:0.5:3"))
    ref = _points(model, xs, ys, grid=grid, batch_size=128)
    got = _points(model, xs, ys, grid=grid, batch_size=128, precision="bf16")
    assert np.all(np.abs(got[:, 0] - ref[:, 0]) <= BF16_LOSS_RTOL * np.abs(ref[:, 0]))
    assert np.all(np.abs(got[:, 1] - ref[:, 1]) <= BF16_ACC_ATOL)
    assert not np.array_equal(got[:, 0], ref[:, 0])  # it did run in bfloat16
    assert np.array_equal(got[:, 3], ref[:, 3])


def test_compiled_forward_sees_the_in_place_moves():
    pytest.importorskip("torch._inductor")
    model = _conv_net()
    x, y = _data(n=20)
    ref = _points(model, x, y, grid=GRID)
    try:
        got = _points(model, x, y, grid=GRID, compile=True)
    except LandscapeError as exc:  # no working compiler on this machine
        pytest.skip(str(exc))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=0)
    assert len(set(got[:, 0])) == GRID.size  # every point differs: the compiled graph did not freeze the weights


def test_precision_flags_are_restored_and_unknown_precisions_refused():
    flags = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with engine.precision_scope("tf32", torch.device("cpu")):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    with engine.precision_scope("fp32", torch.device("cpu")):
        assert not torch.backends.cudnn.allow_tf32  # PyTorch's default (True) would make CUDA convs TF32
    with engine.precision_scope("bf16", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags
    with pytest.raises(LandscapeError, match=r"precision='fp16'; use fp32, tf32 or bf16"):
        engine.check_precision("fp16", torch.device("cpu"))


@pytest.mark.parametrize("free, per_sample, n, want", [
    (80 * 2**30, 300e3, 50_000, 2048),   # an H100 and a CIFAR ResNet: the cap
    (2 * 2**30, 4e6, 50_000, 256),      # 1 GiB usable / 4 MB a sample = 268 -> 256
    (2**20, 4e6, 50_000, 128),          # too little memory: the floor (the run may still fit; it is not refused)
    (80 * 2**30, 300e3, 300, 512),      # no larger than the data need (next power of two)
    (80 * 2**30, 300e3, 1, 1),
])
def test_batch_for_memory(free, per_sample, n, want):
    assert engine.batch_for_memory(free_bytes=free, bytes_per_sample=per_sample, n_samples=n) == want


def test_auto_batch_on_cpu_is_128_and_recorded(tmp_path):
    model = _conv_net()
    x, y = _data(n=30)
    assert engine.auto_batch_size(model, x) == 128
    grid = Grid(parse_axis("-1:1:3"))
    s = SurfaceSettings(checkpoint="c", checkpoint_sha256="-", model="m", dataset="d", split="train", seed=0,
                        norm="filter", ignore="biasbn", dir_type="weights", direction="random", xspec=grid.x.spec,
                        batch_size=None, precision="bf16")
    w = params.get_tensors(model)
    dirs = lambda: build_directions("random", w, ndim=1, seed=0)  # noqa: E731
    compute_surface(model, x, y, out=tmp_path / "s.h5", grid=grid, settings=s, directions=dirs, progress=False)
    with h5py.File(tmp_path / "s.h5") as f:
        assert f.attrs["batch_size"] == 128 and f.attrs["precision"] == "bf16" and f.attrs["processes"] == 1
        assert f.attrs["complete"]


def test_precision_is_part_of_a_files_identity(tmp_path, digits_ckpt):
    from click.testing import CliRunner

    from landscape.cli import main

    ckpt = shutil.copy(digits_ckpt, tmp_path / "net.pt")
    args = ["surface", str(ckpt), "--x", "-1:1:3", "--n-samples", "40", "--quiet", "--out", str(tmp_path / "s.h5")]
    assert CliRunner().invoke(main, args).exit_code == 0
    # A file written before the attribute existed is fp32: drop it and the fp32 file still resumes.
    with h5py.File(tmp_path / "s.h5", "r+") as f:
        del f.attrs["precision"]
        f["done"][2] = False
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "1 point(s) computed" in r.output, r.output
    r = CliRunner().invoke(main, [*args, "--precision", "bf16"])
    assert r.exit_code == 1 and "made with --precision fp32, this run asks for --precision bf16" in r.output
