"""A sharpness result written and read back is the same result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import landscape
from landscape.analyses.sharpness.result import compute
from landscape.errors import LandscapeError


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    r = compute(model, x, y, measures="all", m=8, rho=[0.01, 0.1], steps=4, draws=3, pac_draws=2, pac_steps=3)
    back = r.save(tmp_path / "s.h5")
    assert back.path == str(tmp_path / "s.h5") and back.loss == r.loss
    assert landscape.load(tmp_path / "s.h5").attrs == back.attrs
    np.testing.assert_array_equal(back.subsets, r.subsets)
    for key in ("rho", "sigma"):
        np.testing.assert_array_equal(getattr(back, key), getattr(r, key))
    assert set(back.measures) == set(r.measures)
    for name, arrays in r.measures.items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(back.measures[name][key], value)
            assert back.measures[name][key].dtype == np.asarray(value).dtype, (name, key)
    for key in ("norm", "steps", "m", "seed", "weights_sha256", "measures"):
        assert back.attrs[key] == r.attrs[key], key
    with pytest.raises(LandscapeError, match="exists; pass overwrite=True"):
        r.save(tmp_path / "s.h5")
    ax = back.plot()
    assert ax.get_xlabel().startswith("radius")  # two radii: the rise against ρ
    assert [line.get_label() for line in ax.get_lines()][:2] == ["worst", "worst_adaptive"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), r.measures["worst"]["value"])
