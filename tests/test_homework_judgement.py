"""Homework 5 and 6, the rubrics and the course set-up: the new checkers accept the reference and name the common
mistakes; their references are the package's own code (Algorithm 1, the GReg+ step); the study trains and tabulates
what the notebook needs; written answers carry a rubric only the instructor sees; ``course`` and ``release --course``
lay out a nbgrader course (tests/test_nbgrader.py runs the whole cycle on it)."""
import dataclasses
import math
import re

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gregnb.data.toy2d import MIN_DIST, load_toy
from gregnb.homework import check_gregplus_step, check_paired_summary, check_select_picks, check_selection_rule
from gregnb.homework.__main__ import main as homework_cli
from gregnb.homework.gregplus import _reference_step, picks_from_labels, select_cases, step_cases
from gregnb.homework.judgement import independent_fpr95, reference_choose, reference_paired_summary
from gregnb.homework.release import RELEASE_DIR, SOURCE_DIR
from gregnb.homework.verdict import Verdict
from gregnb.metrics import fpr_at_tpr
from gregnb.models import MLP
from gregnb.sampling import energy_cluster_sample, kmeans
from gregnb.scores import energy

SOURCES = sorted(SOURCE_DIR.glob("*.ipynb"))


# ------------------------------------------------------------ HW5: the selection rule and the paired summary

def test_selection_rule_checker():
    assert check_selection_rule(reference_choose).status == "exact"
    v = check_selection_rule(lambda val, c: min(c, key=lambda x: val[val.setting == x].fpr95.min()))
    assert v.status == "wrong" and "single seed" in v.hint
    v = check_selection_rule(lambda val, c: val[val.setting.isin(c)].groupby("setting").fpr95.mean().idxmin())
    assert v.status == "wrong" and "alphabetical" in v.hint
    v = check_selection_rule(lambda val, c: val.groupby("setting").fpr95.mean().idxmin())  # among every row
    assert v.status == "error" and "candidates only" in v.hint
    v = check_selection_rule(lambda val, c: max(c, key=lambda x: val[val.setting == x].fpr95.mean()))
    assert v.status == "wrong" and "HIGHEST" in v.hint


def _z_interval(a, b):
    d = a - b
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    return reference_paired_summary(a, b) | {"ci_low": d.mean() - half, "ci_high": d.mean() + half}


def test_paired_summary_checker_and_its_reference():
    from scipy import stats

    assert check_paired_summary(reference_paired_summary).status == "exact"
    ref = reference_paired_summary([0.2, 0.3, 0.1], [0.4, 0.3, 0.2])
    assert ref["wins"] == 2 and ref["n"] == 3 and math.isclose(ref["mean_diff"], -0.1)
    half = stats.t.ppf(0.975, 2) * np.std([-0.2, 0.0, -0.1], ddof=1) / math.sqrt(3)
    assert math.isclose(ref["ci_low"], -0.1 - half) and math.isclose(ref["ci_high"], -0.1 + half)
    for fn, words in ((lambda a, b: reference_paired_summary(b, a), "wrong way"),
                      (_z_interval, "1.96"),
                      (lambda a, b: reference_paired_summary(a, b) | {"p_value": reference_paired_summary(a, b)["p_value"] / 2},
                       "one-sided"),
                      (lambda a, b: {k: 100 * v if k in ("mean_diff", "ci_low", "ci_high") else v
                                     for k, v in reference_paired_summary(a, b).items()}, "percentages"),
                      (lambda a, b: reference_paired_summary(a, b) | {"wins": int(np.sum(a <= b))}, "tie")):
        v = check_paired_summary(fn)
        assert v.status == "wrong" and words in v.hint, (words, str(v))
    v = check_paired_summary(lambda a, b: {"mean_diff": 0.0})
    assert v.status == "error" and "ci_low" in v.hint


def test_verdict_why_names_the_mistake():
    assert Verdict("x", "exact").why() == ""
    why = Verdict("energy", "wrong", failing_case="T=2", hint="the sign is flipped").why()
    assert "the sign is flipped" in why and "T=2" in why


def test_independent_fpr95_agrees_with_the_metrics():
    torch.manual_seed(0)
    model = MLP(2, 3, hidden=(8,))
    x_id, x_ood = torch.randn(200, 2), 3 * torch.randn(150, 2)
    with torch.no_grad():
        want = fpr_at_tpr(-energy(model(x_id)), -energy(model(x_ood)))
    assert independent_fpr95(model, x_id, x_ood) == want


# ------------------------------------------------------------ HW5: the study

def test_toy_validation_ood_is_off_the_data_and_deterministic():
    from gregnb.homework.study import toy_validation_ood

    toy = load_toy("blobs", seed=0, n_aux=200, aux_region="left")
    val = toy_validation_ood(toy, seed=0)
    assert {k: tuple(v.shape) for k, v in val.items()} == {"frame": (200, 2), "gaps": (200, 2), "centre": (200, 2)}
    for name, x in val.items():
        assert torch.cdist(x, toy.train_x).min() >= MIN_DIST - 1e-6, name
    assert (val["frame"].abs().amax(1) >= 4.5).all() and (val["centre"].norm(dim=1) <= 0.8).all()
    again = toy_validation_ood(toy, seed=0)
    assert all(torch.equal(val[k], again[k]) for k in val)
    assert not torch.equal(val["gaps"], toy_validation_ood(toy, seed=1)["gaps"])
    with pytest.raises(ValueError, match="2-D toy"):
        toy_validation_ood(dataclasses.replace(toy, train_x=torch.zeros(4, 1, 8, 8)))


@pytest.mark.slow
def test_run_study_trains_the_grid_and_tabulates_it():
    from gregnb.homework.study import run_study, toy_validation_ood

    toy = load_toy("blobs", seed=0, n_aux=200, aux_region="left")
    study = run_study(toy, [1.0], [(0, 0), (1.0, 0.0)], [0, 1], toy_validation_ood(toy), epochs=2)
    assert study.energy_settings == ["energy loss, margins +0/+0", "energy loss, margins +1/+0"]
    assert study.greg_settings == ["GReg λ∇=1, margins +0/+0", "GReg λ∇=1, margins +1/+0"]
    val = study.val_table()
    assert list(val.columns) == ["setting", "seed", "fpr95"] and len(val) == 8
    assert val.fpr95.between(0, 1).all()
    name = study.greg_settings[0]
    want = np.mean([independent_fpr95(study.models[(name, 0)], toy.test_x, x) for x in study.val_ood.values()])
    assert math.isclose(val[(val.setting == name) & (val.seed == 0)].fpr95.item(), want)
    assert study.test_fpr95(name).shape == (2,)
    assert list(study.val_summary().index) == list(study.settings)
    with pytest.raises(ValueError, match="m_in"):
        run_study(toy, [1.0], [(0, 0), (5.0, 0.0)], [0], study.val_ood, epochs=2)
    with pytest.raises(ValueError, match="positive"):
        run_study(toy, [0.0, 1.0], [(0, 0)], [0], study.val_ood, epochs=2)


# ------------------------------------------------------------ HW6: the picks and the step

@pytest.mark.parametrize("desc", [d for d, case in select_cases().items() if not case[4]])
def test_picks_from_labels_is_the_package_selection(desc):
    f, e, k, seed, _ = select_cases()[desc]
    gen = torch.Generator().manual_seed(seed)
    labels, _ = kmeans(f.float() / f.float().norm(dim=1, keepdim=True), k, generator=gen)
    mine, roles = picks_from_labels(labels, e, k, gen)
    ref, ref_roles = energy_cluster_sample(f, e, n_clusters=k, n_select=2 * k, return_roles=True,
                                           generator=torch.Generator().manual_seed(seed))
    assert mine.tolist() == ref.tolist() and roles.tolist() == ref_roles.tolist()


def test_the_edge_cases_are_what_they_claim():
    cases = select_cases()
    f, e, k, seed, _ = next(c for d, c in cases.items() if "empty" in d)
    labels, _ = kmeans(f / f.norm(dim=1, keepdim=True), k, generator=torch.Generator().manual_seed(seed))
    assert (torch.bincount(labels, minlength=k) == 0).any()  # an empty cluster, so the picks need a fill
    f, e, k, seed, ties = next(c for d, c in cases.items() if "tied" in d)
    assert ties and len(torch.unique(e)) < len(e)


def _select(f, e, k, gen, *, unit=True, fill_gen=True):
    feats = f.float() / f.float().norm(dim=1, keepdim=True) if unit else f.float()
    labels, _ = kmeans(feats, k, generator=gen)
    return picks_from_labels(labels, e, k, gen if fill_gen else torch.Generator().manual_seed(12345))[0]


def test_select_picks_checker():
    assert check_select_picks(_select).status == "exact"
    v = check_select_picks(lambda f, e, k, g: e.argsort()[: 2 * k])
    assert v.status == "wrong" and "greedy" in v.hint
    v = check_select_picks(lambda f, e, k, g: _select(f, e, k, g, unit=False))
    assert v.status == "wrong" and "UNIT-LENGTH" in v.hint
    v = check_select_picks(lambda f, e, k, g: _select(f, e, k, g, fill_gen=False))
    assert v.status == "wrong" and "random fill differs" in v.hint

    def one_way(f, e, k, g):
        labels, _ = kmeans(f / f.norm(dim=1, keepdim=True), k, generator=g)
        return torch.tensor([int((labels == c).nonzero()[e[labels == c].argmin()]) for c in labels.unique()])

    v = check_select_picks(one_way)
    assert v.status == "error" and "HIGHEST" in v.hint
    v = check_select_picks(lambda f, e, k, g: _select(f, e, k, g)[:-1])  # one short: no fill
    assert v.status == "error" and "fill up" in v.hint
    v = check_select_picks(lambda f, e, k, g: torch.cat([_select(f, e, k, g)[:-1], _select(f, e, k, g)[:1]]))
    assert v.status == "error" and "more than once" in v.hint


def _step(model, opt, x, y, cand, m_in, m_out, gen, lam_s=0.1, lam_g=1.0, *, kind=None, select=_select):
    model.eval()
    with torch.no_grad():
        logits, feats = model(cand, return_features=True)
    model.train()
    picks = select(feats, energy(logits), len(x), gen)
    n = len(x)
    inp = torch.cat([x, cand[picks]]).requires_grad_(True)
    out = model(inp)
    e = energy(out)
    hinge = F.relu(e[:n] - m_in).pow(2).mean() + F.relu(m_out - e[n:]).pow(2).mean()
    mask = torch.ones_like(e) if kind == "unmasked" else torch.cat([e[:n] <= m_in, e[n:] >= m_out]).float()
    (g,) = torch.autograd.grad((mask * e).sum(), inp, create_graph=True)
    norms = g.norm(dim=1) ** (2 if kind == "squared" else 1)
    loss = F.cross_entropy(out[:n], y) + lam_s * hinge + lam_g * (norms[:n].mean() + norms[n:].mean())
    if kind != "no zero_grad":
        opt.zero_grad()
    loss.backward()
    if kind != "no step":
        opt.step()
    return picks, loss.item()


def test_gregplus_step_checker():
    assert check_gregplus_step(_step, _select).status == "exact"
    for kind, words in (("unmasked", "every row"), ("squared", "squared"), ("no zero_grad", "zero_grad"),
                        ("no step", "optimizer.step()")):
        v = check_gregplus_step(lambda *a, kind=kind: _step(*a, kind=kind), _select)
        assert v.status == "wrong" and words in v.hint, (kind, str(v))
    greedy = lambda f, e, k, g: e.argsort()[: 2 * k]  # noqa: E731
    v = check_gregplus_step(lambda *a: _step(*a, select=greedy))
    assert v.status == "error" and "other picks" in v.hint
    # a mistake in Q1 is not counted again: the step is judged on the student's own picks
    assert check_gregplus_step(lambda *a: _step(*a, select=greedy), greedy).ok


def test_the_checkers_reference_step_is_the_package_step():
    """The checker's reference on given picks (greg_objective + SGD) equals gregnb.train's own step on its picks."""
    for case in step_cases().values():
        before = [p.detach().clone() for p in case[0].parameters()]
        package, picks = _reference_step(case)
        on_picks, _ = _reference_step(case, picks=picks)
        assert np.allclose(package, on_picks, rtol=1e-6, atol=1e-7)
        wrong, _ = _reference_step(case, picks=picks, kind="unmasked")
        assert not np.allclose(package, wrong, rtol=1e-4)
        assert all(torch.equal(p, q) for p, q in zip(case[0].parameters(), before))  # the case's model stays untouched


# ------------------------------------------------------------ rubrics: with the instructor only

def _manual_cells(nb):
    return [c for c in nb.cells if c.metadata["nbgrader"].get("grade") and c.metadata["nbgrader"].get("solution")]


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_every_written_answer_has_a_rubric_that_adds_up(src):
    nb = nbformat.read(src, as_version=4)
    manual = _manual_cells(nb)
    assert manual, f"{src.name} asks no written question"
    for cell in manual:
        points = cell.metadata["nbgrader"]["points"]
        head = re.search(r"\*\*Rubric \((\d+(?:\.\d+)?) points?\)\*\*", cell.source)
        assert head and float(head.group(1)) == points, f"{src.name}: a rubric headed with the cell's {points} points"
        items = [float(x) for x in re.findall(r"^- (\d+(?:\.\d+)?) pts?\b", cell.source, flags=re.M)]
        assert items and sum(items) == points, f"{src.name}: rubric items {items} do not add up to {points}"
        assert "**Model answer" in cell.source
        assert cell.source.index("### BEGIN SOLUTION") < cell.source.index("**Rubric") < cell.source.index("### END SOLUTION")


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_students_get_no_model_answer_and_no_rubric(src):
    text = (RELEASE_DIR / src.name).read_text()
    for secret in ("Rubric", "Model answer", " pt:", "BEGIN SOLUTION", "HIDDEN TESTS"):
        assert secret not in text, f"{secret!r} is in the student version of {src.name}"


def test_the_study_asks_to_defend_a_choice_made_on_validation_data():
    nb = nbformat.read(SOURCE_DIR / "hw5_validation_study.ipynb", as_version=4)
    questions = [c.source for c in nb.cells if c.metadata["nbgrader"]["grade_id"].endswith("_text")]
    written = questions[-1]
    assert "defend" in written.lower() and "validation" in written and "does **not** show" in written
    assert any("lowest mean FPR95" in q for q in questions)


def test_the_hw3_model_answer_claims_only_what_was_measured():
    nb = nbformat.read(SOURCE_DIR / "hw3_energy_sampling.ipynb", as_version=4)
    answer = next(c.source for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == "q4_answer")
    answer = answer.split("**Rubric")[0]
    for overclaim in ("the one region", "near-duplicate", "already detected"):
        assert overclaim not in answer, overclaim
    assert "not measured" in answer


# ------------------------------------------------------------ the course set-up

def test_course_and_release_into_it(tmp_path, capsys):
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    assert homework_cli(["course", str(course), "--exchange", str(exchange)]) == 0
    config = (course / "nbgrader_config.py").read_text()
    assert f"c.Exchange.root = {str(exchange.resolve())!r}" in config and "c.Execute.timeout = 300" in config
    assert f"c.CourseDirectory.root = {str(course.resolve())!r}" in config
    for src in SOURCES:
        assert (course / "source" / src.stem / src.name).read_bytes() == src.read_bytes()
    (course / "nbgrader_config.py").write_text("# mine\n")
    assert homework_cli(["course", str(course)]) == 0
    assert (course / "nbgrader_config.py").read_text() == "# mine\n", "an existing config is the instructor's: kept"
    capsys.readouterr()
    assert homework_cli(["release", "--course", str(course)]) == 1  # nothing generated yet
    assert "generate_assignment" in capsys.readouterr().out
    (course / "release" / SOURCES[0].stem).mkdir(parents=True)
    assert homework_cli(["release", "--course", str(course)]) == 0
    written = course / "release" / SOURCES[0].stem / SOURCES[0].name
    assert written.read_text() == (RELEASE_DIR / SOURCES[0].name).read_text()
    assert "not generated yet" in capsys.readouterr().out
    assert homework_cli(["release", "--course", str(course), "--check"]) == 2
    assert homework_cli(["course", str(tmp_path / "c2"), "--source", str(tmp_path / "none")]) == 2
