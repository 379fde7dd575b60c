"""Mean, spread and the 95 % t-interval of a handful of seeds, and of a difference of two
settings' means, without scipy.

Studies run few seeds (1 to 5), where the normal 1.96 would understate the uncertainty badly; the
intervals use Student's t quantile. It is computed exactly here (the closed-form CDF of the t
distribution for integer degrees of freedom, Abramowitz & Stegun 26.7.3/26.7.4, inverted by
bisection) so that reports need no scipy for one number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from reports.noise import NoiseFigure

CONFIDENCE = 0.95


def t_mass(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (a positive integer) degrees of freedom."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be a positive integer, not {df}")
    theta = math.atan(t / math.sqrt(df))
    c2 = math.cos(theta) ** 2
    term = total = 1.0
    if df % 2 == 0:  # A&S 26.7.4: sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))
        for k in range(2, df - 1, 2):
            term *= (k - 1) / k * c2
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    for k in range(3, df - 1, 2):  # A&S 26.7.3: 2/pi (theta + sin cos (1 + 2/3 c^2 + ... up to c^(df-3)))
        term *= (k - 1) / k * c2
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| <= t) = ``confidence``: the half-width of a two-sided interval in
    standard errors (df = 1: 12.706, df = 2: 4.303, df = 4: 2.776 for 95 %)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), not {confidence}")
    low, high = 0.0, 1.0
    while t_mass(high, df) < confidence:
        low, high = high, high * 2
    for _ in range(200):  # far beyond float precision; stops early once the bracket cannot shrink
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if t_mass(middle, df) < confidence:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@dataclass(frozen=True)
class Summary:
    """Seeds of one setting: n, mean, sample std (n - 1) and the t-interval (NaN below 2 seeds)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def summarize(values: Iterable[float], confidence: float = CONFIDENCE) -> Summary:
    """Summary of the finite values; a single value has no spread and no interval."""
    data = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(data)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(data) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in data) / (n - 1))
    half = t_quantile(confidence, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Difference:
    """The difference of two settings' means with the half-width of its 95 % interval.

    ``seeds`` is the fewer of the two settings' seeds, ``std`` the spread of one run the interval
    assumes, so that the seeds it would take to resolve the difference can be estimated."""

    value: float
    half_width: float  # NaN: nothing to weigh the difference against (one seed, no noise figure)
    seeds: int
    std: float

    @property
    def resolved(self) -> bool:
        """The interval excludes 0."""
        return math.isfinite(self.half_width) and abs(self.value) > self.half_width

    def seeds_for(self, margin: float, limit: int = 100) -> int | None:
        """The seeds per setting at which the half-width falls below ``margin``, the width
        shrinking as t(2n - 2) std sqrt(2 / n) for n seeds per setting; None beyond ``limit``."""
        if not (margin > 0 and math.isfinite(self.std)):
            return None
        for n in range(2, limit + 1):
            if t_quantile(CONFIDENCE, 2 * n - 2) * self.std * math.sqrt(2 / n) < margin:
                return n
        return None


def difference(a: Summary, b: Summary, noise: NoiseFigure | None) -> Difference:
    """``a.mean - b.mean``: with two seeds or more on each side, Welch's t-interval (its degrees of
    freedom rounded down, the cautious way); with one seed on either side, the interval the
    profile's seed noise gives two means of that many runs; NaN half-width without either."""
    value, seeds = a.mean - b.mean, min(a.n, b.n)
    if a.n >= 2 and b.n >= 2:
        va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
        se = math.sqrt(va + vb)
        std = math.sqrt((a.std ** 2 + b.std ** 2) / 2)
        if se == 0:
            return Difference(value, 0.0, seeds, std)
        df = max(1, math.floor((va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))))
        return Difference(value, t_quantile(CONFIDENCE, df) * se, seeds, std)
    if noise is None:
        return Difference(value, math.nan, seeds, math.nan)
    half = t_quantile(CONFIDENCE, noise.df) * noise.std * math.sqrt(1 / a.n + 1 / b.n)
    return Difference(value, half, seeds, noise.std)
