"""What a plan achieved: its treatment against its control group, from the
sums the database computes (counts, sums and sums of squares per group), so
no member's row is ever loaded to measure a plan (docs/outcomes.md).

Intervals are 95%: the difference of two proportions with the normal
approximation (Wald), the ratio of two proportions on the log scale (Katz),
and a difference of means by Welch's t with Welch-Satterthwaite degrees of
freedom; the relative uplift of means by the delta method.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


@dataclass(frozen=True)
class Uplift:
    absolute: float
    absolute_low: float
    absolute_high: float
    relative: float
    relative_low: float
    relative_high: float


@dataclass(frozen=True)
class Sample:
    """A group's values per member, summarised: n, their sum and sum of squares."""

    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The unbiased sample variance."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.squares - self.total * self.total / self.n) / (self.n - 1))


def proportions(converted: int, n: int, held_converted: int, held_n: int) -> Uplift | None:
    """Treatment's rate less the holdout's; None without both groups."""
    if n == 0 or held_n == 0:
        return None
    p1, p2 = converted / n, held_converted / held_n
    diff = p1 - p2
    se = math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / held_n)
    if p1 > 0 and p2 > 0:
        log_ratio = math.log(p1 / p2)
        se_log = math.sqrt((1 - p1) / (n * p1) + (1 - p2) / (held_n * p2))
        relative = (
            p1 / p2 - 1,
            math.exp(log_ratio - Z95 * se_log) - 1,
            math.exp(log_ratio + Z95 * se_log) - 1,
        )
    else:
        relative = (0.0, 0.0, 0.0)
    return Uplift(diff, diff - Z95 * se, diff + Z95 * se, *relative)


def means(treated: Sample, held: Sample) -> Uplift | None:
    """Treatment's mean less the holdout's (Welch); None without both groups."""
    if treated.n < 2 or held.n < 2:
        return None
    v1, v2 = treated.variance / treated.n, held.variance / held.n
    diff = treated.mean - held.mean
    se = math.sqrt(v1 + v2)
    if se == 0:
        low = high = diff
    else:
        df = (v1 + v2) ** 2 / (v1 * v1 / (treated.n - 1) + v2 * v2 / (held.n - 1))
        margin = t_quantile(df) * se
        low, high = diff - margin, diff + margin
    if held.mean == 0:
        return Uplift(diff, low, high, 0.0, 0.0, 0.0)
    m1, m2 = treated.mean, held.mean
    se_rel = math.sqrt(v1 / (m2 * m2) + m1 * m1 * v2 / m2**4)
    relative = m1 / m2 - 1
    return Uplift(diff, low, high, relative, relative - Z95 * se_rel, relative + Z95 * se_rel)


def t_quantile(df: float) -> float:
    """Student's t 97.5th percentile for `df` degrees of freedom, by the
    Cornish-Fisher expansion around the normal (within 0.1% from df = 3 on;
    Abramowitz and Stegun 26.7.5)."""
    if df <= 0 or math.isinf(df) or math.isnan(df):
        return Z95
    z = Z95
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
