"""Execute chapters in normal mode and write (``update``) or check (``check``) their findings records.

    python -m gregnb.findings update [NN ...]   # run the chapters, rewrite notebooks/findings/NN.json
    python -m gregnb.findings check  [NN ...]   # run them, exit 1 when a verdict or number departs from the record

Without chapter numbers: every chapter whose notebook records findings. Trained models are cached in
``data/models`` (``gregnb.cache``), so a second run of a chapter is much faster than the first; a check
on a fresh clone trains everything (minutes per chapter on a laptop CPU). ``--cold`` gives each chapter an empty
model cache instead, so its recorded time is a student's first run (the records are made with ``update --cold``).
"""
from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

from ..config import cpu_cores, data_dir
from ..runner import execute_notebook
from .record import comparison
from .render import load_record, write_record

__all__ = ["ROOT", "chapter_notebooks", "chapter_workers", "execute_chapter", "provenance", "update", "check", "main"]

ROOT = Path(__file__).resolve().parents[2]


class ChapterFailed(RuntimeError):
    """A chapter raised while executing, or wrote no findings."""


def chapter_notebooks(chapters: Sequence[str] = (), folder: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{"01": path, ...}`` for the chapters asked for; by default every chapter that records findings."""
    folder = Path(folder or ROOT / "notebooks")
    found = {p.name[:2]: p for p in sorted(folder.glob("[0-9][0-9]_*.ipynb"))}
    if not chapters:
        return {nn: p for nn, p in found.items() if "Findings(" in p.read_text(encoding="utf-8")}
    wanted = [str(c).zfill(2) for c in chapters]
    unknown = [c for c in wanted if c not in found]
    if unknown:
        raise SystemExit(f"no chapter notebook for {unknown} in {folder}; choose from {sorted(found)}")
    return {nn: found[nn] for nn in wanted}


def execute_chapter(path: Path, out_dir: Path, *, timeout: int = 1800, keep: Path | None = None,
                    threads: int = 1, workers: int | None = None, data: Path | None = None) -> dict:
    """Run one notebook in normal mode with ``threads`` CPU threads and ``workers`` models trained side by side
    (:func:`gregnb.train.fit_many`, one thread each; default: the cores); return the record its findings cell
    wrote (with ``seconds``). The thread count is fixed because it can change a CPU run's rounding; the number
    of workers changes only the time. ``data``: the kernel's ``GREGNB_DATA`` (default: the caller's)."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    env = {"GREGNB_FINDINGS_OUT": str(out_dir), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "GREGNB_WORKERS": str(workers or cpu_cores()), **({"GREGNB_DATA": str(data)} if data else {})}
    try:
        seconds = execute_notebook(nb, path.parent, fast=False, env=env, timeout=timeout)
    except CellExecutionError as err:
        last = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ChapterFailed(f"{path.name} stopped with an error: {last}") from None
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, keep / path.name)
    record = load_record(path.name[:2], out_dir)
    if record is None:
        raise ChapterFailed(f"{path.name} ran but recorded no findings (its closing cell must call Findings(...).show())")
    return {**record, "seconds": round(seconds, 1)}


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def _cpu_model() -> str:
    """", <CPU model name>" where the system says it (a different CPU can round differently), else ""."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return ", " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f", {platform.processor()}" if platform.processor() else ""


def provenance(seconds: float, workers: int = 1) -> dict:
    """Commit (and whether tracked files had uncommitted changes), date, machine, versions and the CPU kernels
    of a run (the kernel level in force is the chapters' kernels', as :mod:`gregnb.kernels` pins it)."""
    import torch

    from ..kernels import kernel_report

    return {"commit": _git("rev-parse", "HEAD") or "unknown (not a git checkout)",
            "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs{_cpu_model()}",
            "python": platform.python_version(), "torch": torch.__version__, "threads": 1,
            "workers": workers, "cpu_kernels": kernel_report(), "seconds": round(seconds, 1)}


def chapter_workers(jobs: int) -> int:
    """Models each chapter trains side by side when ``jobs`` chapters run at once: the cores shared out."""
    return max(1, cpu_cores() // max(1, jobs))


def _run_all(paths: dict[str, Path], jobs: int, records: Path, cold: bool = False,
             **kw) -> Iterator[tuple[str, Path, "dict | ChapterFailed"]]:
    """Execute chapters, ``jobs`` at a time (each kernel single-threaded); yield results as they finish, in order."""

    def one(item):
        nn, path = item
        with tempfile.TemporaryDirectory() as tmp:
            data = None
            if cold:  # an empty model cache; the generated benchmarks copied in (they are data, not training)
                data = Path(tmp) / "data"
                data.mkdir()
                for f in data_dir().glob("digits_v*_seed*.npz"):
                    shutil.copy2(f, data)
            try:
                return nn, path, execute_chapter(path, Path(tmp), workers=chapter_workers(jobs), data=data, **kw)
            except ChapterFailed as err:
                return nn, path, err

    def recorded_seconds(item):   # longest first (as last recorded), so parallel jobs finish together
        record = load_record(item[0], records) if jobs > 1 else None
        return -(record or {}).get("provenance", {}).get("seconds", 0.0)

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        yield from pool.map(one, sorted(paths.items(), key=recorded_seconds))


def update(chapters: Sequence[str] = (), *, notebooks=None, records=None, timeout: int = 1800, keep=None,
           jobs: int = 1, cold: bool = False) -> int:
    """Execute the chapters and rewrite their committed records; returns an exit status. ``cold``: each chapter
    from an empty model cache, so its recorded time is a first run's."""
    records = Path(records or ROOT / "notebooks" / "findings")
    status = 0
    for nn, path, run in _run_all(chapter_notebooks(chapters, notebooks), jobs, records, cold, timeout=timeout,
                                  keep=keep and Path(keep)):
        if isinstance(run, ChapterFailed):
            print(f"{path.stem}: FAILED, record unchanged: {run}", flush=True)
            status = 1
            continue
        seconds = run.pop("seconds")
        record = {"format": run["format"], "chapter": nn, "mode": run["mode"], "platform": run.get("platform"),
                  "provenance": provenance(seconds, chapter_workers(jobs)),
                  "claims": run["claims"]}
        write_record(record, records / f"{nn}.json")
        print(f"{path.stem}: wrote {records / f'{nn}.json'} ({len(record['claims'])} claims, {seconds:.0f} s)",
              flush=True)
    return status


def check(chapters: Sequence[str] = (), *, notebooks=None, records=None, timeout: int = 1800, keep=None,
          jobs: int = 1, cold: bool = False) -> int:
    """Execute the chapters and compare with their records; prints every departure, returns 1 if any."""
    records = Path(records or ROOT / "notebooks" / "findings")
    failed, paths = [], chapter_notebooks(chapters, notebooks)
    recorded = {nn: load_record(nn, records) for nn in paths}
    for nn in [nn for nn, rec in recorded.items() if rec is None]:
        print(f"{paths.pop(nn).stem}: no record in {records} (write one with `python -m gregnb.findings update {nn}`)")
        failed.append(nn)
    for nn, path, run in _run_all(paths, jobs, records, cold, timeout=timeout, keep=keep and Path(keep)):
        if isinstance(run, ChapterFailed):
            print(f"{path.stem}: FAILED: {run}", flush=True)
            failed.append(nn)
            continue
        result = comparison(recorded[nn], run)
        problems = result.problems
        how = " (compared statistically: another platform)" if result.statistical else ""
        print(f"{path.stem}: {'OK' + how if not problems else 'DEPARTS FROM ITS RECORD'} "
              f"({len(run['claims'])} claims, {run['seconds']:.0f} s)", flush=True)
        if result.platform_note:
            print(f"    note: {result.platform_note}", flush=True)
        for p in problems:
            print(f"    {p}", flush=True)
        for p in result.notes:
            print(f"    note: {p}", flush=True)
        if problems:
            failed.append(nn)
    if failed:
        print(f"findings check failed for chapter(s) {', '.join(failed)}. If the change is intended, rewrite the "
              f"records with `python -m gregnb.findings update {' '.join(failed)}` and commit them.")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gregnb.findings", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("update", "check"))
    ap.add_argument("chapters", nargs="*", metavar="NN", help="chapter numbers, e.g. 01 03 (default: all with findings)")
    ap.add_argument("--notebooks", help="folder of the chapter notebooks (default: the checkout's notebooks/)")
    ap.add_argument("--records", help="folder of the records (default: notebooks/findings/)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds allowed per cell (default 1800)")
    ap.add_argument("--keep", help="also save the executed notebooks into this folder")
    ap.add_argument("--jobs", type=int, default=1,
                    help="chapters run at once (default 1), each on one CPU thread, training the cores / jobs models "
                         "side by side (records are made with the default: their times are a chapter's on this machine)")
    ap.add_argument("--cold", action="store_true",
                    help="each chapter from an empty model cache (a temporary GREGNB_DATA holding only the generated "
                         "benchmarks), so its time is a first run's; records are made this way")
    args = ap.parse_intermixed_args(argv)   # chapter numbers may come after the options too
    if args.jobs < 1:
        ap.error(f"--jobs must be at least 1, got {args.jobs}")
    command = update if args.command == "update" else check
    return command(args.chapters, notebooks=args.notebooks, records=args.records, timeout=args.timeout,
                   keep=args.keep, jobs=args.jobs, cold=args.cold)
