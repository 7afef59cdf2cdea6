"""Every chapter exercise is followed by a worked solution to reveal, every checkable one has a harmless template in
its notebook, and each checker accepts a right answer (computed here independently) and rejects a planted wrong one."""
import json
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from gregnb.homework.exercises import EXERCISES, check_exercise

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXERCISE = re.compile(r"\*\*Exercise(?: (\d+))?\.\*\*")
SOLUTION = "<details><summary>Solution (try first)</summary>"
MIN_EXERCISES = 31   # the chapters' exercises when every one got its solution: fewer means one was lost


def _exercises(path):
    """(cell index, exercise number or None for an in-section one, index of the next markdown cell) per exercise."""
    cells = nbformat.read(path, as_version=4).cells
    out = []
    for i, c in enumerate(cells):
        if c.cell_type == "markdown" and (m := EXERCISE.search(c.source)):
            nxt = next((j for j in range(i + 1, len(cells)) if cells[j].cell_type == "markdown"), None)
            out.append((i, m.group(1), nxt))
    return cells, out


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name[:2])
def test_every_exercise_is_followed_by_its_solution(path):
    cells, found = _exercises(path)
    if path.name.startswith("00"):
        assert not found
        return
    assert found, f"{path.name} has no exercise cells"
    for i, num, nxt in found:
        assert nxt is not None and cells[nxt].source.startswith(SOLUTION), (
            f"{path.name} cell {i} (exercise {num or 'in the text'}): the next Markdown cell is not a solution block")
        body = cells[nxt].source
        assert body.rstrip().endswith("</details>") and "\n\n" in body[:len(SOLUTION) + 2], (
            f"{path.name} cell {nxt}: a solution needs a blank line after <summary> (so its Markdown renders) and "
            "must end with </details>")
    solutions = [c for c in cells if c.cell_type == "markdown" and SOLUTION in c.source]
    assert len(solutions) == len(found), f"{path.name}: {len(found)} exercises but {len(solutions)} solutions"
    numbers = [int(n) for _, n, _ in found if n]
    assert numbers == list(range(1, len(numbers) + 1)), f"{path.name}: exercises numbered {numbers}"
    listed = [c.source for c in cells if c.cell_type == "markdown" and "## Exercises" in c.source]
    assert len(listed) == 1 and not re.search(r"^\d+\. ", listed[0].split("## Exercises")[1], flags=re.M), (
        f"{path.name}: an exercise left in the list under '## Exercises' has no solution block; give it a cell")


def test_no_exercise_went_missing():
    total = sum(len(_exercises(p)[1]) for p in CHAPTERS)
    assert total >= MIN_EXERCISES, f"only {total} chapter exercises (with solutions) left; expected {MIN_EXERCISES}"


def test_every_checker_has_a_harmless_template_under_its_exercise():
    seen = {}
    for path in CHAPTERS:
        cells, found = _exercises(path)
        for i, num, _ in found:
            if num is None:
                continue
            key = f"{path.name[:2]}.{num}"
            code = cells[i + 1] if i + 1 < len(cells) else None
            has_template = code is not None and code.cell_type == "code" and f'check_exercise("{key}", None)' in code.source
            assert has_template == (key in EXERCISES), (
                f"{path.name} exercise {num}: " + ("its checker's template cell (check_exercise(..., None)) is missing"
                                                   if key in EXERCISES else "a template cell for an exercise without a checker"))
            seen[key] = True
            if key in EXERCISES:
                assert f"`check_exercise(\"{key}\", ...)`" in cells[i].source
    assert set(EXERCISES) <= set(seen), f"checkers without an exercise: {sorted(set(EXERCISES) - set(seen))}"


def test_blank_template_says_not_answered_yet(capsys):
    for key in EXERCISES:
        assert check_exercise(key, None) is None
        assert f"Exercise {key}" in capsys.readouterr().out and True


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="no checkable exercise"):
        check_exercise("03.9", 1.0)
    with pytest.raises(ValueError, match="no checkable exercise"):
        check_exercise(3.2, 1.0)
    with pytest.raises(TypeError, match="expects a function"):
        check_exercise("01.1", 0.5)
    with pytest.raises(TypeError, match="one number"):
        check_exercise("01.4", lambda K, T: T * math.log(K))
    with pytest.raises(TypeError, match="one number"):
        check_exercise("07.1", torch.ones(3))
    with pytest.raises(TypeError, match="one number"):
        check_exercise("07.1", "1")
    assert check_exercise("07.1", torch.tensor(1.0)).ok and check_exercise("07.1", np.float32(1.0)).ok


def test_a_function_that_returns_nonsense_gets_an_error_verdict():
    v = check_exercise("02.5", lambda t, p: None)
    assert v.status == "error" and "return" in v.hint
    v = check_exercise("02.5", lambda t, p: torch.cdist(t, p))
    assert v.status == "wrong" and "shape" in v.hint
    v = check_exercise("04.2", lambda model, x, n_id, t_in, t_out: torch.tensor(1.0))
    assert v.status == "error" and "differentiable" in v.hint


# ---- each checker: a right answer computed here independently passes, a planted wrong one fails ------------------

def auroc_pairs(a, b):                 # independent: scikit-learn
    from sklearn.metrics import roc_auc_score

    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(roc_auc_score(np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b]))


def nearest_loop(t, p):                # independent: SciPy's distance matrix
    from scipy.spatial.distance import cdist

    return torch.from_numpy(cdist(t.numpy(), p.numpy()).min(axis=1))


def ratio_n(n_id, n_ood):              # the derivation: the number of rows
    return n_id + n_ood


def fd_norm(f, x, h=1e-5):             # independent: forward differences, one coordinate at a time
    base, flat, parts = f(x.unsqueeze(0)).item(), x.reshape(-1), []
    for j in range(len(flat)):
        y = flat.clone()
        y[j] += h
        parts.append((f(y.reshape(1, *x.shape)).item() - base) / h)
    return float(np.linalg.norm(parts))


def msp_penalty_jacobian(model, x, n_id, t_in, t_out):   # independent: torch.func per-sample gradients
    from torch.func import grad, vmap

    x = x.detach().requires_grad_(True)

    def msp_one(xi):
        return torch.softmax(model(xi.unsqueeze(0)), 1).amax()

    p = torch.softmax(model(x), 1).amax(1)
    g = vmap(grad(msp_one))(x)
    mask = torch.cat([p[:n_id] >= t_in, p[n_id:] <= t_out]).to(x.dtype)
    norms = (g.flatten(1).norm(dim=1) * mask)
    # the weights' graph: the penalty must be differentiable, so rebuild it through autograd with create_graph
    (g2,) = torch.autograd.grad((mask * p).sum(), x, create_graph=True)
    assert torch.allclose(g2.flatten(1).norm(dim=1) * mask, norms, atol=1e-10)
    n2 = g2.flatten(1).norm(dim=1)
    return n2[:n_id].mean() + n2[n_id:].mean()


def radius_by_bisection(w, b, x, threshold):   # independent: walk along the worst direction until E crosses
    out = []
    for xi in x:
        e0 = -(xi @ w + b)
        d = w / w.norm() * (1 if e0 <= threshold else -1)   # the direction that moves E toward the threshold
        lo, hi = 0.0, 1e3
        for _ in range(200):
            mid = (lo + hi) / 2
            e = -((xi - mid * d) @ w + b)
            crossed = (e > threshold) if e0 <= threshold else (e < threshold)
            lo, hi = (lo, mid) if crossed else (mid, hi)
        out.append(lo)
    return torch.tensor(out, dtype=torch.float64)


def energy_gradient_penalty(model, x, n_id, t_in, t_out):   # the typical mistake: the energy's gradient, MSP masks
    from gregnb.scores import energy

    x = x.detach().requires_grad_(True)
    z = model(x)
    p = torch.softmax(z, 1).amax(1)
    mask = torch.cat([p[:n_id] >= t_in, p[n_id:] <= t_out]).to(x.dtype)
    (g,) = torch.autograd.grad((mask * energy(z)).sum(), x, create_graph=True)
    n = g.flatten(1).norm(dim=1)
    return n[:n_id].mean() + n[n_id:].mean()


RIGHT = {"01.1": auroc_pairs, "01.4": math.log(10), "02.5": nearest_loop, "03.1": ratio_n, "03.2": fd_norm,
         "04.2": msp_penalty_jacobian, "07.1": 1.0, "07.2": radius_by_bisection}
WRONG = {"01.1": lambda a, b: 1 - auroc_pairs(a, b), "01.4": math.log10(10), "02.5": lambda t, p: nearest_loop(t, p) ** 2,
         "03.1": lambda n_id, n_ood: n_id, "03.2": lambda f, x: 2 * fd_norm(f, x),
         "04.2": energy_gradient_penalty, "07.1": math.sqrt(10),
         "07.2": lambda w, b, x, t: radius_by_bisection(w, b, x, t) * w.norm() / w.norm() ** 2}


def test_every_checker_is_tested():
    assert set(RIGHT) == set(EXERCISES) == set(WRONG)


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_checker_accepts_the_right_answer_and_rejects_a_wrong_one(key):
    assert check_exercise(key, RIGHT[key]).ok
    wrong = check_exercise(key, WRONG[key])
    assert wrong.status == "wrong" and wrong.hint, (key, wrong)


def test_lse_is_one_lipschitz_and_no_less():   # 06.1's expected value, measured: sup of ‖softmax‖ is 1
    z = torch.randn(20000, 10, dtype=torch.float64) * torch.logspace(-2, 2, 20000, dtype=torch.float64)[:, None]
    norms = torch.softmax(z, 1).norm(dim=1)
    assert norms.max() <= 1 and norms.max() > 0.999


def test_the_linear_radius_is_what_the_sound_bounds_give():   # 06.2's claim: global, IBP and CROWN are exact
    from gregnb.certify import sound_radius

    torch.manual_seed(0)
    lin = torch.nn.Sequential(torch.nn.Linear(3, 1))
    xs = torch.randn(6, 3)
    thr = float(-lin(xs).median().detach())
    exact = radius_by_bisection(lin[0].weight[0].detach().double(), lin[0].bias.item(), xs.double(), thr)
    for method in ("global", "ibp", "crown"):
        r = sound_radius(lin, xs, thr, method=method, eps_max=10.0).double()
        assert (r <= exact + 1e-6).all() and torch.allclose(r, exact, rtol=0.03, atol=1e-4), method


# ---- every worked solution states what the student should find (issue 32) ----------------------------------------
EXPECTED = "**Expected outcome.**"
_CITED = re.compile(r"\[([a-z0-9]+(?:-[a-z0-9]+)+)\]")
_CHECKER = re.compile(r"check_exercise\(\s*\\?[\"']([^\"'\\]+)\\?[\"']")
_CODE_IDS = (re.compile(r"add_(?:check|comparison|paired)\(\s*\"([a-z0-9]+(?:-[a-z0-9]+)+)\""),   # add_check("id", ...)
             re.compile(r"\(\s*\"([a-z0-9]+(?:-[a-z0-9]+)+)\"\s*,"),     # ("id", table, ...) in a list looped over
             re.compile(r"\"([a-z0-9]+(?:-[a-z0-9]+)+)\"\s*:\s*\("))     # {"id": (table, ...)} looped over


def chapter_claim_ids(path) -> set[str]:
    """The claim ids a chapter's code makes: its committed record's (``notebooks/findings/NN.json``, which holds the
    ids built by f-strings too) when there is one, else the literal ids in its code cells."""
    record = ROOT / "notebooks" / "findings" / f"{path.name[:2]}.json"
    if record.exists():
        return {c["id"] for c in json.loads(record.read_text())["claims"]}
    code = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    return {m for pattern in _CODE_IDS for m in pattern.findall(code)}


def solution_problems(cells, claim_ids, name="chapter") -> list[str]:
    """What is wrong with a chapter's solution cells: a solution without its expected-outcome paragraph (before
    </details>), a cited [claim-id] the chapter's code does not make, a check_exercise id that has no checker."""
    problems = []
    for i, c in enumerate(cells):
        if c.cell_type != "markdown" or not c.source.startswith(SOLUTION):
            continue
        body = c.source.rsplit("</details>", 1)[0]
        if not re.search(r"(?:^|\n)" + re.escape(EXPECTED), body):
            problems.append(f"{name} cell {i}: no paragraph starting {EXPECTED!r} (what the student should find)")
        unknown = sorted(set(_CITED.findall(c.source)) - claim_ids)
        if unknown:
            problems.append(f"{name} cell {i}: cites claims the chapter does not make: {unknown}")
        missing = sorted(set(_CHECKER.findall(c.source)) - set(EXERCISES))
        if missing:
            problems.append(f"{name} cell {i}: names checkers that do not exist: {missing}")
    return problems


@pytest.mark.parametrize("path", [p for p in CHAPTERS if not p.name.startswith("00")], ids=lambda p: p.name[:2])
def test_every_solution_states_its_expected_outcome(path):
    cells = nbformat.read(path, as_version=4).cells
    assert any(c.cell_type == "markdown" and c.source.startswith(SOLUTION) for c in cells), f"{path.name}: no solutions"
    problems = solution_problems(cells, chapter_claim_ids(path), path.name)
    assert not problems, "\n".join(problems)


def test_the_expected_outcome_check_catches_planted_solutions():
    md = nbformat.v4.new_markdown_cell
    good = md(f"{SOLUTION}\n\nThe working.\n\n{EXPECTED} `check_exercise(\"01.1\", ...)` prints *exact*; read the "
              "verdict of [toy-energy-beats-msp].\n\n</details>")
    assert solution_problems([md("**Exercise 1.** Do it."), good], {"toy-energy-beats-msp"}) == []
    planted = {"no paragraph": f"{SOLUTION}\n\nThe working, and nothing the student can check against.\n\n</details>",
               "only after </details>": f"{SOLUTION}\n\nThe working.\n\n</details>\n\n{EXPECTED} too late",
               "mentioned mid-line": f"{SOLUTION}\n\nThere is no {EXPECTED} paragraph here.\n\n</details>",
               "unknown claim": f"{SOLUTION}\n\n{EXPECTED} Read [no-such-claim].\n\n</details>",
               "unknown checker": f"{SOLUTION}\n\n{EXPECTED} `check_exercise(\"01.9\", ...)` prints *exact*.\n\n</details>"}
    for what, source in planted.items():
        assert len(solution_problems([md(source)], {"toy-energy-beats-msp"})) == 1, what
