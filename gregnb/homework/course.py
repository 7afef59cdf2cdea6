"""A nbgrader course folder for the six assignments, and the handouts put where nbgrader releases from.

    python -m gregnb.homework course DIR [--exchange PATH] [--course-id ID]   # once, and after every source change
    nbgrader generate_assignment NAME                                        # in DIR: the gradebook learns NAME
    python -m gregnb.homework release --course DIR                           # the handouts, with their hints

``course`` writes ``DIR/nbgrader_config.py`` (unless it exists: yours is kept) and copies every source notebook to
``DIR/source/<name>/<name>.ipynb``, the layout nbgrader expects. ``release --course DIR`` then replaces the student
version nbgrader's ``generate_assignment`` wrote to ``DIR/release/<name>/`` with this package's (the same cells, ids,
points and locks, but each stub keeps its ``# HINT:`` as the ``NotImplementedError`` message, which nbgrader drops), so
``nbgrader release_assignment`` hands out the version with hints. ``notebooks/homework/README.md`` walks through the
whole cycle; ``tests/test_nbgrader.py`` runs it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .release import SOURCE_DIR, release_notebook

__all__ = ["COURSE_ID", "setup_course", "release_to_course", "config_text"]

COURSE_ID = "gregnb"
#: seconds per cell: nbgrader's default of 30 s is too short for the cells that train (the first time)
CELL_TIMEOUT = 300


def config_text(root: Path, course_id: str = COURSE_ID, exchange: str | Path | None = None) -> str:
    """The ``nbgrader_config.py`` of a course at ``root``."""
    lines = ["c = get_config()",
             f"c.CourseDirectory.root = {str(Path(root).resolve())!r}",
             f"c.CourseDirectory.course_id = {course_id!r}",
             f"c.Execute.timeout = {CELL_TIMEOUT}  # seconds per cell; nbgrader's default (30 s) is too short here"]
    if exchange is not None:
        lines.append(f"c.Exchange.root = {str(Path(exchange).resolve())!r}  # shared by the instructor and the students")
    else:
        lines.append("# c.Exchange.root = '/srv/nbgrader/exchange'  # nbgrader's default; shared by instructor and students")
    return "\n".join(lines) + "\n"


def setup_course(root: str | Path, *, exchange: str | Path | None = None, course_id: str = COURSE_ID,
                 source_dir: Path = SOURCE_DIR) -> list[str]:
    """Create or refresh the course folder ``root``: its ``nbgrader_config.py`` (kept if it exists) and
    ``source/<name>/<name>.ipynb`` for every source notebook. Returns the assignment names."""
    root = Path(root)
    sources = sorted(Path(source_dir).glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"no source notebooks in {source_dir}")
    root.mkdir(parents=True, exist_ok=True)
    config = root / "nbgrader_config.py"
    if not config.exists():
        config.write_text(config_text(root, course_id, exchange))
    names = []
    for src in sources:
        folder = root / "source" / src.stem
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, folder / src.name)
        names.append(src.stem)
    return names


def release_to_course(root: str | Path, *, source_dir: Path = SOURCE_DIR) -> tuple[list[str], list[str]]:
    """Write this package's student version of every assignment that nbgrader has generated (``root/release/<name>/``
    exists) over nbgrader's. Returns ``(written, not generated yet)``."""
    import nbformat  # the test extra; only the tools need it

    root = Path(root)
    written, missing = [], []
    for src in sorted(Path(source_dir).glob("*.ipynb")):
        folder = root / "release" / src.stem
        if not folder.is_dir():
            missing.append(src.stem)
            continue
        student = release_notebook(nbformat.read(src, as_version=4))
        (folder / src.name).write_text(nbformat.writes(student) + "\n")
        written.append(src.stem)
    return written, missing
