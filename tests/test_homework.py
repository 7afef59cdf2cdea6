"""Homework: checkers accept the reference and catch typical mistakes; release hides solutions;
source notebooks pass their tests; student notebooks run up to the first stub."""
import math
import re
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from gregnb.homework import (check_certified_radius, check_energy, check_fpr95, check_greg_penalty,
                             check_sampler)
from gregnb.homework.checkers import reference_two_way_selection
from gregnb.homework.release import RELEASE_DIR, SOURCE_DIR, release_all, release_notebook
from gregnb.lipschitz import certified_radius
from gregnb.losses import greg_penalty
from gregnb.metrics import fpr_at_tpr
from gregnb.scores import energy

SOURCES = sorted(SOURCE_DIR.glob("*.ipynb"))


def test_there_are_four_assignments():
    assert [p.name[:3] for p in SOURCES] == ["hw1", "hw2", "hw3", "hw4"]


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
    assert v.status == "error" and "differentiable" in v.failing_case


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


def test_release_keeps_indentation_and_hint():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "def f(x):\n    ### BEGIN SOLUTION\n    # HINT: add one\n    return x + 1\n    ### END SOLUTION\n")])
    out = release_notebook(nb).cells[0].source
    assert out == "def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError('Hint: add one')"


# ------------------------------------------------------------ execution

def _execute(path: Path):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    return nb, client


@pytest.mark.notebook
@pytest.mark.parametrize("path", [RELEASE_DIR / p.name for p in SOURCES], ids=lambda p: p.name)
def test_student_version_runs_until_the_first_stub(path):
    nb, client = _execute(path)
    with pytest.raises(CellExecutionError) as info:
        client.execute()
    assert "NotImplementedError" in str(info.value)
    errors = [(i, o) for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1 and errors[0][1]["ename"] == "NotImplementedError"
    i = errors[0][0]
    # it is the first question: its stub cell, or the test cell right after the first stub
    first_stub = next(j for j, c in enumerate(nb.cells) if c.cell_type == "code" and "raise NotImplementedError" in c.source)
    assert i in (first_stub, first_stub + 1)
    assert "Hint:" in errors[0][1]["evalue"] or "replace" in errors[0][1]["evalue"]
