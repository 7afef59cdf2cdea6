"""The homework under the real nbgrader: a throw-away course in a tmp folder, ``generate_assignment`` for
each source, ``autograde`` of three submissions per assignment (the solutions, the committed student
versions left blank, and one typical mistake), ``nbgrader validate`` on every source, and the same totals
from ``python -m gregnb.homework grade``.

The submissions are built from the committed student versions (what students get), so the test also
shows that those are compatible with a gradebook made by ``generate_assignment``."""
import csv
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from gregnb.homework.release import RELEASE_DIR, SOURCE_DIR

pytest.importorskip("nbgrader", reason="nbgrader is not installed: pip install -e '.[test]'")
pytestmark = pytest.mark.nbgrader  # left out of the quick tier (python3 run.py test --quick)

ASSIGNMENTS = [p.stem for p in sorted(SOURCE_DIR.glob("*.ipynb"))]
AUTO_POINTS = {"hw1_energy_and_metrics": 8, "hw2_greg_penalty": 7, "hw3_energy_sampling": 6, "hw4_certified_radius": 7}
MANUAL_POINTS = {"hw1_energy_and_metrics": 2, "hw2_greg_penalty": 3, "hw3_energy_sampling": 2, "hw4_certified_radius": 2}
# one typical mistake per assignment: (answer cell, text in the solution, replacement, expected auto-graded points).
# Later questions use the student's own earlier answers, so each mistake costs only its own question.
MISTAKES = {
    "hw1_energy_and_metrics": ("q1_solution", "return -T * (", "return T * (", 5),  # energy sign flipped
    "hw2_greg_penalty": ("q1_solution", "norms = g.flatten(1).norm(dim=1)", "norms = g.flatten(1).norm(dim=1) ** 2", 3),
    "hw3_energy_sampling": ("q1_solution", "        picks.update(order[-n_per_cluster:].tolist())\n", "", 2),  # one-way
    "hw4_certified_radius": ("q1_solution", ").abs() / torch.as_tensor(", ").abs() * torch.as_tensor(", 4),  # times L
}
STUDENTS = ("solution", "blank", "mistake")
GRADE_CLI = "hw2_greg_penalty"  # python -m gregnb.homework grade runs on this one (the quickest) as well
_MARKER = re.compile(r"^[ \t]*(### (BEGIN|END) SOLUTION|# HINT:.*)[ \t]*\n?", re.MULTILINE)


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def solved(student, source):
    """The committed student version with every answer cell filled in from the source's solution."""
    answers = {_meta(c)["grade_id"]: _MARKER.sub("", c.source) for c in source.cells if _meta(c).get("solution")}
    out = nbformat.from_dict(student)
    for cell in out.cells:
        if _meta(cell).get("solution"):
            cell.source = answers[_meta(cell)["grade_id"]]
    return out


def submissions(assignment: str) -> dict:
    """{student: notebook} for one assignment."""
    student = nbformat.read(RELEASE_DIR / f"{assignment}.ipynb", as_version=4)
    good = solved(student, nbformat.read(SOURCE_DIR / f"{assignment}.ipynb", as_version=4))
    wrong = nbformat.from_dict(good)
    gid, old, new, _ = MISTAKES[assignment]
    (cell,) = [c for c in wrong.cells if _meta(c).get("grade_id") == gid]
    assert old in cell.source, f"the typical mistake for {assignment} no longer applies to its solution"
    cell.source = cell.source.replace(old, new)
    return {"solution": good, "blank": student, "mistake": wrong}


def _env() -> dict:
    # nbgrader calls `alembic` from its environment's bin folder; the kernels inherit FAST mode and run
    # single-threaded, so that the two jobs below do not fight over a 2-core CI machine
    return dict(os.environ, GREGNB_FAST="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def _run(course: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=course, env=_env(), capture_output=True, text=True, timeout=900)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A nbgrader course with every assignment generated and every submission autograded; meanwhile
    ``nbgrader validate`` runs on the sources and ``python -m gregnb.homework grade`` on HW2's submissions."""
    root = tmp_path_factory.mktemp("course")
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(root)!r}\n"
        "c.CourseDirectory.course_id = 'gregnb'\n"
        "c.Execute.timeout = 300  # as the instructor guide recommends (nbgrader's default is 30 s)\n")
    for a in ASSIGNMENTS:
        (root / "source" / a).mkdir(parents=True)
        (root / "source" / a / f"{a}.ipynb").write_bytes((SOURCE_DIR / f"{a}.ipynb").read_bytes())
        for student, nb in submissions(a).items():
            folder = root / "submitted" / student / a
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / f"{a}.ipynb")
    _ok(_run(root, "-m", "nbgrader", "generate_assignment", "*"))
    sources = [str(root / "source" / a / f"{a}.ipynb") for a in ASSIGNMENTS]
    hw2 = [str(root / "submitted" / s / GRADE_CLI / f"{GRADE_CLI}.ipynb") for s in STUDENTS]
    with ThreadPoolExecutor(2) as pool:
        autograde = pool.submit(_run, root, "-m", "nbgrader", "autograde", "*")
        validate = pool.submit(_run, root, "-m", "nbgrader", "validate", *sources)
        grade = pool.submit(_run, root, "-m", "gregnb.homework", "grade", "--source", str(root / "source"),
                            "--csv", str(root / "grades.csv"), *hw2)
        _ok(autograde.result())
    return {"root": root, "validate": validate.result(), "grade": grade.result(), "hw2": hw2}


def _scores(course: Path) -> dict:
    """{(assignment, student): (auto-graded points, auto-graded maximum, manual maximum)} from the gradebook."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for a in ASSIGNMENTS:
            for s in STUDENTS:
                nb = gb.find_submission_notebook(a, a, s)
                auto = [g for g in nb.grades if g.cell_type == "code"]
                manual = [g for g in nb.grades if g.cell_type != "code"]
                out[a, s] = (sum(g.score for g in auto), sum(g.max_score for g in auto), sum(g.max_score for g in manual))
    return out


@pytest.fixture(scope="module")
def scores(course):
    return _scores(course["root"])


@pytest.mark.slow
def test_points_add_up(scores):
    for a in ASSIGNMENTS:
        assert scores[a, "solution"][1:] == (AUTO_POINTS[a], MANUAL_POINTS[a]), a
    assert sum(AUTO_POINTS.values()) == 28 and sum(AUTO_POINTS.values()) + sum(MANUAL_POINTS.values()) == 37


@pytest.mark.slow
def test_solutions_get_every_auto_graded_point_and_write_nothing_to_stderr(course, scores):
    got = {a: scores[a, "solution"][0] for a in ASSIGNMENTS}
    assert got == AUTO_POINTS
    for a in ASSIGNMENTS:
        nb = nbformat.read(course["root"] / "autograded" / "solution" / a / f"{a}.ipynb", as_version=4)
        for cell in nb.cells:
            if _meta(cell).get("grade") and cell.cell_type == "code":
                bad = [o for o in cell.outputs if o.output_type == "error" or o.get("name") == "stderr"]
                assert not bad, f"{a} {_meta(cell)['grade_id']}: {bad}"


@pytest.mark.slow
def test_blank_student_versions_get_zero(scores):
    assert {a: scores[a, "blank"][0] for a in ASSIGNMENTS} == dict.fromkeys(ASSIGNMENTS, 0)


@pytest.mark.slow
def test_a_typical_mistake_costs_only_its_own_question(scores):
    for a in ASSIGNMENTS:
        got = scores[a, "mistake"][0]
        assert 0 < got < AUTO_POINTS[a], (a, got)
        assert got == MISTAKES[a][3], (a, got)


@pytest.mark.slow
def test_nbgrader_validate_passes_on_every_source(course):
    proc = course["validate"]
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "FAILED" not in out, out
    assert out.count("Success! Your notebook passes all the tests.") == len(ASSIGNMENTS), out


@pytest.mark.slow
def test_grade_command_gives_nbgrader_totals(course, scores):
    """``python -m gregnb.homework grade`` on the same submissions of one assignment, pointed at the
    course's source folder (the instructor guide reports all four)."""
    proc = _ok(course["grade"])
    with open(course["root"] / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for student, sub in zip(STUDENTS, course["hw2"]):
        auto = sum(float(r["points"]) for r in rows if r["submission"] == sub and r["kind"] == "auto")
        assert auto == scores[GRADE_CLI, student][0], (student, proc.stdout)
    assert f"auto-graded {AUTO_POINTS[GRADE_CLI]} / {AUTO_POINTS[GRADE_CLI]}" in proc.stdout
    assert "q3_answer (3)" in proc.stdout  # the written answer is listed with its points
