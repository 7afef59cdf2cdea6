"""Show a chapter's committed findings next to this run's, and hand this run's record to the runner.

The committed records live in ``notebooks/findings/<NN>.json`` of a checkout (``GREGNB_FINDINGS_RECORDS``
points elsewhere). ``GREGNB_FINDINGS_OUT`` (set by ``python -m gregnb.findings``) names a folder where
:func:`show` writes this run's record as ``<NN>.json``.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path

from .record import FORMAT, Claim, claims_by_id, comparison
from .stats import LEVEL

__all__ = ["records_dir", "load_record", "write_record", "FindingsView", "show"]


def records_dir() -> Path:
    """Where committed records are read from: ``$GREGNB_FINDINGS_RECORDS`` or the checkout's ``notebooks/findings``."""
    env = os.environ.get("GREGNB_FINDINGS_RECORDS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "notebooks" / "findings"


def load_record(chapter: str, folder: str | os.PathLike | None = None) -> dict | None:
    """The committed record of ``chapter`` as a dict, or None when there is none.

    Raises ValueError naming the file when it exists but is not a record (bad JSON, wrong format).
    """
    path = Path(folder or records_dir()) / f"{chapter}.json"
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") not in (1, FORMAT) or record.get("chapter") != chapter or \
                not isinstance(record.get("claims"), list):
            raise ValueError(f"not a format-{FORMAT} findings record for this chapter")
        claims_by_id(record)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ValueError(f"{path} is not a usable findings record ({err}); restore it from git or rewrite it with "
                         f"`python -m gregnb.findings update {chapter}`") from None
    return record


def write_record(record: dict, path: str | os.PathLike) -> Path:
    """Write ``record`` as indented JSON, atomically (a temporary file renamed over the target)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


class FindingsView:
    """The committed record and this run side by side (HTML in a notebook, text in a terminal)."""

    def __init__(self, current: dict, recorded: dict | None):
        self.current, self.recorded = current, recorded
        self.fast = current["mode"] != "normal"
        self.comparison = None if recorded is None or self.fast else comparison(recorded, current)
        self.problems = self.comparison.problems if self.comparison else []
        self.notes = self.comparison.notes if self.comparison else []

    def _rows(self):
        shown = self.recorded or self.current
        now = claims_by_id(self.current, "run")
        for d in shown["claims"]:
            claim = Claim.from_dict(d)
            numbers = "; ".join(f"{k}: {v.text()}" for k, v in claim.numbers.items())
            mine = now.get(claim.id)
            if self.recorded is None:
                this_run = "(no record to compare with)"
            elif mine is None:
                this_run = "not made by this run"
            elif self.fast:
                this_run = f"FAST: {mine.outcome()} (not comparable)"
            else:
                own = [p.split(": ", 1)[1] for p in self.problems if p.startswith(claim.id + ":")]
                said = [p.split(": ", 1)[1] for p in self.notes if p.startswith(claim.id + ":")]
                same = ("same verdict, numbers consistent with the record" if self.comparison.statistical else
                        "same verdict, numbers within the recorded spread")
                this_run = "DIFFERS: " + "; ".join(own) if own else \
                    f"{mine.verdict}; " + "; ".join(said) if said else same
            yield claim.claim, claim.outcome_with_p(), numbers, this_run

    def header(self) -> list[str]:
        ch = self.current["chapter"]
        if self.recorded is None:
            lines = [f"No committed record for chapter {ch}: showing this run only "
                     f"(write one with `python -m gregnb.findings update {ch}`)."]
        else:
            p = self.recorded.get("provenance", {})
            dirty = " with uncommitted changes" if p.get("dirty") else ""
            lines = [f"Committed record (normal mode), made {p.get('date', '?')} from commit "
                     f"{str(p.get('commit', '?'))[:10]}{dirty} on {p.get('machine', '?')}, torch {p.get('torch', '?')}."]
        if any(c.get("seeds") for c in (self.recorded or self.current)["claims"]):
            lines.append(f"A paired claim is decided by its effect, the seed-by-seed difference in the claim's favour: "
                         f"it holds when the {round(100 * LEVEL)} % interval of the mean difference lies above zero, does "
                         f"not hold when it lies below, and is inconclusive when it contains zero. The seeds won and "
                         f"the exact one-sided sign test p (the chance of winning at least that many seeds if each "
                         f"were a fair coin flip; all of 5 seeds: 1/32, all of 3: 1/8) are shown beside it.")
        if self.fast:
            lines.append("This run is in FAST mode (fewer seeds and epochs): its verdicts are smoke tests and are "
                         "not comparable with the normal-mode record.")
        elif self.recorded is not None:
            if self.comparison.platform_note:
                lines.append(self.comparison.platform_note[0].upper() + self.comparison.platform_note[1:] + ".")
            lines.append(("This run agrees with every recorded verdict and number."
                          if self.comparison.statistical else
                          "This run reproduces every recorded verdict, with every number inside its recorded spread.")
                         if not self.problems else
                         f"This run departs from the record in {len(self.problems)} place(s): see the last column.")
        return lines

    def _repr_html_(self) -> str:
        head = "".join(f"<p>{html.escape(line)}</p>" for line in self.header())
        cells = "".join("<tr>" + "".join(f'<td style="text-align:left">{html.escape(x)}</td>' for x in row) + "</tr>"
                        for row in self._rows())
        titles = ("claim", "verdict: effect, seeds won, p", "numbers (mean ± std over seeds)", "this run")
        table = ('<table class="gregnb-findings"><thead><tr>' + "".join(f'<th style="text-align:left">{t}</th>'
                                                                        for t in titles)
                 + f"</tr></thead><tbody>{cells}</tbody></table>")
        return f'<div class="gregnb-findings"><p><b>What we found</b></p>{head}{table}</div>'

    def __repr__(self) -> str:
        rows = [f"- {claim}\n    {verdict} | {numbers}\n    this run: {this}" for claim, verdict, numbers, this
                in self._rows()]
        return "\n".join(["What we found", *self.header(), *rows])


def show(current: dict, records: str | os.PathLike | None = None) -> FindingsView | None:
    """Display this run's record (a dict) next to the committed one: a :class:`FindingsView`, displayed inside
    IPython (returns None) or returned (elsewhere).

    Writes this run's record to ``$GREGNB_FINDINGS_OUT/<NN>.json`` when that variable is set.
    """
    out = os.environ.get("GREGNB_FINDINGS_OUT")
    if out:
        write_record(current, Path(out) / f"{current['chapter']}.json")
    try:
        recorded = load_record(current["chapter"], records)
    except ValueError as err:   # a damaged committed record must not cost this run (its record is written above)
        import warnings

        warnings.warn(f"{err}; showing this run without it", stacklevel=2)
        recorded = None
    view = FindingsView(current, recorded)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return view
    if get_ipython() is None:
        return view
    display(view)
    return None
