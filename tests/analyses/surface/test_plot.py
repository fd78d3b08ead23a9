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
