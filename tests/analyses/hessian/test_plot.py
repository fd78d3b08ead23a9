"""What the Hessian figures draw: the density above its numerical floor, the eigenvalue lines in the legend, and
comparisons as points with error bars."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from landscape.analyses.hessian import plot as hplot
from landscape.analyses.hessian.schema import write_hessian
from landscape.core.figure import PALETTE

GRID = np.linspace(-1.0, 6.0, 300)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _density(centre: float, height: float = 1.0) -> np.ndarray:
    """A Gaussian bump on the 1e-10 floor the smoothing leaves."""
    return height * np.exp(-((GRID - centre) ** 2) / 0.1) + 1e-10 * height


def _file(path, *, centre=2.0, height=1.0, eigenvalues=(4.0, 2.5), residuals=(0.1, 0.2), trace=10.0, stderr=0.5,
          density=True):
    write_hessian(path, attrs={"model": path.stem}, eigenvalues=np.array(eigenvalues), residuals=np.array(residuals),
                  trace=trace, trace_stderr=stderr,
                  density={"grid": GRID, "values": _density(centre, height), "nodes": np.zeros((1, 3)),
                           "weights": np.ones((1, 3))} if density else None)
    return path


def _figure(monkeypatch, draw):
    figures = []
    monkeypatch.setattr(hplot, "save_figure", lambda fig, out, **kw: figures.append(fig))
    draw()
    return figures[0]


def test_the_density_floor_is_not_drawn_and_the_limits_follow_the_peak(tmp_path):
    ax = hplot.draw(_file(tmp_path / "a.h5", height=3.0))
    (curve,) = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == len(GRID)]
    y = curve.get_ydata()
    values = _density(2.0, 3.0)
    peak = values.max()
    floor = values <= peak * 1e-6
    assert floor.sum() > 100  # most of the grid is the smoothing's floor
    assert np.isnan(y[floor]).all()
    np.testing.assert_array_equal(y[~floor], values[~floor])
    assert ax.get_ylim() == (pytest.approx(peak * 1e-6), pytest.approx(peak * 3))
    assert any("above 1e-06 of the peak" in t.get_text() for t in ax.texts)


def test_eigenvalue_lines_are_dashed_and_in_the_legend(tmp_path):
    ax = hplot.draw(_file(tmp_path / "a.h5"))
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["spectral density (SLQ)", "top eigenvalues (Lanczos)"]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert sorted(ln.get_xdata()[0] for ln in dashed) == [2.5, 4.0]
    handle = ax.get_legend().legend_handles[1]
    assert handle.get_linestyle() == "--"


def test_compare_draws_points_with_error_bars_in_the_palette(tmp_path, monkeypatch):
    a = _file(tmp_path / "ResNet.h5", eigenvalues=(4.0, 2.5), residuals=(0.1, 0.2), trace=10.0, stderr=0.5)
    b = _file(tmp_path / "FMMNet.h5", centre=1.0, height=2.0, eigenvalues=(3.0,), residuals=(0.3,), trace=7.0,
              stderr=0.25)
    fig = _figure(monkeypatch, lambda: hplot.compare([a, b], labels=["ResNet", "FMMNet"], out=tmp_path / "c.png"))
    density, top, trace = fig.axes[:3]
    assert not [c for ax in fig.axes for c in ax.containers if isinstance(c, BarContainer)]  # no bar charts
    for ax, values, errors in ((top, [4.0, 3.0], [0.1, 0.3]), (trace, [10.0, 7.0], [1.96 * 0.5, 1.96 * 0.25])):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 2
        for k, (bar, value, err) in enumerate(zip(bars, values, errors)):
            point, _, (segments,) = bar.lines
            assert (point.get_xdata()[0], point.get_ydata()[0]) == (k, value)
            (lo, hi) = segments.get_segments()[0][:, 1]
            assert (lo, hi) == (pytest.approx(value - err), pytest.approx(value + err))
            assert point.get_color() == PALETTE[k]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["ResNet", "FMMNet"]
    labels = [t.get_text() for t in density.get_legend().get_texts()]
    assert labels == ["ResNet", "FMMNet", "top eigenvalues (Lanczos)"]
    peak = _density(1.0, 2.0).max()
    assert density.get_ylim() == (pytest.approx(peak * 1e-6), pytest.approx(peak * 3))  # from the highest peak


def test_compare_says_what_is_missing(tmp_path, monkeypatch):
    a = _file(tmp_path / "a.h5", density=False)
    write_hessian(tmp_path / "b.h5", attrs={"model": "b"}, eigenvalues=np.array([2.0]))
    fig = _figure(monkeypatch, lambda: hplot.compare([a, tmp_path / "b.h5"], out=tmp_path / "c.png"))
    density, _, trace = fig.axes[:3]
    assert any("no density stored" in t.get_text() for t in density.texts)
    assert [t.get_text() for t in trace.texts] == ["not stored"]
    assert len([c for c in trace.containers if isinstance(c, ErrorbarContainer)]) == 1
