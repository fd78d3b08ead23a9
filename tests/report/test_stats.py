"""The statistics over seeds against scipy.stats: the t interval of a mean and the paired t-test."""

import math

import numpy as np
import pytest
from scipy import stats

from landscape.report.stats import one_sample, paired, summarise


@pytest.mark.parametrize("values", [[0.91, 0.93, 0.95], [1.0, 2.0], [3.1, 2.7, 2.9, 3.6, 3.3, 2.2]])
def test_t_interval_matches_scipy(values):
    s = summarise(values)
    lo, hi = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert s.n == len(values)
    assert s.mean == pytest.approx(np.mean(values), abs=1e-14)
    assert s.std == pytest.approx(np.std(values, ddof=1), rel=1e-13)
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))


def test_paired_t_test_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.3, 5), rng.normal(0.8, 0.3, 5)
    res = paired(dict(enumerate(a)), dict(enumerate(b)))
    ref = stats.ttest_rel(a, b)
    assert res.t == pytest.approx(ref.statistic, rel=1e-12)
    assert res.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.diff == pytest.approx(np.mean(a - b), abs=1e-14)
    lo, hi = stats.t.interval(0.95, 4, loc=np.mean(a - b), scale=stats.sem(a - b))
    assert (res.ci_low, res.ci_high) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    one = one_sample(dict(enumerate(a)))
    assert one.p == pytest.approx(stats.ttest_1samp(a, 0.0).pvalue, rel=1e-10)


def test_pairs_by_seed_and_leaves_out_missing_and_nonfinite():
    res = paired({0: 1.0, 1: 2.0, 2: 4.0, 3: 9.0, 5: float("nan")}, {0: 0.5, 1: 1.0, 2: 3.0, 4: 1.0, 5: 1.0})
    assert res.seeds == (0, 1, 2) and res.n == 3
    assert res.diff == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert stats.ttest_rel([1.0, 2.0, 4.0], [0.5, 1.0, 3.0]).pvalue == pytest.approx(res.p)


def test_degenerate_cases():
    assert math.isnan(summarise([1.0]).std) and math.isnan(summarise([1.0]).ci_low)
    assert summarise([]).n == 0
    single = paired({0: 1.0}, {0: 0.0})
    assert single.n == 1 and math.isnan(single.p)
    same = paired({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})  # identical differences: zero-width interval
    assert (same.ci_low, same.ci_high, same.p) == (1.0, 1.0, 0.0) and math.isinf(same.t)
    zero = paired({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert zero.p == 1.0 and zero.t == 0.0
