"""The findings record: claims with verdicts and the numbers behind them, as JSON-ready data.

The normal-mode record of every chapter is committed as ``notebooks/findings/<NN>.json`` (chapters build
them with :class:`gregnb.findings.Findings`); :func:`comparison` says where a run departs from one. Record format
(``"format": 2``; format 1, without per-seed values and effects, still loads)::

    {"format": 2, "chapter": "01", "mode": "normal" | "fast", "platform": {arch, cpu, kernels, torch, device},
     "provenance": {"commit", "dirty", "date", "machine", "python", "torch", "seconds", ...},   # committed records
     "claims": [{"id", "claim", "verdict", "wins", "seeds",
                 "effect": {"mean", "low", "high", "n", "unit", "better", "values"},         # paired claims
                 "numbers": {name: {"mean", "std", "n", "unit", "tol", "values"}}}]}

A paired claim's verdict follows its effect's 95 % interval (:mod:`.stats`). A number's *check band* is
``mean ± max(std, tol)``: its spread over seeds, or for a single run (``n = 1``, no spread) the tolerance the
chapter declares (0 means: reproduce it up to rounding). The band applies where the run's platform (CPU vector
set, kernel level, torch, device) is the record's; elsewhere a rerun is compared statistically.
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Iterable, Mapping

from .stats import Effect, mean_sd, sign_test_p, welch_p

__all__ = ["VERDICTS", "FORMAT", "Number", "Claim", "Comparison", "summarize", "compare", "comparison",
           "sign_test_p", "check_claim_id", "claims_by_id", "ALPHA"]

VERDICTS = ("holds", "does not hold", "inconclusive")
FORMAT = 2
#: family-wise false-alarm rate of the statistical comparison of a whole chapter (Bonferroni over its tests)
ALPHA = 0.05
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Number:
    """A measured number: mean over ``n`` runs with its sample standard deviation, in ``unit``."""

    mean: float
    std: float = 0.0
    n: int = 1
    unit: str = ""
    tol: float = 0.0
    values: tuple = ()   # the per-seed values behind mean and std, where the chapter kept them

    def __post_init__(self):
        for name in ("mean", "std", "tol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"Number.{name} must be a finite number, got {value!r}")
        if self.std < 0 or self.tol < 0:
            raise ValueError(f"Number.std and Number.tol must be >= 0, got std={self.std}, tol={self.tol}")
        if int(self.n) != self.n or self.n < 1:
            raise ValueError(f"Number.n (runs behind the mean) must be a positive integer, got {self.n!r}")
        if self.values and len(self.values) != self.n:
            raise ValueError(f"Number.values must hold the n = {self.n} per-seed values, got {len(self.values)}")

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
                   float(d.get("tol", 0.0)), tuple(float(v) for v in d.get("values", ())))


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
    mean, std = mean_sd(xs)
    return Number(mean, std, len(xs), unit, tol, tuple(xs) if len(xs) > 1 else ())


def _p_text(p: Fraction) -> str:
    return "1" if p == 1 else f"{p.numerator}/{p.denominator} ≈ {float(p):.3g}"


@dataclass
class Claim:
    """One claim: a sentence (no numbers in it), its verdict, the numbers it rests on and, for a paired claim,
    its effect (the seed-by-seed difference in the claim's favour, with its interval) and the seeds won."""

    id: str
    claim: str
    verdict: str
    numbers: dict[str, Number] = field(default_factory=dict)
    wins: int | None = None
    seeds: int | None = None
    effect: Effect | None = None

    def to_dict(self) -> dict:
        d = {"id": self.id, "claim": self.claim, "verdict": self.verdict}
        d["numbers"] = {k: {f: _short(x) for f, x in asdict(v).items() if f != "values" or x}
                        for k, v in self.numbers.items()}
        d["wins"], d["seeds"] = self.wins, self.seeds
        if self.effect is not None:
            d["effect"] = self.effect.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "Claim":
        verdict = "inconclusive" if d["verdict"] == "mixed" else d["verdict"]   # format 1's word for it
        effect = Effect.from_dict(d["effect"]) if d.get("effect") else None
        return cls(d["id"], d["claim"], verdict, {k: Number.from_dict(v) for k, v in d.get("numbers", {}).items()},
                   d.get("wins"), d.get("seeds"), effect)

    def outcome(self) -> str:
        """``"holds (5/5 seeds)"`` or just the verdict."""
        return f"{self.verdict} ({self.wins}/{self.seeds} seeds)" if self.seeds else self.verdict

    def p_value(self) -> Fraction | None:
        """A paired claim's exact one-sided sign-test p-value (:func:`sign_test_p`); None for a yes/no check."""
        return sign_test_p(self.wins, self.seeds) if self.seeds else None

    def outcome_with_p(self) -> str:
        """``"holds: lower by 1.5 points (95 % CI 0.3 to 2.7); 5/5 seeds, sign test p = 1/32 ≈ 0.031"``."""
        p = self.p_value()
        if p is None:
            return self.verdict
        effect = f"{self.effect.text()}; " if self.effect is not None else ""
        return f"{self.verdict}: {effect}{self.wins}/{self.seeds} seeds, sign test p = {_p_text(p)}"


def _short(x):
    if isinstance(x, float):
        return float(f"{x:.7g}")
    if isinstance(x, tuple):
        return [float(f"{v:.7g}") for v in x]
    return x


def check_claim_id(claim_id) -> str:
    """A claim id: lower-case letters, digits and hyphens (it names the claim in prose and in reports)."""
    if not isinstance(claim_id, str) or not _ID.match(claim_id):
        raise ValueError(f"claim id must be lower-case letters, digits and hyphens, got {claim_id!r}")
    return claim_id


def claims_by_id(record: Mapping, what: str = "record") -> dict[str, Claim]:
    """The record's claims keyed by id; refuses a record that holds one id twice (e.g. after a merge by hand)."""
    out: dict[str, Claim] = {}
    for d in record.get("claims", []):
        claim = Claim.from_dict(d)
        if claim.id in out:
            raise ValueError(f"the {what} holds claim {claim.id!r} twice; keep one (rewrite it with "
                             f"`python -m gregnb.findings update {record.get('chapter', 'NN')}`)")
        out[claim.id] = claim
    return out


@dataclass
class Comparison:
    """How a run stands against a record: ``problems`` fail the check; ``notes`` are said and do not."""

    problems: list[str]
    notes: list[str]
    statistical: bool            # compared statistically (another platform) rather than band by band
    platform_note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def _platform_text(p: Mapping | None) -> str:
    if not p:
        return "not stated (an older record)"
    return (f"{p.get('arch', '?')} with {p.get('cpu', '?')}, {p.get('kernels', '?')} kernels, torch "
            f"{p.get('torch', '?')} on {p.get('device', '?')}")


def _platform_of(record: Mapping) -> Mapping | None:
    return record.get("platform") or record.get("provenance", {}).get("platform")


def comparison(recorded: Mapping, current: Mapping) -> Comparison:
    """Every way ``current`` departs from ``recorded`` (two records as dicts).

    On the record's platform (equal :func:`gregnb.kernels.platform_key`), a departure is a claim made by one and
    not the other, another verdict, a number missing, or a number whose mean leaves the recorded number's band.
    On another platform the bits cannot match, so the run is compared statistically: a number with a spread over
    seeds departs when Welch's test rejects that both runs have the same mean (two-sided, Bonferroni over the
    chapter's tests at family-wise ``ALPHA``); a verdict may differ only where the claim's effect (or, for a
    yes/no claim, its numbers) agree by the same test: a borderline claim, said in a note. A single-run number
    without a declared tolerance has no spread to test against: its difference is a note. A FAST-mode ``current``
    is not comparable: that is one departure.
    """
    if current.get("mode") != recorded.get("mode", "normal"):
        return Comparison([f"this run is in {current.get('mode')} mode; the record is in {recorded.get('mode')} mode "
                           f"(not comparable)"], [], False)
    rec, cur = claims_by_id(recorded, "record"), claims_by_id(current, "run")
    p_rec, p_cur = _platform_of(recorded), _platform_of(current)
    statistical = not p_rec or not p_cur or dict(p_rec) != dict(p_cur)
    problems: list[str] = []
    notes: list[str] = []
    for cid in rec.keys() - cur.keys():
        problems.append(f"{cid}: in the record, but this run did not make the claim")
    for cid in cur.keys() - rec.keys():
        problems.append(f"{cid}: made by this run, not in the record (run `python -m gregnb.findings update`)")
    shared = [c for c in rec if c in cur]
    tests = sum(len(rec[c].numbers) + (rec[c].effect is not None) for c in shared)
    alpha = ALPHA / max(1, tests)

    def agrees(r: Number, c: Number) -> bool:
        if r.n > 1 and c.n > 1:
            return welch_p(r.mean, r.std, r.n, c.mean, c.std, c.n) >= alpha
        lo, hi = r.band()
        return lo <= c.mean <= hi

    for cid in shared:
        r, c = rec[cid], cur[cid]
        for name in r.numbers.keys() - c.numbers.keys():
            problems.append(f"{cid}: number {name!r} is in the record but not in this run")
        for name in c.numbers.keys() - r.numbers.keys():
            problems.append(f"{cid}: number {name!r} is new in this run (not in the record)")
        names = [k for k in r.numbers if k in c.numbers]
        off = []
        for name in names:
            rn, cn = r.numbers[name], c.numbers[name]
            lo, hi = rn.band()
            if lo <= cn.mean <= hi:
                continue
            text = (f"{name} = {cn.text()}, outside the recorded {rn.text()} (band {_format(lo, rn.unit)} to "
                    f"{_format(hi, rn.unit)})")
            if not statistical or (rn.n > 1 and not agrees(rn, cn)):
                off.append(name)
                problems.append(f"{cid}: {text}" + ("; Welch's test rejects equal means" if statistical else ""))
            else:
                notes.append(f"{cid}: {text}; " + ("consistent with the record given both runs' spread"
                                                   if rn.n > 1 else "a single run: no spread to test against"))
        if r.verdict == c.verdict:
            continue
        flip = f"{cid}: verdict {c.outcome()!r}, recorded {r.outcome()!r}"
        if not statistical:
            problems.append(flip)
            continue
        if r.effect is not None and c.effect is not None:
            e_r, e_c = r.effect, c.effect
            same = welch_p(e_r.mean, e_r.std, e_r.n, e_c.mean, e_c.std, e_c.n) >= alpha
            basis = f"the effects agree: {e_c.text()} here, {e_r.text()} recorded"
        else:
            same = bool(names) and not off and all(r.numbers[k].n > 1 for k in names)
            basis = "its numbers agree with the record given both runs' spread"
        if same:
            notes.append(f"{flip}: a borderline claim; {basis}")
        else:
            problems.append(flip + ("; the effects differ beyond both runs' spread" if r.effect is not None
                                    else ""))
    note = "" if not statistical else (
        f"this run's platform ({_platform_text(p_cur)}) is not the record's ({_platform_text(p_rec)}): numbers "
        f"cannot match bit for bit, so they are compared statistically")
    return Comparison(problems, notes, statistical, note)


def compare(recorded: Mapping, current: Mapping) -> list[str]:
    """The departures of :func:`comparison` (an empty list when the run reproduces the record)."""
    return comparison(recorded, current).problems
