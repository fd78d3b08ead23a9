"""Statistics over seeds: mean, standard deviation and Student-t intervals; the paired t-test of two models.

Each seed is one independent replicate (its own initialisation, data order and analysis draws), so a model's
seeds are a sample of size n and two models trained with the same seeds are paired by seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

LEVEL = 0.95  # every interval in the report is a 95% interval


def _t_quantile(n: int, level: float) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, n - 1))


@dataclass(frozen=True)
class Summary:
    """A metric of one model over its seeds: ``n`` values, their mean, sample standard deviation (ddof=1) and
    the ``level`` Student-t interval of the mean (NaN where n < 2: one seed says nothing about the spread)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    level: float = LEVEL

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(values: Sequence[float], *, level: float = LEVEL) -> Summary:
    """Mean, std and the t interval of ``values`` (non-finite values are left out and not counted)."""
    v = [float(x) for x in values if math.isfinite(float(x))]
    n = len(v)
    if n == 0:
        nan = float("nan")
        return Summary(0, nan, nan, nan, nan, level)
    mean = math.fsum(v) / n
    if n < 2:
        return Summary(n, mean, float("nan"), float("nan"), float("nan"), level)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in v) / (n - 1))
    half = _t_quantile(n, level) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half, level)


@dataclass(frozen=True)
class Paired:
    """The paired comparison of a treatment and a control over the seeds both have: the differences
    ``treatment - control`` per seed, their mean, the ``level`` t interval of the mean difference, and the
    two-sided paired t-test (t statistic, degrees of freedom n - 1, p-value)."""

    n: int
    diff: float
    std: float
    ci_low: float
    ci_high: float
    t: float
    p: float
    seeds: tuple[int, ...]
    level: float = LEVEL

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["seeds"] = list(self.seeds)
        return out


def paired(treatment: dict[int, float], control: dict[int, float], *, level: float = LEVEL) -> Paired:
    """Paired t-test of ``treatment[seed] - control[seed]`` over the seeds where both are finite.

    Identical differences (std 0) give a zero-width interval and p = 0 (p = 1 when they are all 0): the data leave
    no doubt, though with few seeds that is rarely what it looks like.
    """
    from scipy.stats import t as student

    seeds = tuple(sorted(s for s in treatment if s in control and math.isfinite(treatment[s])
                         and math.isfinite(control[s])))
    d = [treatment[s] - control[s] for s in seeds]
    s = summarise(d, level=level)
    nan = float("nan")
    if s.n < 2:
        return Paired(s.n, s.mean, nan, nan, nan, nan, nan, seeds, level)
    se = s.std / math.sqrt(s.n)
    if se == 0:
        tstat = 0.0 if s.mean == 0 else math.copysign(math.inf, s.mean)
        p = 1.0 if s.mean == 0 else 0.0
    else:
        tstat = s.mean / se
        p = float(2 * student.sf(abs(tstat), s.n - 1))
    return Paired(s.n, s.mean, s.std, s.ci_low, s.ci_high, tstat, p, seeds, level)


def one_sample(values: dict[int, float], *, level: float = LEVEL) -> Paired:
    """The one-sample version (the values against 0), in the same shape as :func:`paired`."""
    return paired(values, {s: 0.0 for s in values}, level=level)
