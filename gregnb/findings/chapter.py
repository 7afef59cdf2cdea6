"""Build a chapter's findings from its own tables, then show them next to the committed record."""
from __future__ import annotations

import re
from typing import Mapping

from .record import VERDICTS, Claim, Number, check_claim_id, verdict_from_wins
from .render import show

__all__ = ["Findings"]


class Findings:
    """The claims one chapter makes, built from its own tables.

    The ``add*`` methods return None, so a call left as a cell's last line shows nothing (no ``Claim(...)`` repr
    in a student's page); read a recorded claim back from :attr:`claims`.

    >>> found = Findings("01", fast=False)
    >>> found.add_check("sum-positive", "Two plus two is positive.", 2 + 2 > 0, {"sum": Number(4.0)})
    >>> found.claims["sum-positive"].verdict
    'holds'
    """

    def __init__(self, chapter: str, *, fast: bool | None = None):
        if not (isinstance(chapter, str) and re.fullmatch(r"\d\d", chapter)):
            raise ValueError(f"chapter must be a two-digit string such as '03', got {chapter!r}")
        if fast is None:
            from ..config import fast as fast_mode

            fast = fast_mode()
        self.chapter, self.fast, self.claims = chapter, bool(fast), {}

    def add(self, claim_id: str, claim: str, verdict: str, numbers: Mapping[str, Number] | None = None, *,
            wins: int | None = None, seeds: int | None = None) -> None:
        """Record a claim (in :attr:`claims`). ``claim_id``: lower-case words joined by hyphens, unique in the chapter."""
        check_claim_id(claim_id)
        if claim_id in self.claims:
            raise ValueError(f"claim {claim_id!r} was already recorded in chapter {self.chapter}")
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        if (wins is None) != (seeds is None):
            raise ValueError("give both wins and seeds, or neither")
        if seeds is not None and verdict != verdict_from_wins(wins, seeds):
            raise ValueError(f"verdict {verdict!r} does not match {wins}/{seeds} seeds won")
        numbers = dict(numbers or {})
        for name, value in numbers.items():
            if not isinstance(value, Number):
                raise TypeError(f"number {name!r} must be a gregnb.findings.Number (use summarize(...)), got "
                                f"{type(value).__name__}")
        self.claims[claim_id] = Claim(claim_id, claim, verdict, numbers,
                                      None if wins is None else int(wins), None if seeds is None else int(seeds))

    def add_paired(self, claim_id: str, claim: str, result: Mapping, *, unit: str = "%", scale: float = 100.0,
                   names: tuple[str, str] | None = None, tol: float = 0.0) -> None:
        """Record a seed-by-seed comparison from :func:`gregnb.experiments.paired_verdict`.

        The two rows' means and stds become numbers named after the rows (or ``names``), in ``unit``;
        ``tol`` (in ``unit``) widens their check band for a measure that moves in steps (a spread of 0 over seeds).
        """
        missing = {"a", "b", "mean_a", "std_a", "mean_b", "std_b", "wins", "seeds", "verdict"} - set(result)
        if missing:
            raise ValueError(f"add_paired needs the dict paired_verdict returns; missing {sorted(missing)}")
        name_a, name_b = names or (result["a"], result["b"])
        n = int(result["seeds"])
        numbers = {name_a: Number(scale * result["mean_a"], scale * result["std_a"], n, unit, tol),
                   name_b: Number(scale * result["mean_b"], scale * result["std_b"], n, unit, tol)}
        self.add(claim_id, claim, result["verdict"], numbers, wins=result["wins"], seeds=n)

    def add_check(self, claim_id: str, claim: str, passed: bool, numbers: Mapping[str, Number] | None = None) -> None:
        """Record a yes/no claim (a property that holds or not), with the numbers that decide it."""
        self.add(claim_id, claim, "holds" if bool(passed) else "does not hold", numbers)

    def to_dict(self) -> dict:
        return {"format": 1, "chapter": self.chapter, "mode": "fast" if self.fast else "normal",
                "claims": [c.to_dict() for c in self.claims.values()]}

    def show(self, records=None):
        """Display the committed normal-mode record next to this run (see :mod:`gregnb.findings.render`).

        When the findings runner asks for it (environment variable ``GREGNB_FINDINGS_OUT``), also writes this
        run's record there. Returns the displayable object.
        """
        return show(self.to_dict(), records)
