"""What a student sees: JupyterLab in headless Chromium runs chapters 01 and 03, a slider redraws a figure;
and a reader of the static site, offline, sees typeset equations.

Opt-in by marker (``-m browser``) and run by ``.ci/run``. Needs Debian's Chromium at /usr/bin/chromium
(``apt-get install chromium``) and Playwright for Python (installed with the test extras); Playwright
never downloads a browser of its own here. Without Chromium the test is skipped with that message.
Screenshots go to ``build/screenshots/`` (or ``$GREGNB_SCREENSHOTS``).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("GREGNB_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("GREGNB_SCREENSHOTS", ROOT / "build" / "screenshots"))
CHAPTERS = ["01_energy_scores.ipynb", "03_gradient_regularization.ipynb"]
SITE_CHAPTER = "01_energy_scores"  # built executed (FAST) for the offline check: the energy score, in equations
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.browser


def _need_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install it with `apt-get install chromium` (as root) "
                    f"or set GREGNB_CHROMIUM to enable the browser test")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (in the test extras)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read().decode())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    _need_chromium()
    work = tmp_path_factory.mktemp("lab")
    for name in CHAPTERS:  # a copy: saving must not put outputs into the committed notebooks
        shutil.copy(ROOT / "notebooks" / name, work / name)
    # render every cell (JupyterLab 4 virtualises off-screen cells by default), so sliders can be found
    settings = work / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    news = work / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, GREGNB_FAST="1")  # the session's temporary GREGNB_DATA (tests/conftest.py)
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.open_browser=False",
         f"--LabApp.user_settings_dir={work / 'settings'}", f"--LabApp.workspaces_dir={work / 'workspaces'}",
         *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                _get(f"{base}/api/status?token={token}")
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("JupyterLab did not start:\n" + (work / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield {"base": base, "token": token, "dir": work}
    finally:  # always shut the server down, even when the test fails
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _run_all_and_wait(page, lab, known_kernels: set, timeout_s: float = 400) -> None:
    """Wait for this notebook's own kernel to be idle, Run > Run All Cells, wait until every code cell
    of this notebook has run (or the kernel stays idle with nothing queued: Run All stopped at an error)."""
    # a generous guard, not a speed check: the session's GREGNB_DATA starts cold, so chapter 03 trains
    # every FAST model here (tests/test_notebooks.py times the chapters)
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").first.wait_for(timeout=60_000)
    url = f"{lab['base']}/api/kernels?token={lab['token']}"
    deadline = time.time() + 90
    while True:
        mine = [k for k in _get(url) if k["id"] not in known_kernels]
        if mine and mine[0]["execution_state"] == "idle":
            break
        if time.time() > deadline:
            raise AssertionError(f"the notebook's kernel did not start: {mine}")
        time.sleep(0.5)
    kernel_id = mine[0]["id"]
    known_kernels.add(kernel_id)
    time.sleep(1)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_text("Run All Cells", exact=True).click()
    time.sleep(3)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    deadline, idle = time.time() + timeout_s, 0
    while time.time() < deadline:
        prompts = [p.strip() for p in panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]
        if prompts and all(p[1:-2].isdigit() for p in prompts):
            return  # every code cell has run
        state = next((k["execution_state"] for k in _get(url) if k["id"] == kernel_id), "gone")
        idle = idle + 1 if state == "idle" and "[*]:" not in prompts else 0
        if idle >= 5:
            return
        time.sleep(1)
    raise AssertionError(f"still running after {timeout_s} s")


def _save(page) -> None:
    page.keyboard.press("Control+s")
    time.sleep(2)


def _errors_in(path: Path) -> list[str]:
    nb = json.loads(path.read_text())
    return [f"{o.get('ename')}: {o.get('evalue')}" for c in nb["cells"] for o in c.get("outputs", [])
            if o.get("output_type") == "error"]


def test_chapters_run_in_the_browser_and_a_slider_redraws(lab):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            known_kernels: set = set()
            for name in CHAPTERS:
                page.goto(f"{lab['base']}/lab/tree/{name}?token={lab['token']}")
                _run_all_and_wait(page, lab, known_kernels)
                _save(page)
                page.screenshot(path=str(SHOTS / f"{Path(name).stem}-after-run.png"))
                errors = _errors_in(lab["dir"] / name)
                assert not errors, f"{name}: {errors}"
                saved = json.loads((lab["dir"] / name).read_text())
                assert all(c.get("execution_count") for c in saved["cells"] if c["cell_type"] == "code")

                # move the first slider one step with the keyboard, as a student would
                panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")  # this notebook's tab only
                slider = panel.locator(".jp-OutputArea .widget-slider .noUi-handle").first
                slider.scroll_into_view_if_needed()
                box = panel.locator(".jp-OutputArea .widget-image").first
                before = box.screenshot(path=str(SHOTS / f"{Path(name).stem}-figure-before.png"))
                slider.focus()
                page.keyboard.press("ArrowRight")
                page.keyboard.press("ArrowRight")
                deadline = time.time() + 20
                after = before
                while time.time() < deadline and after == before:
                    time.sleep(0.5)
                    after = box.screenshot()
                (SHOTS / f"{Path(name).stem}-figure-after.png").write_bytes(after)
                assert after != before, f"{name}: the figure did not change after moving the slider"

                kernels = _get(f"{lab['base']}/api/kernels?token={lab['token']}")
                assert kernels and all(k["execution_state"] in ("idle", "busy") for k in kernels), kernels
                page.screenshot(path=str(SHOTS / f"{Path(name).stem}-after-slider.png"))
        finally:
            browser.close()


def _display_math_blocks(path: Path) -> int:
    import nbformat

    return sum(c.source.count("$$") // 2 for c in nbformat.read(path, 4).cells if c.cell_type == "markdown")


# resolves once MathJax has finished its start-up typesetting; what it found and how it went
_MATHJAX_REPORT = """() => new Promise(resolve => MathJax.Hub.Register.StartupHook("End", () => resolve({
    inline: document.querySelectorAll('script[type="math/tex"]').length,
    display: document.querySelectorAll('script[type="math/tex; mode=display"]').length,
    errors: document.querySelectorAll('.MathJax .merror, .MathJax_Error').length,
    font: (MathJax.OutputJax["HTML-CSS"] || {}).fontInUse || null,
    markdown: [...document.querySelectorAll('.jp-MarkdownOutput')].map(e => e.innerText).join('\\n'),
    text: document.body.innerText,
})))"""


def test_site_pages_typeset_equations_offline(tmp_path):
    """One chapter built as ``run.py site`` builds it (executed, FAST), every other page rendered without
    running it (equations live in markdown), each opened offline: every equation typeset by the MathJax
    copied into the site folder, with its web font, and no request leaves the machine."""
    _need_chromium()
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from gregnb.site import build_site

    site = tmp_path / "site"
    executed = build_site(site, fast=True, only=[SITE_CHAPTER])[1]
    pages = [executed] + [p for p in build_site(tmp_path / "unexecuted", execute=False)[1:] if p.stem != SITE_CHAPTER]
    notebooks = {p.stem: p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
                 and p.parent.name != "homework"}
    SHOTS.mkdir(parents=True, exist_ok=True)
    total = 0
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
            outside: list[str] = []

            def only_local(route):
                if route.request.url.startswith("file:"):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            context.route("**/*", only_local)
            page = context.new_page()
            for path in pages:
                page.goto(path.as_uri())
                try:
                    page.wait_for_function("() => window.MathJax && window.MathJax.Hub", timeout=15_000)
                except PlaywrightTimeout:
                    pytest.fail(f"{path.name}: no MathJax after 15 s offline (requests refused: {outside})")
                report = page.evaluate(_MATHJAX_REPORT)
                if path == executed:
                    page.screenshot(path=str(SHOTS / f"site-{path.stem}-offline.png"), full_page=False)
                where = f"{path.name} (offline)"
                assert "$$" not in report["text"], f"{where}: raw $$ left in the page"
                assert "$" not in report["markdown"], f"{where}: raw $ left in the text"
                assert report["display"] == _display_math_blocks(notebooks[path.stem]), (where, report["display"])
                assert report["errors"] == 0, f"{where}: {report['errors']} equations failed to typeset"
                if report["inline"] + report["display"]:
                    assert report["font"] == "STIX-Web", f"{where}: MathJax fell back to {report['font']!r}"
                total += report["inline"] + report["display"]
            assert not outside, f"the site asked the network for {outside}"
        finally:
            browser.close()
    assert total > 50, f"only {total} equations typeset across {len(pages)} pages"
