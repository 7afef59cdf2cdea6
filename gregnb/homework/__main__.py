"""``python -m gregnb.homework {release,course,grade} ...``: write the student versions, set up a nbgrader course, or
grade submissions."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import course, grade, release
from .grade import DEFAULT_TIMEOUT
from .release import RELEASE_DIR, SOURCE_DIR


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gregnb.homework",
                                 description="Homework tools: write the student versions, set up a nbgrader course, "
                                             "or grade submissions.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rel = sub.add_parser("release", help="write the student versions",
                         description=release.__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rel.add_argument("--out", type=Path, default=RELEASE_DIR, help=f"output folder (default {RELEASE_DIR})")
    rel.add_argument("--source", type=Path, default=SOURCE_DIR, help=f"source folder (default {SOURCE_DIR})")
    rel.add_argument("--check", action="store_true", help="fail if the student versions in --out are out of date")
    rel.add_argument("--course", type=Path, metavar="DIR",
                     help="instead: write them into a nbgrader course's release/<name>/ folders (after nbgrader "
                          "generate_assignment), so that nbgrader release_assignment hands out the versions with hints")
    crs = sub.add_parser("course", help="set up (or refresh) a nbgrader course folder with the assignments",
                         description=course.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    crs.add_argument("root", type=Path, metavar="DIR", help="the course folder (created if missing)")
    crs.add_argument("--exchange", type=Path, help="the nbgrader exchange folder (Exchange.root) students and "
                                                   "instructor share; written into a new nbgrader_config.py")
    crs.add_argument("--course-id", default=course.COURSE_ID, help=f"the course id (default {course.COURSE_ID})")
    crs.add_argument("--source", type=Path, default=SOURCE_DIR, help=f"source folder (default {SOURCE_DIR})")
    gr = sub.add_parser("grade", help="run the hidden tests on submitted notebooks and print the points",
                        description=grade.__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    gr.add_argument("submissions", nargs="+", type=Path, metavar="SUBMISSION.ipynb")
    gr.add_argument("--source", type=Path, default=SOURCE_DIR,
                    help="folder with the source notebooks (with solutions and hidden tests), or a nbgrader "
                         f"course's source/ folder (default {SOURCE_DIR})")
    gr.add_argument("--assignment", help="grade every submission as this source notebook (for renamed files)")
    gr.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT,
                    help=f"seconds per cell before it counts as failed (default {DEFAULT_TIMEOUT})")
    gr.add_argument("--kernel", default="python3", help="Jupyter kernel with gregnb installed (default python3)")
    gr.add_argument("--csv", type=Path, help="also write one row per graded cell to this CSV file")
    args = ap.parse_args(argv)
    if args.cmd == "release":
        return _release(args)
    if args.cmd == "course":
        return _course(args)
    if args.timeout <= 0:
        ap.error(f"--timeout must be a positive number of seconds, got {args.timeout}")
    return grade.run(args.submissions, args.source, assignment=args.assignment, timeout=args.timeout,
               kernel_name=args.kernel, csv_path=args.csv)


def _release(args) -> int:
    if args.course is not None:
        if args.check:
            print("error: --check compares the committed student versions; it does not go with --course")
            return 2
        try:
            written, missing = course.release_to_course(args.course, source_dir=args.source)
        except FileNotFoundError as err:
            print(f"error: {err}")
            return 2
        if written:
            print(f"wrote the student versions of {', '.join(written)} into {args.course}/release/")
        if missing:
            print(f"not generated yet (run `nbgrader generate_assignment NAME` in {args.course} first): "
                  f"{', '.join(missing)}")
        return 0 if written else 1
    try:
        changed = release.release_all(args.out, args.source, check=args.check)
    except FileNotFoundError as err:
        print(f"error: {err}")
        return 2
    if args.check:
        if changed:
            print(f"out of date in {args.out}: {', '.join(changed)}; run python -m gregnb.homework release")
            return 1
        print(f"student versions in {args.out} are up to date")
        return 0
    print(f"wrote {len(changed)} student notebook(s) to {args.out}" + (f": {', '.join(changed)}" if changed else ""))
    return 0


def _course(args) -> int:
    try:
        names = course.setup_course(args.root, exchange=args.exchange, course_id=args.course_id, source_dir=args.source)
    except FileNotFoundError as err:
        print(f"error: {err}")
        return 2
    print(f"course {args.course_id!r} in {args.root}: {len(names)} assignments in source/ ({', '.join(names)}); "
          f"next, in that folder: nbgrader generate_assignment NAME")
    return 0


if __name__ == "__main__":
    sys.exit(main())
