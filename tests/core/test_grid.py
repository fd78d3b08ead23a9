import numpy as np
import pytest

from landscape.core.grid import Axis, Grid, parse_axis, shard
from landscape.errors import LandscapeError


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


@pytest.mark.parametrize("spec, fragment", [
    ("-1e300:1e300:5", "overflow"), ("0:1e31:3", "overflow"), ("-inf:0:3", "finite"), ("0:1:nan", "whole number"),
    ("0:1:100000000", "too many"), ("0:1:" + "9" * 40, "at most"), ("0:1:-3", "at least 1"),
    ("0:5e-324:3", "resolve"), ("1e20:1.0000000000001e20:3", "resolve"), ("0:1:3\n4", "whole number"),
])
def test_huge_or_degenerate_axes_are_one_line_errors(spec, fragment):
    with pytest.raises(LandscapeError, match=fragment) as err:
        parse_axis(spec, name="--x")
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_largest_accepted_axis_is_finite_and_increasing():
    ax = parse_axis("-1e30:1e30:3")
    assert np.isfinite(ax.coords).all() and (np.diff(ax.coords) > 0).all()
    assert parse_axis("0:1:10000000").num == 10**7


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_number = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                    st.sampled_from(["", " ", "1e400", "-0", "0x10", "1_0", "nan", "+inf", "٣", "1e-320"]))
_spec = st.one_of(st.text(max_size=40), st.tuples(_number, _number, _number).map(":".join),
                  st.lists(_number, max_size=5).map(":".join))


@settings(max_examples=400, deadline=None)
@given(_spec)
def test_any_spec_parses_to_a_valid_axis_or_one_line_error(spec):
    """Any string: a finite axis with strictly increasing coordinates, or a LandscapeError of one line."""
    try:
        ax = parse_axis(spec)
    except LandscapeError as err:
        assert "\n" not in str(err) and "\r" not in str(err)
        return
    assert isinstance(ax.num, int) and 1 <= ax.num <= 10**7
    assert np.isfinite([ax.lo, ax.hi]).all() and ax.lo <= ax.hi
    coords = ax.coords if ax.num <= 10**5 else Axis(ax.lo, ax.hi, 3).coords
    assert np.isfinite(coords).all() and (np.diff(coords) > 0).all()
    assert coords[0] == ax.lo and (ax.num == 1 or coords[-1] == ax.hi)  # NUM 1 is [MIN]
    assert parse_axis(ax.spec) == ax  # the spec identifies the grid on resume
