"""Every notebook runs top to bottom in FAST mode, leaves no figure open, and is stored clean."""
import json
from pathlib import Path

import nbformat
import pytest
from notebook_runs import execute_with_figure_probe

from gregnb.findings import load_record

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
HOMEWORK_SOURCES = sorted((ROOT / "notebooks" / "homework" / "source").glob("*.ipynb"))
ALL_NOTEBOOKS = sorted((ROOT / "notebooks").rglob("*.ipynb"))
ALL_NOTEBOOKS = [p for p in ALL_NOTEBOOKS if ".ipynb_checkpoints" not in p.parts]
# student versions stop at their first stub by design: tests/test_homework.py runs them
RUNNABLE = CHAPTERS + HOMEWORK_SOURCES
FAST_LIMIT_S = 60  # the per-chapter target in FAST mode; reported, and enforced with slack for slow CI


def test_there_are_chapters():
    names = [p.name for p in CHAPTERS]
    assert names[:2] == ["00_welcome.ipynb", "01_energy_scores.ipynb"], names


def test_figure_probe_catches_a_figure_left_open(tmp_path):
    """The probe on a made-up notebook: a figure drawn in a cell is shown and closed with it; one created
    while pyplot is not interactive stays open, and the next cell that plots shows it again."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in (
        "import matplotlib.pyplot as plt\nplt.plot([1, 2]);",
        "plt.ioff()\nleft_open = plt.figure()\nleft_open.add_subplot().plot([3, 1])\nplt.ion()",
        "x = 1",
        "plt.figure()\nplt.plot([2, 1]);",
    )])
    _, leaks = execute_with_figure_probe(nb, tmp_path / "made_up.ipynb")
    assert [(i, n) for i, _, n in leaks] == [(1, 1), (2, 1)]
    assert [len([o for o in c.outputs if "image/png" in o.get("data", {})]) for c in nb.cells] == [1, 0, 0, 2]


@pytest.mark.notebook
@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT / "notebooks")))
def test_notebook_runs_in_fast_mode_and_leaves_no_figure_open(path, chapter_runs):
    nb, elapsed, leaks, findings = chapter_runs.run(path)  # executed once per session; the site build reuses it
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    print(f"{path.name}: {elapsed:.1f} s in FAST mode")
    recorded = load_record(path.name[:2]) if path in CHAPTERS else None
    if recorded is not None:   # the FAST run makes the same claims as the committed normal-mode record
        run = load_record(path.name[:2], findings)
        assert run is not None and run["mode"] == "fast", f"{path.name}: the findings cell wrote no FAST record"
        assert [c["id"] for c in run["claims"]] == [c["id"] for c in recorded["claims"]], (
            f"{path.name} makes other claims than notebooks/findings/{path.name[:2]}.json holds: run "
            f"`python -m gregnb.findings update {path.name[:2]}`")
        shown = [o for c in nb.cells for o in c.get("outputs", []) if "gregnb-findings" in o.get("data", {}).get("text/html", "")]
        assert shown and "FAST mode" in shown[-1]["data"]["text/html"], f"{path.name}: findings not shown"
    assert not leaks, (f"{path.name}: cells that leave figures open in pyplot (shown again by the next cell that "
                       f"plots): " + "; ".join(f"cell {i} `{line}`: {n} open" for i, line, n in leaks))
    assert elapsed < 2 * FAST_LIMIT_S, f"{path.name} took {elapsed:.0f} s in FAST mode (target {FAST_LIMIT_S} s)"


@pytest.mark.parametrize("path", ALL_NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    raw = json.loads(path.read_text())
    for i, cell in enumerate(raw["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{path.name} cell {i} has outputs; clear them before committing"
            assert cell.get("execution_count") is None, f"{path.name} cell {i} has an execution count"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_teaching_skeleton(path):
    nb = nbformat.read(path, as_version=4)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    for needle in ("Learning goals", "Summary", "References", "laptop CPU"):
        assert needle in md, f"{path.name} lacks '{needle}'"
    if not path.name.startswith("00"):
        assert "## Exercises" in md, f"{path.name} has no exercises"
    # short cells: teaching code, not infrastructure
    for c in nb.cells:
        if c.cell_type == "code":
            assert len(c.source.splitlines()) <= 25, f"{path.name}: a code cell of {len(c.source.splitlines())} lines belongs in gregnb"


def test_no_code_cell_is_duplicated_across_notebooks():
    seen: dict[str, str] = {}
    for path in CHAPTERS + HOMEWORK_SOURCES:  # a student version repeats its source by design
        for c in nbformat.read(path, as_version=4).cells:
            lines = [ln for ln in c.source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
            if c.cell_type != "code" or len(lines) < 4:
                continue
            key = "\n".join(lines)
            assert key not in seen or seen[key] == path.name, f"same code cell in {seen.get(key)} and {path.name}"
            seen[key] = path.name
