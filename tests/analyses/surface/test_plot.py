import h5py
import numpy as np
import pytest

from landscape.analyses.surface import plot as splot
from landscape.analyses.surface import schema as store
from landscape.core.figure import PlotOptions
from landscape.errors import LandscapeError


@pytest.fixture(autouse=True)
def _close_figures():
    import matplotlib.pyplot as plt

    yield
    plt.close("all")


def _write(path, *, ny=None, nan_points=(), trajectory=False, done_all=True, scale=1.0):
    x = np.linspace(-1, 1, 7)
    y = None if ny is None else np.linspace(-1, 0.5, ny)
    shape = (7,) if y is None else (7, ny)
    d = {"x": {"w": np.ones((2, 2))}} if y is None else {"x": {"w": np.ones((2, 2))}, "y": {"w": np.ones((2, 2))}}
    traj = np.array([[-0.8, -0.9], [-0.3, -0.2], [0.0, 0.0]]) if trajectory else None
    store.create(path, attrs={"split": "train", "model": "m", "direction": "pca" if trajectory else "random"},
                 x=x, y=y, split="train", directions=d, trajectory=traj)
    grids = np.meshgrid(x, *([] if y is None else [y]), indexing="ij")
    loss = scale * (0.1 + sum(g**2 for g in grids))
    with store.Writer(path, split="train") as w:
        for idx in np.ndindex(*shape):
            if not done_all and sum(idx) % 3 == 0:
                continue
            val = np.nan if idx in nan_points else (np.inf if idx == (0,) * len(shape) and nan_points else loss[idx])
            w.write(idx, loss=val, acc=1.0 / (1 + loss[idx]), stderr=0.01, n=100, seconds=0.0)
    return path


@pytest.mark.parametrize("kind", ["contour", "contourf", "heatmap", "surface3d", "auto"])
@pytest.mark.parametrize("log", [False, True])
def test_every_2d_kind_draws_the_finite_points_only(tmp_path, kind, log):
    from matplotlib.colors import LogNorm

    f = _write(tmp_path / "s.h5", ny=5, nan_points=[(3, 2), (1, 4)], trajectory=True)
    out = tmp_path / f"{kind}.png"
    splot.plot(f, out=out, options=PlotOptions(kind=kind, log=log))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = splot.draw(f, options=PlotOptions(kind=kind, log=log))
    data = store.read(f)
    finite = data.done & np.isfinite(data.loss)  # (0, 0) is inf, two points NaN
    assert finite.sum() == 7 * 5 - 3
    (mappable,) = [c for c in ax.collections if c.get_label() != "trajectory" and hasattr(c, "norm")
                   and c.get_array() is not None] or [None]
    norm = mappable.norm
    assert isinstance(norm, LogNorm) == log
    # The colour scale spans exactly the finite stored values: diverged and unfinished points never count.
    assert (norm.vmin, norm.vmax) == (pytest.approx(data.loss[finite].min()), pytest.approx(data.loss[finite].max()))
    if kind == "heatmap":
        drawn = np.ma.asarray(mappable.get_array()).reshape(5, 7)
        np.testing.assert_array_equal(drawn.mask, ~finite.T)
        np.testing.assert_array_equal(drawn.compressed(), data.loss.T[finite.T])


@pytest.mark.parametrize("metric", ["loss", "acc"])
def test_1d_line_and_partial_files(tmp_path, metric):
    f = _write(tmp_path / "s.h5", nan_points=[(2,)], done_all=False)
    out = tmp_path / "line.svg"
    splot.plot(f, out=out, options=PlotOptions(metric=metric, vmin=0, vmax=3))
    assert out.read_text().startswith("<?xml")
    ax = splot.draw(f, options=PlotOptions(metric=metric, vmin=0, vmax=3))
    data = store.read(f)
    line = ax.get_lines()[0]
    stored = data.loss if metric == "loss" else data.acc
    shown = data.done & np.isfinite(stored)
    np.testing.assert_array_equal(line.get_xdata(), data.x)
    np.testing.assert_array_equal(np.isnan(line.get_ydata()), ~shown)  # unfinished and diverged: gaps
    np.testing.assert_array_equal(line.get_ydata()[shown], stored[shown])
    assert ax.get_ylim() == (0, 3)
    with pytest.raises(LandscapeError, match=r"1D surface; kind='contour' needs a 2D one \(use kind='line'\)"):
        splot.plot(f, out=tmp_path / "c.png", options=PlotOptions(kind="contour"))


def test_a_line_of_a_2d_surface_names_the_kinds_that_fit(tmp_path):
    f = _write(tmp_path / "s2.h5", ny=3)
    with pytest.raises(LandscapeError, match=r"2D surface; kind='line' needs a 1D one \(use kind='contour', "
                                             r"'contourf', 'heatmap' or 'surface3d'\)"):
        splot.plot(f, out=tmp_path / "c.png", options=PlotOptions(kind="line"))
    assert not (tmp_path / "c.png").exists()


def test_all_nan_surface_still_plots(tmp_path):
    f = _write(tmp_path / "s.h5", ny=3, nan_points=list(np.ndindex(7, 3)))
    for kind in ("contour", "heatmap", "surface3d"):
        splot.plot(f, out=tmp_path / f"{kind}.png", options=PlotOptions(kind=kind))
        assert (tmp_path / f"{kind}.png").exists()
        ax = splot.draw(f, options=PlotOptions(kind=kind))
        assert [t.get_text() for t in ax.texts] == ["no finished points"] and not ax.collections


def test_compare_shares_one_colour_scale(tmp_path):
    a = _write(tmp_path / "a.h5", ny=5)
    b = _write(tmp_path / "b.h5", ny=5, scale=3.0)
    out = tmp_path / "cmp.pdf"
    splot.compare([a, b], labels=["ResNet", "FMMNet"], out=out, options=PlotOptions())
    assert out.read_bytes()[:4] == b"%PDF"
    fig = splot.draw_compare([a, b], labels=["ResNet", "FMMNet"], options=PlotOptions())
    panels = [ax for ax in fig.axes if ax.get_title() in ("ResNet", "FMMNet")]
    sets = [c for ax in panels for c in ax.collections if hasattr(c, "levels")]
    assert len(sets) == 2
    lo, hi = 0.1 + 0.125**2, 3 * (0.1 + 1 + 1)
    for cs in sets:
        assert (cs.norm.vmin, cs.norm.vmax) == (pytest.approx(lo), pytest.approx(hi))
        np.testing.assert_allclose(cs.levels, np.linspace(lo, hi, 20))
    l1, l2 = _write(tmp_path / "l1.h5"), _write(tmp_path / "l2.h5", scale=2)
    fig = splot.draw_compare([l1, l2], options=PlotOptions(log=True))
    (ax,) = fig.axes
    curves = [ln.get_ydata() for ln in ax.get_lines()]
    np.testing.assert_allclose(curves[1], 2 * curves[0])
    assert ax.get_yscale() == "log" and ax.get_legend() is not None
    with pytest.raises(LandscapeError, match="one dimension"):
        splot.compare([a, l1], out=tmp_path / "x.png", options=PlotOptions())


@pytest.mark.parametrize(("options", "fragment"), [
    ({"vmin": 5.0, "vmax": 1.0}, "vmin=5 must be below vmax=1"),
    ({"vmin": 1.0, "vmax": 1.0}, "must be below"),
    ({"vmax": float("nan")}, "vmax=nan is not a finite number"),
    ({"levels": 1}, "at least 2"),
    ({"dpi": 0}, "dpi=0"),
])
def test_nonsense_plot_options_are_refused(options, fragment):
    with pytest.raises(LandscapeError, match=fragment):
        PlotOptions(**options)


def test_bad_output_and_foreign_files(tmp_path):
    f = _write(tmp_path / "s.h5", ny=3)
    with pytest.raises(LandscapeError, match=".png, .pdf or .svg"):
        splot.plot(f, out=tmp_path / "x.foo", options=PlotOptions())
    with h5py.File(tmp_path / "other.h5", "w") as g:
        g.attrs["schema"] = "landscape.hessian/1"
    with pytest.raises(LandscapeError, match="expected 'landscape.surface/1'"):
        splot.plot(tmp_path / "other.h5", out=tmp_path / "o.png", options=PlotOptions())


@pytest.mark.parametrize(("ny", "kind"), [(None, "line"), (5, "contour"), (5, "surface3d")])
def test_pca_path_is_drawn_on_1d_2d_and_3d_plots(tmp_path, monkeypatch, ny, kind):
    f = _write(tmp_path / "s.h5", ny=ny, trajectory=True)
    figures = []
    monkeypatch.setattr(splot, "save_figure", lambda fig, out, **kw: figures.append(fig))
    splot.plot(f, out=tmp_path / "p.png", options=PlotOptions(kind=kind))
    (path_line,) = [ln for ax in figures[0].axes for ln in ax.get_lines() if ln.get_label() == "trajectory"]
    np.testing.assert_allclose(path_line.get_xdata(), [-0.8, -0.3, 0.0])
    if ny is not None:
        np.testing.assert_allclose(path_line.get_ydata(), [-0.9, -0.2, 0.0])


def _grid_surface(path, loss, *, x=None, y=None, trajectory=None, ratio=None):
    """A complete 2D (or 1D when ``y`` is None) surface holding ``loss``."""
    x = np.linspace(-1, 1, loss.shape[0]) if x is None else x
    y = (np.linspace(-1, 1, loss.shape[1]) if loss.ndim == 2 else None) if y is None else y
    attrs = {"split": "train", "model": "m", "direction": "pca" if trajectory is not None else "random"}
    if ratio is not None:
        attrs["pca_explained_variance_ratio"] = ratio
    d = {"x": {"w": np.ones(2)}, **({"y": {"w": np.ones(2)}} if y is not None else {})}
    store.create(path, attrs=attrs, x=x, y=y, split="train", directions=d, trajectory=trajectory)
    with store.Writer(path, split="train") as w:
        for idx in np.ndindex(*loss.shape):
            w.write(idx, loss=loss[idx], acc=0.5, stderr=0.0, n=10, seconds=0.0)
    return path


def _steep_corner(n=11):
    """A basin near 0.1 and one corner at 1e5: six decades."""
    x = np.linspace(-1, 1, n)
    X, Y = np.meshgrid(x, x, indexing="ij")
    return 0.1 + X**2 + Y**2 + 1e5 * ((X == 1) & (Y == 1))


def _colour_label(fig):
    return [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_a_loss_spanning_decades_is_drawn_on_a_log_scale_and_says_so(tmp_path):
    from matplotlib.colors import LogNorm

    a = _grid_surface(tmp_path / "a.h5", _steep_corner())
    b = _grid_surface(tmp_path / "b.h5", 2 * _steep_corner())
    fig = splot.draw_compare([a, b], labels=["A", "B"], options=PlotOptions())
    (cbar,) = _colour_label(fig)
    assert "log scale, automatic" in cbar and "shared" in cbar
    sets = [c for ax in fig.axes if ax.get_title() in ("A", "B") for c in ax.collections if hasattr(c, "levels")]
    assert len(sets) == 2
    for cs in sets:
        assert isinstance(cs.norm, LogNorm)
        assert (cs.norm.vmin, cs.norm.vmax) == (pytest.approx(0.1), pytest.approx(2 * (2.1 + 1e5)))
        # Log-spaced levels: five of them in the basin (loss up to 4.2), where a linear spacing puts only the minimum.
        np.testing.assert_allclose(cs.levels, np.geomspace(0.1, 2 * (2.1 + 1e5), 20))
        assert np.sum(cs.levels <= 4.2) == 5
    # The user's choice wins: an explicit vmax clips, linearly, and the colour bar says where.
    fig = splot.draw_compare([a, b], labels=["A", "B"], options=PlotOptions(vmax=3.0))
    assert _colour_label(fig) == ["train loss (clipped at vmax=3), shared"]
    # A loss within two decades keeps the plain linear scale, with no words.
    flat = _grid_surface(tmp_path / "f.h5", 1 + _steep_corner() % 5)
    ax = splot.draw(flat, options=PlotOptions(kind="heatmap"))
    assert _colour_label(ax.figure) == ["train loss"]


def test_a_single_contour_puts_its_levels_in_a_flat_basin(tmp_path):
    x = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(x, x, indexing="ij")
    loss = 1.0 + 0.01 * (X**2 + Y**2) + 50 * np.maximum(np.abs(X), np.abs(Y)) ** 12  # flat floor, steep walls
    path = _grid_surface(tmp_path / "b.h5", loss)
    ax = splot.draw(path, options=PlotOptions(kind="contour", levels=12))
    cs = next(c for c in ax.collections if hasattr(c, "levels"))
    lo, hi = loss.min(), loss.max()
    assert cs.levels[0] == pytest.approx(lo) and cs.levels[-1] == pytest.approx(hi)
    # A linear spacing would put one level in the basin's 1% rise; these put at least three there.
    assert np.sum(cs.levels[1:] < lo + 0.011) >= 3
    assert np.all(np.diff(np.log(cs.levels[1:] - lo)) == pytest.approx(np.log(cs.levels[2] - lo)
                                                                       - np.log(cs.levels[1] - lo)))
    assert _colour_label(ax.figure) == ["train loss (levels log-spaced above the minimum)"]
    # A surface with no such basin keeps linear levels.
    ax = splot.draw(_grid_surface(tmp_path / "p.h5", 1.0 + X**2 + Y**2), options=PlotOptions(kind="contour"))
    cs = next(c for c in ax.collections if hasattr(c, "levels"))
    np.testing.assert_allclose(np.diff(cs.levels), np.diff(cs.levels)[0])


def test_pca_axes_give_the_variance_and_zoom_to_a_small_path(tmp_path):
    x = np.linspace(-1, 1, 21)
    X, Y = np.meshgrid(x, x, indexing="ij")
    loss = 0.2 + X**2 + Y**2
    path = np.array([[0.2, 0.1], [0.1, 0.05], [0.0, 0.0]])
    f = _grid_surface(tmp_path / "p.h5", loss, trajectory=path, ratio=[0.831, 0.102])
    ax = splot.draw(f, options=PlotOptions(kind="contourf"))
    assert ax.get_xlabel() == "α (PC1, 83.1 % of the path's variance)"
    assert ax.get_ylabel() == "β (PC2, 10.2 % of the path's variance)"
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert x0 <= 0.0 and x1 >= 0.2 and y0 <= 0.0 and y1 >= 0.1  # the whole path is seen
    assert (x1 - x0) * (y1 - y0) < 0.25 * 4  # and not the whole grid
    assert any("zoomed to the path" in t.get_text() for t in ax.texts)
    # The colour scale is that of the window: its top is the highest loss seen, far below the grid's corners.
    cs = next(c for c in ax.collections if hasattr(c, "levels"))
    inside = (X >= x0) & (X <= x1) & (Y >= y0) & (Y <= y1)
    assert cs.norm.vmax == pytest.approx(loss[inside].max()) and cs.norm.vmax < 1.0
    # A path as wide as the grid: no zoom.
    wide = _grid_surface(tmp_path / "w.h5", loss, trajectory=np.array([[-0.9, -0.9], [0.9, 0.8]]))
    ax = splot.draw(wide, options=PlotOptions(kind="contourf"))
    assert ax.get_xlim() == (-1, 1) and not any("zoomed" in t.get_text() for t in ax.texts)


def test_1d_scale_chosen_or_clipped_is_said(tmp_path):
    x = np.linspace(-1, 1, 9)
    a = _grid_surface(tmp_path / "a.h5", 0.01 + 1e3 * x**4)
    b = _grid_surface(tmp_path / "b.h5", 0.02 + 1e3 * x**4)
    fig = splot.draw_compare([a, b], labels=["A", "B"], options=PlotOptions())
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "train loss (log scale, automatic: the loss spans 1e+05×)"
    fig = splot.draw_compare([a, b], labels=["A", "B"], options=PlotOptions(vmax=5.0))
    (ax,) = fig.axes
    assert ax.get_yscale() == "linear" and ax.get_ylim()[1] == 5.0
    assert [t.get_text() for t in ax.texts] == ["clipped at vmax=5"]
    # Okabe-Ito colours, one per file, in order.
    from landscape.core.figure import PALETTE

    assert [ln.get_color() for ln in ax.get_lines()][:2] == list(PALETTE[:2])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]


def test_3d_surface_labels_its_z_axis(tmp_path):
    f = _grid_surface(tmp_path / "s.h5", _steep_corner(7))
    ax = splot.draw(_grid_surface(tmp_path / "q.h5", 0.1 + _steep_corner(7) % 5), options=PlotOptions(
        kind="surface3d"))
    assert ax.get_zlabel() == "train loss"
    ax = splot.draw(f, options=PlotOptions(kind="surface3d", log=True))  # log colours, linear z: said
    assert ax.get_zlabel() == "train loss (linear z axis)"
    assert len(ax.get_xticks()) <= 7 and len(ax.get_yticks()) <= 7
    assert ax.get_xlabel().startswith("α") and ax.get_ylabel().startswith("β")
