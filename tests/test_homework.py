"""Homework: checkers accept the reference, catch typical mistakes and explain bad return values; release
hides solutions and locks cells; student notebooks run up to the first stub; the grade command scores
like nbgrader (tests/test_nbgrader.py runs nbgrader itself)."""
import csv
import math
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np

import nbformat
import pytest
import torch
from nbclient.exceptions import CellExecutionError

from gregnb.homework import (check_certified_radius, check_energy, check_fpr95, check_greg_penalty,
                             check_pick_means, check_sampler)
from gregnb.homework.__main__ import main as homework_cli
from gregnb.homework.checkers import reference_two_way_selection
from gregnb.runner import execute_notebook
from gregnb.homework.grade import grade_notebook, prepare, score_cell
from gregnb.homework.release import RELEASE_DIR, SOURCE_DIR, release_all, release_notebook
from gregnb.lipschitz import certified_radius
from gregnb.losses import greg_penalty
from gregnb.metrics import fpr_at_tpr
from gregnb.scores import energy

SOURCES = sorted(SOURCE_DIR.glob("*.ipynb"))


def test_there_are_six_assignments():
    assert [p.name[:3] for p in SOURCES] == ["hw1", "hw2", "hw3", "hw4", "hw5", "hw6"]


# ------------------------------------------------------------ checkers

def test_energy_checker(capsys):
    assert check_energy(energy).status == "exact"
    v = check_energy(lambda z, T=1.0: -energy(z, T))
    assert v.status == "wrong" and "sign" in v.hint
    v = check_energy(lambda z, T=1.0: -torch.logsumexp(z, 1))
    assert v.status == "wrong" and "temperature" in v.hint
    v = check_energy(lambda z, T=1.0: -torch.logsumexp(z / T, 1))
    assert v.status == "wrong" and "factor T" in v.hint
    out = capsys.readouterr().out
    assert "logsumexp" not in out.split("hint")[0]  # the verdict shows no reference code
    with pytest.raises(NotImplementedError):  # an unanswered stub stops the notebook at its question
        check_energy(lambda z, T=1.0: (_ for _ in ()).throw(NotImplementedError()))
    assert "NotImplementedError" in capsys.readouterr().out


def test_fpr95_checker():
    assert check_fpr95(lambda a, b: fpr_at_tpr(a, b)).ok
    v = check_fpr95(lambda a, b: fpr_at_tpr(a, b, positive="ood"))
    assert v.status == "wrong" and "OOD-positive" in v.hint
    v = check_fpr95(lambda a, b: fpr_at_tpr(-a, -b))
    assert v.status == "wrong" and "wrong way round" in v.hint
    v = check_fpr95(lambda a, b: 100 * fpr_at_tpr(a, b))
    assert v.status == "wrong" and "percentage" in v.hint


def _penalty(model, x, n_id, m_in, m_out, squared=False, masked=True):
    xg = x.clone().requires_grad_(True)
    e = energy(model(xg))
    if not squared and masked:
        return greg_penalty(xg, e, n_id, m_in, m_out)
    (g,) = torch.autograd.grad(e.sum(), xg, create_graph=True)
    n = g.norm(dim=1) ** (2 if squared else 1)
    mi = (e[:n_id] <= m_in).double() if masked else 1.0
    mo = (e[n_id:] >= m_out).double() if masked else 1.0
    return (mi * n[:n_id]).mean() + (mo * n[n_id:]).mean()


def test_greg_penalty_checker():
    assert check_greg_penalty(_penalty).status == "exact"
    v = check_greg_penalty(lambda *a: _penalty(*a, squared=True))
    assert v.status == "wrong" and "squared" in v.hint
    v = check_greg_penalty(lambda *a: _penalty(*a, masked=False))
    assert v.status == "wrong" and "every sample" in v.hint
    v = check_greg_penalty(lambda *a: _penalty(*a).detach())
    assert v.status == "error" and "differentiable" in v.hint
    v = check_greg_penalty(lambda *a: _penalty(*a).reshape(1, 1).expand(2, 1))
    assert v.status == "error" and "scalar" in v.hint


def test_sampler_checker():
    assert check_sampler(reference_two_way_selection).status == "exact"

    def one_way(labels, e, n=1):  # forgets the highest-energy members
        picks = []
        for c in torch.unique(labels):
            members = (labels == c).nonzero().squeeze(1)
            picks += members[e[members].argsort()[:n]].tolist()
        return torch.tensor(picks)

    v = check_sampler(one_way)
    assert v.status == "wrong" and "HIGHEST" in v.hint
    v = check_sampler(lambda labels, e, n=1: e.argsort()[: len(reference_two_way_selection(labels, e, n))])
    assert v.status == "wrong" and "greedy" in v.hint
    assert check_sampler(lambda labels, e, n=1: reference_two_way_selection(labels, e, n).tolist()).ok  # a list is fine
    def mask(labels, e, n=1):
        return torch.zeros(len(labels), dtype=torch.bool).index_fill(0, reference_two_way_selection(labels, e, n), True)

    v = check_sampler(mask)
    assert v.status == "error" and "boolean mask" in v.hint
    v = check_sampler(lambda labels, e, n=1: torch.cat([reference_two_way_selection(labels, e, n)] * 2))
    assert v.status == "error" and "more than once" in v.hint


def test_pick_means_checker():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    e = torch.tensor([1.0, 5.0, 3.0, -2.0, 4.0, 7.0])
    picks = reference_two_way_selection(labels, e)  # [0, 1, 3, 4, 5]; 5 is alone in its cluster: hard
    low, high = (1.0 - 2.0 + 7.0) / 3, (5.0 + 4.0) / 2
    assert check_pick_means(low, high, picks, labels, e).status == "exact"
    assert check_pick_means(torch.tensor(low), np.float64(high), picks.tolist(), labels, e).ok
    v = check_pick_means(high, low, picks, labels, e)
    assert v.status == "wrong" and "swapped" in v.hint
    assert not check_pick_means(low, 0.0, picks, labels, e).ok  # mean_high is checked too
    v = check_pick_means(e[picks].mean().item(), high, picks, labels, e)
    assert v.status == "wrong" and "all your picks" in v.hint
    # the student's own picks count: a one-way selection has no detected picks, so mean_high is NaN
    one_way = torch.tensor([0, 3, 5])
    assert check_pick_means(low, math.nan, one_way, labels, e).ok
    assert not check_pick_means(low, high, one_way, labels, e).ok
    v = check_pick_means(None, high, picks, labels, e)
    assert v.status == "error" and "None" in v.hint


BAD_RETURNS = [  # (student function's return value, words the verdict must contain)
    (lambda *a, **kw: None, "return` statement"),
    (lambda *a, **kw: "0.5", "string"),
    (lambda *a, **kw: {"value": 1}, "not a number"),
]


@pytest.mark.parametrize("check, good", [
    (check_energy, lambda z, T=1.0: energy(z, T)),
    (check_fpr95, lambda a, b: fpr_at_tpr(a, b)),
    (check_sampler, reference_two_way_selection),
    (check_certified_radius, lambda e, t, L, eps=None: certified_radius(e, t, L, eps)),
], ids=["energy", "fpr95", "sampler", "radius"])
def test_checkers_explain_bad_return_values(check, good, capsys):
    assert check(good).ok
    for bad, words in BAD_RETURNS:
        v = check(bad)  # no crash: a verdict that says what is wrong
        assert v.status == "error" and words in v.hint, (words, str(v))
    assert "Traceback" not in capsys.readouterr().out


def test_checkers_explain_wrong_shapes_and_nan():
    v = check_energy(lambda z, T=1.0: energy(z, T)[:, None])
    assert v.status == "wrong" and "(1, 1)" in v.hint and "squeeze" in v.hint
    v = check_energy(lambda z, T=1.0: torch.stack([energy(z, T)] * 2, 1))
    assert v.status == "wrong" and "one value per row" in v.hint
    v = check_certified_radius(lambda e, t, L, eps=None: certified_radius(e, t, L, eps).sum())
    assert v.status == "wrong" and "expected (3,)" in v.hint
    v = check_energy(lambda z, T=1.0: energy(z, T) * torch.nan)
    assert v.status == "wrong" and "NaN" in v.hint
    assert check_fpr95(lambda a, b: np.array([fpr_at_tpr(a, b)])).ok  # one number in an array is fine


def test_checkers_accept_arrays_and_tensors_on_other_devices():
    assert check_energy(lambda z, T=1.0: energy(z, T).numpy()).ok
    assert check_certified_radius(lambda e, t, L, eps=None: certified_radius(e, t, L, eps).tolist()).ok
    v = check_energy(lambda z, T=1.0: energy(z, T).to("meta"))  # a device whose values cannot be read
    assert v.status == "error" and "meta" in v.hint
    if torch.cuda.is_available():
        assert check_energy(lambda z, T=1.0: energy(z.cuda(), T)).ok
        assert check_sampler(lambda labels, e, n=1: reference_two_way_selection(labels, e, n).cuda()).ok


def test_checkers_report_warnings_of_the_student_code():
    def noisy(z, T=1.0):
        warnings.warn("something odd")
        return energy(z, T)

    v = check_energy(noisy)
    assert v.ok and any("something odd" in d and "warning" in d for d in v.details)


def test_certified_radius_checker():
    assert check_certified_radius(lambda e, t, L, eps=None: certified_radius(e, t, L, eps)).status == "exact"
    v = check_certified_radius(lambda e, t, L, eps=None: ((t - e) / torch.as_tensor(L)).clamp_max(eps if eps else math.inf))
    assert v.status == "wrong" and "absolute" in v.hint
    v = check_certified_radius(lambda e, t, L, eps=None: certified_radius(e, t, L))
    assert v.status == "wrong" and "cap" in v.hint
    v = check_certified_radius(lambda e, t, L, eps=None: ((t - e).abs() * torch.as_tensor(L)).clamp_max(eps or math.inf))
    assert v.status == "wrong" and "divide" in v.hint


# ------------------------------------------------------------ release

@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_release_hides_solutions_and_hidden_tests(src):
    source = nbformat.read(src, as_version=4)
    student = nbformat.read(RELEASE_DIR / src.name, as_version=4)
    text = "\n".join(c.source for c in student.cells)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    secret, outside = [], []
    for c in source.cells:
        for block in re.findall(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END", c.source, re.S):
            secret += [ln.strip() for ln in block.splitlines() if len(ln.strip()) > 12 and "HINT" not in ln]
        outside += re.sub(r"### BEGIN (SOLUTION|HIDDEN TESTS).*?### END \1", "", c.source, flags=re.S).splitlines()
    visible = {ln.strip() for ln in outside}
    secret = [ln for ln in secret if ln not in visible]  # a line that is also in a visible cell is no secret
    assert secret, "the source marks no solution"
    for line in secret:
        assert line not in text, f"solution text leaked into the student version: {line}"
    # every graded code cell keeps a visible test
    for c in student.cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            assert "assert" in c.source
    assert "raise NotImplementedError" in text


def test_release_check_detects_stale_versions(tmp_path):
    assert release_all(RELEASE_DIR, SOURCE_DIR, check=True) == [], "run: python -m gregnb.homework release"
    shutil.copytree(RELEASE_DIR, tmp_path / "rel", ignore=shutil.ignore_patterns("source", "*.md"))
    stale = tmp_path / "rel" / SOURCES[0].name
    stale.write_text(stale.read_text().replace("Homework 1", "Homework one"))
    assert release_all(tmp_path / "rel", SOURCE_DIR, check=True) == [SOURCES[0].name]
    assert release_all(tmp_path / "rel", SOURCE_DIR) == [SOURCES[0].name]
    assert release_all(tmp_path / "rel", SOURCE_DIR, check=True) == []


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_release_locks_cells_like_nbgrader(src):
    """nbgrader's LockCells: answer cells cannot be deleted; tests and other locked cells can be neither
    deleted nor edited in JupyterLab; free cells stay free."""
    student = nbformat.read(RELEASE_DIR / src.name, as_version=4)
    kinds = set()
    for c in student.cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("solution"):
            kinds.add("answer")
            assert c.metadata.get("deletable") is False and "editable" not in c.metadata
        elif meta.get("grade") or meta.get("locked"):
            kinds.add("locked")
            assert c.metadata.get("deletable") is False and c.metadata.get("editable") is False
        else:
            assert "deletable" not in c.metadata and "editable" not in c.metadata
    assert kinds == {"answer", "locked"}


def test_release_unlocks_a_cell_that_is_no_longer_locked():
    cell = nbformat.v4.new_code_cell("x = 1", metadata={"deletable": False, "editable": False,
                                                          "nbgrader": {"grade_id": "a", "locked": False}})
    out = release_notebook(nbformat.v4.new_notebook(cells=[cell])).cells[0]
    assert "deletable" not in out.metadata and "editable" not in out.metadata


def test_homework_tools_do_not_import_nbformat_at_import_time():
    code = ("import sys, gregnb.homework, gregnb.homework.release, gregnb.homework.grade, gregnb.homework.__main__; "
            "assert 'nbformat' not in sys.modules and 'nbclient' not in sys.modules, 'imported at import time'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_later_questions_do_not_compare_with_the_library():
    """A mistake in an early question must not cost points again later, and HW1's visible test must not
    give away the sign: the later tests use the student's own functions."""
    hw1 = nbformat.read(RELEASE_DIR / "hw1_energy_and_metrics.ipynb", as_version=4)
    (q3,) = [c for c in hw1.cells if c.metadata["nbgrader"]["grade_id"] == "q3_tests"]
    assert "fpr_at_tpr" not in q3.source and "gregnb" not in q3.source and "my_fpr95(" in q3.source
    for name, gid, own in (("hw1_energy_and_metrics", "q3_tests", "my_fpr95("),
                           ("hw3_energy_sampling", "q2_tests", "my_two_way_selection("),
                           ("hw4_certified_radius", "q2_tests", "my_certified_radius("),
                           ("hw5_validation_study", "q3_tests", "(chosen_greg, chosen_energy)"),
                           ("hw6_gregplus_step", "q2_tests", "check_gregplus_step(gregplus_step, select_picks)")):
        source = nbformat.read(SOURCE_DIR / f"{name}.ipynb", as_version=4)
        (cell,) = [c for c in source.cells if c.metadata["nbgrader"]["grade_id"] == gid]
        assert own in cell.source, name


def test_release_keeps_indentation_and_hint():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "def f(x):\n    ### BEGIN SOLUTION\n    # HINT: add one\n    return x + 1\n    ### END SOLUTION\n")])
    out = release_notebook(nb).cells[0].source
    assert out == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError('Hint: add one')"


# ------------------------------------------------------------ execution

def _execute(path: Path):
    nb = nbformat.read(path, as_version=4)
    return nb, lambda: execute_notebook(nb, path.parent, timeout=600)


@pytest.mark.notebook
@pytest.mark.parametrize("path", [RELEASE_DIR / p.name for p in SOURCES], ids=lambda p: p.name)
def test_student_version_runs_until_the_first_stub(path):
    nb, run = _execute(path)
    with pytest.raises(CellExecutionError) as info:
        run()
    assert "NotImplementedError" in str(info.value)
    errors = [(i, o) for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1 and errors[0][1]["ename"] == "NotImplementedError"
    i = errors[0][0]
    # it is the first question: its stub cell, or the test cell right after the first stub
    first_stub = next(j for j, c in enumerate(nb.cells) if c.cell_type == "code" and "raise NotImplementedError" in c.source)
    assert i in (first_stub, first_stub + 1)
    assert "Hint:" in errors[0][1]["evalue"] or "replace" in errors[0][1]["evalue"]


# ------------------------------------------------------------ grading without nbgrader

def _cell(kind: str, src: str, gid: str, *, grade=False, solution=False, locked=False, points=None):
    meta = {"grade": grade, "grade_id": gid, "locked": locked, "schema_version": 3, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    return make(src, metadata={"nbgrader": meta})


def _toy_source():
    """A small homework: one function, a test cell with a hidden test, a test cell that needs the set-up
    cell, and a written answer (2 + 1 auto-graded points, 2 by hand)."""
    return nbformat.v4.new_notebook(cells=[
        _cell("markdown", "# Toy homework", "intro", locked=True),
        _cell("code", "BASE = 1", "setup", locked=True),
        _cell("code", "def add(a, b):\n    ### BEGIN SOLUTION\n    # HINT: use +\n    return a + b\n    ### END SOLUTION",
              "q1_solution", solution=True),
        _cell("code", "assert add(1, 2) == 3\n### BEGIN HIDDEN TESTS\nassert add(-1, 1) == 0\n### END HIDDEN TESTS",
              "q1_tests", grade=True, locked=True, points=2),
        _cell("code", "assert add(BASE, 1) == 2", "q2_tests", grade=True, locked=True, points=1),
        _cell("markdown", "### BEGIN SOLUTION\nBecause.\n### END SOLUTION", "q3_answer", grade=True, solution=True,
              points=2),
    ])


def _answer(nb, body: str):
    nb = nbformat.from_dict(nb)
    for c in nb.cells:
        if c.metadata["nbgrader"]["grade_id"] == "q1_solution":
            c.source = "def add(a, b):\n" + body
    return nb


def _drop(nb, *gids):
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] not in gids]
    return nb


@pytest.fixture(scope="module")
def toy_course(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    (root / "source").mkdir()
    nbformat.write(_toy_source(), root / "source" / "toy.ipynb")
    handout = release_notebook(_toy_source())
    tampered = _answer(handout, "    return a * b")
    for c in tampered.cells:
        if c.metadata["nbgrader"]["grade_id"] == "q1_tests":
            c.source, c.metadata["nbgrader"]["points"] = "pass", 100  # a student "fixes" the test and its points
    subs = {
        "good": _answer(handout, "    return a + b"),
        "blank": handout,
        "visible_only": _answer(handout, "    return a + b if a > 0 else 7"),  # fails the hidden test only
        "tampered": tampered,
        "deleted": _drop(_answer(handout, "    return a + b"), "setup", "q2_tests", "q3_answer"),
        "stderr": _answer(handout, "    import sys\n    print('debug', file=sys.stderr)\n    return a + b"),
    }
    for name, nb in subs.items():
        (root / name).mkdir()
        nbformat.write(nb, root / name / "toy.ipynb")
    return root


def _points(report) -> dict:
    return {q.grade_id: q.points for q in report.questions}


@pytest.mark.slow
def test_grade_scores_like_nbgrader(toy_course):
    src = toy_course / "source"
    r = grade_notebook(toy_course / "good" / "toy.ipynb", src)
    assert _points(r) == {"q1_tests": 2, "q2_tests": 1, "q3_answer": None}
    assert (r.auto_points, r.auto_max, r.manual_max, r.restored) == (3, 3, 2, [])
    r = grade_notebook(toy_course / "blank" / "toy.ipynb", src)
    assert r.auto_points == 0 and "NotImplementedError: Hint: use +" in r.questions[0].note
    r = grade_notebook(toy_course / "visible_only" / "toy.ipynb", src)
    assert _points(r) == {"q1_tests": 0, "q2_tests": 1, "q3_answer": None}  # the hidden test ran
    r = grade_notebook(toy_course / "tampered" / "toy.ipynb", src)
    assert r.auto_points == 0 and r.auto_max == 3 and r.restored == ["q1_tests"]
    r = grade_notebook(toy_course / "deleted" / "toy.ipynb", src)  # deleted cells come back (the answer unanswered)
    assert _points(r) == {"q1_tests": 2, "q2_tests": 1, "q3_answer": None}
    assert sorted(r.restored) == ["q2_tests", "q3_answer", "setup"]
    r = grade_notebook(toy_course / "stderr" / "toy.ipynb", src)  # nbgrader's rule: stderr in a test cell scores 0
    assert r.auto_points == 0 and "stderr" in r.questions[0].note


def test_grade_command(toy_course, tmp_path, capsys):
    subs = [str(toy_course / name / "toy.ipynb") for name in ("good", "visible_only")]
    rc = homework_cli(["grade", "--source", str(toy_course / "source"), "--csv", str(tmp_path / "g.csv"), *subs])
    out = capsys.readouterr().out
    assert rc == 0
    assert "auto-graded 3 / 3; written answers to grade by hand: q3_answer (2); total 3 / 5 before them" in out
    assert "auto-graded 1 / 3" in out and "2 submissions: auto-graded 4 / 6" in out
    rows = list(csv.DictReader(open(tmp_path / "g.csv")))
    assert [(r["question"], r["kind"], r["points"], r["max_points"]) for r in rows[:3]] == [
        ("q1_tests", "auto", "2", "2"), ("q2_tests", "auto", "1", "1"), ("q3_answer", "manual", "", "2")]
    # bad input: clear errors before anything runs
    assert homework_cli(["grade", "--source", str(toy_course / "source"), str(tmp_path / "nope.ipynb")]) == 2
    assert "no such submission file" in capsys.readouterr().out
    (tmp_path / "hw9.ipynb").write_text("{}")
    assert homework_cli(["grade", "--source", str(toy_course / "source"), str(tmp_path / "hw9.ipynb")]) == 2
    assert "no source notebook hw9.ipynb" in (err := capsys.readouterr().out) and "(found: toy.ipynb)" in err
    assert homework_cli(["grade", "--source", str(tmp_path / "missing"), subs[0]]) == 2
    assert "--source" in capsys.readouterr().out
    (tmp_path / "toy.ipynb").write_text("not json")
    assert homework_cli(["grade", "--source", str(toy_course / "source"), str(tmp_path / "toy.ipynb")]) == 1
    assert "not a readable notebook" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        homework_cli(["grade", "--timeout", "0", subs[0]])


def test_score_cell_rules():
    def cell(*outputs, ran=True):
        c = nbformat.v4.new_code_cell("x", metadata={"nbgrader": {"grade": True, "points": 4, "grade_id": "t"}})
        c.outputs, c.execution_count = [nbformat.from_dict(o) for o in outputs], 1 if ran else None
        return c

    assert score_cell(cell()) == (4.0, "")
    assert score_cell(cell({"output_type": "stream", "name": "stdout", "text": "fine"}))[0] == 4.0
    assert score_cell(cell({"output_type": "stream", "name": "stderr", "text": "UserWarning: x"}))[0] == 0.0
    assert score_cell(cell({"output_type": "error", "ename": "AssertionError", "evalue": "", "traceback": []}))[0] == 0
    result = {"output_type": "execute_result", "execution_count": 1, "metadata": {}, "data": {"text/plain": "2.5"}}
    assert score_cell(cell(result)) == (2.5, "partial credit from the cell's result")
    assert score_cell(cell(ran=False))[0] == 0.0


def test_prepare_keeps_added_cells_and_drops_unknown_ids():
    student = _answer(release_notebook(_toy_source()), "    return a + b")
    student.cells.insert(3, nbformat.v4.new_code_cell("def helper():\n    return 1"))
    student.cells.append(_cell("code", "print('mine')", "my_own_id", grade=True, points=50))
    nb, restored = prepare(student, _toy_source())
    assert "def helper" in nb.cells[3].source and restored == []
    assert "nbgrader" not in nb.cells[-1].metadata  # no extra points from a made-up grade cell
    assert "assert add(-1, 1) == 0" in "\n".join(c.source for c in nb.cells)  # hidden test restored


@pytest.mark.notebook
def test_hw4_question_2_fails_without_an_attack(tmp_path):
    """HW4 Q2 can fail: a count_flips that attacks nothing scores 0 there (Q1 keeps its points)."""
    student = nbformat.read(RELEASE_DIR / "hw4_certified_radius.ipynb", as_version=4)
    source = nbformat.read(SOURCE_DIR / "hw4_certified_radius.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells if c.metadata["nbgrader"]["solution"]}
    for c in student.cells:
        gid = c.metadata["nbgrader"]["grade_id"]
        if gid == "q1_solution":
            c.source = answers[gid]
        elif gid == "q2_solution":
            c.source = "def count_flips(radii):\n    return 0\n\n\nn_global = n_point = 0"
    nbformat.write(student, tmp_path / "hw4_certified_radius.ipynb")
    r = grade_notebook(tmp_path / "hw4_certified_radius.ipynb", SOURCE_DIR)
    assert _points(r) == {"q1_tests": 3, "q2_tests": 0, "q3_answer": None}, r.questions
