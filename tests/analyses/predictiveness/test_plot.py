"""What the predictiveness figures draw: a training file as lines and bands, a checkpoint's independent batches
as points and ranges (never joined), in the Okabe-Ito colours."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from landscape.analyses.predictiveness import plot as plots
from landscape.analyses.predictiveness import schema as store
from landscape.core.figure import PALETTE, PlotOptions

ETA = np.array([0.05, 0.1, 0.2])


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _file(path, *, x_axis, scale=1.0, rows=5):
    t = np.arange(rows) * (10 if x_axis == "step" else 1)
    loss = scale * (1.0 + np.outer(np.arange(rows), ETA))
    store.write(path, eta=ETA, step=t, loss=loss, grad_diff=scale * ETA[None] * (1 + np.arange(rows)[:, None]),
                beta=scale * (1.0 + np.arange(rows) / 10), train_loss=loss[:, 0], grad_norm=np.ones(rows),
                attrs={"model": f"m{scale:g}", "x_axis": x_axis, "bn_mode": "train"})
    return path


def _figure(monkeypatch, paths):
    figures = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, out, **kw: figures.append(fig))
    plots.compare(paths, labels=None, out="unused.png", options=PlotOptions())
    return figures[0]


def test_checkpoint_batches_are_points_not_a_line(tmp_path, monkeypatch):
    a = _file(tmp_path / "a.h5", x_axis="batch")
    b = _file(tmp_path / "b.h5", x_axis="batch", scale=2.0)
    fig = _figure(monkeypatch, [a, b])
    loss, grad, beta = fig.axes
    data = [store.read(a), store.read(b)]
    # β: one marker per batch, no connecting line.
    lines = beta.get_lines()
    assert len(lines) == 2
    for k, (ln, d) in enumerate(zip(lines, data)):
        assert ln.get_linestyle() == "None" and ln.get_marker() == "o"
        np.testing.assert_allclose(ln.get_xydata(), np.c_[d.step + (k - 0.5) * 0.15, d.beta])  # side by side
        assert ln.get_color() == PALETTE[k]
    # Bands: a vertical range over η per batch (min..max), no filled band between batches.
    for ax, metric in ((loss, "loss"), (grad, "grad_diff")):
        assert not [c for c in ax.collections if type(c).__name__ in ("PolyCollection", "FillBetweenPolyCollection")]
        ranges = [c for c in ax.collections if type(c).__name__ == "LineCollection"]
        assert len(ranges) == 2
        for k, (rng, d) in enumerate(zip(ranges, data)):
            values = getattr(d, metric)
            segs = np.array(rng.get_segments())
            np.testing.assert_allclose(segs[:, 0, 0], d.step + (k - 0.5) * 0.15)
            np.testing.assert_array_equal(segs[:, :, 1], np.c_[values.min(axis=1), values.max(axis=1)])
        assert all(ln.get_linestyle() == "None" for ln in ax.get_lines())  # caps only
        assert ax.get_xlabel().startswith("batch (independent")
    assert [t.get_text() for t in loss.get_legend().get_texts()] == ["m1", "m2"]


def test_training_probes_stay_a_time_series(tmp_path, monkeypatch):
    fig = _figure(monkeypatch, [_file(tmp_path / "t.h5", x_axis="step")])
    loss, _, beta = fig.axes
    (ln,) = beta.get_lines()
    assert ln.get_linestyle() == "-" and ln.get_color() == PALETTE[0]
    assert len(loss.collections) == 1 and loss.get_xlabel() == "training step"  # the band over η
