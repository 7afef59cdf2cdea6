"""Executing a notebook: the one place that runs a kernel for the site, the findings runner, the grader, the
benchmarks and the tests.

    seconds = execute_notebook(nb, folder, fast=True, env={"GREGNB_FINDINGS_OUT": out})

The kernel starts in ``folder`` (so relative paths in the notebook resolve as in JupyterLab), inherits this
process's environment plus ``env``, draws figures with the inline backend (what JupyterLab and the site show) and,
when ``fast`` is not None, runs in FAST (``True``) or normal (``False``) mode. The notebook stack (nbclient) is
imported only when a notebook runs.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Mapping

__all__ = ["INLINE", "execute_notebook"]

#: the matplotlib backend JupyterLab and the site use
INLINE = "module://matplotlib_inline.backend_inline"


def execute_notebook(nb, folder: str | os.PathLike, *, fast: bool | None = None, env: Mapping[str, str] | None = None,
                     timeout: int | None = 1800, kernel_name: str = "python3", **client) -> float:
    """Execute ``nb`` (an nbformat node) in place; returns the seconds it took.

    ``fast``: ``GREGNB_FAST`` for the kernel (None: inherited). ``env``: more variables for the kernel.
    ``timeout``: seconds per cell. Further keywords go to :class:`nbclient.NotebookClient` (e.g.
    ``allow_errors=True`` for the grader). A failing cell raises nbclient's ``CellExecutionError`` unless
    ``allow_errors``."""
    from nbclient import NotebookClient

    kernel_env = {**os.environ, "MPLBACKEND": INLINE, **({} if fast is None else {"GREGNB_FAST": "1" if fast else "0"}),
                  **dict(env or {})}
    runner = NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(Path(folder))}}, **client)
    t0 = time.perf_counter()
    runner.execute(env=kernel_env)
    return time.perf_counter() - t0
