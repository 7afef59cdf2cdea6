"""The rendered site builds in FAST mode and every chapter page shows at least one figure."""
import re
from pathlib import Path

import pytest

from gregnb.site import build_site

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.notebook
def test_site_builds_with_figures(tmp_path):
    pages = build_site(tmp_path / "site", fast=True, homework=False)
    chapters = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [p.stem for p in pages[1:]] == chapters
    index = pages[0].read_text()
    for name in chapters:
        assert f'href="{name}.html"' in index
    for page in pages[1:]:
        text = page.read_text()
        assert len(re.findall(r'<img[^>]+src="data:image/png;base64,', text)) >= 1, f"{page.name} has no figure"
        assert "Traceback" not in text, f"{page.name} shows an error"
    # widgets degrade to their figure: chapter 01's temperature explorer leaves a PNG, not a placeholder
    ch01 = (tmp_path / "site" / "01_energy_scores.html").read_text()
    assert "FigureExplorer(children=" not in ch01
