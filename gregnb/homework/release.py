"""Write student versions of the homework from the instructor's source notebooks.

Sources live in ``notebooks/homework/source/`` and mark, with the conventions nbgrader uses:

* solutions between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (in a code cell): replaced by a
  stub ``raise NotImplementedError(hint)``; the hint is the text of a ``# HINT: ...`` line inside the
  block (if any), and the block's indentation is kept;
* hidden tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``: removed;
* in Markdown cells, text between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
  "YOUR ANSWER HERE".

Outputs are cleared. The student versions go to ``notebooks/homework/`` by default; ``--check`` only
compares and exits 1 if the committed student versions are out of date.
"""
from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

__all__ = ["release_notebook", "release_all", "main", "SOURCE_DIR", "RELEASE_DIR"]

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


def release_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A student copy: solutions stubbed, hidden tests removed, outputs cleared."""
    out = copy.deepcopy(nb)
    for cell in out.cells:
        cell.source = release_source(cell.source, cell.cell_type)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return out


def _student_name(path: Path) -> str:
    return path.name


def release_all(out_dir: Path = RELEASE_DIR, source_dir: Path = SOURCE_DIR, check: bool = False) -> list[str]:
    """Release every source notebook into ``out_dir``; with ``check``, only report the stale ones.
    Returns the names written (or, with ``check``, the names that differ)."""
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gregnb.homework", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rel = sub.add_parser("release", help="write the student versions")
    rel.add_argument("--out", type=Path, default=RELEASE_DIR, help=f"output folder (default {RELEASE_DIR})")
    rel.add_argument("--source", type=Path, default=SOURCE_DIR, help=f"source folder (default {SOURCE_DIR})")
    rel.add_argument("--check", action="store_true", help="fail if the student versions in --out are out of date")
    args = ap.parse_args(argv)
    changed = release_all(args.out, args.source, check=args.check)
    if args.check:
        if changed:
            print(f"out of date in {args.out}: {', '.join(changed)}; run python -m gregnb.homework release")
            return 1
        print(f"student versions in {args.out} are up to date")
        return 0
    print(f"wrote {len(changed)} student notebook(s) to {args.out}" + (f": {', '.join(changed)}" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
