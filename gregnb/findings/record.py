"""The findings record: claims with verdicts and the numbers behind them, as JSON-ready data.

The normal-mode record of every chapter is committed as ``notebooks/findings/<NN>.json`` (chapters build
them with :class:`gregnb.findings.Findings`); :func:`compare` says where a run departs from one. Record format (``"format": 1``)::

    {"format": 1, "chapter": "01", "mode": "normal" | "fast",
     "provenance": {"commit", "dirty", "date", "machine", "python", "torch", "seconds"},   # committed records
     "claims": [{"id", "claim", "verdict", "wins", "seeds",
                 "numbers": {name: {"mean", "std", "n", "unit", "tol"}}}]}

A number's *check band* is ``mean ± max(std, tol)``: its spread over seeds, or for a single run (``n = 1``,
no spread) the tolerance the chapter declares (0 means: reproduce it up to rounding).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Iterable, Mapping

__all__ = ["VERDICTS", "Number", "Claim", "summarize", "compare", "verdict_from_wins", "sign_test_p", "check_claim_id"]

VERDICTS = ("holds", "does not hold", "mixed")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Number:
    """A measured number: mean over ``n`` runs with its sample standard deviation, in ``unit``."""

    mean: float
    std: float = 0.0
    n: int = 1
    unit: str = ""
    tol: float = 0.0

    def __post_init__(self):
        for name in ("mean", "std", "tol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Number.{name} must be a finite number, got {value!r}")
        if self.std < 0 or self.tol < 0:
            raise ValueError(f"Number.std and Number.tol must be >= 0, got std={self.std}, tol={self.tol}")
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"Number.n (runs behind the mean) must be a positive integer, got {self.n!r}")

    def band(self) -> tuple[float, float]:
        """The interval a rerun's mean must fall in: ``mean ± max(std, tol)`` (plus rounding slack)."""
        half = max(self.std, self.tol) + 1e-9 * max(1.0, abs(self.mean))
        return self.mean - half, self.mean + half

    def text(self) -> str:
        """``"35.8 ± 4.1 %"`` (n > 1) or ``"0.113"`` (one run), to the precision the chapters print."""
        fmt = _format(self.mean, self.unit)
        unit = f" {self.unit}" if self.unit else ""
        return f"{fmt} ± {_format(self.std, self.unit)}{unit}" if self.n > 1 else f"{fmt}{unit}"

    @classmethod
    def from_dict(cls, d: Mapping) -> "Number":
        return cls(float(d["mean"]), float(d.get("std", 0.0)), int(d.get("n", 1)), str(d.get("unit", "")),
                   float(d.get("tol", 0.0)))


def _format(x: float, unit: str) -> str:
    if unit in ("%", "points"):
        return f"{x:.1f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if x == 0 or abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}" if abs(x) >= 1e-3 else f"{x:.2e}"


def summarize(values: Iterable[float], unit: str = "", scale: float = 1.0, tol: float = 0.0) -> Number:
    """Mean and sample std (ddof = 1) of per-seed ``values`` times ``scale`` (e.g. 100 for percent)."""
    xs = [scale * float(v) for v in values]
    if not xs:
        raise ValueError("summarize: no values (did the table have rows for every seed?)")
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return Number(mean, std, len(xs), unit, tol)


def verdict_from_wins(wins: int, seeds: int) -> str:
    """"holds" in every seed, "does not hold" in none, "mixed" in between."""
    if not 0 <= wins <= seeds or seeds < 1:
        raise ValueError(f"wins must lie in 0..seeds with seeds >= 1, got {wins}/{seeds}")
    return "holds" if wins == seeds else "does not hold" if wins == 0 else "mixed"


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


def _p_text(p: Fraction) -> str:
    return "1" if p == 1 else f"{p.numerator}/{p.denominator} ≈ {float(p):.3g}"


@dataclass
class Claim:
    """One claim: a sentence (no numbers in it), its verdict, and the numbers it rests on."""

    id: str
    claim: str
    verdict: str
    numbers: dict[str, Number] = field(default_factory=dict)
    wins: int | None = None
    seeds: int | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["numbers"] = {k: {f: float(f"{x:.7g}") if isinstance(x, float) else x for f, x in asdict(v).items()}
                        for k, v in self.numbers.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Claim":
        return cls(d["id"], d["claim"], d["verdict"], {k: Number.from_dict(v) for k, v in d.get("numbers", {}).items()},
                   d.get("wins"), d.get("seeds"))

    def outcome(self) -> str:
        """``"holds (5/5 seeds)"`` or just the verdict."""
        return f"{self.verdict} ({self.wins}/{self.seeds} seeds)" if self.seeds else self.verdict

    def p_value(self) -> Fraction | None:
        """A paired claim's exact one-sided sign-test p-value (:func:`sign_test_p`); None for a yes/no check."""
        return sign_test_p(self.wins, self.seeds) if self.seeds else None

    def outcome_with_p(self) -> str:
        """``"holds (5/5 seeds; sign test p = 1/32 ≈ 0.031)"``: what the verdict rests on."""
        p = self.p_value()
        return self.outcome() if p is None else \
            f"{self.verdict} ({self.wins}/{self.seeds} seeds; sign test p = {_p_text(p)})"


def check_claim_id(claim_id) -> str:
    """A claim id: lower-case letters, digits and hyphens (it names the claim in prose and in reports)."""
    if not isinstance(claim_id, str) or not _ID.match(claim_id):
        raise ValueError(f"claim id must be lower-case letters, digits and hyphens, got {claim_id!r}")
    return claim_id


def compare(recorded: Mapping, current: Mapping) -> list[str]:
    """Every way ``current`` departs from ``recorded`` (two records as dicts): one sentence each.

    A departure: a claim made by one and not the other, another verdict, a number missing, or a number whose
    mean leaves the recorded number's band. A FAST-mode ``current`` is not comparable: that is one departure.
    """
    problems = []
    if current.get("mode") != recorded.get("mode", "normal"):
        problems.append(f"this run is in {current.get('mode')} mode; the record is in {recorded.get('mode')} mode "
                        f"(not comparable)")
        return problems
    rec = {c["id"]: Claim.from_dict(c) for c in recorded.get("claims", [])}
    cur = {c["id"]: Claim.from_dict(c) for c in current.get("claims", [])}
    for cid in rec.keys() - cur.keys():
        problems.append(f"{cid}: in the record, but this run did not make the claim")
    for cid in cur.keys() - rec.keys():
        problems.append(f"{cid}: made by this run, not in the record (run `python -m gregnb.findings update`)")
    for cid in [c for c in rec if c in cur]:
        r, c = rec[cid], cur[cid]
        if r.verdict != c.verdict:
            problems.append(f"{cid}: verdict {c.outcome()!r}, recorded {r.outcome()!r}")
        for name in r.numbers.keys() - c.numbers.keys():
            problems.append(f"{cid}: number {name!r} is in the record but not in this run")
        for name in c.numbers.keys() - r.numbers.keys():
            problems.append(f"{cid}: number {name!r} is new in this run (not in the record)")
        for name in [k for k in r.numbers if k in c.numbers]:
            lo, hi = r.numbers[name].band()
            if not lo <= c.numbers[name].mean <= hi:
                problems.append(f"{cid}: {name} = {c.numbers[name].text()}, outside the recorded "
                                f"{r.numbers[name].text()} (band {_format(lo, r.numbers[name].unit)} to "
                                f"{_format(hi, r.numbers[name].unit)})")
    return problems
