import numpy as np
import pytest

from landscape.errors import LandscapeError
from landscape.grid import Axis, Grid, parse_axis, shard


@pytest.mark.parametrize("spec, expected", [
    ("-1:1:5", [-1, -0.5, 0, 0.5, 1]),
    ("0:1:3", [0, 0.5, 1]),
    ("-1:0:3", [-1, -0.5, 0]),
    ("-2:-1:3", [-2, -1.5, -1]),
    ("0.25:0.25:1", [0.25]),
    ("-1:1:1", [-1]),
    (" 1e-1:2e-1:2 ", [0.1, 0.2]),
])
def test_parse_axis_accepts(spec, expected):
    np.testing.assert_allclose(parse_axis(spec).coords, expected, rtol=0, atol=1e-15)


def test_endpoints_exact_and_integer_count():
    ax = parse_axis("-0.5:1.5:41")
    assert ax.num == 41 and isinstance(ax.num, int)
    assert ax.coords[0] == -0.5 and ax.coords[-1] == 1.5
    assert parse_axis(ax.spec) == ax
    fine = parse_axis("0.1234567:0.12345671:3")  # the spec identifies the grid on resume: exact, not rounded
    assert parse_axis(fine.spec) == fine and fine.spec != parse_axis("0.1234567:0.1234568:3").spec


@pytest.mark.parametrize("spec, fragment", [
    ("", "MIN:MAX:NUM"), ("1:2", "MIN:MAX:NUM"), ("a:1:3", "numbers"), ("0:1:2.5", "whole number"),
    ("0:1:0", "at least 1"), ("1:-1:5", "above MAX"), ("1:1:3", "equal ends"), ("nan:1:3", "finite"),
    ("0:inf:3", "finite"), ("0:1:3:4", "MIN:MAX:NUM"),
])
def test_parse_axis_rejects_with_one_line(spec, fragment):
    with pytest.raises(LandscapeError, match=fragment) as err:
        parse_axis(spec, name="--y")
    assert "\n" not in str(err.value) and "--y" in str(err.value)


def test_non_square_grid_order_is_ij():
    g = Grid(Axis(-1, 1, 3), Axis(0, 1, 2))
    assert g.shape == (3, 2) and g.size == 6
    # flat index i*ny + j -> (x_i, y_j)
    assert g.unravel(3) == (1, 1)
    assert g.coefficients(3) == (0.0, 1.0)
    assert g.coefficients(4) == (1.0, 0.0)
    g1 = Grid(Axis(0, 1, 5))
    assert g1.shape == (5,) and g1.coefficients(4) == (1.0,)


def test_shard_partitions_indices():
    idx = list(range(11))
    parts = [shard(idx, rank=r, world_size=3) for r in range(3)]
    assert sorted(i for p in parts for i in p) == idx
    with pytest.raises(LandscapeError, match="rank 3"):
        shard(idx, rank=3, world_size=3)
