"""What the figures draw: the data behind contours, meshes and lines, its orientation, axis labels, colour norms."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.colors import LogNorm
from matplotlib.contour import ContourSet

from landscape.analyses.hessian import plot as hplot
from landscape.analyses.hessian.schema import write_hessian
from landscape.analyses.surface import plot as splot
from landscape.analyses.surface import schema as store
from landscape.core.figure import PlotOptions
from landscape.errors import LandscapeError

X = np.linspace(-1.0, 1.0, 7)
Y = np.linspace(-0.5, 0.5, 7)  # a square grid: a transposed array would still draw, wrongly


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _surface(path, loss, *, y=Y, undone=(), attrs=None):
    """A complete surface file holding ``loss`` (shape (len(X),) or (len(X), len(y))), some points left undone."""
    two_d = loss.ndim == 2
    d = {"x": {"w": np.ones(2)}, **({"y": {"w": np.ones(2)}} if two_d else {})}
    store.create(path, attrs={"split": "train", "model": "m", "direction": "random", **(attrs or {})}, x=X,
                 y=y if two_d else None, split="train", directions=d)
    with store.Writer(path, split="train") as w:
        for idx in np.ndindex(*loss.shape):
            if idx not in undone:
                w.write(idx, loss=loss[idx], acc=0.5, stderr=0.0, n=10, seconds=0.0)
    return path


def _x_only(scale=1.0):
    """Loss 1 + x on the grid: contour lines must be vertical, at x = level − 1."""
    return scale * (1.0 + np.repeat(X[:, None], len(Y), axis=1))


def _contour_set(ax) -> ContourSet:
    (cs,) = [c for c in ax.collections if isinstance(c, ContourSet)]
    return cs


@pytest.mark.parametrize("kind", ["contour", "contourf"])
def test_contour_is_the_stored_loss_with_x_horizontal(tmp_path, kind):
    path = _surface(tmp_path / "s.h5", _x_only())
    ax = splot.draw(path, options=PlotOptions(kind=kind, levels=5))
    cs = _contour_set(ax)
    np.testing.assert_allclose(cs.levels, [0.0, 0.5, 1.0, 1.5, 2.0])  # min..max of the stored loss
    assert type(cs.norm).__name__ == "Normalize" and (cs.norm.vmin, cs.norm.vmax) == (0.0, 2.0)
    if kind == "contour":
        for level, p in zip(cs.levels[1:-1], cs.get_paths()[1:-1]):
            xs, ys = p.vertices.T
            np.testing.assert_allclose(xs, level - 1.0, atol=1e-12)  # vertical: depends on x only
            assert ys.min() == pytest.approx(Y[0]) and ys.max() == pytest.approx(Y[-1])
    else:  # each filled band [a, b] spans x in [a − 1, b − 1] and the whole y range
        for (lo, hi), p in zip(zip(cs.levels[:-1], cs.levels[1:]), cs.get_paths()):
            xs, ys = p.vertices.T
            assert xs.min() == pytest.approx(lo - 1) and xs.max() == pytest.approx(hi - 1)
            assert ys.min() == pytest.approx(Y[0]) and ys.max() == pytest.approx(Y[-1])
    assert ax.get_xlim() == (X[0], X[-1]) and ax.get_ylim() == (Y[0], Y[-1])


def test_heatmap_array_is_the_stored_loss_transposed_onto_the_axes(tmp_path):
    rng = np.random.default_rng(0)
    loss = rng.uniform(0.5, 2.0, size=(len(X), len(Y)))
    path = _surface(tmp_path / "s.h5", loss, undone=[(2, 5)])
    ax = splot.draw(path, options=PlotOptions(kind="heatmap"))
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    drawn = np.ma.asarray(mesh.get_array()).reshape(len(Y), len(X))  # rows go up the y axis
    expected = np.ma.masked_array(loss.T, mask=np.zeros_like(loss.T, dtype=bool))
    expected[5, 2] = np.ma.masked
    np.testing.assert_array_equal(drawn.mask, expected.mask)
    np.testing.assert_allclose(drawn.compressed(), expected.compressed(), rtol=0, atol=0)
    # Cell edges: x runs along the columns (horizontal), y along the rows, each centred on the stored coordinates.
    edges = mesh.get_coordinates()

    def mids(v):
        return np.concatenate([[v[0] - (v[1] - v[0]) / 2], (v[:-1] + v[1:]) / 2, [v[-1] + (v[-1] - v[-2]) / 2]])

    np.testing.assert_allclose(edges[0, :, 0], mids(X))
    np.testing.assert_allclose(edges[:, 0, 1], mids(Y))


def test_axis_labels_name_the_directions(tmp_path):
    ax = splot.draw(_surface(tmp_path / "r.h5", _x_only()), options=PlotOptions(kind="contour"))
    assert ax.get_xlabel() == "α (random direction x)" and ax.get_ylabel() == "β (random direction y)"
    colorbar = ax.figure.axes[-1]
    assert colorbar.get_ylabel() == "train loss"
    pca = _surface(tmp_path / "p.h5", _x_only(), attrs={"direction": "pca", "pca_explained_variance_ratio": [0.8,
                                                                                                             0.15]})
    ax = splot.draw(pca, options=PlotOptions(kind="heatmap"))
    assert ax.get_xlabel() == "α (PC1, 80.0 % of the path's variance)"
    assert ax.get_ylabel() == "β (PC2, 15.0 % of the path's variance)"
    line = splot.draw(_surface(tmp_path / "e.h5", X**2, attrs={"direction": "eigen"}), options=PlotOptions())
    assert line.get_xlabel() == "α (Hessian eigenvector 1)" and line.get_ylabel() == "train loss"


@pytest.mark.parametrize("kind", ["contour", "contourf"])
def test_log_colour_norm_when_log_is_requested(tmp_path, kind):
    path = _surface(tmp_path / "s.h5", np.exp(_x_only() * 2))  # e^0 .. e^4
    ax = splot.draw(path, options=PlotOptions(kind=kind, log=True, levels=5))
    cs = _contour_set(ax)
    assert isinstance(cs.norm, LogNorm)
    np.testing.assert_allclose(cs.levels, np.exp([0.0, 1.0, 2.0, 3.0, 4.0]))  # evenly spaced in log
    assert ax.figure.axes[-1].get_yscale() == "log"  # the colour bar too
    linear = _contour_set(splot.draw(path, options=PlotOptions(kind=kind, levels=5)))
    assert not isinstance(linear.norm, LogNorm)
    np.testing.assert_allclose(linear.levels, np.linspace(1, np.exp(4), 5))


def test_line_is_the_stored_coordinates_and_losses(tmp_path):
    loss = 0.3 + (X - 0.4) ** 2  # asymmetric: a reversed x axis would show
    path = _surface(tmp_path / "l.h5", loss, undone=[(1,)])
    ax = splot.draw(path, options=PlotOptions(log=True))
    (line,) = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-"]
    np.testing.assert_array_equal(line.get_xdata(), X)
    expected = loss.copy()
    expected[1] = np.nan  # not computed: a gap, never a value
    np.testing.assert_array_equal(line.get_ydata(), expected)
    assert ax.get_yscale() == "log"


def test_compare_shares_one_colour_scale_across_panels(tmp_path):
    a = _surface(tmp_path / "a.h5", _x_only())
    b = _surface(tmp_path / "b.h5", _x_only(scale=3.0))  # 0 .. 6
    fig = splot.draw_compare([a, b], labels=["A", "B"], options=PlotOptions(levels=7))
    panels = [ax for ax in fig.axes if ax.get_title() in ("A", "B")]
    sets = [_contour_set(ax) for ax in panels]
    assert len(sets) == 2
    for cs in sets:
        np.testing.assert_allclose(cs.levels, np.linspace(0, 6, 7))
        assert (cs.norm.vmin, cs.norm.vmax) == (0.0, 6.0)
    (colorbar,) = [ax for ax in fig.axes if ax not in panels]
    assert colorbar.get_ylim() == (0.0, 6.0)
    # Each panel still holds its own data: A's bands stop at 2, B's run to 6.
    assert max(p.vertices[:, 0].max() for p in sets[0].get_paths() if len(p.vertices)) == pytest.approx(1.0)
    assert len([p for p in sets[0].get_paths() if len(p.vertices)]) == 2  # bands 0–1 and 1–2 only


def test_hessian_density_curve_is_the_stored_density(tmp_path):
    grid = np.linspace(-1, 5, 200)
    values = np.exp(-((grid - 2) ** 2)) + 1e-30 * (grid < 0)
    values[:20] = 0.0  # zeros and the smoothing's floor are gaps on the log axis, not a flat line
    path = tmp_path / "h.h5"
    write_hessian(path, attrs={"model": "m"}, eigenvalues=np.array([4.0, 2.5]),
                  density={"grid": grid, "values": values, "nodes": np.zeros((1, 3)), "weights": np.ones((1, 3))})
    ax = hplot.draw(path)
    (curve,) = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(grid)]
    np.testing.assert_array_equal(curve.get_xdata(), grid)
    np.testing.assert_array_equal(curve.get_ydata(), np.where(values > values.max() * 1e-6, values, np.nan))
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "eigenvalue λ"
    marks = sorted(ln.get_xdata()[0] for ln in ax.get_lines() if len(ln.get_xdata()) == 2)
    assert marks == [2.5, 4.0]


def test_draw_onto_given_axes(tmp_path):
    path = _surface(tmp_path / "s.h5", _x_only())
    fig, (left, right) = plt.subplots(1, 2)
    assert splot.draw(path, ax=right, options=PlotOptions(kind="heatmap")) is right
    assert not left.collections and right.collections and len(fig.axes) == 3  # the colour bar joined that figure
    with pytest.raises(LandscapeError, match="needs a 3D axes"):
        splot.draw(path, ax=left, options=PlotOptions(kind="surface3d"))


def test_one_palette_and_style_for_every_figure():
    import re
    from pathlib import Path

    import landscape
    from landscape.core.figure import PALETTE, colour, style

    # No figure picks matplotlib's default cycle (C0…C9, tab10) by name: series take the Okabe-Ito PALETTE.
    root = Path(landscape.__file__).parent / "analyses"
    for path in sorted(root.glob("*/plot.py")):
        found = re.findall(r"""["']C\d["']|f["']C\{|tab10|["']tab:""", path.read_text())
        assert not found, f"{path.relative_to(root)} names default colours {found}; use landscape.core.figure.colour"
    assert colour(0) == PALETTE[0] and colour(len(PALETTE) + 1) == PALETTE[1] and colour(np.int64(2)) == PALETTE[2]
    with style():
        _fig, ax = plt.subplots()
        first, second = ax.plot([0, 1]), ax.plot([1, 0])
        assert (first[0].get_color(), second[0].get_color()) == PALETTE[:2]
        assert not ax.spines["top"].get_visible()
    assert plt.rcParams["axes.spines.top"]  # the style ends with its block
