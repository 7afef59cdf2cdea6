"""Write student versions of the homework from the instructor's source notebooks.

Sources live in ``notebooks/homework/source/`` and mark, with the conventions nbgrader uses:

* solutions between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (in a code cell): replaced by a
  stub ``raise NotImplementedError(hint)``; the hint is the text of a ``# HINT: ...`` line inside the
  block (if any), and the block's indentation is kept;
* hidden tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``: removed;
* in Markdown cells, text between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
  "YOUR ANSWER HERE".

Outputs are cleared, and cells are locked in JupyterLab the way nbgrader's ``generate_assignment``
locks them: answer cells cannot be deleted; test cells and other locked cells can be neither edited
nor deleted (``deletable: false`` / ``editable: false`` in the cell metadata).

Unlike nbgrader's own release, the stubs keep the ``# HINT:`` text, so hand out these versions and
use nbgrader (if at all) to collect and grade. The student versions go to ``notebooks/homework/`` by
default; ``--check`` only compares and exits 1 if the committed student versions are out of date.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

__all__ = ["release_notebook", "release_all", "lock_cell", "SOURCE_DIR", "RELEASE_DIR"]

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = ROOT / "notebooks" / "homework" / "source"
RELEASE_DIR = ROOT / "notebooks" / "homework"

_SOL = re.compile(r"^(?P<indent>[ \t]*)### BEGIN SOLUTION[ \t]*\n(?P<body>.*?)^[ \t]*### END SOLUTION[ \t]*\n?",
                  re.MULTILINE | re.DOTALL)
_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?",
                     re.MULTILINE | re.DOTALL)
_HINT = re.compile(r"#\s*HINT:\s*(.+)")


def _stub(match: re.Match) -> str:
    indent = match.group("indent")
    hint = _HINT.search(match.group("body"))
    text = f"Hint: {hint.group(1).strip()}" if hint else "replace this line with your code"
    return f"{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError({text!r})\n"


def release_source(source: str, cell_type: str) -> str:
    """The student text of one cell's source."""
    if cell_type == "markdown":
        return _SOL.sub(lambda m: f"{m.group('indent')}YOUR ANSWER HERE\n", source).rstrip("\n")
    out = _HIDDEN.sub("", source)
    out = _SOL.sub(_stub, out)
    return out.rstrip("\n")


def lock_cell(cell) -> None:
    """Set JupyterLab's ``deletable`` / ``editable`` flags from the cell's nbgrader metadata, as nbgrader's
    LockCells does: answer cells cannot be deleted; test cells and locked cells cannot be edited either."""
    meta = cell.metadata.get("nbgrader", {})
    cell.metadata.pop("deletable", None)
    cell.metadata.pop("editable", None)
    if meta.get("solution"):
        cell.metadata["deletable"] = False
    elif meta.get("grade") or meta.get("locked"):
        cell.metadata["deletable"] = False
        cell.metadata["editable"] = False


def release_notebook(nb):
    """A student copy of an ``nbformat`` notebook: solutions stubbed, hidden tests removed, outputs
    cleared, cells locked."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        cell.source = release_source(cell.source, cell.cell_type)
        lock_cell(cell)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return out


def _student_name(path: Path) -> str:
    return path.name


def release_all(out_dir: Path = RELEASE_DIR, source_dir: Path = SOURCE_DIR, check: bool = False) -> list[str]:
    """Release every source notebook into ``out_dir``; with ``check``, only report the stale ones.
    Returns the names written (or, with ``check``, the names that differ)."""
    import nbformat  # the test extra; only this tool needs it

    sources = sorted(source_dir.glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no source notebooks in {source_dir}")
    changed = []
    for src in sources:
        student = release_notebook(nbformat.read(src, as_version=4))
        text = nbformat.writes(student) + "\n"
        target = out_dir / _student_name(src)
        if not target.exists() or target.read_text() != text:
            changed.append(target.name)
            if not check:
                out_dir.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
    return changed
