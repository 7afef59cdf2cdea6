"""Grade submitted homework notebooks without nbgrader, scoring them the way nbgrader's autograder does.

    python -m gregnb.homework grade SUBMISSION.ipynb [...] [--source DIR] [--timeout S] [--csv FILE]

For each submission (matched to its source notebook by file name, in ``--source``):

1. every locked cell (question text, set-up code, test cells) is replaced by the source's version, so test
   cells run *with their hidden tests*; a locked cell the student deleted is put back; answer cells are kept
   as submitted; nbgrader metadata (points, flags) always comes from the source;
2. the notebook runs top to bottom in a fresh kernel, in the submission's folder; an error does not stop it;
3. each test cell is scored by nbgrader's rule: 0 if it shows an error *or writes anything to stderr*
   (a warning counts), a number in [0, points] if its last line evaluates to one (partial credit), else
   its full points; a cell that never ran (timeout, dead kernel) scores 0;
4. written answers (manually graded cells) are listed with their points, to grade by hand.

The kernel must have ``gregnb`` installed (``--kernel``, default ``python3``); ``GREGNB_FAST`` is passed on.
"""
from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from .release import release_source

__all__ = ["QuestionScore", "GradeReport", "find_source", "prepare", "score_cell", "grade_notebook",
           "format_report", "write_csv", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 300  # seconds per cell (nbgrader's default is 30)


@dataclass
class QuestionScore:
    """One graded cell: ``points`` is ``None`` for a written answer not graded yet."""

    grade_id: str
    max_points: float
    points: float | None
    manual: bool = False
    note: str = ""


@dataclass
class GradeReport:
    """The outcome for one submitted notebook."""

    path: Path
    assignment: str
    questions: list[QuestionScore] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def auto_points(self) -> float:
        return sum(q.points or 0.0 for q in self.questions if not q.manual)

    @property
    def auto_max(self) -> float:
        return sum(q.max_points for q in self.questions if not q.manual)

    @property
    def manual_max(self) -> float:
        return sum(q.max_points for q in self.questions if q.manual)


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _is_test(cell) -> bool:
    m = _meta(cell)
    return bool(m.get("grade")) and not m.get("solution") and cell.get("cell_type") == "code"


def _is_manual(cell) -> bool:
    m = _meta(cell)
    return bool(m.get("grade")) and bool(m.get("solution"))


def find_source(submission: Path, source_dir: Path, assignment: str | None = None) -> Path:
    """The source notebook for ``submission``: ``<assignment or the submission's name>.ipynb`` in
    ``source_dir`` or one folder below it (a nbgrader course's ``source/<assignment>/``)."""
    name = f"{assignment}.ipynb" if assignment else submission.name
    if not source_dir.is_dir():
        raise FileNotFoundError(f"source folder {source_dir} does not exist; pass --source DIR, the folder with the "
                                f"instructor's source notebooks (with solutions and hidden tests)")
    found = [p for p in [source_dir / name, *source_dir.glob(f"*/{name}")] if p.is_file()]
    if not found:
        known = sorted({p.name for p in [*source_dir.glob("*.ipynb"), *source_dir.glob("*/*.ipynb")]})
        raise FileNotFoundError(f"no source notebook {name} in {source_dir} (found: {', '.join(known) or 'none'}); "
                                f"a renamed submission needs --assignment NAME")
    if len(found) > 1:
        raise ValueError(f"{name} is ambiguous in {source_dir}: {', '.join(str(p) for p in found)}")
    return found[0]


def prepare(student, source):
    """The notebook to run: ``student`` (an nbformat notebook) with every locked cell of ``source``
    restored (test cells with their hidden tests, deleted ones put back), answer cells kept, outputs
    cleared. Returns ``(notebook, restored grade ids)``."""
    source_cells = [c for c in source.cells if _meta(c).get("grade_id")]
    if not source_cells:
        raise ValueError("the source notebook has no nbgrader cells (grade_id); is it a homework source?")
    by_id = {_meta(c)["grade_id"]: c for c in source_cells}
    nb = copy.deepcopy(student)
    # nbgrader keeps the last of duplicated ids; unknown ids lose their metadata
    seen: set[str] = set()
    for cell in reversed(nb.cells):
        gid = _meta(cell).get("grade_id")
        if gid is not None and (gid in seen or gid not in by_id):
            cell.metadata.pop("nbgrader", None)
        elif gid is not None:
            seen.add(gid)
    restored: list[str] = []
    cells = []
    for cell in nb.cells:
        gid = _meta(cell).get("grade_id")
        src = by_id.get(gid)
        if src is not None and (_meta(src).get("locked") or _is_test(src)) and not _meta(src).get("solution"):
            handed_out = (src.source, release_source(src.source, src.cell_type))  # the handout lacks hidden tests
            if cell.cell_type != src.cell_type or cell.source not in handed_out:
                restored.append(gid)  # changed by the student
            cell = copy.deepcopy(src)
        elif src is not None:  # an answer cell: the student's text, the source's metadata
            cell.metadata["nbgrader"] = copy.deepcopy(_meta(src))
            if cell.cell_type != src.cell_type:
                cell = _retyped(cell, src.cell_type)
        cells.append(cell)
    # put back locked cells the student deleted, after the nearest earlier cell that is still there
    present = {_meta(c).get("grade_id") for c in cells}
    order = [_meta(c)["grade_id"] for c in source_cells]
    for i, gid in enumerate(order):
        src = by_id[gid]
        if gid in present or (_meta(src).get("solution") and not _is_manual(src)):
            continue  # a deleted code answer stays deleted: the student may have moved it
        prev = next((g for g in reversed(order[:i]) if g in present), None)
        at = 0 if prev is None else 1 + next(j for j, c in enumerate(cells) if _meta(c).get("grade_id") == prev)
        back = copy.deepcopy(src)
        if _meta(src).get("solution"):  # a deleted written answer comes back unanswered
            back.source = release_source(src.source, src.cell_type)
        cells.insert(at, back)
        present.add(gid)
        restored.append(gid)
    nb.cells = cells
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb, restored


def _retyped(cell, cell_type: str):
    import nbformat

    make = nbformat.v4.new_code_cell if cell_type == "code" else nbformat.v4.new_markdown_cell
    new = make(cell.source)
    new.metadata = cell.metadata
    return new


def score_cell(cell) -> tuple[float, str]:
    """nbgrader's score of an executed test cell: ``(points, why)``."""
    max_points = float(_meta(cell)["points"])
    if cell.get("execution_count") is None:
        return 0.0, "not run (an earlier cell timed out or the kernel died)"
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            evalue = str(out.get("evalue", "")).strip().splitlines()
            return 0.0, f"{out.get('ename', 'Error')}: {evalue[0] if evalue else ''}".strip().rstrip(":")
        if out.get("output_type") == "stream" and out.get("name") == "stderr":
            line = next((ln.strip() for ln in str(out.get("text", "")).splitlines() if ln.strip()), "")
            return 0.0, f"wrote to stderr (nbgrader gives 0): {line[:150]}"
        if out.get("output_type") == "execute_result":
            text = out.get("data", {}).get("text/plain", "")
            text = text[0] if isinstance(text, list) and len(text) == 1 else text
            try:
                value = float(text)
            except (TypeError, ValueError):
                return max_points, ""
            if 0.0 <= value <= max_points:
                return value, "partial credit from the cell's result"
            return max_points, f"result {value} is outside [0, {max_points:g}]: counted as full points"
    return max_points, ""


def grade_notebook(submission: str | Path, source_dir: str | Path, *, assignment: str | None = None,
                   timeout: int = DEFAULT_TIMEOUT, kernel_name: str = "python3") -> GradeReport:
    """Restore the source's locked cells in ``submission``, run it, and score it (see the module doc)."""
    import nbformat
    from nbclient.exceptions import DeadKernelError

    from ..runner import execute_notebook

    submission = Path(submission)
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    source_path = find_source(submission, Path(source_dir), assignment)
    try:
        student = nbformat.read(submission, as_version=4)
    except Exception as err:  # not JSON, not a notebook
        raise ValueError(f"{submission} is not a readable notebook: {err}") from err
    source = nbformat.read(source_path, as_version=4)
    nb, restored = prepare(student, source)
    t0 = time.perf_counter()
    try:
        execute_notebook(nb, submission.resolve().parent, timeout=timeout, kernel_name=kernel_name, allow_errors=True,
                         interrupt_on_timeout=True,
                         error_on_timeout={"ename": "CellTimeoutError", "evalue": f"the cell ran longer than {timeout} s",
                                           "traceback": [f"CellTimeoutError: the cell ran longer than {timeout} s"]})
    except DeadKernelError:
        pass  # the cells that did not run score 0 below
    report = GradeReport(submission, source_path.stem, restored=restored, seconds=time.perf_counter() - t0)
    for cell in nb.cells:
        meta = _meta(cell)
        if _is_test(cell):
            points, why = score_cell(cell)
            report.questions.append(QuestionScore(meta["grade_id"], float(meta["points"]), points, note=why))
        elif _is_manual(cell):
            report.questions.append(QuestionScore(meta["grade_id"], float(meta["points"]), None, manual=True,
                                                  note="written answer: grade by hand"))
    return report


def _pts(x: float) -> str:
    return f"{x:g}" if math.isfinite(x) else str(x)


def format_report(report: GradeReport) -> str:
    lines = [f"{report.path}  [{report.assignment}]"]
    if report.restored:
        lines.append(f"  locked cells the student changed or deleted, restored: {', '.join(report.restored)}")
    width = max((len(q.grade_id) for q in report.questions), default=8)
    for q in report.questions:
        got = "-" if q.points is None else _pts(q.points)
        lines.append(f"  {q.grade_id:<{width}}  {got:>4} / {_pts(q.max_points):<3} {q.note}".rstrip())
    manual = [q for q in report.questions if q.manual]
    text = f"  auto-graded {_pts(report.auto_points)} / {_pts(report.auto_max)}"
    if manual:
        text += (f"; written answers to grade by hand: "
                 f"{', '.join(f'{q.grade_id} ({_pts(q.max_points)})' for q in manual)}; "
                 f"total {_pts(report.auto_points)} / {_pts(report.auto_max + report.manual_max)} before them")
    return "\n".join(lines + [text])


def write_csv(reports: list[GradeReport], path: str | Path) -> None:
    """One row per graded cell: submission, assignment, question, kind, points (empty: by hand), max_points, note."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "assignment", "question", "kind", "points", "max_points", "note"])
        for r in reports:
            for q in r.questions:
                w.writerow([str(r.path), r.assignment, q.grade_id, "manual" if q.manual else "auto",
                            "" if q.points is None else _pts(q.points), _pts(q.max_points), q.note])


def run(submissions: list[Path], source_dir: Path, *, assignment: str | None = None, timeout: int = DEFAULT_TIMEOUT,
        kernel_name: str = "python3", csv_path: Path | None = None) -> int:
    """The ``grade`` command: check every input first, then grade one submission after the other."""
    missing = [str(p) for p in submissions if not Path(p).is_file()]
    if missing:
        print(f"error: no such submission file: {', '.join(missing)}")
        return 2
    try:
        for p in submissions:
            find_source(Path(p), source_dir, assignment)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}")
        return 2
    reports, failed = [], []
    for p in submissions:
        try:
            report = grade_notebook(p, source_dir, assignment=assignment, timeout=timeout, kernel_name=kernel_name)
        except Exception as err:  # one broken submission must not stop the others
            print(f"{p}: could not be graded: {type(err).__name__}: {err}\n")
            failed.append(str(p))
            continue
        reports.append(report)
        print(format_report(report) + "\n", flush=True)
    if len(reports) > 1:
        got, top = sum(r.auto_points for r in reports), sum(r.auto_max for r in reports)
        manual = sum(r.manual_max for r in reports)
        print(f"{len(reports)} submissions: auto-graded {_pts(got)} / {_pts(top)} points in all; "
              f"{_pts(manual)} points of written answers to grade by hand")
    if csv_path is not None:
        write_csv(reports, csv_path)
        print(f"wrote {csv_path}")
    if failed:
        print(f"not graded: {', '.join(failed)}")
        return 1
    return 0
