"""The statistics behind a verdict: a paired effect with its 95 % interval, and whether two runs agree.

A paired claim ("a beats b") is decided by the seed-by-seed differences in the claim's favour, ``d_s``:

* **holds** when the 95 % t-interval of their mean lies above zero (the effect is there beyond seed noise),
* **does not hold** when it lies below zero (the opposite is shown),
* **inconclusive** when it contains zero.

The interval says how far from zero an effect is, which counting seeds won ("holds" = every seed won) does not.
Neither rule makes a 5-seed verdict stable: ``tests/test_findings_stats.py`` measures how often each flips when
one seed is redrawn (about 9 % for the interval, 6 % for every-seed-won). What keeps a record checkable on
another machine is the comparison, which calls a flip whose effects agree borderline. The seeds won and the exact
sign-test p stay beside the interval as a second, assumption-free view.

:func:`welch_p` asks whether a rerun's number agrees with a recorded one given both runs' spread over seeds:
the findings check uses it where the platform differs from the record's, so bits cannot match.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Mapping

__all__ = ["LEVEL", "Effect", "mean_sd", "sign_test_p", "t_quantile", "welch_p"]

#: the confidence level of every interval the collection reports
LEVEL = 0.95


def mean_sd(xs) -> tuple[float, float]:
    """The mean and the sample standard deviation (ddof = 1; 0 for one value) of the numbers ``xs``."""
    n = len(xs)
    mean = sum(xs) / n
    return mean, math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (scipy)."""
    from scipy.stats import t

    return float(t.ppf(q, df))


def sign_test_p(wins: int, seeds: int) -> Fraction:
    """The exact one-sided sign-test p-value of ``wins`` out of ``seeds``: P(X >= wins) for X ~ Binomial(seeds, 1/2).

    The chance of winning at least that many seeds if each seed were a fair coin flip (no real difference).
    5/5 gives 1/32 (about 0.031), 3/3 gives 1/8: three seeds can never reach 0.05.
    """
    if isinstance(wins, bool) or isinstance(seeds, bool) or int(wins) != wins or int(seeds) != seeds:
        raise ValueError(f"wins and seeds must be whole numbers, got {wins!r}/{seeds!r}")
    wins, seeds = int(wins), int(seeds)
    if seeds < 1 or not 0 <= wins <= seeds:
        raise ValueError(f"wins must lie in 0..seeds with seeds >= 1, got {wins}/{seeds}")
    return Fraction(sum(math.comb(seeds, k) for k in range(wins, seeds + 1)), 2 ** seeds)


def _fmt(x: float) -> str:
    return f"{x:.1f}" if abs(x) >= 0.05 or x == 0 else f"{x:.2g}"


@dataclass(frozen=True)
class Effect:
    """The seed-by-seed difference in a claim's favour: ``values[s]`` > 0 where seed ``s`` goes the claim's way.

    ``mean`` and the ``LEVEL`` t-interval ``[low, high]`` over the ``n`` seeds, in ``unit`` (``"points"`` for
    differences of percentages); ``better``: the claim's direction in words ("lower", "higher")."""

    mean: float
    low: float
    high: float
    n: int
    unit: str = ""
    better: str = "better"
    values: tuple = ()

    @classmethod
    def from_differences(cls, values: Iterable[float], *, unit: str = "", better: str = "better",
                         scale: float = 1.0) -> "Effect":
        xs = tuple(scale * float(v) for v in values)
        if not xs or not all(math.isfinite(x) for x in xs):
            raise ValueError(f"Effect: need at least one finite per-seed difference, got {xs!r}")
        n, (mean, sd) = len(xs), mean_sd(xs)
        if n == 1:
            return cls(mean, -math.inf, math.inf, 1, unit, better, xs)
        half = t_quantile(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n)
        return cls(mean, mean - half, mean + half, n, unit, better, xs)

    @property
    def wins(self) -> int:
        return sum(x > 0 for x in self.values)

    @property
    def std(self) -> float:
        return mean_sd(self.values)[1]

    def verdict(self) -> str:
        """"holds" when the interval lies above 0, "does not hold" below 0, else "inconclusive"."""
        return "holds" if self.low > 0 else "does not hold" if self.high < 0 else "inconclusive"

    def text(self) -> str:
        """``"lower by 1.5 points (95 % CI 0.3 to 2.7)"``: the claim's direction, signed by the data."""
        unit = f" {self.unit}" if self.unit else ""
        size = f"{self.better} by {_fmt(self.mean)}{unit}" if self.mean >= 0 else \
            f"not {self.better}: worse by {_fmt(-self.mean)}{unit}"
        if self.n < 2:
            return f"{size} (one seed: no interval)"
        return f"{size} ({round(100 * LEVEL)} % CI {_fmt(self.low)} to {_fmt(self.high)})"

    def to_dict(self) -> dict:
        r = lambda x: float(f"{x:.7g}") if math.isfinite(x) else None  # noqa: E731 (JSON has no inf)
        return {"mean": r(self.mean), "low": r(self.low), "high": r(self.high), "n": self.n, "unit": self.unit,
                "better": self.better, "values": [r(x) for x in self.values]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Effect":
        f = lambda x, inf: inf if x is None else float(x)  # noqa: E731
        return cls(float(d["mean"]), f(d.get("low"), -math.inf), f(d.get("high"), math.inf), int(d["n"]),
                   str(d.get("unit", "")), str(d.get("better", "better")), tuple(float(v) for v in d.get("values", ())))


def welch_p(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int) -> float:
    """Two-sided p of Welch's t-test that two runs' means over seeds are equal, from their summaries.

    With no spread in either (std 0), the means must agree to rounding (p = 1) or differ (p = 0)."""
    from scipy.stats import t

    var = (std_a ** 2 / n_a if n_a > 1 else 0.0) + (std_b ** 2 / n_b if n_b > 1 else 0.0)
    gap = abs(mean_a - mean_b)
    if var <= 0:
        return 1.0 if gap <= 1e-9 * max(1.0, abs(mean_a), abs(mean_b)) else 0.0
    terms = [(s ** 2 / n) ** 2 / (n - 1) for s, n in ((std_a, n_a), (std_b, n_b)) if n > 1 and s > 0]
    df = var ** 2 / sum(terms) if terms else 1.0
    return float(2 * t.sf(gap / math.sqrt(var), df))
