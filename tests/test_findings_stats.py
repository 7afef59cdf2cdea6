"""Records that travel: the CPU kernel pin in a fresh process, and the statistical comparison a different
platform gets (it accepts a rerun drawn from the record's seed distribution and rejects a shifted one)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gregnb.findings import Effect, Findings, Number, comparison, load_record, summarize, welch_p
from gregnb.kernels import native_isa

PINNABLE = native_isa() in ("AVX512", "AVX2")
PROBE = """
import json, os, torch
import gregnb   # the pin is set here, before torch computes anything
from gregnb.kernels import kernel_report, platform_key
torch.nn.Conv2d(1, 4, 3)(torch.randn(2, 1, 8, 8))   # runs oneDNN, which reports its ISA when verbose
print(json.dumps({"level": str(torch.backends.cpu.get_cpu_capability()), "report": kernel_report(),
                  "key": platform_key()}))
"""


def _probe(**env):
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR",
                                                              "GREGNB_NATIVE_KERNELS")}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                         env={**clean, "ONEDNN_VERBOSE": "1", **env})
    assert out.returncode == 0, out.stderr
    isa = [line for line in out.stdout.splitlines() if "isa:" in line]
    return json.loads(out.stdout.strip().splitlines()[-1]), isa[0] if isa else ""


@pytest.mark.skipif(not PINNABLE, reason="the pin applies to x86-64 CPUs with AVX2")
def test_importing_gregnb_pins_avx2_kernels_in_a_fresh_process_and_the_opt_out_lifts_it():
    pinned, isa = _probe()
    assert pinned["level"] == "AVX2" and "AVX2" in isa and "512" not in isa, (pinned, isa)
    assert pinned["report"].startswith("AVX2, pinned") and pinned["key"]["kernels"] == "AVX2"
    native, isa = _probe(GREGNB_NATIVE_KERNELS="1")
    assert native["level"] == native_isa(), native
    assert "native" in native["report"] and "GREGNB_NATIVE_KERNELS is set" in native["report"]
    if native_isa() == "AVX512":
        assert "AVX-512" in isa, isa


def test_a_user_who_set_a_kernel_level_keeps_it():
    pinned, _ = _probe(ATEN_CPU_CAPABILITY="default")
    assert pinned["level"] == "DEFAULT"


# ---- the statistical comparison ----------------------------------------------------------------------------
def _chapter(rng, shift=0.0, platform=None, claims=12, n=5):
    """A planted record: ``claims`` paired claims whose per-seed values and differences come from fixed normal
    distributions (``shift`` moves every mean by that many of their standard deviations)."""
    f = Findings("98", fast=False)
    for i in range(claims):
        a = rng.normal(30 + 3 * shift, 3.0, n)
        diffs = rng.normal(1.0 + shift, 1.0, n)
        effect = Effect.from_differences(diffs, unit="points", better="lower")
        f.add(f"claim-{i}", "A planted claim.", effect.verdict(), {"a": summarize(a, "%"),
                                                                     "b": summarize(a + diffs, "%")}, effect=effect)
    record = f.to_dict()
    record["platform"] = platform or {"arch": "x86_64", "cpu": "AVX2", "kernels": "AVX2", "torch": "2.14.1",
                                      "device": "cpu"}
    return record


OTHER = {"arch": "arm64", "cpu": "arm64", "kernels": "DEFAULT", "torch": "2.14.1", "device": "cpu"}


def test_welch_p_is_scipys():
    from scipy import stats

    a, b = [30.1, 33.0, 28.4, 31.2, 35.0], [29.0, 36.5, 34.2, 38.0, 33.1]
    ref = stats.ttest_ind(a, b, equal_var=False).pvalue
    sa, sb = summarize(a), summarize(b)
    assert welch_p(sa.mean, sa.std, sa.n, sb.mean, sb.std, sb.n) == pytest.approx(ref, rel=1e-9)
    assert welch_p(1.0, 0.0, 1, 1.0, 0.0, 1) == 1.0 and welch_p(1.0, 0.0, 1, 1.5, 0.0, 1) == 0.0


def test_another_platform_accepts_a_rerun_from_the_same_seed_distribution_and_rejects_a_shifted_one():
    rng = np.random.default_rng(7)
    trials, passed, rejected = 40, 0, 0
    for _ in range(trials):
        record = _chapter(rng)
        same = comparison(record, _chapter(rng, platform=OTHER))
        assert same.statistical and "compared statistically" in same.platform_note
        passed += same.ok
        rejected += not comparison(record, _chapter(rng, shift=4.0, platform=OTHER)).ok
    assert passed >= 0.9 * trials, f"a rerun from the record's own distribution failed {trials - passed}/{trials}"
    assert rejected == trials, f"a rerun shifted by 4 standard deviations passed {trials - rejected}/{trials}"


def test_a_verdict_flip_on_another_platform_is_borderline_when_the_effects_agree():
    rng = np.random.default_rng(3)
    flips = borderline = 0
    for _ in range(60):
        record, rerun = _chapter(rng, claims=1), _chapter(rng, claims=1, platform=OTHER)
        if record["claims"][0]["verdict"] != rerun["claims"][0]["verdict"]:
            flips += 1
            result = comparison(record, rerun)
            borderline += result.ok and any("borderline claim" in n for n in result.notes)
    assert flips >= 5 and borderline >= 0.9 * flips, (flips, borderline)


def test_on_the_records_own_platform_the_band_rule_applies():
    rng = np.random.default_rng(11)
    record = _chapter(rng)
    rerun = _chapter(rng)   # the same platform: a rerun should match bit for bit, so any move outside a band fails
    result = comparison(record, rerun)
    assert not result.statistical and result.platform_note == ""
    assert not result.ok and all("outside the recorded" in p or "verdict" in p for p in result.problems)
    assert comparison(record, json.loads(json.dumps(record))).ok


def test_one_seed_redraws_flip_either_verdict_rule_now_and_then():
    """How often a verdict changes when one of 5 seeds is redrawn, effects uniform in ±3 seed standard deviations.

    Measured here (fixed seed): the interval rule about 9 %, the every-seed rule about 6 %; a full redraw of all 5
    seeds flips either about 22-24 %. Neither rule makes a 5-seed verdict stable: what keeps a record
    checkable elsewhere is the comparison, which calls a flip borderline when the effects agree."""
    rng = np.random.default_rng(1)

    def every_seed(d):
        return "holds" if (d > 0).all() else "does not hold" if (d <= 0).all() else "mixed"

    flips = {"interval": 0, "every seed": 0}
    trials = 2000
    for _ in range(trials):
        mu = rng.uniform(-3, 3)
        d = rng.normal(mu, 1.0, 5)
        d2 = d.copy()
        d2[rng.integers(5)] = rng.normal(mu, 1.0)
        flips["interval"] += Effect.from_differences(d).verdict() != Effect.from_differences(d2).verdict()
        flips["every seed"] += every_seed(d) != every_seed(d2)
    rates = {k: v / trials for k, v in flips.items()}
    assert 0.05 < rates["interval"] < 0.13 and 0.03 < rates["every seed"] < 0.10, rates


def test_a_record_with_a_claim_twice_is_refused(tmp_path):
    record = _chapter(np.random.default_rng(0), claims=2)
    record["chapter"] = "97"
    record["claims"].append(dict(record["claims"][0]))
    (tmp_path / "97.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="claim-0.*twice"):
        load_record("97", tmp_path)
    with pytest.raises(ValueError, match="twice"):
        comparison(record, _chapter(np.random.default_rng(1), claims=2))


def test_a_format_1_record_still_loads_and_compares_statistically():
    old = {"format": 1, "chapter": "96", "mode": "normal", "claims": [
        {"id": "x", "claim": "X.", "verdict": "mixed", "wins": 3, "seeds": 5,
         "numbers": {"a": {"mean": 30.0, "std": 2.0, "n": 5, "unit": "%", "tol": 0.0}}}]}
    f = Findings("96", fast=False)
    e = Effect.from_differences([1.0, -1.0, 0.5, 0.2, -0.3])
    f.add("x", "X.", e.verdict(), {"a": Number(31.0, 2.5, 5, "%")}, effect=e)
    result = comparison(old, f.to_dict())
    assert result.statistical and result.ok, result


def test_a_damaged_committed_record_does_not_cost_the_run(tmp_path, monkeypatch):
    from gregnb.findings.render import show

    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "95.json").write_text('{"format": 2, "chapter": "94", "claims": []}')
    monkeypatch.setenv("GREGNB_FINDINGS_OUT", str(tmp_path / "out"))
    f = Findings("95", fast=False)
    f.add_check("x", "X.", True)
    with pytest.warns(UserWarning, match="not a usable findings record"):
        view = show(f.to_dict(), tmp_path / "records")
    assert view.recorded is None and json.loads((tmp_path / "out" / "95.json").read_text())["claims"][0]["id"] == "x"


def test_paired_verdict_says_when_it_leaves_a_seed_out():
    import pandas as pd

    from gregnb.experiments import paired_verdict

    df = pd.DataFrame({"seed": [0, 0, 1, 1, 2], "method": ["a", "b", "a", "b", "a"], "ood": "mean",
                       "fpr95": [0.1, 0.2, 0.1, 0.3, 0.2]})
    with pytest.warns(UserWarning, match=r"seeds \[2\] lack a value"):
        result = paired_verdict(df, "a", "b")
    assert result["seeds"] == 2
