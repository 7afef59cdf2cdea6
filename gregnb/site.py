"""Build a static HTML version of the collection with executed outputs.

    .venv/bin/python -m gregnb.site --out build/site [--fast]

Every chapter (and the homework solutions, unless ``--no-homework``) is executed with nbclient
(``GREGNB_FAST=1`` with ``--fast``), converted with nbconvert's HTML exporter and linked from an
``index.html``. Widgets cannot run in a static page: they degrade to their default view, the figure
they showed when the cell ran (every explorer adds its current PNG to its output).
"""
from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path

import nbformat

__all__ = ["build_site", "main"]

ROOT = Path(__file__).resolve().parent.parent
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _strip_widget_views(nb: nbformat.NotebookNode) -> None:
    """Drop live-widget views (they need a kernel); the PNG next to them stays."""
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if WIDGET_MIME in data and len(data) > 1:
                data.pop(WIDGET_MIME)
                if "image/png" in data:
                    data.pop("text/plain", None)
    nb.metadata.pop("widgets", None)


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def build_site(out: str | os.PathLike, fast: bool = False, homework: bool = True, timeout: int = 1800) -> list[Path]:
    """Execute and render the chapters into ``out``; returns the HTML pages written (index first)."""
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if homework:
        notebooks += sorted((ROOT / "notebooks" / "homework" / "source").glob("*.ipynb"))
    old = os.environ.get("GREGNB_FAST"), os.environ.get("MPLBACKEND")
    os.environ["GREGNB_FAST"] = "1" if fast else "0"
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"  # kernels draw figures inline
    exporter = HTMLExporter(template_name="lab")
    pages, entries = [], []
    try:
        for path in notebooks:
            t0 = time.perf_counter()
            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            _strip_widget_views(nb)
            body, _ = exporter.from_notebook_node(nb)
            page = out / (path.stem + ".html")
            page.write_text(body, encoding="utf-8")
            pages.append(page)
            entries.append((page.name, _title(nb, path.stem), time.perf_counter() - t0))
            print(f"{path.name}: {entries[-1][2]:.0f} s", flush=True)
    finally:
        for key, value in zip(("GREGNB_FAST", "MPLBACKEND"), old):
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    items = "\n".join(f'<li><a href="{name}">{html.escape(title)}</a></li>' for name, title, _ in entries)
    mode = "FAST mode (small settings: numbers are smoke tests)" if fast else "normal mode"
    index = out / "index.html"
    index.write_text(f"""<!doctype html><html><head><meta charset="utf-8"><title>gregnb</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>gregnb: seeing why OOD detectors work</h1>
<p>A static rendering of the collection, executed in {mode}. Widgets show the figure they drew when the
page was built; run the notebooks in JupyterLab to use them.</p>
<ol>{items}</ol></body></html>
""", encoding="utf-8")
    return [index, *pages]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gregnb.site", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "build" / "site"))
    ap.add_argument("--fast", action="store_true", help="execute with GREGNB_FAST=1 (a few minutes)")
    ap.add_argument("--no-homework", action="store_true")
    args = ap.parse_args(argv)
    pages = build_site(args.out, fast=args.fast, homework=not args.no_homework)
    print(f"wrote {len(pages)} pages; open {pages[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
