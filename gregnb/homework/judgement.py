"""Checkers for Homework 5 (a study: choose on validation data, judge on the test sets):

* :func:`check_selection_rule` - ``choose(val, candidates)`` returns the candidate with the lowest mean validation
  FPR95 over seeds, ties to the earlier candidate (:func:`gregnb.calibration.select_setting`'s rule);
* :func:`check_paired_summary` - ``paired_summary(a, b)`` returns the mean paired difference ``a - b``, its 95 %
  Student-t interval, the seeds where ``a`` is lower, the number of seeds and the two-sided paired t-test p-value
  (checked against :mod:`scipy.stats`).

Both print a verdict as the other checkers do (:mod:`gregnb.homework.verdict`), with a hint for the common
mistakes, and return it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .verdict import BadResult, Verdict, _run

__all__ = ["check_selection_rule", "check_paired_summary", "reference_choose", "reference_paired_summary",
           "independent_fpr95", "SUMMARY_KEYS"]

#: what ``paired_summary`` returns, in this order in the checker's messages
SUMMARY_KEYS = ("mean_diff", "ci_low", "ci_high", "wins", "n", "p_value")


def independent_fpr95(model, x_id, x_ood) -> float:
    """FPR95 of the energy score recomputed from the raw logits with plain NumPy, for Homework 5's hidden tests: it
    shares no code with :mod:`gregnb.metrics` or :mod:`gregnb.evaluate`, which the study's tables come from.
    The score is ``logsumexp(logits) = -E`` (high = ID); the threshold is the largest one keeping 95 % of the ID
    scores at or above it; FPR95 is the share of OOD scores at or above it."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        s_id, s_ood = (torch.logsumexp(model(x), dim=1).double().numpy() for x in (x_id, x_ood))
    model.train(was_training)
    s = np.sort(s_id)[::-1]
    k = int(np.argmax(np.arange(1, s.size + 1) / s.size >= 0.95))  # the first count reaching 95 %
    return float(np.mean(s_ood >= s[k]))


# ------------------------------------------------------------------ the selection rule

def reference_choose(val, candidates) -> str:
    """The candidate with the lowest mean ``fpr95`` over seeds in ``val``; ties go to the earlier candidate."""
    means = val.groupby("setting")["fpr95"].mean()
    return min(candidates, key=lambda c: (means[c], list(candidates).index(c)))


def _table(rows: dict[str, list[float]]):
    import pandas as pd

    return pd.DataFrame([{"setting": k, "seed": s, "fpr95": v} for k, vals in rows.items() for s, v in enumerate(vals)])


def _selection_cases():
    return {
        "three candidates, a clear winner": (
            _table({"A": [0.30, 0.32, 0.31], "B": [0.20, 0.22, 0.21], "C": [0.40, 0.41, 0.39]}), ["A", "B", "C"]),
        "the best single seed is not the best mean": (
            _table({"A": [0.05, 0.50, 0.45], "B": [0.20, 0.22, 0.21], "C": [0.30, 0.30, 0.30]}), ["A", "B", "C"]),
        "median and mean disagree": (
            _table({"A": [0.10, 0.11, 0.60], "B": [0.20, 0.20, 0.20]}), ["A", "B"]),
        "a tie in the mean goes to the earlier candidate": (
            _table({"z weak": [0.25, 0.15], "a strong": [0.20, 0.20], "m": [0.30, 0.30]}), ["z weak", "a strong", "m"]),
        "the table holds settings that are not candidates": (
            _table({"A": [0.30, 0.30], "B": [0.25, 0.27], "other": [0.01, 0.02]}), ["A", "B"]),
        "candidates listed in another order than the table": (
            _table({"B": [0.10, 0.12], "C": [0.40, 0.40], "A": [0.11, 0.11]}), ["C", "A", "B"]),
    }


def check_selection_rule(student_choose: Callable) -> Verdict:
    """HW5: ``student_choose(val, candidates) -> name``: among ``candidates``, the setting with the lowest mean of
    ``val.fpr95`` over seeds (``val``: one row per setting and seed); ties go to the earlier candidate."""
    data = _selection_cases()

    def call(d):
        val, cands = data[d]
        got = student_choose(val.copy(), list(cands))
        if got is None:
            raise BadResult("your function returned None: did you forget the `return` statement?")
        if not isinstance(got, str) or got not in cands:
            raise BadResult(f"return one of the candidate names (a string) {list(cands)}, got {got!r}: choose among "
                            f"the candidates only, even when the table holds other settings")
        return float(cands.index(got))

    def variant(d, kind):
        val, cands = data[d]
        g = val[val.setting.isin(cands)].groupby("setting")["fpr95"]
        stat = {"min": g.min(), "median": g.median(), "max": g.mean()}.get(kind, g.mean())
        if kind == "alphabetical":  # idxmin over a groupby: ties go to the alphabetically first name
            return float(cands.index(stat.idxmin()))
        key = (lambda c: -stat[c]) if kind == "max" else (lambda c: stat[c])
        return float(cands.index(min(cands, key=lambda c: (key(c), cands.index(c)))))

    cases = [(d, (lambda d=d: call(d)), (lambda d=d: float(data[d][1].index(reference_choose(*data[d])))))
             for d in data]
    mistakes = [
        ("you chose by the best single seed (the minimum over seeds): choose by the MEAN over seeds",
         lambda d: variant(d, "min")),
        ("you chose by the median over seeds: the rule is the mean over seeds", lambda d: variant(d, "median")),
        ("you chose the HIGHEST FPR95: lower FPR95 is better", lambda d: variant(d, "max")),
        ("a tie must go to the earlier candidate in `candidates` (the weaker setting), not to the first name in "
         "alphabetical order", lambda d: variant(d, "alphabetical")),
    ]
    return _run("selection rule", cases, mistakes, student_choose)


# ------------------------------------------------------------------ the paired comparison

def reference_paired_summary(a, b) -> dict:
    """The paired comparison of ``a`` and ``b`` (one value per seed, same order), with :mod:`scipy.stats`."""
    from scipy import stats

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d = a - b
    res = stats.ttest_rel(a, b)
    ci = res.confidence_interval(0.95)
    return {"mean_diff": float(d.mean()), "ci_low": float(ci.low), "ci_high": float(ci.high),
            "wins": int((d < 0).sum()), "n": int(d.size), "p_value": float(res.pvalue)}


def _vector(summary: dict) -> list[float]:
    return [float(summary[k]) for k in SUMMARY_KEYS]


def _paired_cases():
    rng = np.random.default_rng(5)
    out = {"5 seeds, a lower in 4": (np.array([0.20, 0.25, 0.18, 0.30, 0.22]), np.array([0.30, 0.28, 0.25, 0.29, 0.35])),
           "3 seeds": (np.array([0.40, 0.35, 0.52]), np.array([0.45, 0.47, 0.50])),
           "6 seeds, one of them a tie": (np.array([0.10, 0.12, 0.30, 0.20, 0.15, 0.11]),
                                          np.array([0.10, 0.20, 0.25, 0.26, 0.19, 0.18]))}
    a = rng.uniform(0.2, 0.6, 8)
    out["8 seeds, no difference on average"] = (a, a + rng.normal(0.0, 0.05, 8))
    return out


def _variant(a, b, kind) -> list[float]:
    from scipy import stats

    ref = reference_paired_summary(a, b)
    d, n = a - b, len(a)
    se = d.std(ddof=1) / np.sqrt(n)
    t = stats.t.ppf(0.975, n - 1)
    if kind == "reversed":
        return _vector(reference_paired_summary(b, a))
    if kind == "z interval":
        return _vector(ref | {"ci_low": d.mean() - 1.959963984540054 * se, "ci_high": d.mean() + 1.959963984540054 * se})
    if kind == "z":
        z = d.mean() / se
        return _vector(ref | {"ci_low": d.mean() - 1.959963984540054 * se, "ci_high": d.mean() + 1.959963984540054 * se,
                              "p_value": 2 * stats.norm.sf(abs(z))})
    if kind == "ddof0":
        se0 = d.std(ddof=0) / np.sqrt(n)
        return _vector(ref | {"ci_low": d.mean() - t * se0, "ci_high": d.mean() + t * se0,
                              "p_value": 2 * stats.t.sf(abs(d.mean() / se0), n - 1)})
    if kind == "one-sided":
        return _vector(ref | {"p_value": ref["p_value"] / 2})
    if kind in ("welch", "student"):
        res = stats.ttest_ind(a, b, equal_var=kind == "student")
        ci = res.confidence_interval(0.95)
        return _vector(ref | {"ci_low": ci.low, "ci_high": ci.high, "p_value": res.pvalue})
    if kind == "percent":
        return _vector(ref | {k: 100 * ref[k] for k in ("mean_diff", "ci_low", "ci_high")})
    if kind == "ties":
        return _vector(ref | {"wins": int((d <= 0).sum())})
    raise AssertionError(kind)


def check_paired_summary(student_summary: Callable) -> Verdict:
    """HW5: ``student_summary(a, b) -> dict`` with :data:`SUMMARY_KEYS`: the differences ``d = a - b`` seed by seed,
    their mean, its 95 % Student-t interval, ``wins`` = seeds with ``a < b``, ``n`` seeds, and the two-sided p-value
    of the paired t-test. Fractions stay fractions."""
    data = _paired_cases()

    def call(d):
        a, b = data[d]
        got = student_summary(a.copy(), b.copy())
        if not isinstance(got, dict):
            raise BadResult(f"return a dict with the keys {', '.join(SUMMARY_KEYS)}, not {type(got).__name__}")
        missing = [k for k in SUMMARY_KEYS if k not in got]
        if missing:
            raise BadResult(f"the dict lacks {', '.join(missing)}; it needs {', '.join(SUMMARY_KEYS)}")
        try:
            return _vector(got)
        except (TypeError, ValueError):
            raise BadResult(f"every value of the dict must be a number; got {got!r}") from None

    cases = [(f"{d}: values ({', '.join(SUMMARY_KEYS)})", (lambda d=d: call(d)),
              (lambda d=d: _vector(reference_paired_summary(*data[d])))) for d in data]
    by_desc = {c[0]: data[d] for c, d in zip(cases, data)}
    mistakes = [
        ("the differences go the wrong way: d = a - b (GReg minus energy loss; negative = GReg lower), and a win is "
         "a seed with a < b", lambda c: _variant(*by_desc[c], "reversed")),
        ("the interval uses the normal quantile 1.96: with a few seeds use Student's t with n - 1 degrees of freedom "
         "(scipy.stats.t.ppf(0.975, n - 1))", lambda c: _variant(*by_desc[c], "z interval")),
        ("a normal (z) test and interval: with a few seeds use Student's t with n - 1 degrees of freedom",
         lambda c: _variant(*by_desc[c], "z")),
        ("the standard deviation must be the sample one (ddof=1, n - 1 in the denominator)",
         lambda c: _variant(*by_desc[c], "ddof0")),
        ("this p-value is one-sided: report the two-sided p-value of the paired t-test",
         lambda c: _variant(*by_desc[c], "one-sided")),
        ("an unpaired (Welch) test: the runs are paired by seed, so test the per-seed differences",
         lambda c: _variant(*by_desc[c], "welch")),
        ("an unpaired two-sample test: the runs are paired by seed, so test the per-seed differences",
         lambda c: _variant(*by_desc[c], "student")),
        ("you return percentages: keep fractions, as the FPR95 values come", lambda c: _variant(*by_desc[c], "percent")),
        ("a tie (d = 0) is not a win: count the seeds with a < b strictly", lambda c: _variant(*by_desc[c], "ties")),
    ]
    return _run("paired summary", cases, mistakes, student_summary)
