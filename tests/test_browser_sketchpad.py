"""The sketchpad in a real browser: JupyterLab in headless Chromium runs a notebook that shows a Sketchpad and a
PointExplorer; the mouse draws a stroke on the pad and clicks on a toy landscape; the displayed readout (energy
included) must change, the pad must show the ink, and no error may appear.

Opt-in by marker (``-m browser``), like tests/test_browser.py, whose JupyterLab fixture and helpers it reuses;
skipped without Chromium. Screenshots go to ``build/screenshots/`` (or ``$GREGNB_SCREENSHOTS``).
"""
from __future__ import annotations

import re
import time

import pytest

from test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, _errors_in, _get, _run_all_and_wait, _save, lab  # noqa: F401

pytestmark = pytest.mark.browser

NOTEBOOK = "sketchpad_check.ipynb"
CELLS = [
    """import torch
from gregnb.data.digits import load_benchmark
from gregnb.data.toy2d import load_toy
from gregnb.experiments import default_model
from gregnb.train import fit
from gregnb.widgets import PointExplorer, Sketchpad

digits = load_benchmark(0)
cnn = default_model(digits, seed=0)
fit(cnn, digits, "ce", epochs=1, lr=3e-3, batch_size=64, progress=False, seed=0)
pad = Sketchpad({"CE (1 epoch)": cnn, "untrained": default_model(digits, seed=1)}, digits, start="blank",
                sound_method="ibp")
pad""",
    """toy = load_toy("blobs", seed=0)
points = PointExplorer({"untrained MLP": default_model(toy, seed=0)}, toy, resolution=30, n_points=50,
                       sound_method="ibp")
points""",
]

# white-ish pixels on a canvas (the pad's ink is white on black)
_BRIGHT_PIXELS = """el => { const d = el.getContext('2d').getImageData(0, 0, el.width, el.height).data;
    let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i + 1] > 200 && d[i + 2] > 200) n++;
    return n; }"""


def _wait_for_change(locator, before: str, timeout_s: float = 30) -> tuple[str, float]:
    t0 = time.time()
    while time.time() - t0 < timeout_s:
        now = locator.inner_text()
        if now != before:
            return now, time.time() - t0
        time.sleep(0.05)
    raise AssertionError(f"the readout did not change within {timeout_s} s: {before!r}")


def test_drawing_with_the_mouse_changes_the_displayed_energy(lab):  # noqa: F811 (the fixture is imported)
    import nbformat
    from playwright.sync_api import sync_playwright

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, lab["dir"] / NOTEBOOK)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{lab['base']}/lab/tree/{NOTEBOOK}?token={lab['token']}")
            _run_all_and_wait(page, lab, set())
            panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
            readouts = panel.locator(".jp-OutputArea .gregnb-readout")
            readouts.nth(1).wait_for(timeout=60_000)
            canvas = panel.locator(".jp-OutputArea canvas").first
            canvas.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "sketchpad-before.png"))
            before = readouts.first.inner_text()
            assert re.search(r"E = -?\d+\.\d\d", before), before
            assert canvas.evaluate(_BRIGHT_PIXELS) == 0, "a blank pad shows ink"

            # a stroke: press, drag down and across the pad in small steps, release
            box = canvas.bounding_box()
            x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
            page.mouse.move(x0 + 0.5 * w, y0 + 0.15 * h)
            page.mouse.down()
            page.mouse.move(x0 + 0.5 * w, y0 + 0.85 * h, steps=12)
            page.mouse.move(x0 + 0.25 * w, y0 + 0.6 * h, steps=8)
            page.mouse.up()
            after, waited = _wait_for_change(readouts.first, before)
            print(f"\nmouse up -> new readout shown in the browser: {1000 * waited:.0f} ms")
            e_before = re.findall(r"E = (-?\d+\.\d+)", before)
            e_after = re.findall(r"E = (-?\d+\.\d+)", after)
            assert len(e_after) == 2 and e_after != e_before, (before, after)
            assert canvas.evaluate(_BRIGHT_PIXELS) > 100, "the stroke is not shown on the pad"
            assert abs(box["width"] - box["height"]) < 2, f"the pad is not square on the page: {box}"
            tap_before = after
            page.mouse.click(x0 + 0.8 * w, y0 + 0.2 * h)  # a dot: one mouse down and up, no moves
            _, tap = _wait_for_change(readouts.first, tap_before)
            print(f"a tap -> new readout shown in the browser: {1000 * tap:.0f} ms")
            page.screenshot(path=str(SHOTS / "sketchpad-after-stroke.png"))

            # the toy: a click on the landscape places a point; its readout (radii included) replaces the first
            toy_canvas = panel.locator(".jp-OutputArea canvas").nth(1)
            toy_canvas.scroll_into_view_if_needed()
            toy_before = readouts.nth(1).inner_text()
            tb = toy_canvas.bounding_box()
            toy_canvas.click(position={"x": 0.3 * tb["width"], "y": 0.3 * tb["height"]})
            toy_after, _ = _wait_for_change(readouts.nth(1), toy_before)
            assert "E = " in toy_after and toy_after != toy_before
            page.screenshot(path=str(SHOTS / "sketchpad-toy-after-click.png"))

            outputs = panel.locator(".jp-OutputArea").all_inner_texts()
            assert not any("Traceback" in t or "Error:" in t for t in outputs), outputs
            kernels = _get(f"{lab['base']}/api/kernels?token={lab['token']}")
            assert kernels and all(k["execution_state"] in ("idle", "busy") for k in kernels), kernels
            _save(page)
            assert not _errors_in(lab["dir"] / NOTEBOOK)
        finally:
            browser.close()
