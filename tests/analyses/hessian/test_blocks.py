"""Block heterogeneity (``landscape hessian --per-block``): per-block top eigenvalue, trace and SLQ density against
a quadratic model whose Hessian blocks have chosen spectra, the Jensen–Shannon distances against exact-eigenvalue
densities, the file layout (old files and readers unaffected), and the command end to end on digits."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import landscape.cli  # noqa: F401  mounts every command
from landscape.analyses.hessian.blocks import (
    OTHER,
    block_groups,
    js_distance,
    js_matrix,
    per_block,
    smoothed_density,
)
from landscape.analyses.hessian.result import Hessian, compute
from landscape.analyses.hessian.schema import SCHEMA, read_hessian, write_hessian
from landscape.cli import main
from landscape.errors import LandscapeError


def _rotated(eigenvalues: list[float], seed: int) -> torch.Tensor:
    """``Q diag(λ) Qᵀ`` with a random orthogonal Q: not diagonal, so probes on the axes would not be exact."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T


class Quadratic(nn.Module):
    """Loss ``½ w1ᵀA1w1 + ½ w2ᵀA2w2 + w1ᵀCw2`` for every sample: the Hessian's diagonal blocks are A1 and A2 exactly
    (C couples the blocks off the diagonal, which a per-block analysis must ignore)."""

    def __init__(self, a1: torch.Tensor, a2: torch.Tensor, c: torch.Tensor | None = None) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w1 = nn.Parameter(torch.randn(a1.shape[0], generator=g, dtype=torch.float64))
        self.w2 = nn.Parameter(torch.randn(a2.shape[0], generator=g, dtype=torch.float64))
        self.register_buffer("a1", a1)
        self.register_buffer("a2", a2)
        self.register_buffer("c", c if c is not None else torch.zeros(a1.shape[0], a2.shape[0], dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = 0.5 * self.w1 @ self.a1 @ self.w1 + 0.5 * self.w2 @ self.a2 @ self.w2 + self.w1 @ self.c @ self.w2
        return e.expand(x.shape[0])  # per-sample losses, all equal


def _mean(out: torch.Tensor, _targets: torch.Tensor) -> torch.Tensor:
    return out.mean()


DATA = [(torch.zeros(3, 1), torch.zeros(3)), (torch.zeros(5, 1), torch.zeros(5))]  # unequal batches
LOW = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
MIXED = [1.0, 2.0, 3.0, 40.0, 50.0, 60.0]  # shares its lower half with LOW


def test_block_groups() -> None:
    model = nn.Sequential()
    model.add_module("conv", nn.Linear(2, 3))
    model.add_module("se", nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 3)))
    model.add_module("fc", nn.Linear(3, 2))
    names = [n for n, _ in model.named_parameters()]
    assert block_groups(model) == {n: [n] for n in names}
    assert block_groups(model, block_by="module") == {
        "conv": ["conv.weight", "conv.bias"], "se.0": ["se.0.weight", "se.0.bias"],
        "se.2": ["se.2.weight", "se.2.bias"], "fc": ["fc.weight", "fc.bias"]}
    # A module prefix matches its parameters; the first matching pattern wins; the rest is one block "other".
    groups = block_groups(model, blocks=["se", "*.weight", "conv.bias,fc.bias"])
    assert groups == {"se": ["se.0.weight", "se.0.bias", "se.2.weight", "se.2.bias"],
                      "*.weight": ["conv.weight", "fc.weight"], "conv.bias,fc.bias": ["conv.bias", "fc.bias"]}
    assert block_groups(model, blocks=["se"])[OTHER] == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    # params= equal to the patterns drops the rest.
    assert list(block_groups(model, blocks=["se"], params="se")) == ["se"]
    with pytest.raises(LandscapeError, match=r"blocks='nope\*' matches no parameter; names look like: conv.weight"):
        block_groups(model, blocks=["nope*"])
    with pytest.raises(LandscapeError, match="matches no parameter that an earlier pattern did not take"):
        block_groups(model, blocks=["se", "se.0"])
    with pytest.raises(LandscapeError, match="repeated or the reserved name"):
        block_groups(model, blocks=["se", "se"])
    with pytest.raises(LandscapeError, match="block_by='layer' is not one of parameter, module"):
        block_groups(model, block_by="layer")  # type: ignore[arg-type]


def test_js_distance_closed_forms() -> None:
    grid = np.linspace(0, 10, 2001)
    p = smoothed_density(np.array([2.0]), np.array([1.0]), grid, 0.05)
    q = smoothed_density(np.array([8.0]), np.array([1.0]), grid, 0.05)
    half = smoothed_density(np.array([2.0, 8.0]), np.array([0.5, 0.5]), grid, 0.05)
    assert js_distance(p, p) == 0.0
    assert js_distance(p, q) == pytest.approx(1.0, abs=1e-12)  # disjoint supports
    # p against the half/half mixture: m = ¾ at 2, ¼ at 8; JSD = ½·log2(4/3) + ½(½·log2(2/3) + ½·log2(2))
    jsd = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5)
    assert js_distance(p, half) == pytest.approx(np.sqrt(jsd), abs=1e-9)
    matrix, mean = js_matrix([p, q, half])
    assert np.allclose(matrix, matrix.T) and np.all(np.diag(matrix) == 0)
    assert mean == pytest.approx((1.0 + 2 * np.sqrt(jsd)) / 3, abs=1e-9)


def test_top_eigenvalue_and_trace_per_block_are_the_diagonal_blocks() -> None:
    g = torch.Generator().manual_seed(1)
    c = torch.randn(6, 6, generator=g, dtype=torch.float64)  # off-diagonal coupling, larger than A1 itself
    model = Quadratic(_rotated(LOW, 0), _rotated(MIXED, 1), c)
    r = per_block(model, DATA, loss_fn=_mean, tol=1e-10, n_probes=6, lanczos_steps=6, n_bins=500)
    a, b = r.blocks
    assert (a.name, b.name, a.size, b.size) == ("w1", "w2", 6, 6)
    assert a.eigenvalues[0] == pytest.approx(6.0, rel=1e-9) and b.eigenvalues[0] == pytest.approx(60.0, rel=1e-9)
    assert a.trace_method == "exact" and a.trace == pytest.approx(21.0, abs=1e-9)
    assert b.trace == pytest.approx(156.0, abs=1e-9) and b.trace_stderr == 0.0
    assert r.n_hvp == a.n_hvp + b.n_hvp > 0


def test_hutchpp_trace_of_a_larger_block_within_three_stderr() -> None:
    big = [1.0 / i for i in range(1, 41)]
    model = Quadratic(_rotated(LOW, 0), _rotated(big, 2))
    r = per_block(model, DATA, loss_fn=_mean, n_probes=12, lanczos_steps=4, n_bins=200, seed=5)
    b = r.blocks[1]
    assert b.trace_method == "hutch++" and 0 < b.trace_stderr < 1
    assert abs(b.trace - sum(big)) < 3 * b.trace_stderr
    assert b.eigenvalues[0] == pytest.approx(1.0, rel=1e-5)


def test_block_densities_against_exact_eigenvalues() -> None:
    """Full-dimension Lanczos: every vector's Ritz values are the exact eigenvalues, and the weights (v·uᵢ)² average
    to 1/6 over start vectors. With 400 vectors each averaged weight has standard deviation
    sqrt(2·5/(36·8)/400) ≈ 0.0093, so the L1 distance to the exact density (6 separate peaks) is about
    6·0.8·0.0093 ≈ 0.045; 0.15 is three times that."""
    model = Quadratic(_rotated(LOW, 0), _rotated(MIXED, 1))
    one_batch = [(torch.zeros(4, 1), torch.zeros(4))]  # 4 800 HVPs: one batch halves their cost
    r = per_block(model, one_batch, loss_fn=_mean, n_probes=6, lanczos_steps=6, density_vectors=400, seed=2)
    assert r.sigma == pytest.approx(np.sqrt(1e-5 * 59), rel=1e-3)  # one kernel over the union of both spectra
    for block, exact in zip(r.blocks, (LOW, MIXED)):
        assert np.allclose(np.sort(block.nodes, axis=1), np.array(exact)[None, :], atol=1e-8)
        assert block.weights.sum() == pytest.approx(1.0, abs=1e-12)
        want = smoothed_density(np.array(exact), np.full(6, 1 / 6), r.grid, r.sigma)
        dx = r.grid[1] - r.grid[0]
        assert np.trapezoid(block.density, dx=dx) == pytest.approx(1.0, abs=1e-12)
        assert np.sum(np.abs(block.density - want)) * dx < 0.15
    # JS distance: the exact densities share half their mass (peaks 1, 2, 3), so JSD = ½ and the distance is √½.
    exact = [smoothed_density(np.array(e), np.full(6, 1 / 6), r.grid, r.sigma) for e in (LOW, MIXED)]
    assert js_distance(*exact) == pytest.approx(np.sqrt(0.5), abs=1e-6)
    assert r.js_distance[0, 1] == pytest.approx(np.sqrt(0.5), abs=0.02)  # seeds 2-4: within 0.006
    assert r.js_mean == r.js_distance[0, 1]


def test_identical_blocks_have_js_distance_zero() -> None:
    a = _rotated(MIXED, 4)
    r = per_block(Quadratic(a, a.clone()), DATA, loss_fn=_mean, lanczos_steps=6, density_vectors=3)
    assert r.js_distance[0, 1] < 1e-12 and r.js_mean < 1e-12
    assert np.allclose(r.blocks[0].density, r.blocks[1].density, atol=1e-10)


def _mlp() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    return model, torch.randn(10, 3, dtype=torch.float64), torch.arange(10) % 3


def _dense_blocks(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """Each module's diagonal block of the dense cross-entropy Hessian (torch.func, independent of the HVPs)."""
    from torch.func import functional_call, hessian

    params = {n: p.detach() for n, p in model.named_parameters()}
    out = {}
    for module in ("0", "2"):
        names = [n for n in params if n.startswith(module + ".")]
        sizes = [params[n].numel() for n in names]

        def loss(flat: torch.Tensor, names: list[str] = names, sizes: list[int] = sizes) -> torch.Tensor:
            chunks = dict(zip(names, (c.view(params[n].shape) for n, c in zip(names, flat.split(sizes)))))
            return nn.functional.cross_entropy(functional_call(model, {**params, **chunks}, (x,)), y)

        out[module] = hessian(loss)(torch.cat([params[n].reshape(-1) for n in names])).numpy()
    return out


def test_compute_per_block_against_the_dense_hessian(tmp_path: Path) -> None:
    model, x, y = _mlp()
    dense = _dense_blocks(model, x, y)
    h = compute(model, x, y, top_k=1, tol=1e-10, probes=16, lanczos_steps=16, per_block=True, block_by="module",
                batch_size=4)
    pb = h.per_block
    assert pb is not None and list(pb["blocks"]) == ["0", "2"] and pb["settings"]["block_by"] == "module"
    for name, block in pb["blocks"].items():
        exact = np.linalg.eigvalsh(dense[name])
        assert block["size"] == len(exact)
        assert block["eigenvalues"][0] == pytest.approx(exact[-1], rel=1e-8)
        assert block["trace"] == pytest.approx(float(np.trace(dense[name])), rel=1e-8, abs=1e-12)
        # Full-dimension Lanczos: every quadrature node of positive weight is an exact eigenvalue (the rank-deficient
        # first layer ends early, at an invariant subspace).
        nodes = block["nodes"][block["weights"] > 0]
        assert np.abs(nodes[:, None] - exact[None, :]).min(axis=1).max() < 1e-8
        assert nodes.max() == pytest.approx(exact[-1], rel=1e-10)
    assert h.attrs["n_hvp"] > 0


def test_file_round_trip_and_old_layout_untouched(tmp_path: Path) -> None:
    model, x, y = _mlp()
    h = compute(model, x, y, top_k=1, trace=True, probes=8, lanczos_steps=5, per_block=True, blocks=["2.*"])
    pb = h.per_block
    assert pb is not None and list(pb["blocks"]) == ["2.*", OTHER]
    assert pb["blocks"][OTHER]["params"] == ["0.weight", "0.bias"]
    assert pb["settings"]["block_by"] == "patterns" and pb["settings"]["patterns"] == ["2.*"]
    back = h.save(tmp_path / "h.h5")
    assert back.per_block is not None and list(back.per_block["blocks"]) == ["2.*", OTHER]
    for name, block in pb["blocks"].items():
        got = back.per_block["blocks"][name]
        assert got["params"] == block["params"] and got["size"] == block["size"]
        assert got["trace_method"] == block["trace_method"]
        for key in ("eigenvalues", "residuals", "values", "nodes", "weights", "trace", "trace_stderr"):
            np.testing.assert_array_equal(got[key], block[key])
    np.testing.assert_array_equal(back.per_block["js_distance"], pb["js_distance"])
    np.testing.assert_array_equal(back.per_block["grid"], pb["grid"])
    assert back.per_block["settings"] == pb["settings"] and back.per_block["sigma"] == pb["sigma"]
    assert back.per_block["js_mean"] == pb["js_mean"]
    # The block data live in one new group; the schema, and every other dataset, are those of a file without it,
    # so a reader that predates the group reads the rest unchanged.
    plain = tmp_path / "plain.h5"
    write_hessian(plain, attrs={}, eigenvalues=h.eigenvalues, residuals=h.residuals, trace=h.trace,
                  trace_stderr=h.trace_stderr)
    with h5py.File(tmp_path / "h.h5") as f, h5py.File(plain) as g:
        assert f.attrs["schema"] == g.attrs["schema"] == SCHEMA
        assert set(f) - {"per_block"} == set(g)
        for key in g:
            np.testing.assert_array_equal(f[key][()], g[key][()])
    old = read_hessian(plain)
    assert "per_block" not in old and Hessian.from_file(plain).per_block is None


def test_options_without_per_block_are_refused() -> None:
    model, x, y = _mlp()
    with pytest.raises(LandscapeError, match="blocks= and block_by= apply to per_block=True only"):
        compute(model, x, y, blocks=["w1"])


def _run(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_command_module_blocks_info_and_plot(digits_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "blocks.h5"
    r = _run("hessian", str(digits_ckpt), "--top-k", "0", "--per-block", "--block-by", "module", "--params",
             "stages.2.*,fc", "--probes", "6", "--lanczos-steps", "6", "--tol", "1e-2", "--n-samples", "32",
             "--quiet", "--device", "cpu", "--out", str(out))
    assert r.exit_code == 0, r.output
    res = read_hessian(out)
    pb = res["per_block"]
    names = list(pb["blocks"])
    assert "fc" in names and all(n == "fc" or n.startswith("stages.2.") for n in names) and len(names) >= 3
    assert pb["settings"]["block_by"] == "module"
    js = pb["js_distance"]
    assert js.shape == (len(names), len(names)) and np.allclose(js, js.T) and np.all(np.diag(js) == 0)
    assert np.all((js >= 0) & (js <= 1)) and pb["js_mean"] == pytest.approx(js[np.triu_indices(len(names), 1)].mean())
    for block in pb["blocks"].values():
        assert np.isfinite(block["eigenvalues"][0]) and np.isfinite(block["trace"])
        assert np.trapezoid(block["values"], pb["grid"]) == pytest.approx(1.0, abs=1e-9)
    info = _run("info", str(out))
    assert info.exit_code == 0, info.output
    assert f"{pb['js_mean']:.4f}" in info.output and "fc" in info.output
    png = tmp_path / "blocks.png"
    p = _run("plot", str(out), "--out", str(png))
    assert p.exit_code == 0, p.output
    assert png.stat().st_size > 10_000


def test_command_refuses_block_options_without_per_block(digits_ckpt: Path, tmp_path: Path) -> None:
    base = ["hessian", str(digits_ckpt), "--n-samples", "16", "--quiet", "--out", str(tmp_path / "x.h5")]
    r = CliRunner().invoke(main, [*base, "--blocks", "fc"])
    assert r.exit_code == 1 and "error: --blocks and --block-by apply to --per-block only" in r.output
    r = CliRunner().invoke(main, [*base, "--per-block", "--blocks", "nope*"])
    assert r.exit_code == 1 and "error: --blocks 'nope*' matches no parameter" in r.output
    assert not (tmp_path / "x.h5").exists()
