"""The findings record: numbers checked against NumPy, departures detected, the CLI run on a tiny notebook,
and every chapter's committed record present, well-formed, and the only source of numbers in its prose."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from gregnb.experiments import paired_verdict
from gregnb.findings import (Effect, Findings, Number, compare, comparison, load_record, sign_test_p, summarize,
                             write_record)
from gregnb.findings.render import FindingsView
from gregnb.findings.run import chapter_notebooks

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "notebooks" / "findings"


def _record(verdict="holds", mean=4.0, std=1.0, mode="normal", diffs=None):
    """A one-claim record: a yes/no check with ``verdict``, or with ``diffs`` a paired claim decided by them."""
    f = Findings("99", fast=mode == "fast")
    effect = None if diffs is None else Effect.from_differences(diffs, unit="points", better="lower")
    f.add("a-claim", "A claim.", verdict if effect is None else effect.verdict(), {"x": Number(mean, std, 3, "%")},
          effect=effect)
    return f.to_dict()


def test_summarize_matches_numpy():
    values = [0.31, 0.42, 0.27, 0.35, 0.5]
    n = summarize(values, unit="%", scale=100)
    assert n.mean == pytest.approx(100 * np.mean(values))
    assert n.std == pytest.approx(100 * np.std(values, ddof=1))
    assert (n.n, n.unit) == (5, "%")
    assert summarize([2.5]).std == 0.0 and summarize([2.5]).n == 1
    with pytest.raises(ValueError, match="no values"):
        summarize([])


def test_number_band_and_text():
    assert Number(10.0, 2.0, 5, "%").band() == pytest.approx((8.0, 12.0))
    assert Number(10.0, 0.0, 1, "", tol=0.5).band() == pytest.approx((9.5, 10.5))
    assert Number(35.84, 4.06, 5, "%").text() == "35.8 ± 4.1 %"
    assert Number(0.1134).text() == "0.113"
    for bad in (dict(mean=float("nan")), dict(mean=1.0, std=-1.0), dict(mean=1.0, n=0)):
        with pytest.raises(ValueError):
            Number(**bad)


def test_a_paired_verdict_follows_the_95_percent_t_interval_of_the_mean_difference():
    from scipy import stats

    diffs = [1.0, 2.5, 0.5, 3.0, 1.5]
    e = Effect.from_differences(diffs, unit="points", better="lower")
    ci = stats.ttest_1samp(diffs, 0.0).confidence_interval(0.95)
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert (e.verdict(), e.wins, e.n) == ("holds", 5, 5)
    assert Effect.from_differences([-x for x in diffs]).verdict() == "does not hold"
    assert Effect.from_differences([2.0, -1.0, 1.5, -0.5, 0.4]).verdict() == "inconclusive"   # 3/5 won, CI spans 0
    assert Effect.from_differences([0.1, 0.2, 0.1, 0.15, -0.01]).verdict() == "holds"   # 4/5 won, CI above 0
    assert Effect.from_differences([1.0]).verdict() == "inconclusive"                  # one seed: no interval
    assert e.text() == "lower by 1.7 points (95 % CI 0.4 to 3.0)"
    assert Effect.from_dict(e.to_dict()) == Effect.from_dict(Effect.from_dict(e.to_dict()).to_dict())


@pytest.mark.parametrize("wins, seeds", [(5, 5), (3, 3), (4, 5), (0, 5), (2, 3), (7, 10), (1, 1)])
def test_sign_test_p_is_scipys_exact_binomial_test(wins, seeds):
    from scipy.stats import binomtest

    p = sign_test_p(wins, seeds)
    assert float(p) == pytest.approx(binomtest(wins, seeds, 0.5, alternative="greater").pvalue, rel=1e-12)
    assert sign_test_p(5, 5) == sign_test_p(5, 5).__class__(1, 32) and float(sign_test_p(3, 3)) == 0.125
    for bad in ((6, 5), (-1, 3), (1, 0), (1.5, 3)):
        with pytest.raises(ValueError):
            sign_test_p(*bad)


def test_the_findings_table_shows_each_paired_verdicts_p_value():
    view = FindingsView(_record(diffs=[1.0, 1.2, 0.9]), None)
    assert "holds: lower by 1.0 points (95 % CI 0.7 to 1.4); 3/3 seeds, sign test p = 1/8 ≈ 0.125" in repr(view)
    assert "sign test" in view._repr_html_()
    check = Findings("99", fast=False)
    check.add_check("a-check", "A check.", True)
    assert "sign test p" not in repr(FindingsView(check.to_dict(), None))   # a yes/no check has no p


def test_add_paired_takes_paired_verdict_numbers():
    df = pd.DataFrame({"seed": [0, 0, 1, 1, 2, 2], "method": ["a", "b"] * 3, "ood": "mean",
                       "fpr95": [0.10, 0.20, 0.15, 0.12, 0.05, 0.30]})
    f = Findings("99", fast=False)
    assert f.add_paired("a-beats-b", "Row a has a lower mean FPR95 than row b.", paired_verdict(df, "a", "b")) is None
    claim = f.claims["a-beats-b"]   # add* return None: a call left last in a cell shows no Claim(...) repr
    assert (claim.verdict, claim.wins, claim.seeds) == ("inconclusive", 2, 3)   # seed 1: a is worse
    assert claim.effect.values == pytest.approx((10.0, -3.0, 25.0))               # in points, a's favour > 0
    assert claim.numbers["a"].mean == pytest.approx(100 * np.mean([0.10, 0.15, 0.05]))
    assert claim.numbers["b"].std == pytest.approx(100 * np.std([0.20, 0.12, 0.30], ddof=1))
    f.add_paired("a-beats-b-wide", "The same, with a tolerance.", paired_verdict(df, "a", "b"), tol=20.0)
    wide = f.claims["a-beats-b-wide"]
    assert wide.numbers["a"].band() == pytest.approx((wide.numbers["a"].mean - 20.0, wide.numbers["a"].mean + 20.0))


def test_findings_refuse_bad_claims():
    f = Findings("99", fast=False)
    f.add_check("ok", "Fine.", True)
    for args, kw, match in [(("ok", "Again.", "holds"), {}, "already"), (("Bad Id", "x", "holds"), {}, "lower-case"),
                            (("v", "x", "maybe"), {}, "verdict must be"),
                            (("w", "x", "holds"), dict(effect=Effect.from_differences([1.0, -2.0, 0.5])),
                             "does not match"),
                            (("u", "x", "holds"), dict(wins=3, seeds=5), "needs its effect"),
                            (("n", "x", "holds", {"y": 3.0}), {}, "Number")]:
        with pytest.raises((ValueError, TypeError), match=match):
            f.add(*args, **kw)
    with pytest.raises(ValueError, match="two-digit"):
        Findings("3")


def test_compare_finds_each_kind_of_departure():
    base = _record(diffs=[1.0, -0.5, 0.8])
    assert compare(base, _record(diffs=[1.0, -0.5, -0.8])) == []            # still inconclusive: same verdict
    assert compare(base, _record(mean=4.9, diffs=[1.0, -0.5, 0.8])) == []  # inside mean ± std
    flipped = compare(base, _record(diffs=[1.0, 1.1, 0.9]))
    assert len(flipped) == 1 and "a-claim: verdict 'holds (3/3 seeds)', recorded 'inconclusive (2/3 seeds)'" \
        in flipped[0]
    moved = compare(base, _record(mean=5.2, diffs=[1.0, -0.5, 0.8]))
    assert len(moved) == 1 and "outside the recorded 4.0 ± 1.0 %" in moved[0]
    other = Findings("99", fast=False)
    other.add_check("b-claim", "Another.", True)
    assert len(compare(base, other.to_dict())) == 2                          # one missing, one new
    assert "not comparable" in compare(base, _record(mode="fast"))[0]


def test_view_marks_fast_runs_and_departures():
    rec = _record("holds")
    view = FindingsView(_record("holds", mode="fast"), rec)
    assert "FAST mode" in repr(view) and "not comparable" in view._repr_html_()
    view = FindingsView(_record("does not hold"), rec)
    assert "DIFFERS" in repr(view) and "departs from the record in 1 place" in repr(view)
    assert "No committed record" in repr(FindingsView(rec, None))


def test_a_damaged_record_is_refused_with_the_fix(tmp_path):
    (tmp_path / "99.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"99.json is not a usable findings record.*findings update 99"):
        load_record("99", tmp_path)
    assert load_record("98", tmp_path) is None


TINY = """from gregnb.findings import Findings, summarize
values = VALUES
found = Findings("99")
found.add_check("mean-above-two", "The mean of the values exceeds two.", sum(values) / len(values) > 2,
                {"mean": summarize(values)})
found.show()"""


def _tiny(folder, values):
    folder.mkdir(exist_ok=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(TINY.replace("VALUES", repr(values)))])
    nbformat.write(nb, folder / "99_tiny.ipynb")


def _cli(*args):
    env = {**os.environ, "GREGNB_FAST": "1"}   # the runner must force normal mode itself
    return subprocess.run([sys.executable, "-m", "gregnb.findings", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


@pytest.mark.notebook
def test_cli_update_then_check_catches_a_flipped_verdict_and_a_moved_number(tmp_path):
    nbs, recs = tmp_path / "nb", tmp_path / "rec"
    _tiny(nbs, [2.0, 3.0, 4.0])
    res = _cli("update", "99", "--notebooks", str(nbs), "--records", str(recs))
    assert res.returncode == 0, res.stdout + res.stderr
    record = json.loads((recs / "99.json").read_text())
    assert record["mode"] == "normal" and record["claims"][0]["verdict"] == "holds"
    assert {"commit", "date", "machine", "torch", "seconds"} <= set(record["provenance"])
    assert _cli("check", "99", "--notebooks", str(nbs), "--records", str(recs)).returncode == 0
    _tiny(nbs, [1.0, 1.5, 2.0])                 # a change that flips the verdict
    res = _cli("check", "99", "--notebooks", str(nbs), "--records", str(recs))
    assert res.returncode == 1 and "mean-above-two: verdict 'does not hold', recorded 'holds'" in res.stdout
    _tiny(nbs, [2.5, 3.5, 4.5])                 # same verdict, mean 3.5 inside the recorded 3.0 ± 1.0
    assert _cli("check", "99", "--notebooks", str(nbs), "--records", str(recs)).returncode == 0
    _tiny(nbs, [3.5, 4.5, 5.5])                 # mean 4.5 leaves the recorded 3.0 ± 1.0
    res = _cli("check", "99", "--notebooks", str(nbs), "--records", str(recs))
    assert res.returncode == 1 and "mean = 4.50 ± 1.00, outside the recorded 3.00 ± 1.00" in res.stdout


@pytest.mark.notebook
def test_cli_runs_chapters_in_parallel_one_thread_each(tmp_path):
    nbs, recs = tmp_path / "nb", tmp_path / "rec"
    _tiny(nbs, [2.0, 3.0, 4.0])
    nb = nbformat.read(nbs / "99_tiny.ipynb", as_version=4)
    nb.cells[0].source = nb.cells[0].source.replace('"99"', '"98"') + (
        '\nimport torch; assert torch.get_num_threads() == 1, torch.get_num_threads()')
    nbformat.write(nb, nbs / "98_other.ipynb")
    res = _cli("update", "--jobs", "2", "--notebooks", str(nbs), "--records", str(recs))
    assert res.returncode == 0, res.stdout + res.stderr
    assert sorted(p.name for p in recs.iterdir()) == ["98.json", "99.json"]
    assert _cli("check", "--jobs", "0").returncode == 2   # refused by the argument parser


def test_cli_refuses_unknown_chapters():
    res = _cli("check", "42")
    assert res.returncode != 0 and "no chapter notebook for ['42']" in res.stderr


CLAIMING = chapter_notebooks()


def test_chapters_that_state_findings_have_committed_normal_mode_records():
    assert {"01", "02", "03", "04", "05", "06", "07"} <= set(CLAIMING), sorted(CLAIMING)
    for nn in CLAIMING:
        record = load_record(nn)
        assert record is not None, f"chapter {nn} has no notebooks/findings/{nn}.json"
        assert record["mode"] == "normal" and record["claims"], nn
        assert {"commit", "date", "machine", "seconds"} <= set(record["provenance"]), nn


def test_write_record_is_atomic_and_round_trips(tmp_path):
    rec = _record()
    write_record(rec, tmp_path / "99.json")
    assert load_record("99", tmp_path) == rec and [p.name for p in tmp_path.iterdir()] == ["99.json"]


# ---- no number in a chapter's prose that its record does not hold -------------------------------------------
_RESULT_LIKE = re.compile(r"(?<![\w.\-−])[−-]?\d+(?:[.,]\d+)*(?:\s*[–-]\s*\d+(?:\.\d+)?)?\s*(?:%|×(?!\s*\d)|x\b)"  # 44%, 30×
                          r"|(?<![\w.\-−])[−-]?\d+\.\d+"                                           # 0.113
                          r"|\b\d+\s*(?:of|/)\s*\d+\s+seeds")                                      # 2 of 5 seeds
#: Numbers any chapter's prose may state: definitions.
GIVEN_ALL = {"95%": "the true-positive rate that defines FPR95",
             "95 %": "the confidence level of every interval (docs/method.md, section 9)"}
#: Numbers a chapter's prose may state without a record: settings, definitions and other papers' numbers.
GIVEN = {
    "00": {},
    "01": {"1.5": "a version number (OpenOOD ≥ 1.5)",
           "33.0%": "the energy paper's FPR95 for the energy score (WRN-40-2, CIFAR-10)",
           "51.0%": "the energy paper's FPR95 for MSP (WRN-40-2, CIFAR-10)"},
    "02": {},
    "03": {"0.005": "1/192: the reference weighting's effective weight, arithmetic"},
    "04": {"0.005": "1/192: the reference weighting's effective weight, arithmetic"},
    "05": {},
    "06": {"0.001": "the energy-finetune preset's learning rate", "0.1": "λ_S, and the scratch recipe's learning rate",
           "0.01": "the scratch recipe's learning rate after epoch 50", "128×": "N = 64 + 64 rows (the authors' GReg batch): paper's equation vs authors' weighting",
           "6×": "GReg+ candidates per ID batch", "2×": "GReg+ picks per ID batch", "0.9": "the 300K pool's size in GB"},
    "07": {},
}


def prose(md: str) -> str:
    """Markdown without code, maths, links, references and list/heading numbering: the sentences."""
    text = md.split("## References")[0]
    for pattern in (r"```.*?```", r"`[^`]*`", r"\$\$.*?\$\$", r"\$[^$]*\$", r"\]\([^)]*\)", r"https?://\S+"):
        text = re.sub(pattern, " ", text, flags=re.S)
    return re.sub(r"^\s*(?:#+\s*)?\d+\.\s", " ", text, flags=re.M)


def _values(token: str) -> list[float]:
    nums = re.findall(r"\d+(?:\.\d+)?", token.replace(",", ""))
    return [float(n) for n in nums]


def _held(value: float, decimals: int, record: dict | None) -> bool:
    """Does the record hold ``value`` at the precision the prose wrote it with (a mean, std or seed count)?"""
    if record is None:
        return False
    for claim in record["claims"]:
        pool = [v for n in claim["numbers"].values() for v in (n["mean"], n["std"])]
        pool += [claim["wins"], claim["seeds"]] if claim.get("seeds") else []
        if any(round(abs(x), decimals) == value for x in pool):
            return True
    return False


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name[:2])
def test_chapter_prose_states_no_number_its_record_does_not_hold(path):
    nn = path.name[:2]
    record = load_record(nn)
    md = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    stray = []
    for token in _RESULT_LIKE.findall(prose(md)):
        if token.strip() in GIVEN[nn] or token.strip() in GIVEN_ALL:
            continue
        for v in _values(token):
            decimals = len(str(v).split(".")[1]) if "." in token else 0
            if not _held(v, decimals, record):
                stray.append(token.strip())
                break
    cited = set(re.findall(r"\[([a-z0-9]+(?:-[a-z0-9]+)+)\]", md))
    known = {c["id"] for c in record["claims"]} if record else set()
    assert cited <= known, f"{path.name} cites claims its record does not hold: {sorted(cited - known)}"
    assert not stray, (f"{path.name} states numbers its findings record (notebooks/findings/{nn}.json) does not "
                       f"hold: {stray}. Print them from code and record them, or declare a setting in GIVEN.")


# ---- prose near a claim id agrees with the claim's recorded verdict (docs/method.md, section 9) ---------------
_CITE = re.compile(r"\[([a-z0-9]+(?:-[a-z0-9]+)+)\]")
_PRAISE = re.compile(r"\b(?:help(?:s|ed|ing)?|beat(?:s|en|ing)?|improv(?:e|es|ed|ing|ement|ements)|"
                     r"outperform(?:s|ed|ing)?)\b", re.I)
_TENDS = re.compile(r"\btends? to\b", re.I)
_TIE = re.compile(r"\b(?:ties?|tied|on a par)\b", re.I)
_SUPPORT = re.compile(r"\bsupport(?:s|ed)?\b", re.I)
_NEGATION = re.compile(r"\b(?:not|no|never|nor|neither|without|fails? to|cannot)\b|n't\b", re.I)


def _state(claim) -> tuple[str, int | None, int | None]:
    if isinstance(claim, str):
        return ("inconclusive" if claim == "mixed" else claim), None, None
    verdict = claim["verdict"]
    return ("inconclusive" if verdict == "mixed" else verdict), claim.get("wins"), claim.get("seeds")


def verdict_mismatches(md: str, claims: dict) -> list[str]:
    """Citations ``[claim-id]`` whose clause (the words leading up to it since the sentence's start or the previous
    citation) words the claim otherwise than its record allows (docs/method.md, section 9): helps / beats /
    improves / outperforms only for a claim that holds (negated: only for one that does not); "tends to" only for
    a claim that does not hold under the rule but won more than half of its seeds; "tie" only for an inconclusive
    claim; "supports" only for one that holds. ``claims``: id -> verdict, or id -> the record's claim dict.
    A sentence ends at . ; : or a new bullet or paragraph."""
    text = re.sub(r"```.*?```|`[^`]*`|\$\$.*?\$\$|\$[^$]*\$", " ", md.split("## References")[0], flags=re.S)
    problems = []
    for sentence in re.split(r"(?<=[.;:!?])\s+|\n\s*[-*]\s+|\n\s*\n", text):
        start = 0
        for m in _CITE.finditer(sentence):
            clause, start = sentence[start:m.start()], m.end()
            if m.group(1) not in claims:
                continue
            verdict, wins, seeds = _state(claims[m.group(1)])
            said = f"[{m.group(1)}] is recorded as {verdict!r}" + (f" ({wins}/{seeds} seeds)" if seeds else "")
            tail = clause.strip()[-90:]
            tends = _TENDS.search(clause)
            if tends is not None:
                if verdict == "holds" or not seeds or 2 * wins <= seeds:
                    problems.append(f"{said} but the prose says 'tends to': {tail!r}")
                continue
            tie = _TIE.search(clause)
            if tie is not None and verdict != "inconclusive":
                problems.append(f"{said} but the prose calls it a tie: {tail!r}")
            support = _SUPPORT.search(clause)
            if support is not None and verdict != "holds" and not _NEGATION.search(clause[:support.start()][-40:]):
                problems.append(f"{said} but the prose says it supports: {tail!r}")
            praise = _PRAISE.search(clause)
            if praise is None:
                continue
            negated = _NEGATION.search(clause[:praise.start()][-40:]) is not None
            if (verdict != "holds") != negated:
                problems.append(f"{said} but the prose says {tail!r}")
    return problems


def test_the_verdict_check_catches_each_kind_of_planted_mismatch():
    claims = {"greg-beats-energy": {"verdict": "inconclusive", "wins": 1, "seeds": 5},
              "masks-beat-all": {"verdict": "holds", "wins": 5, "seeds": 5},
              "weight-1-helps": {"verdict": "does not hold", "wins": 0, "seeds": 5},
              "two-way-beats-random": {"verdict": "inconclusive", "wins": 4, "seeds": 5},
              "mask-shrinks-share": {"verdict": "holds", "wins": 5, "seeds": 5}}
    planted = [
        "On digits GReg beats the energy loss [greg-beats-energy].",               # praise, not held
        "- The gradient term improves FPR95 at this weight [weight-1-helps]",      # praise, reversed
        "The masks do not help [masks-beat-all].",                                 # negated, but it holds
        "On digits GReg ties the energy loss [masks-beat-all].",                   # a tie that holds
        "GReg tends to beat the energy loss [greg-beats-energy].",                 # 'tends' with 1/5 won
        "The masks tend to win [masks-beat-all].",                                 # 'tends' for a claim that holds
        "The data support the mask explanation [greg-beats-energy].",              # support, not held
        "GReg+ beats random GReg where the pool did not reach [two-way-beats-random].",  # 4/5 is not 'beats'
    ]
    for sentence in planted:
        assert verdict_mismatches(sentence, claims), sentence
    fine = ("On digits GReg ties the energy loss [greg-beats-energy]; the masks beat penalising every sample "
            "[masks-beat-all], and λ∇ = 1 does not help [weight-1-helps]. GReg+ tends to beat random GReg "
            "[two-way-beats-random]; the data support a smaller masked share [mask-shrinks-share].")
    assert verdict_mismatches(fine, claims) == []


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name[:2])
def test_chapter_prose_near_a_claim_agrees_with_its_recorded_verdict(path):
    record = load_record(path.name[:2])
    if record is None:
        pytest.skip("no findings record")
    md = "\n\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    problems = verdict_mismatches(md, {c["id"]: c for c in record["claims"]})
    assert not problems, f"{path.name}: prose contradicts the findings record: {problems}"
