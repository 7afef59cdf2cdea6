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
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    return out, build_site(out, fast=True, homework=False)


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
            assert claim.claim in page and claim.outcome() in page, (name, claim.id)
            for number in claim.numbers.values():
                assert number.text() in page, (name, claim.id, number.text())
