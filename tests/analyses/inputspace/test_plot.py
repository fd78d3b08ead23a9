"""What the input-space figures draw: a loss panel spanning decades on a log scale that says so, clipping said,
Okabe-Ito colours."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from landscape.analyses.inputspace import plot as iplot
from landscape.analyses.inputspace.schema import REQUIRED, write_inputspace
from landscape.core.figure import PALETTE, PlotOptions

ALPHA = np.linspace(0, 1, 5)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _between(path, *, same_scale=1e-4, diff_scale=5.0):
    """Two same-class pairs with a loss near 0 and two different-class pairs with a loss near ``diff_scale``."""
    bump = 1 + np.sin(np.pi * ALPHA)
    loss = np.array([same_scale * bump, 2 * same_scale * bump, diff_scale * bump, 2 * diff_scale * bump])
    arrays = {k: np.zeros(4) for k in REQUIRED["between"]}
    arrays.update(alpha=ALPHA, same_class=np.array([True, True, False, False]), loss=loss, prob_i=1 - loss / 20,
                  pair_index=np.zeros((4, 2), int), pair_target=np.zeros((4, 2), int), jacobian_norm=np.zeros((4, 2)),
                  loss_i=loss, loss_j=loss, prob_j=loss, pred=np.zeros((4, 5), int))
    write_inputspace(path, mode="between", arrays=arrays, attrs={"label": path.stem})
    return path, loss


def test_loss_spanning_decades_is_drawn_on_a_log_scale_that_says_so(tmp_path):
    path, loss = _between(tmp_path / "m.h5")
    ax = iplot.draw(path)
    assert ax.get_yscale() == "log"
    assert ax.get_ylabel() == "loss (mixup target), log scale (automatic)"
    # What is drawn spans from the lowest lower quartile (1.25e-4, at α = 0) to the highest upper one (1.75·10).
    assert [t.get_text() for t in ax.texts] == [f"log scale: the curves span {1.75 * 10 / 1.25e-4:.2g}×"]
    same, diff = ax.get_lines()
    np.testing.assert_allclose(same.get_ydata(), np.median(loss[:2], axis=0))  # visible: not squashed on 0
    np.testing.assert_allclose(diff.get_ydata(), np.median(loss[2:], axis=0))
    assert same.get_color() == diff.get_color() == PALETTE[0]
    assert (same.get_linestyle(), diff.get_linestyle()) == ("-", "--")
    # Within two decades: linear, and the label says nothing.
    flat, _ = _between(tmp_path / "f.h5", same_scale=1.0)
    ax = iplot.draw(flat)
    assert ax.get_yscale() == "linear" and ax.get_ylabel() == "loss (mixup target)"
    # The probability panel is never switched.
    assert iplot.draw(path, options=PlotOptions(metric="prob")).get_yscale() == "linear"


def test_user_limits_win_and_clipping_is_said(tmp_path, monkeypatch):
    a, _ = _between(tmp_path / "a.h5")
    b, _ = _between(tmp_path / "b.h5", diff_scale=8.0)
    figures = []
    monkeypatch.setattr(iplot, "save_figure", lambda fig, out, **kw: figures.append(fig))
    iplot.compare([a, b], out=str(tmp_path / "c.png"), options=PlotOptions(vmax=10.0))
    loss_ax, _ = figures[0].axes
    assert loss_ax.get_yscale() == "linear" and loss_ax.get_ylim()[1] == 10.0
    assert [t.get_text() for t in loss_ax.texts] == ["clipped at vmax=10"]
    assert [ln.get_color() for ln in loss_ax.get_lines()] == [PALETTE[0], PALETTE[0], PALETTE[1], PALETTE[1]]
    (legend,) = figures[0].legends  # one legend for both panels
    assert [t.get_text() for t in legend.get_texts()] == [
        "a same class", "a different class", "b same class", "b different class"]
