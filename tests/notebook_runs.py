"""Executing notebooks for the tests: FAST mode, the inline backend (what JupyterLab and the site use) and a
probe that counts the figures each cell leaves open; and :class:`ChapterRuns`, which executes each chapter once per
test session for both the notebook test (tests/test_notebooks.py) and the site build (tests/test_site.py)."""
import copy
import json
from pathlib import Path
from typing import NamedTuple

import nbformat

from gregnb.runner import execute_notebook
# Run first, hidden: after every cell, once the inline backend has shown and closed the figures the cell
# drew, count the figures still registered with pyplot. One left open (an explorer's, a helper's) is shown
# again by the next cell that plots: a duplicate figure in the wrong place.
PROBE = """\
import sys as _gregnb_sys
_gregnb_open_figures = {}
def _gregnb_count_open_figures(result):
    pyplot = _gregnb_sys.modules.get("matplotlib.pyplot")
    _gregnb_open_figures[result.execution_count] = len(pyplot.get_fignums()) if pyplot else 0
get_ipython().events.register("post_run_cell", _gregnb_count_open_figures)
"""
REPORT = "print(__import__('json').dumps(_gregnb_open_figures))"


def execute_with_figure_probe(nb, path, findings_out=None):
    """Execute ``nb`` in FAST mode with the inline backend and :data:`PROBE`; returns (seconds, cells that
    left figures open as ``(index, first line, count)``), with the notebook's own cell indices.
    ``findings_out``: folder where the chapter's findings cell writes this run's record."""
    cells = list(nb.cells)
    nb.cells = [nbformat.v4.new_code_cell(PROBE), *cells, nbformat.v4.new_code_cell(REPORT)]
    env = {} if findings_out is None else {"GREGNB_FINDINGS_OUT": str(findings_out)}
    elapsed = execute_notebook(nb, path.parent, fast=True, env=env, timeout=600)
    report = nb.cells[-1]
    counts = json.loads("".join(o.get("text", "") for o in report.outputs if o.get("name") == "stdout"))
    nb.cells = cells
    leaks = [(i, c.source.splitlines()[0] if c.source else "", counts.get(str(c.execution_count), 0))
             for i, c in enumerate(cells) if c.cell_type == "code"]
    return elapsed, [leak for leak in leaks if leak[2]]


class Run(NamedTuple):
    nb: object  # the executed notebook (nbformat node), the probe cells removed
    elapsed: float  # seconds
    leaks: list  # (cell index, first line, figures left open)
    findings: Path  # where its findings cell wrote this run's record


class ChapterRuns:
    """Each notebook executed at most once per session (memoised by path), with the figure probe and its findings
    record written under ``folder``. :meth:`executed_copy` hands a copy to ``gregnb.site.build_site(executed=...)``."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self._runs: dict[Path, Run] = {}

    def run(self, path) -> Run:
        path = Path(path)
        if path not in self._runs:
            nb = nbformat.read(path, as_version=4)
            findings = self.folder / path.stem
            findings.mkdir(parents=True, exist_ok=True)
            elapsed, leaks = execute_with_figure_probe(nb, path, findings_out=findings)
            self._runs[path] = Run(nb, elapsed, leaks, findings)
        return self._runs[path]

    def executed_copy(self, path):
        return copy.deepcopy(self.run(path).nb)
