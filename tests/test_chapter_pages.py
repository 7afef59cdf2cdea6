"""The chapters as a reader sees them, checked without running them: the FAST/normal difference stated once per
chapter (a settings cell), no cell whose last line shows a bookkeeping or plotting repr, messages that name the
data folder portably, and each chapter's stated run time taken from its committed record.
``tests/test_site.py`` checks the executed pages themselves."""
import ast
import re
from pathlib import Path

import nbformat
import pytest

from gregnb.config import display_path
from gregnb.findings import load_record

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _code(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


# ---- the FAST/normal difference, once per chapter --------------------------------------------------------------
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name[:2])
def test_fast_settings_are_stated_once_near_the_top(path):
    cells = _code(path)
    users = [i for i, c in enumerate(cells, 1) if re.search(r"\bpick\(", c.source)]
    if not users:
        return                                          # a chapter with no FAST-specific setting
    settings = [i for i, c in enumerate(cells, 1) if c.source.startswith("# Settings:")]
    assert users == settings and settings[0] <= 3, (
        f"{path.name}: pick(...) is called in code cells {users}; state every FAST/normal difference once, as a named "
        f"setting in the settings cell near the top (code cell 2, starting '# Settings:'), and use the names below")
    for line in cells[settings[0] - 1].source.splitlines():
        if re.match(r"[A-Z_]+ = pick\(", line):
            assert "  # " in line, f"{path.name}: the setting {line.split('=')[0].strip()} needs a comment saying what it is"


# ---- no repr left as a cell's last expression ------------------------------------------------------------------
#: calls whose return value Jupyter would show (a matplotlib artist, or a findings claim before they returned None)
SHOWS_A_REPR = {"set_title", "set_xlabel", "set_ylabel", "set_xlim", "set_ylim", "set_xscale", "set_yscale", "plot",
                "legend", "scatter", "hist", "bar", "barh", "imshow", "text", "annotate", "axhline", "axvline",
                "axvspan", "fill_between", "colorbar", "suptitle", "title", "xlabel", "ylabel", "contour", "contourf",
                "errorbar", "step", "add", "add_check", "add_paired"}


def last_call_shown(source: str) -> str | None:
    """The method a cell ends on when Jupyter would display its return value (no trailing ';'), else None."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if not tree.body or source.rstrip().endswith(";") or not isinstance(tree.body[-1], ast.Expr):
        return None
    call = tree.body[-1].value
    return call.func.attr if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) else None


def test_last_call_shown_reads_cells_as_jupyter_does():
    assert last_call_shown("fig, ax = plt.subplots()\nax.set_title('x')") == "set_title"
    assert last_call_shown("ax.set_title('x');") is None
    assert last_call_shown("_ = ax.plot(x)") is None
    assert last_call_shown("found.add_check('a', 'b', True,\n                {})") == "add_check"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name[:2])
def test_no_cell_ends_on_a_call_that_shows_a_repr(path):
    bad = [(i, name) for i, c in enumerate(_code(path), 1) if (name := last_call_shown(c.source)) in SHOWS_A_REPR
           and not name.startswith("add")]          # Findings.add* return None: nothing shows
    assert not bad, f"{path.name}: code cells ending on a call whose repr Jupyter shows (end them with ';'): {bad}"


def test_findings_calls_show_nothing():
    from gregnb.findings import Findings, Number

    found = Findings("99", fast=True)
    assert found.add_check("a-claim", "A claim.", True, {"x": Number(1.0)}) is None
    assert found.add("b-claim", "Another.", "holds") is None
    assert found.claims["a-claim"].verdict == "holds"


# ---- messages name the data folder portably --------------------------------------------------------------------
def test_display_path_never_shows_this_machines_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("GREGNB_DATA", raising=False)
    assert display_path(ROOT / "notebooks" / "findings" / "03.json") == "notebooks/findings/03.json"
    assert display_path(Path.home() / "elsewhere" / "x.pt") == "~/elsewhere/x.pt"
    if (ROOT / "data" / "README.md").exists():
        assert display_path(ROOT / "data" / "models" / "ce-1.pt") == "data/models/ce-1.pt"
    monkeypatch.setenv("GREGNB_DATA", str(tmp_path / "store"))
    assert display_path(tmp_path / "store" / "models" / "ce-1.pt") == "$GREGNB_DATA/models/ce-1.pt"
    assert display_path(tmp_path / "store") == "$GREGNB_DATA"
    assert display_path("/opt/other/x.pt") == "/opt/other/x.pt"          # not this machine's: unchanged


def test_cache_message_names_the_data_folder_by_its_variable(tmp_path, monkeypatch, capsys):
    from gregnb.data.toy2d import load_toy
    from gregnb.experiments import train_classifier

    monkeypatch.setenv("GREGNB_DATA", str(tmp_path))
    toy = load_toy("blobs", seed=0, n_aux=64)
    train_classifier(toy, seed=0, epochs=1)
    capsys.readouterr()
    train_classifier(toy, seed=0, epochs=1)
    out = capsys.readouterr().out
    assert "from $GREGNB_DATA/models" in out and str(tmp_path) not in out, out


# ---- the stated run time comes from the record -----------------------------------------------------------------
STATED = re.compile(r"runs in about (\d+) (seconds?|minutes?) on a laptop CPU", re.I)


def run_time_words(seconds: float) -> str:
    """A measured time as a chapter states it: "about 40 seconds" under 100 s, else whole minutes."""
    if seconds < 100:
        return f"about {max(10, round(seconds / 10) * 10)} seconds"
    minutes = max(1, round(seconds / 60))
    return f"about {minutes} minute{'s' if minutes > 1 else ''}"


def test_run_time_words_round_to_within_the_tolerance():
    assert run_time_words(763.7) == "about 13 minutes" and run_time_words(52.2) == "about 50 seconds"
    assert run_time_words(12) == "about 10 seconds"
    assert run_time_words(110) == "about 2 minutes"
    for s in (20, 49, 50, 89, 91, 99, 100, 150, 209, 600, 3000):
        n, unit = re.match(r"about (\d+) (\w+)", run_time_words(s)).groups()
        assert abs(int(n) * (60 if unit.startswith("minute") else 1) - s) <= 0.3 * s, s


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name[:2])
def test_stated_run_time_matches_the_record(path):
    """Within 30 % of the normal-mode time in ``notebooks/findings/NN.json`` (provenance ``seconds``). After
    ``python -m gregnb.findings update``, the failure message gives the sentence to write."""
    intro = nbformat.read(path, as_version=4).cells[0].source
    stated = STATED.search(intro)
    assert stated, f"{path.name}: the first cell must state 'Runs in about N minutes on a laptop CPU'"
    record = load_record(path.name[:2])
    seconds = (record or {}).get("provenance", {}).get("seconds")
    if seconds is None:
        pytest.skip(f"{path.name}: no committed record with a measured time (provenance 'seconds') to compare with")
    n, unit = int(stated.group(1)), stated.group(2)
    claimed = n * (60 if unit.startswith("minute") else 1)
    assert abs(claimed - seconds) <= 0.3 * seconds, (
        f"{path.name} states '{stated.group(0)}', but its record took {seconds:.0f} s: write 'Runs in about "
        f"{run_time_words(seconds)[6:]} on a laptop CPU' in its first cell")


# ---- the answer first, and chapters a student can step through --------------------------------------------------
def answer_first_problems(first_cell: str, claim_ids: set[str]) -> list[str]:
    """What is missing from a chapter's first cell: a paragraph that starts "**The answer first.**" and cites at least
    one claim of the chapter's record (so the answer is the recorded one, with its numbers in What we found)."""
    if "**The answer first.**" not in first_cell:
        return ["no '**The answer first.**' paragraph in the first cell"]
    answer = first_cell.split("**The answer first.**", 1)[1].split("\n\n", 1)[0]
    cited = set(re.findall(r"\[([a-z0-9]+(?:-[a-z0-9]+)+)\]", answer))
    if not cited & claim_ids:
        return ["the answer cites no claim of the chapter's record"]
    return [f"the answer cites {sorted(cited - claim_ids)}, which the record does not hold"] if cited - claim_ids else []


def test_the_answer_first_rule_catches_a_missing_or_unrecorded_answer():
    ids = {"a-holds"}
    assert answer_first_problems("# 09 · Title\n\n**Learning goals**", ids)
    assert answer_first_problems("# 09\n\n**The answer first.** It works.\n\nMore.", ids)
    assert answer_first_problems("# 09\n\n**The answer first.** It works [a-holds], [b-gone].", ids)
    assert not answer_first_problems("# 09\n\n**The answer first.** It works [a-holds].\n\n**Goals**", ids)


@pytest.mark.parametrize("path", [p for p in CHAPTERS if not p.name.startswith("00")], ids=lambda p: p.name[:2])
def test_each_chapter_states_its_recorded_answer_in_its_first_cell(path):
    record = load_record(path.name[:2])
    ids = {c["id"] for c in record["claims"]} if record else set()
    first = nbformat.read(path, as_version=4).cells[0].source
    assert not answer_first_problems(first, ids), f"{path.name}: {answer_first_problems(first, ids)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name[:2])
def test_chapters_stay_short_enough_to_step_through(path):
    cells = len(nbformat.read(path, as_version=4).cells)
    limit = 40 if path.name[:2] in ("03", "04") else 50   # the two halves of GReg stay at 40 cells each
    assert cells <= limit, f"{path.name} has {cells} cells (at most {limit}): split it, or move code into gregnb"
