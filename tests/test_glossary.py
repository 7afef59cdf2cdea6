"""The glossary (docs/glossary.md): every chapter uses a term only from the chapter that defines it on, or in a
sentence that names that chapter (a forward pointer such as "chapter 07 replaces it with a certificate")."""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
GLOSSARY = ROOT / "docs" / "glossary.md"
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def glossary() -> dict[str, str]:
    rows = re.findall(r"^\| ([^|]+?) \| (\d\d) \|", GLOSSARY.read_text(encoding="utf-8"), flags=re.M)
    return {term: nn for term, nn in rows}


def _pattern(term: str) -> re.Pattern:
    return re.compile(r"(?<![\w+])" + re.escape(term) + r"(?![\w+])", re.I)


def early_uses(text: str, chapter: str, terms: dict[str, str]) -> list[str]:
    """Terms of ``terms`` (term -> defining chapter) used in ``text`` of ``chapter`` before their chapter, outside
    a sentence that points to the defining chapter."""
    text = re.sub(r"```.*?```|`[^`]*`", " ", text, flags=re.S)
    found = []
    for sentence in re.split(r"(?<=[.;:!?])\s+|\n\s*\n|\n\s*[-*]\s+", text):
        pointed = set(re.findall(r"[Cc]hapters? (\d\d)", sentence)) | \
            {n for pair in re.findall(r"[Cc]hapters (\d\d)(?:,? (?:and|or|to) |[-–])(\d\d)", sentence) for n in pair}
        for term, nn in terms.items():
            if nn > chapter and nn not in pointed and _pattern(term).search(sentence):
                found.append(f"{term!r} (chapter {nn}) in: {sentence.strip()[:100]!r}")
    return found


def test_the_glossary_lists_terms_with_a_chapter_each():
    terms = glossary()
    assert len(terms) >= 20 and set(terms.values()) <= {p.name[:2] for p in CHAPTERS}, terms


def test_the_rule_catches_a_planted_early_use_and_allows_a_pointer():
    terms = {"certified radius": "07", "GReg": "03"}
    assert early_uses("The certified radius of a point is large.", "03", terms)
    assert early_uses("GReg flattens the score.", "02", terms)
    assert not early_uses("Chapter 07 turns this into a certified radius.", "03", terms)
    assert not early_uses("GReg (chapter 03) flattens the score; the `GReg+` code is elsewhere.", "02", terms)
    assert not early_uses("GReg flattens the score.", "03", terms)


@pytest.mark.parametrize("path", [p for p in CHAPTERS if not p.name.startswith("00")], ids=lambda p: p.name[:2])
def test_no_chapter_uses_a_term_before_the_chapter_that_defines_it(path):
    nb = nbformat.read(path, as_version=4)
    text = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    problems = early_uses(text, path.name[:2], glossary())
    assert not problems, f"{path.name} uses terms before their chapter (say where they are defined): {problems}"
