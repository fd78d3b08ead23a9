"""What the attention comparison draws: each Spearman ρ as a point with its 95% interval (Fisher z), one colour
per file, never bars."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer

from landscape.analyses.attention import plot as aplot
from landscape.analyses.attention.schema import CORRELATION_KEYS, write_attention
from landscape.core.figure import PALETTE


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _file(path, rhos, *, pooled, within, channels=(13, 28)):
    modules = [{"name": f"stage{i}.attention", "kind": "SE", "mean_weight": np.linspace(0, 1, n),
                "importance": np.linspace(1, 0, n), **dict.fromkeys(CORRELATION_KEYS, np.nan), "spearman": rho}
               for i, (rho, n) in enumerate(zip(rhos, channels))]
    attrs = {"importance": "ablation", **dict.fromkeys(CORRELATION_KEYS, np.nan), "spearman": pooled,
             "within_spearman": within, "label": path.stem}
    return write_attention(path, modules=modules, attrs=attrs)


def test_interval_is_fisher_z_with_the_spearman_standard_error():
    lo, hi = aplot.rho_interval(0.5, 28)
    half = 1.959964 * math.sqrt(1.06 / 25)
    assert (lo, hi) == (pytest.approx(math.tanh(math.atanh(0.5) - half)),
                        pytest.approx(math.tanh(math.atanh(0.5) + half)))
    assert lo < 0.5 < hi and hi - 0.5 < 0.5 - lo  # skewed towards 0, as a correlation's interval is
    assert all(math.isnan(v) for v in aplot.rho_interval(0.5, 3))


def test_compare_draws_points_with_intervals(tmp_path, monkeypatch):
    a = _file(tmp_path / "mul.h5", [0.2, -0.4], pooled=0.1, within=0.15)
    b = _file(tmp_path / "add.h5", [0.6, 0.3], pooled=0.5, within=0.45)
    figures = []
    monkeypatch.setattr(aplot, "save_figure", lambda fig, out, **kw: figures.append(fig))
    aplot.compare([a, b], labels=["mul", "add"], out=str(tmp_path / "c.png"))
    ax, pool = figures[0].axes
    assert not [c for c in ax.containers + pool.containers if isinstance(c, BarContainer)]
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2
    for k, (bar, rhos) in enumerate(zip(bars, ([0.2, -0.4], [0.6, 0.3]))):
        point, _, (segments,) = bar.lines
        np.testing.assert_allclose(point.get_ydata(), rhos)
        np.testing.assert_allclose(point.get_xdata(), np.arange(2) + (k - 0.5) * 0.2)  # side by side per module
        assert point.get_color() == PALETTE[k]
        for (lo, hi), rho, n in zip([s[:, 1] for s in segments.get_segments()], rhos, (13, 28)):
            assert (lo, hi) == pytest.approx(aplot.rho_interval(rho, n))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mul", "add"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["stage0.attention", "stage1.attention"]
    pooled = [c.lines[0].get_ydata()[0] for c in pool.containers if isinstance(c, ErrorbarContainer)]
    assert pooled == [0.1, 0.15, 0.5, 0.45]
    assert [t.get_text() for t in pool.get_xticklabels()] == ["mul", "add"]
    assert ax.get_ylabel() == "Spearman ρ (weight vs importance)" and pool.get_ylabel() == "Spearman ρ"
