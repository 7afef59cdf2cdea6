"""One gradient weight across the chapters: the digits weight chapter 04 selects on its validation OOD set is one
named constant (gregnb.presets.DIGITS_LAMBDA_GRAD), equal to the selection in chapter 04's committed findings
record, and the digits presets and chapters 05 and 07 take their GReg / GReg+ weight from it (lambda_grad = 1 only
on a row labelled "paper's equation")."""
import json
import re
from pathlib import Path

import nbformat
import pytest

from gregnb.presets import DIGITS_LAMBDA_GRAD, PRESETS

ROOT = Path(__file__).resolve().parent.parent
RECORD = ROOT / "notebooks" / "findings" / "04.json"
#: the claim of chapter 04's record that holds the weight it selected, and the number's name
SELECTION = ("validation-selects-a-gradient-term", "selected λ∇")
CHAPTERS = ("05_energy_based_sampling.ipynb", "07_lipschitz_and_certified_robustness.ipynb")


def recorded_selection(record: dict) -> float:
    claims = {c["id"]: c for c in record["claims"]}
    cid, name = SELECTION
    assert cid in claims, f"chapter 04's record has no claim {cid!r}: it must record the weight it selects"
    number = claims[cid]["numbers"][name]
    assert number["std"] == 0 and number["n"] == 1, "the selection is one choice, not a mean over seeds"
    return float(number["mean"])


def test_the_digits_weight_is_chapter_04s_recorded_selection():
    record = json.loads(RECORD.read_text())
    assert record["mode"] == "normal"
    assert recorded_selection(record) == pytest.approx(DIGITS_LAMBDA_GRAD, abs=1e-9), (
        "chapter 04's committed record selects another weight than gregnb.presets.DIGITS_LAMBDA_GRAD: "
        "set the constant to the recorded selection")


def test_the_check_would_catch_a_drift():
    record = json.loads(RECORD.read_text())
    for c in record["claims"]:
        if c["id"] == SELECTION[0]:
            c["numbers"][SELECTION[1]]["mean"] = DIGITS_LAMBDA_GRAD * 10
    assert recorded_selection(record) != pytest.approx(DIGITS_LAMBDA_GRAD)


def test_the_digits_presets_use_the_constant():
    for name in ("digits-greg", "digits-gregplus"):
        assert PRESETS[name]["lambda_grad"] == DIGITS_LAMBDA_GRAD
        assert PRESETS[name].get("convention", "paper") == "paper"


def _calls(src: str):
    """Each ``dict(method="greg"...)`` / ``dict(method="greg+"...)`` call in ``src`` with its source line."""
    for m in re.finditer(r'dict\(method="greg\+?"', src):
        depth, i = 0, m.start() + len("dict")
        while True:
            depth += {"(": 1, ")": -1}.get(src[i], 0)
            if depth == 0:
                break
            i += 1
        line = src[src.rfind("\n", 0, m.start()) + 1:src.find("\n", i) if src.find("\n", i) >= 0 else len(src)]
        yield src[m.start():i + 1], line


def weight_problems(src: str) -> list[str]:
    """GReg / GReg+ rows that do not take chapter 04's weight: no explicit lambda_grad (the default, 1, is the
    paper's equation at a weight chapter 04 rejects), or a number other than 0 on a row not labelled
    "paper's equation"."""
    problems = []
    for call, line in _calls(src):
        m = re.search(r"lambda_grad\s*=\s*([^,)]+)", call)
        if m is None:
            problems.append(f"no lambda_grad: {call}")
            continue
        value = m.group(1).strip()
        if re.fullmatch(r"[\d.]+", value) and float(value) != 0 and "paper's equation" not in line:
            problems.append(f"lambda_grad={value} on a row not labelled \"paper's equation\": {line.strip()}")
    return problems


def test_the_scanner_catches_a_row_off_the_chosen_weight():
    assert weight_problems('rows = {"GReg": dict(method="greg")}')
    assert weight_problems('rows = {"GReg+": dict(method="greg+", two_way=False, lambda_grad=1.0)}')
    fine = ('rows = {"GReg": dict(method="greg", lambda_grad=lam), "control": dict(method="greg+", lambda_grad=0.0),\n'
            '        "GReg · paper\'s equation, λ∇ = 1": dict(method="greg", lambda_grad=1.0)}')
    assert weight_problems(fine) == []


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapters_05_and_07_train_gregs_at_the_chosen_weight(name):
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    fenced = "\n".join(re.findall(r"```python\n(.*?)```", "\n".join(c.source for c in nb.cells
                                                                  if c.cell_type == "markdown"), flags=re.S))
    assert "DIGITS_LAMBDA_GRAD" in code, f"{name} does not read the weight from gregnb.presets.DIGITS_LAMBDA_GRAD"
    problems = weight_problems(code + "\n" + fenced)
    assert not problems, f"{name}: {problems}"
