"""Build a static HTML version of the collection with executed outputs.

    .venv/bin/python -m gregnb.site --out build/site [--fast]

Every chapter (and the homework solutions, unless ``--no-homework``) is executed with nbclient
(``GREGNB_FAST=1`` with ``--fast``), converted with nbconvert's HTML exporter and linked from an
``index.html``. Widgets cannot run in a static page: they degrade to their default view, the figure
they showed when the cell ran (every explorer adds its current PNG to its output).

The pages need no network: equations are typeset by a local copy of MathJax 2 (from the
``jupyter-server-mathjax`` package, copied into ``<out>/mathjax/``), and the CDN scripts of
nbconvert's template (require.js, MathJax) are left out. ``--only`` builds some notebooks;
``--no-execute`` renders them as stored (no outputs: a quick proof-read of text and equations).

A page must read as a student should see it: the build fails (:class:`SiteOutputError`, after writing every
page) when an output shows an absolute path of the building machine (its home folder, the checkout, the
temporary folder, the data folder) or the repr of a bookkeeping or plotting object (``Claim(...)``,
``Text(...)``, ``<matplotlib...>``), naming the notebook and the cell. :func:`output_problems` is the check.
The index says the mode it was built in, with the date and the commit.
"""
from __future__ import annotations

import argparse
import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence


__all__ = ["build_site", "output_problems", "machine_paths", "SiteOutputError", "main"]

ROOT = Path(__file__).resolve().parent.parent
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
MATHJAX_DIR = "mathjax"  # inside the site folder
# the one configuration shipped by jupyter-server-mathjax; its output is HTML-CSS with the STIX web fonts
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"

# nbconvert's lab template, less its CDN scripts (require.js is only used by live widgets, stripped
# here), with MathJax loaded from the site folder and configured as the classic Jupyter Notebook did
_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
    tex2jax: {
        inlineMath: [ ['$','$'], ["\\(","\\)"] ],
        displayMath: [ ['$$','$$'], ["\\[","\\]"] ],
        processEscapes: true,
        processEnvironments: true
    },
    TeX: { equationNumbers: { autoNumber: "AMS", useLabelIds: true } },
    displayAlign: 'center',
    messageStyle: 'none',
    "HTML-CSS": {
        availableFonts: [],
        preferredFont: null,
        webFont: "STIX-Web",
        imageFont: null,
        linebreaks: { automatic: true }
    }
});
</script>
<script src="{{ resources.mathjax_url }}"></script>
{%- endblock html_head_js_mathjax -%}
"""


def mathjax_source() -> Path:
    """The MathJax 2 distribution shipped by the ``jupyter-server-mathjax`` package (in the test extra)."""
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the site typesets equations with a local MathJax: install the package "
                           "jupyter-server-mathjax (`pip install -e .[test]` or `python3 run.py site`)")
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    if not (static / "MathJax.js").exists():
        raise RuntimeError(f"jupyter-server-mathjax has no MathJax.js in {static}")
    return static


def copy_mathjax(out: Path) -> Path:
    """Copy MathJax into ``out / MATHJAX_DIR`` (over an existing copy); returns that folder."""
    dest = out / MATHJAX_DIR
    shutil.copytree(mathjax_source(), dest, dirs_exist_ok=True)
    return dest


#: a cell's last expression left to display itself: a findings claim, a matplotlib return value (end the line with ``;``)
REPR = re.compile(r"(?<![\w.])(?:Claim|Text)\(|<matplotlib[.\s]")
#: the output kinds a reader sees as text (pictures are base64: not searched)
TEXT_MIME = ("text/plain", "text/html", "text/markdown", "text/latex")


class SiteOutputError(RuntimeError):
    """Rendered outputs show what a reader should not see (machine paths, object reprs); lists each place."""


def machine_paths() -> dict[str, str]:
    """``{absolute path: what it is}`` for the paths of the building machine that no page may show: the home
    folder, the checkout, the temporary folder and the data folder (as given and resolved)."""
    from .config import _data_root

    found = {}
    for what, path in (("the data folder", _data_root()[0]), ("the checkout", ROOT),
                       ("the temporary folder", Path(tempfile.gettempdir())), ("the home folder", Path.home())):
        for variant in {str(path), str(path.expanduser().resolve())}:
            if len(variant.strip("/\\")) > 1:   # never flag "/" itself
                found.setdefault(variant.rstrip("/\\"), what)
    return found


def _texts(output) -> list[str]:
    if output.get("output_type") == "stream":
        return [output.get("text", "")]
    if output.get("output_type") == "error":
        return ["\n".join(output.get("traceback", [])), output.get("evalue", "")]
    data = output.get("data", {})
    return [v if isinstance(v, str) else "".join(v) for k, v in data.items() if k in TEXT_MIME]


def output_problems(nb, name: str, paths: dict[str, str] | None = None) -> list[str]:
    """Every output of ``nb`` a reader should not see, one line each, naming ``name`` and the code cell (counted
    from 1, as a reader counts them): an absolute path of this machine (``paths``, default :func:`machine_paths`)
    or a ``Claim(`` / ``Text(`` / ``<matplotlib`` repr."""
    paths = machine_paths() if paths is None else paths
    end = r"""(?=[/\\\s'"),:;<]|$)"""   # a path ends at a separator, a space, a quote or punctuation
    pattern = re.compile("|".join(re.escape(p) + end for p in sorted(paths, key=len, reverse=True)) or r"(?!x)x", re.M)
    problems = []
    code_cells = [c for c in nb.cells if c.get("cell_type") == "code"]
    for i, cell in enumerate(code_cells, 1):
        first = cell.get("source", "").strip().splitlines()[:1]
        where = f"{name}, code cell {i} ({first[0][:60] if first else 'empty'!r})"
        for text in (t for out in cell.get("outputs", []) for t in _texts(out)):
            for m in pattern.finditer(text):
                problems.append(f"{where}: shows {paths[m.group(0)]} as an absolute path: "
                                f"{text[max(0, m.start() - 30):m.end() + 30].strip()!r}")
            for m in REPR.finditer(text):
                problems.append(f"{where}: shows a repr, {text[m.start():m.start() + 50].splitlines()[0]!r} (end the "
                                f"cell's last line with ';', or make the call return None)")
    return problems


def _provenance() -> str:
    """"2026-11-28 14:05 UTC, commit 1234abcd56" (with uncommitted changes, when there are)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    commit = git("rev-parse", "--short=10", "HEAD") or "unknown (not a git checkout)"
    dirty = " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    return f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}{dirty}"


def _strip_widget_views(nb) -> None:
    """Drop live-widget views (they need a kernel); the PNG next to them stays."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data and len(data) > 1:
                data.pop(WIDGET_MIME)
                if "image/png" in data:
                    data.pop("text/plain", None)
    nb.metadata.pop("widgets", None)


def _title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def build_site(out: str | os.PathLike, fast: bool = False, homework: bool = True, timeout: int = 1800,
               only: Sequence[str] | None = None, execute: bool = True, executed=None) -> list[Path]:
    """Execute and render the chapters into ``out``; returns the HTML pages written (index first).

    ``only``: notebook names (with or without ``.ipynb``) to build instead of all of them.
    ``execute=False`` renders the notebooks as stored, without running them.
    ``executed``: a callable ``path -> notebook node`` that returns a copy of that notebook already executed in the
    build's mode, rendered instead of running it again (the test suite executes each chapter once for its notebook
    test and this build); None for a notebook it does not hold.
    """
    import nbformat  # the notebook stack (test extra): only building the site needs it

    from nbconvert import HTMLExporter

    from .runner import execute_notebook

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if homework:
        notebooks += sorted((ROOT / "notebooks" / "homework" / "source").glob("*.ipynb"))
    if only is not None:
        wanted = {Path(name).stem for name in only}
        unknown = wanted - {p.stem for p in notebooks}
        if unknown:
            raise ValueError(f"no such notebook(s): {sorted(unknown)}; choose from {[p.stem for p in notebooks]}")
        notebooks = [p for p in notebooks if p.stem in wanted]
    copy_mathjax(out)
    exporter = HTMLExporter(template_name="lab", raw_template=_TEMPLATE, mathjax_url=MATHJAX_URL)
    pages, entries, problems, paths = [], [], [], machine_paths()
    for path in notebooks:
        t0 = time.perf_counter()
        nb = executed(path) if executed is not None else None
        if nb is None:
            nb = nbformat.read(path, as_version=4)
            if execute:
                execute_notebook(nb, path.parent, fast=fast, timeout=timeout)
        _strip_widget_views(nb)
        problems += output_problems(nb, path.name, paths)
        body, _ = exporter.from_notebook_node(nb)
        page = out / (path.stem + ".html")
        page.write_text(body, encoding="utf-8")
        pages.append(page)
        entries.append((page.name, _title(nb, path.stem), time.perf_counter() - t0))
        print(f"{path.name}: {entries[-1][2]:.0f} s", flush=True)
    items = "\n".join(f'<li><a href="{name}">{html.escape(title)}</a></li>' for name, title, _ in entries)
    mode = ("executed in <b>FAST mode</b> (small settings: fewer seeds and epochs; its numbers are smoke tests, not "
            "results)" if fast else "executed in <b>normal mode</b> (the settings behind the committed findings records)")
    if not execute:
        mode = "not executed (the notebooks as stored, without outputs)"
    built = html.escape(_provenance())
    index = out / "index.html"
    index.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>gregnb</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>gregnb: seeing why OOD detectors work</h1>
<p class="gregnb-build">A static rendering of the collection, {mode}, built {built}.</p>
<p>Widgets show the figure they drew when the page was built; run the notebooks in JupyterLab to use them.</p>
<ol>{items}</ol>
<p style="font-size: small">Equations are typeset by a local copy of MathJax (in <code>{MATHJAX_DIR}/</code>, with its
licence): the pages need no network.</p></body></html>
""", encoding="utf-8")
    if problems:
        raise SiteOutputError(f"{len(problems)} output(s) show what a reader should not see (pages written to "
                              f"{out}):\n" + "\n".join(f"- {p}" for p in problems))
    return [index, *pages]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gregnb.site", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "site"))
    ap.add_argument("--fast", action="store_true", help="execute with GREGNB_FAST=1 (a few minutes)")
    ap.add_argument("--no-homework", action="store_true")
    ap.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="build only these notebooks (e.g. 03_gradient_regularization)")
    ap.add_argument("--no-execute", action="store_true", help="render the notebooks as stored, without running them")
    args = ap.parse_args(argv)
    try:
        pages = build_site(args.out, fast=args.fast, homework=not args.no_homework, only=args.only,
                           execute=not args.no_execute)
    except SiteOutputError as err:
        print(f"site build FAILED: {err}", file=sys.stderr)
        return 1
    print(f"wrote {len(pages)} pages; open {pages[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
