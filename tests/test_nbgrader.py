"""The homework's whole course cycle under the real nbgrader, in a throw-away course and exchange:

set the course up (``python -m gregnb.homework course``), ``generate_assignment``, put the handouts with hints in place
(``python -m gregnb.homework release --course``), ``release_assignment``; three students ``fetch_assignment``, work
(a correct, a partly wrong and a blank submission) and ``submit``; ``collect``, ``autograde``; the written answers are
left for the instructor (graded here through the gradebook, as formgrader does); ``generate_feedback``,
``release_feedback``, and each student ``fetch_feedback``. The feedback page each student gets must show the points
and, for the partly wrong one, the failing test's message naming the mistake. ``notebooks/homework/README.md`` walks an
instructor through the same commands (a test checks that it names each of them).

Meanwhile ``python -m gregnb.homework grade`` grades one assignment's three submissions, for the same totals. The
nbgrader commands run in one process per phase (``tests/nbgrader_batch.py``), each exactly as the command line runs it.
"""
import csv
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from gregnb.homework.__main__ import main as homework_cli
from gregnb.homework.release import RELEASE_DIR, SOURCE_DIR

pytest.importorskip("nbgrader", reason="nbgrader is not installed: pip install -e '.[test]'")
pytestmark = pytest.mark.nbgrader  # left out of the quick tier (python3 run.py test --quick)

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = [p.stem for p in sorted(SOURCE_DIR.glob("*.ipynb"))]
COURSE = "gregnb"
STUDENTS = ("correct", "partly_wrong", "blank")
AUTO_POINTS = {"hw1_energy_and_metrics": 8, "hw2_greg_penalty": 7, "hw3_energy_sampling": 7,
               "hw4_certified_radius": 7, "hw5_validation_study": 7, "hw6_gregplus_step": 7}
MANUAL_POINTS = dict.fromkeys(AUTO_POINTS, 3) | {"hw1_energy_and_metrics": 2}
# the partly wrong submission: (answer cell, text of the model answer, replacement, auto-graded points it keeps, words
# of the message that must name the mistake). Later questions use the student's own earlier answers, so the mistake
# costs its own question only.
MISTAKES = {
    "hw1_energy_and_metrics": ("q1_solution", "return -T * (", "return T * (", 5, "the sign is flipped"),
    "hw2_greg_penalty": ("q1_solution", "norms = g.flatten(1).norm(dim=1)", "norms = g.flatten(1).norm(dim=1) ** 2", 3,
                         "you squared the norm"),
    "hw3_energy_sampling": ("q1_solution", "        picks.update(order[-n_per_cluster:].tolist())\n", "", 3,
                            "HIGHEST-energy members"),
    "hw4_certified_radius": ("q1_solution", ").abs() / torch.as_tensor(", ").abs() * torch.as_tensor(", 4,
                             "divide the margin by the Lipschitz constant"),
    "hw5_validation_study": ("q3_solution", "stats.t.ppf(0.975, n - 1)", "1.96", 4, "the normal quantile 1.96"),
    "hw6_gregplus_step": ("q2_solution", "mask = torch.cat([e[:n] <= m_in, e[n:] >= m_out]).to(e.dtype).detach()",
                          "mask = torch.ones_like(e)", 4, "the penalty acts on every row"),
}
GRADE_CLI = "hw2_greg_penalty"  # python -m gregnb.homework grade runs on this one as well
_MARKER = re.compile(r"^[ \t]*(### (BEGIN|END) SOLUTION|# HINT:.*)[ \t]*\n?", re.MULTILINE)

# The commands of the cycle, as notebooks/homework/README.md gives them ({a}: an assignment, {s}: a student).
GENERATE = ["generate_assignment", "{a}"]
RELEASE = ["release_assignment", "{a}"]
ADD_STUDENT = ["db", "student", "add", "{s}"]
FETCH = ["fetch_assignment", "{a}", "--course", COURSE]
SUBMIT = ["submit", "{a}", "--course", COURSE]
COLLECT = ["collect", "{a}"]
AUTOGRADE = ["autograde", "{a}"]
FEEDBACK = ["generate_feedback", "{a}"]
RELEASE_FEEDBACK = ["release_feedback", "{a}"]
FETCH_FEEDBACK = ["fetch_feedback", "{a}", "--course", COURSE]
COMMANDS = [GENERATE, RELEASE, ADD_STUDENT, FETCH, SUBMIT, COLLECT, AUTOGRADE, FEEDBACK, RELEASE_FEEDBACK, FETCH_FEEDBACK]


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def model_answers(assignment: str) -> dict[str, str]:
    """{answer cell: the model answer} from the source: solution markers and hints dropped, and for a written answer
    only the answer (its rubric stays with the instructor)."""
    source = nbformat.read(SOURCE_DIR / f"{assignment}.ipynb", as_version=4)
    out = {}
    for c in source.cells:
        if _meta(c).get("solution"):
            text = _MARKER.sub("", c.source)
            out[_meta(c)["grade_id"]] = text.split("**Rubric")[0].strip() if c.cell_type == "markdown" else text
    return out


def work(assignment: str, student: str, fetched: Path) -> None:
    """What a student does with the fetched notebook: the model answers, the model answers with one mistake, or
    nothing."""
    if student == "blank":
        return
    nb = nbformat.read(fetched, as_version=4)
    answers = model_answers(assignment)
    gid, old, new, _, _ = MISTAKES[assignment]
    for cell in nb.cells:
        if _meta(cell).get("solution"):
            cell.source = answers[_meta(cell)["grade_id"]]
            if student == "partly_wrong" and _meta(cell)["grade_id"] == gid:
                assert old in cell.source, f"the mistake for {assignment} no longer applies to its model answer"
                cell.source = cell.source.replace(old, new)
    nbformat.write(nb, fetched)


def _env(tmp: Path) -> dict:
    # nbgrader calls `alembic` from its environment's bin folder; no Jupyter config of the machine leaks in; the kernels
    # run FAST mode on one thread each
    return dict(os.environ, GREGNB_FAST="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
                PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def nbgrader(tmp: Path, commands: list[tuple[Path, list[str]]], name: str) -> list[dict]:
    """Run ``nbgrader ARGV`` in each folder, in order, in one process; fail with the log of the first that fails."""
    todo, done = tmp / f"{name}.json", tmp / f"{name}-results.json"
    todo.write_text(json.dumps([{"cwd": str(cwd), "argv": argv} for cwd, argv in commands]))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("nbgrader_batch.py")), str(todo), str(done)],
                          env=_env(tmp), capture_output=True, text=True, timeout=900)
    print(f"nbgrader, {name} ({len(commands)} commands): {time.perf_counter() - t0:.1f} s", flush=True)  # pytest -s
    results = json.loads(done.read_text()) if done.exists() else []
    if proc.returncode != 0:
        last = results[-1] if results else {}
        raise AssertionError(f"nbgrader {last.get('argv')} in {last.get('cwd')} failed:\n{last.get('log', '')[-4000:]}"
                             f"\n{proc.stderr[-3000:]}")
    return results


def _fill(argv: list[str], **kw) -> list[str]:
    return [part.format(**kw) for part in argv]


def _student_config(home: Path, student: str, exchange: Path) -> None:
    home.mkdir(parents=True)
    (home / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.course_id = {COURSE!r}\n"
        f"c.Exchange.root = {str(exchange)!r}\n"
        f"c.Exchange.cache = {str(home / '.nbgrader-cache')!r}\n"
        f"c.Exchange.assignment_dir = {str(home)!r}\n"
        f"c.CourseDirectory.student_id = {student!r}  # one OS user plays three students here\n")


def manual_grades(course: Path) -> dict:
    """The instructor's part: every written answer is left for manual grading (nbgrader scores an untouched one 0);
    grade them through the gradebook, as formgrader does: the model answer full, the partly wrong one half."""
    from nbgrader.api import Gradebook

    left = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for a in ASSIGNMENTS:
            for s in STUDENTS:
                for g in gb.find_submission_notebook(a, a, s).grades:
                    if g.cell_type != "markdown":
                        continue
                    left[a, s, g.name] = (g.needs_manual_grade, g.auto_score)
                    if g.needs_manual_grade:
                        g.manual_score = g.max_score if s == "correct" else g.max_score / 2
        gb.db.commit()
    return left


def scores(course: Path) -> dict:
    """{(assignment, student): (auto-graded points, auto-graded maximum, written points, written maximum)}."""
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for a in ASSIGNMENTS:
            for s in STUDENTS:
                grades = gb.find_submission_notebook(a, a, s).grades
                auto = [g for g in grades if g.cell_type == "code"]
                written = [g for g in grades if g.cell_type != "code"]
                out[a, s] = (sum(g.score for g in auto), sum(g.max_score for g in auto),
                             sum(g.score for g in written), sum(g.max_score for g in written))
    return out


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cycle")
    course, exchange = tmp / "course", tmp / "exchange"
    exchange.mkdir()
    homes = {s: tmp / "students" / s for s in STUDENTS}
    for s, home in homes.items():
        _student_config(home, s, exchange)
    assert homework_cli(["course", str(course), "--exchange", str(exchange)]) == 0
    with open(course / "nbgrader_config.py", "a") as f:  # one OS user submits for three students: no owner check
        f.write("c.CollectApp.check_owner = False\n")
    nbgrader(tmp, [(course, _fill(GENERATE, a=a)) for a in ASSIGNMENTS], "generate")
    assert homework_cli(["release", "--course", str(course)]) == 0
    nbgrader(tmp, [(course, _fill(RELEASE, a=a)) for a in ASSIGNMENTS] + [(course, _fill(ADD_STUDENT, s=s)) for s in STUDENTS]
             + [(homes[s], _fill(FETCH, a=a)) for s in STUDENTS for a in ASSIGNMENTS], "release")
    fetched = {(a, s): homes[s] / a / f"{a}.ipynb" for a in ASSIGNMENTS for s in STUDENTS}
    handouts = {k: p.read_text() for k, p in fetched.items()}
    for (a, s), path in fetched.items():
        work(a, s, path)
    nbgrader(tmp, [(homes[s], _fill(SUBMIT, a=a)) for s in STUDENTS for a in ASSIGNMENTS]
             + [(course, _fill(COLLECT, a=a)) for a in ASSIGNMENTS], "submit")
    subs = [str(fetched[GRADE_CLI, s]) for s in STUDENTS]
    with ThreadPoolExecutor(3) as pool:  # autograde in two processes (the students are in the gradebook already)
        graded = [pool.submit(nbgrader, tmp, [(course, _fill(AUTOGRADE, a=a)) for a in ASSIGNMENTS[i::2]], f"autograde{i}")
                  for i in (0, 1)]
        grade_cli = pool.submit(subprocess.run, [sys.executable, "-m", "gregnb.homework", "grade", "--source",
                                                 str(course / "source"), "--csv", str(tmp / "grades.csv"), *subs],
                                env=_env(tmp), capture_output=True, text=True, timeout=900)
        for job in graded:
            job.result()
    left = manual_grades(course)
    nbgrader(tmp, [(course, _fill(step, a=a)) for a in ASSIGNMENTS for step in (FEEDBACK, RELEASE_FEEDBACK)]
             + [(homes[s], _fill(FETCH_FEEDBACK, a=a)) for s in STUDENTS for a in ASSIGNMENTS], "feedback")
    feedback = {}
    for a in ASSIGNMENTS:
        for s in STUDENTS:
            pages = sorted((homes[s] / a / "feedback").glob(f"*/{a}.html"))
            feedback[a, s] = pages[-1].read_text() if pages else None
    return {"course": course, "handouts": handouts, "left": left, "scores": scores(course), "feedback": feedback,
            "grade_cli": grade_cli.result(), "subs": subs, "tmp": tmp}


@pytest.mark.slow
def test_points_add_up(cycle):
    for a in ASSIGNMENTS:
        _, auto_max, _, written_max = cycle["scores"][a, "correct"]
        assert (auto_max, written_max) == (AUTO_POINTS[a], MANUAL_POINTS[a]), a
        assert AUTO_POINTS[a] + MANUAL_POINTS[a] == 10, a


@pytest.mark.slow
def test_students_fetch_the_handouts_with_hints_and_without_solutions(cycle):
    for (a, s), text in cycle["handouts"].items():
        assert text == (RELEASE_DIR / f"{a}.ipynb").read_text(), f"{s} fetched another {a} than the committed handout"
        for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "Rubric", "Model answer"):
            assert secret not in text, (a, secret)
        assert "Hint:" in text


@pytest.mark.slow
def test_the_model_answers_get_every_auto_graded_point_and_write_nothing_to_stderr(cycle):
    assert {a: cycle["scores"][a, "correct"][0] for a in ASSIGNMENTS} == AUTO_POINTS
    for a in ASSIGNMENTS:
        nb = nbformat.read(cycle["course"] / "autograded" / "correct" / a / f"{a}.ipynb", as_version=4)
        for cell in nb.cells:
            if _meta(cell).get("grade") and cell.cell_type == "code":
                bad = [o for o in cell.outputs if o.output_type == "error" or o.get("name") == "stderr"]
                assert not bad, f"{a} {_meta(cell)['grade_id']}: {bad}"


@pytest.mark.slow
def test_blank_submissions_get_zero(cycle):
    assert {a: cycle["scores"][a, "blank"][:3:2] for a in ASSIGNMENTS} == dict.fromkeys(ASSIGNMENTS, (0, 0))


@pytest.mark.slow
def test_a_mistake_costs_only_its_own_question(cycle):
    for a in ASSIGNMENTS:
        assert cycle["scores"][a, "partly_wrong"][0] == MISTAKES[a][3], a


@pytest.mark.slow
def test_written_answers_are_left_for_the_instructor(cycle):
    for (a, s, gid), (needs, auto) in cycle["left"].items():
        if s == "blank":  # an untouched answer: nbgrader scores it 0 itself
            assert not needs and auto == 0, (a, gid)
        else:
            assert needs, (a, s, gid)
    for a in ASSIGNMENTS:
        assert {k[2] for k in cycle["left"] if k[0] == a}, f"{a} has no written answer"


@pytest.mark.slow
def test_feedback_shows_the_points_and_names_the_mistake(cycle):
    for a in ASSIGNMENTS:
        for s in STUDENTS:
            page = cycle["feedback"][a, s]
            assert page, f"{s} fetched no feedback for {a}"
            auto, auto_max, written, written_max = cycle["scores"][a, s]
            total = f"(Score: {round(auto + written, 2):.1f} / {auto_max + written_max:.1f})"
            assert total in page, (a, s, total)
            if s == "partly_wrong":
                message = MISTAKES[a][4]
                assert message in page, f"{a}: the feedback does not say {message!r}"
                assert "AssertionError" in page
            if s == "blank":
                assert "NotImplementedError" in page


@pytest.mark.slow
def test_grade_command_gives_nbgrader_totals(cycle):
    """``python -m gregnb.homework grade`` on one assignment's three submissions, pointed at the course's sources."""
    proc = cycle["grade_cli"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(cycle["tmp"] / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for student, sub in zip(STUDENTS, cycle["subs"]):
        auto = sum(float(r["points"]) for r in rows if r["submission"] == sub and r["kind"] == "auto")
        assert auto == cycle["scores"][GRADE_CLI, student][0], (student, proc.stdout)
    assert f"auto-graded {AUTO_POINTS[GRADE_CLI]} / {AUTO_POINTS[GRADE_CLI]}" in proc.stdout
    assert "q3_answer (3)" in proc.stdout  # the written answer is listed with its points


def test_the_instructor_guide_walks_through_these_commands():
    guide = (ROOT / "notebooks" / "homework" / "README.md").read_text()
    for argv in COMMANDS:
        command = "nbgrader " + " ".join(argv).replace("{a}", "HW").replace("{s}", "STUDENT")
        pattern = re.escape(command).replace("HW", r"hw\w*").replace("STUDENT", r"\S+")
        assert re.search(pattern, guide), f"the guide does not show `{command}`"
    for tool in ("python -m gregnb.homework course", "python -m gregnb.homework release --course",
                 "Exchange.root", "CourseDirectory.root", "formgrader"):
        assert tool in guide, tool
