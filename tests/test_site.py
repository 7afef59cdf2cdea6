"""The rendered site builds in FAST mode: every chapter page shows figures, each explorer's picture once
(a figure left open in pyplot is drawn again by the next cell that plots), and MathJax comes from the
site folder, not from a CDN. ``tests/test_browser.py`` checks in Chromium that the equations are typeset."""
import base64
import html
import io
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from gregnb.site import MATHJAX_DIR, MATHJAX_URL, build_site

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EXPLORER_CALL = re.compile(r"\b(\w+_explorer|dataset_browser)\(")
PNG = re.compile(r'<img[^>]+src="data:image/png;base64,([^"]+)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory, chapter_runs):
    """The FAST site, rendering the chapters' executions that tests/test_notebooks.py checks (each chapter runs
    once per session)."""
    out = tmp_path_factory.mktemp("site")
    return out, build_site(out, fast=True, homework=False, executed=chapter_runs.executed_copy)


def _code_cells(page_html: str) -> list[tuple[str, list[str]]]:
    """``(source, [base64 PNGs of its outputs])`` for each code cell of an nbconvert "lab" page."""
    cells = []
    for chunk in re.split(r'<div class="jp-Cell ', page_html)[1:]:
        if not chunk.startswith("jp-CodeCell"):
            continue
        source = re.search(r"<pre>(.*?)</pre>", chunk, re.S)
        cells.append((html.unescape(re.sub(r"<[^>]+>", "", source.group(1))) if source else "", PNG.findall(chunk)))
    return cells


def _thumbnail(png_b64: str, size: int = 48) -> tuple[float, np.ndarray]:
    """(aspect ratio, ``size x size`` grey levels) of a picture's drawn content, white margins cropped:
    the same figure rendered at another resolution or with a tight bounding box gives nearly the same."""
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(png_b64))).convert("RGBA")
    white = Image.new("RGBA", img.size, "white")
    grey = Image.alpha_composite(white, img).convert("L")
    box = Image.eval(grey, lambda v: 255 - v).point(lambda v: 255 if v > 12 else 0).getbbox() or (0, 0, *grey.size)
    grey = grey.crop(box)
    return grey.width / grey.height, np.asarray(grey.resize((size, size), Image.BILINEAR), dtype=float) / 255


def same_picture(a: str, b: str) -> bool:
    """Two renderings of one figure differ by < 0.01 in mean grey level (measured on the built site: an
    explorer's picture and its copy redrawn by the inline backend); distinct figures by > 0.05."""
    (ra, ta), (rb, tb) = _thumbnail(a), _thumbnail(b)
    return abs(ra / rb - 1) < 0.05 and float(np.abs(ta - tb).mean()) < 0.025


def test_same_picture_tells_a_redraw_from_another_figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    def png(fig, **kw) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", **kw)
        return base64.b64encode(buf.getvalue()).decode()

    fig = Figure(figsize=(6, 3))
    ax = fig.subplots()
    ax.plot(np.sin(np.linspace(0, 6, 100)))
    ax.set_title("a sine")
    small, large = png(fig, dpi=72), png(fig, dpi=100, bbox_inches="tight")  # the widget's and inline's renderings
    other = Figure(figsize=(6, 3))
    other.subplots().hist(np.random.default_rng(0).normal(size=500), bins=30)
    assert same_picture(small, large)
    assert not same_picture(small, png(other, dpi=72))


@pytest.mark.notebook
def test_site_builds_with_figures(site):
    out, pages = site
    assert [p.stem for p in pages[1:]] == CHAPTERS
    index = pages[0].read_text()
    for name in CHAPTERS:
        assert f'href="{name}.html"' in index
    for page in pages[1:]:
        text = page.read_text()
        assert len(PNG.findall(text)) >= 1, f"{page.name} has no figure"
        assert "Traceback" not in text, f"{page.name} shows an error"
    # widgets degrade to their figure: chapter 01's temperature explorer leaves a PNG, not a placeholder
    ch01 = (out / "01_energy_scores.html").read_text()
    assert "FigureExplorer(children=" not in ch01


@pytest.mark.notebook
def test_each_explorer_picture_appears_once(site):
    _, pages = site
    n_explorers = 0
    for page in pages[1:]:
        cells = _code_cells(page.read_text())
        pictures = [png for _, pngs in cells for png in pngs]
        for i, (source, pngs) in enumerate(cells):
            if not EXPLORER_CALL.search(source):
                continue
            assert len(pngs) == 1, f"{page.name}, code cell {i}: {len(pngs)} pictures under an explorer"
            copies = sum(same_picture(pngs[0], other) for other in pictures)
            assert copies == 1, f"{page.name}: the explorer of code cell {i} appears {copies} times"
            n_explorers += 1
    calls = [c for p in CHAPTERS for c in nbformat.read(ROOT / "notebooks" / f"{p}.ipynb", 4).cells
             if c.cell_type == "code" and EXPLORER_CALL.search(c.source)]
    assert n_explorers == len(calls) > 0  # every explorer was found on its page


@pytest.mark.notebook
def test_pages_load_mathjax_from_the_site_folder(site):
    out, pages = site
    assert (out / MATHJAX_DIR / "MathJax.js").is_file()
    config = MATHJAX_URL.split("?config=")[1].split(",")
    for name in config:
        assert (out / MATHJAX_DIR / "config" / f"{name}.js").is_file(), name
    assert (out / MATHJAX_DIR / "fonts" / "HTML-CSS" / "STIX-Web").is_dir()
    for page in pages[1:]:
        text = page.read_text()
        assert re.findall(r'<script[^>]*\ssrc="([^"]*)"', text) == [MATHJAX_URL], page.name
        assert not re.findall(r'\ssrc="(?:https?:)?//|<link[^>]+href="(?:https?:)?//', text), \
            f"{page.name} loads something from the network"


def test_pages_show_the_committed_findings(site):
    """Each chapter page that states findings shows its committed normal-mode record: every claim's sentence and
    recorded numbers (the same text a normal-mode build shows), and a FAST build says it is not comparable."""
    from gregnb.findings import Claim, load_record

    out, _ = site
    for name in CHAPTERS:
        record = load_record(name[:2])
        if record is None:
            continue
        page = html.unescape((out / f"{name}.html").read_text())
        assert "not comparable with the normal-mode record" in page, name
        for d in record["claims"]:
            claim = Claim.from_dict(d)
            assert claim.claim in page and claim.outcome_with_p() in page, (name, claim.id)
            for number in claim.numbers.values():
                assert number.text() in page, (name, claim.id, number.text())


# ---- what a reader must not see: machine paths and object reprs ---------------------------------------------
def _planted_notebook(paths):
    """One clean cell, then one cell per planted problem (outputs as a kernel writes them)."""
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    home, root, tmp, data = paths
    planted = [
        ("print('loaded')", new_output("stream", name="stdout", text=f"loaded ce-1.pt from {data}/models\n")),
        ("cfg", new_output("execute_result", data={"text/plain": f"PosixPath('{root}/notebooks')"}, execution_count=1)),
        ("warn()", new_output("stream", name="stderr", text=f"UserWarning: cannot write {tmp}/x.pt\n")),
        ("html()", new_output("display_data", data={"text/html": f"<td>{home}/.cache/gregnb</td>"})),
        ("found.add_check('a', 'b', True)", new_output("execute_result", execution_count=2, data={
            "text/plain": "Claim(id='a', claim='b', verdict='holds', numbers={}, wins=None, seeds=None)"})),
        ("ax.set_title('x')", new_output("execute_result", data={"text/plain": "Text(0.5, 1.0, 'x')"}, execution_count=3)),
        ("ax.plot(x)", new_output("execute_result", execution_count=4,
                                  data={"text/plain": "[<matplotlib.lines.Line2D at 0x7f3a2c1d0>]"})),
    ]
    clean = new_code_cell("print('ok')", outputs=[
        new_output("stream", name="stdout", text="loaded ce-1.pt from data/models; $GREGNB_DATA/models; ~/x\n"),
        new_output("display_data", data={"text/plain": "<Figure size 640x480 with 1 Axes>",
                                         "image/png": "L3RtcC9hYmMvcm9vdC8="})])   # base64 of "/tmp/abc/root/"
    cells = [clean] + [new_code_cell(src, outputs=[out]) for src, out in planted]
    return new_notebook(cells=cells), len(planted)


def test_output_check_catches_each_planted_path_and_repr():
    from gregnb.site import output_problems

    fake = ("/home/student", "/srv/checkout", "/var/tmp-build", "/srv/checkout/data")
    paths = dict(zip(fake, ("the home folder", "the checkout", "the temporary folder", "the data folder")))
    nb, n = _planted_notebook(fake)
    problems = output_problems(nb, "03_x.ipynb", paths)
    assert len(problems) == n, "\n".join(problems)
    for i in range(2, n + 2):   # code cell 1 is clean; every planted cell is named once, with the notebook
        assert sum(p.startswith(f"03_x.ipynb, code cell {i} (") for p in problems) == 1, (i, problems)
    assert "the data folder" in problems[0] and "the checkout" in problems[1]   # the longest match names it
    assert all("repr" in p for p in problems[4:])
    # a path that merely starts like one of them is not flagged; nor is a clean notebook
    nb.cells[1].outputs[0]["text"] = "/srv/checkouts-elsewhere/x and /home/students\n"
    assert [p for p in output_problems(nb, "03_x.ipynb", paths) if "code cell 2 " in p] == []


def test_output_check_knows_this_machines_paths(tmp_path, monkeypatch):
    from gregnb.site import ROOT as SITE_ROOT, output_problems, machine_paths

    monkeypatch.setenv("GREGNB_DATA", str(tmp_path / "store"))
    paths = machine_paths()
    assert {str(SITE_ROOT), str(tmp_path / "store"), str(Path.home())} <= set(paths)
    nb, n = _planted_notebook((str(Path.home()), str(SITE_ROOT), str(tmp_path), str(tmp_path / "store")))
    assert len(output_problems(nb, "x.ipynb")) >= n - 3   # three reprs, and the paths of this machine


def test_build_fails_naming_the_cell(tmp_path, monkeypatch):
    """The build writes the pages, then refuses: the error names the notebook and the cell."""
    import gregnb.site as site

    nb, _ = _planted_notebook(("/home/student", str(site.ROOT), "/var/tmp-build", str(site.ROOT / "data")))
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "07_planted.ipynb")
    monkeypatch.setattr(site, "ROOT", tmp_path)
    monkeypatch.setattr(site, "copy_mathjax", lambda out: out)
    with pytest.raises(site.SiteOutputError, match=r"07_planted.ipynb, code cell 6 \(.*Claim\("):
        site.build_site(tmp_path / "out", homework=False, execute=False)
    assert (tmp_path / "out" / "07_planted.html").exists()


def _output_text(page_html: str) -> str:
    """The text of every cell's outputs on an nbconvert "lab" page (sources and prose left out)."""
    parts = []
    for chunk in re.split(r'<div class="jp-Cell ', page_html)[1:]:
        at = chunk.find("jp-OutputArea")
        if at >= 0:
            parts.append(html.unescape(re.sub(r"<img[^>]*>", " ", chunk[at:])))
    return "\n".join(parts)


@pytest.mark.notebook
def test_built_pages_show_no_machine_path_and_no_repr(site):
    """Counted on the pages themselves, independently of the build's own check."""
    from gregnb.site import REPR, machine_paths

    _, pages = site
    paths = machine_paths()
    found = {}
    for page in pages[1:]:
        text = _output_text(page.read_text())
        found[page.name] = (sum(text.count(p) for p in paths), len(REPR.findall(text)))
    assert all(n_paths == 0 and n_reprs == 0 for n_paths, n_reprs in found.values()), found


@pytest.mark.notebook
def test_index_says_mode_date_and_commit(site):
    index = site[1][0].read_text()
    assert "FAST mode" in index and "normal mode</b>" not in index
    assert re.search(r"built \d{4}-\d\d-\d\d \d\d:\d\d UTC, commit [0-9a-f]{10}", index), index


def test_build_renders_a_shared_execution_instead_of_running_again(tmp_path, monkeypatch):
    """With ``executed``, the build renders that execution (the suite runs each chapter once, for the notebook test
    and the site) and starts no kernel; a notebook it does not hold is still executed."""
    import nbclient
    from nbformat.v4 import new_code_cell, new_notebook, new_output

    import gregnb.site as site

    (tmp_path / "notebooks").mkdir()
    for name in ("07_shared", "08_alone"):
        nbformat.write(new_notebook(cells=[new_code_cell("print('hi')")]), tmp_path / "notebooks" / f"{name}.ipynb")
    ran = []

    class Kernel:  # stands in for nbclient: records what it was asked to execute
        def __init__(self, nb, **_):
            self.nb = nb

        def execute(self, **_):
            ran.append(self.nb.cells[0].source)
            self.nb.cells[0].outputs = [new_output("stream", name="stdout", text="executed by the build\n")]

    shared = new_notebook(cells=[new_code_cell("print('hi')", outputs=[
        new_output("stream", name="stdout", text="from the shared execution\n")])])
    monkeypatch.setattr(site, "ROOT", tmp_path)
    monkeypatch.setattr(site, "copy_mathjax", lambda out: out)
    monkeypatch.setattr(nbclient, "NotebookClient", Kernel)
    site.build_site(tmp_path / "out", fast=True, homework=False,
                    executed=lambda p: shared if p.stem == "07_shared" else None)
    assert "from the shared execution" in (tmp_path / "out" / "07_shared.html").read_text()
    assert "executed by the build" in (tmp_path / "out" / "08_alone.html").read_text() and len(ran) == 1
