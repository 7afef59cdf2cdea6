"""Build a chapter's findings from its own tables, then show them next to the committed record."""
from __future__ import annotations

import re
from typing import Mapping

from ..validate import number
from .record import FORMAT, VERDICTS, Claim, Number, check_claim_id, summarize
from .stats import Effect
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
            wins: int | None = None, seeds: int | None = None, effect: Effect | None = None) -> None:
        """Record a claim (in :attr:`claims`). ``claim_id``: lower-case words joined by hyphens, unique in the chapter.

        A paired claim gives its ``effect`` (:class:`~gregnb.findings.stats.Effect`); its verdict must be the
        effect's (the interval rule), and ``wins`` / ``seeds`` are the effect's seeds won and count."""
        check_claim_id(claim_id)
        if claim_id in self.claims:
            raise ValueError(f"claim {claim_id!r} was already recorded in chapter {self.chapter}")
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
        if effect is not None:
            wins, seeds = effect.wins if wins is None else wins, effect.n if seeds is None else seeds
            if verdict != effect.verdict():
                raise ValueError(f"verdict {verdict!r} does not match the effect {effect.text()}: that is "
                                 f"{effect.verdict()!r}")
            if (wins, seeds) != (effect.wins, effect.n):
                raise ValueError(f"{wins}/{seeds} seeds won does not match the effect's {effect.wins}/{effect.n}")
        elif wins is not None or seeds is not None:
            raise ValueError("a paired claim needs its effect (the per-seed differences): use add_paired")
        numbers = dict(numbers or {})
        for name, value in numbers.items():
            if not isinstance(value, Number):
                raise TypeError(f"number {name!r} must be a gregnb.findings.Number (use summarize(...)), got "
                                f"{type(value).__name__}")
        self.claims[claim_id] = Claim(claim_id, claim, verdict, numbers,
                                      None if wins is None else int(wins), None if seeds is None else int(seeds),
                                      effect)

    def add_paired(self, claim_id: str, claim: str, result: Mapping, *, unit: str = "%", scale: float = 100.0,
                   names: tuple[str, str] | None = None, tol: float = 0.0) -> None:
        """Record a seed-by-seed comparison from :func:`gregnb.experiments.paired_verdict`.

        The two rows' per-seed values become numbers named after the rows (or ``names``), in ``unit``; the
        per-seed differences in the claim's favour become its effect (in points for ``unit="%"``), which sets the
        verdict. ``tol`` (in ``unit``) widens the numbers' check band for a measure that moves in steps.
        """
        missing = {"a", "b", "values_a", "values_b", "better"} - set(result)
        if missing:
            raise ValueError(f"add_paired needs the dict paired_verdict returns; missing {sorted(missing)}")
        name_a, name_b = names or (result["a"], result["b"])
        numbers = {name: summarize(result[key], unit, scale, tol)
                   for name, key in ((name_a, "values_a"), (name_b, "values_b"))}
        sign = -1.0 if result["better"] == "lower" else 1.0
        diffs = [sign * (x - y) for x, y in zip(result["values_a"], result["values_b"])]
        effect = Effect.from_differences(diffs, unit="points" if unit == "%" else unit, better=result["better"],
                                         scale=scale)
        self.add(claim_id, claim, effect.verdict(), numbers, effect=effect)

    def add_comparison(self, claim_id: str, claim: str, df, a: str, b: str, *, unit: str = "%",
                       scale: float = 100.0, names: tuple[str, str] | None = None, tol: float = 0.0,
                       **paired) -> dict:
        """:func:`~gregnb.experiments.paired_verdict` of rows ``a`` and ``b`` of ``df`` (keywords ``paired``:
        ``value``, ``column``, ``ood``, ``lower_is_better``), recorded with :meth:`add_paired`; returns the result
        (its ``"text"`` says it in one line)."""
        from ..experiments import paired_verdict

        scale, tol = number("scale", scale, low=0, low_open=True), number("tol", tol, low=0)
        result = paired_verdict(df, a, b, **paired)
        self.add_paired(claim_id, claim, result, unit=unit, scale=scale, names=names, tol=tol)
        return result

    def add_check(self, claim_id: str, claim: str, passed: bool, numbers: Mapping[str, Number] | None = None) -> None:
        """Record a yes/no claim (a property that holds or not), with the numbers that decide it."""
        if passed is None or isinstance(passed, (str, bytes)):  # bool('no') is True: a verdict must be a truth value
            raise TypeError(f"passed must be True or False (whether claim {claim_id!r} holds), got {passed!r}")
        if numbers is not None and not isinstance(numbers, Mapping):
            raise TypeError(f"numbers must be a dict of name -> Number (or None), got {type(numbers).__name__}")
        self.add(claim_id, claim, "holds" if bool(passed) else "does not hold", numbers)

    def to_dict(self) -> dict:
        from ..config import device
        from ..kernels import platform_key

        return {"format": FORMAT, "chapter": self.chapter, "mode": "fast" if self.fast else "normal",
                "platform": platform_key(device().type), "claims": [c.to_dict() for c in self.claims.values()]}

    def show(self, records=None):
        """Display the committed normal-mode record next to this run (see :mod:`gregnb.findings.render`).

        When the findings runner asks for it (environment variable ``GREGNB_FINDINGS_OUT``), also writes this
        run's record there. Returns the displayable object.
        """
        return show(self.to_dict(), records)

