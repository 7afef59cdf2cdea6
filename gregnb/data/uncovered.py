"""Digits test OOD sets that the training pool does not cover: the "uncovered" sets.

The digits benchmark's four test OOD sets (:data:`gregnb.data.digits.OOD_SOURCES`) lie close to what the
pool of strokes, shapes and photo patches reaches, so they cannot show an effect that lives where the pool
never went. These five sets come from sources disjoint from the pool, the validation set and those four
sets (a test checks the lists and that no image occurs in another part), all files that matplotlib ships
or generators used nowhere else:

* ``scripts``: letters of other scripts (Greek, Cyrillic, Hebrew, Armenian, Georgian, Arabic) in the
  regular (not bold) DejaVu Sans and Serif; glyphs drawn like a Latin letter or a digit are left out;
* ``symbols``: pictographs, dingbats and mathematical symbols in DejaVu Sans Mono and STIX General;
* ``text``: printed lower-case words (several lines) in the Computer Modern fonts, a patch of a page;
* ``dots``: halftone screens (dot lattices at a random pitch, angle and dot size) and sparse speckle;
* ``cells``: cellular (Worley) textures: the bright walls between scattered seeds' cells.

Every image is float32 ``(N, 1, 8, 8)`` in [0, 1], min-max scaled, bright on dark like the digits.
Built by :func:`build_uncovered` (cached with the rest of the benchmark by
:func:`gregnb.data.digits.load_benchmark`, which puts them in ``Benchmark.ood_uncovered``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["UNCOVERED_SOURCES", "N_UNCOVERED", "build_uncovered", "SCRIPT_GLYPHS", "SYMBOL_GLYPHS"]

#: Which source each uncovered set uses (font files by name; generators by a name used nowhere else).
UNCOVERED_SOURCES = {
    "scripts": ("font:DejaVuSans.ttf", "font:DejaVuSerif.ttf"),
    "symbols": ("font:DejaVuSansMono.ttf", "font:STIXGeneral.ttf"),
    "text": ("font:cmr10.ttf", "font:cmtt10.ttf", "font:cmss10.ttf"),
    "dots": ("procedural:halftone",),
    "cells": ("procedural:worley",),
}
N_UNCOVERED = 500  # images per set

#: Letters of other scripts; those drawn like a Latin letter or a digit in these fonts are left out
#: (Greek omicron, Cyrillic ze "3", Hebrew vav "1", Arabic alef "1", ...).
SCRIPT_GLYPHS = ("ΓΔΘΛΞΠΣΦΨΩβγδζθλξπςφψω"            # Greek
                 "БГДЖИЙЛПФЦШЩЪЫЭЮЯгджилпфцшщъыэюя"   # Cyrillic
                 "אבגדהחטכלמנעפצקרשת"                 # Hebrew
                 "ԲԳԴԷԸԹԺԽԾԿՀՂՃՄՆՇՉՋՌՎՐՑՓՖ"           # Armenian
                 "აგდეთლმპჟრსტფქღყშჩცძწჭხჰ"           # Georgian
                 "بتثجحخذسشصضطظعغفقكلمنهي")           # Arabic (isolated forms)
#: Pictographs, dingbats and mathematical symbols (none a single straight stroke).
SYMBOL_GLYPHS = ("☺☹☀☁☂☃★☆♠♣♥♦♪♫☎✈✂✉✎✓✗⚓⚑☯☮☢☣⚛♀♂⌚☘♔♕♖♗♘♞"
                 "∑∏∫∮∞∇∂∀∃∅∈⊂⊃⊕⊗⊥≈≠≡≤≥√∝∴∰⊞⊠⋈")
#: Words for the printed-text patches (no digit-like letters matter here: a patch holds several words).
WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have "
         "an they you were her she there been one all we their has would when if so no out up into what can "
         "more other about time some them may these then its only over new such also like well where just "
         "through very much before should most those must made after first each way many because while")


def _rescale(img: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(img)


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _has_glyph(path: Path, chars: str) -> str:
    """The characters of ``chars`` that the font file maps to a glyph."""
    from matplotlib.ft2font import FT2Font

    cmap = FT2Font(str(path)).get_charmap()
    return "".join(c for c in chars if cmap.get(ord(c), 0))


def _glyphs(set_name: str, chars: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Single glyphs drawn large, rotated a little, cropped to their box and scaled into the frame
    (as the digits and the ``letters`` test set are)."""
    paths = [_font_dir() / s.split(":", 1)[1] for s in UNCOVERED_SOURCES[set_name]]
    pairs = [(ImageFont.truetype(str(p), 48), c) for p in paths for c in _has_glyph(p, chars)]
    out = np.empty((n, 8, 8), dtype=np.float32)
    i = 0
    while i < n:
        font, ch = pairs[int(rng.integers(0, len(pairs)))]
        im = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(im).text((24, 12), ch, fill=255, font=font)
        im = im.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
        box = im.getbbox()
        if box is None:
            continue
        l, t, r, b = box
        side = int(max(r - l, b - t) * rng.uniform(1.1, 1.3)) + 1
        cx, cy = (l + r) // 2, (t + b) // 2
        im = im.crop((cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side))
        img = _rescale(np.asarray(im.resize((8, 8), Image.Resampling.BOX), dtype=np.float32))
        if img.std() > 0.05:
            out[i] = img
            i += 1
    return out


def _text(n: int, rng: np.random.Generator) -> np.ndarray:
    """Patches of a page of printed words: a few lines of lower-case text, box-averaged to 8x8."""
    paths = [_font_dir() / s.split(":", 1)[1] for s in UNCOVERED_SOURCES["text"]]
    words = WORDS.split()
    out = np.empty((n, 8, 8), dtype=np.float32)
    for i in range(n):
        size = int(rng.integers(9, 15))
        font = ImageFont.truetype(str(paths[int(rng.integers(0, len(paths)))]), size)
        page = Image.new("L", (96, 96), 0)
        draw = ImageDraw.Draw(page)
        for row in range(96 // (size + 2) + 1):
            line = " ".join(words[int(k)] for k in rng.integers(0, len(words), size=12))
            draw.text((-int(rng.integers(0, 30)), row * int(size * rng.uniform(1.1, 1.5))), line, fill=255, font=font)
        s = int(rng.integers(24, 49))
        r, c = (int(v) for v in rng.integers(0, 96 - s + 1, size=2))
        patch = page.crop((c, r, c + s, r + s)).resize((8, 8), Image.Resampling.BOX)
        out[i] = _rescale(np.asarray(patch, dtype=np.float32))
    return out


def _dots(n: int, rng: np.random.Generator) -> np.ndarray:
    """Halftone screens (a rotated lattice of dots whose size follows a ramp) and sparse speckle."""
    size = 32
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    out = np.empty((n, 8, 8), dtype=np.float32)
    for i in range(n):
        if rng.random() < 0.6:
            pitch, a = rng.uniform(5.0, 9.0), rng.uniform(0, np.pi / 2)
            u = (xx * np.cos(a) + yy * np.sin(a)) / pitch
            v = (-xx * np.sin(a) + yy * np.cos(a)) / pitch
            du, dv = u - np.round(u), v - np.round(v)
            ramp = rng.uniform(0.15, 0.3) + rng.uniform(0.0, 0.2) * (xx * np.cos(2 * a) + yy) / size
            img = (np.sqrt(du ** 2 + dv ** 2) < ramp).astype(np.float32)
        else:
            img = np.zeros((size, size), np.float32)
            k = int(rng.integers(6, 20))
            for r, c in rng.integers(0, size - 3, size=(k, 2)):
                img[r:r + 4, c:c + 4] = rng.uniform(0.5, 1.0)
        out[i] = _rescale(img.reshape(8, 4, 8, 4).mean(axis=(1, 3)))
    return out


def _cells(n: int, rng: np.random.Generator) -> np.ndarray:
    """Worley textures on a 32x32 canvas: bright cell walls (where the two nearest of scattered seeds are
    about as near), wall width random, averaged to 8x8."""
    size = 32
    grid = np.stack(np.mgrid[0:size, 0:size], -1).reshape(-1, 2).astype(np.float32)
    out = np.empty((n, 8, 8), dtype=np.float32)
    for i in range(n):
        seeds = rng.uniform(-4, size + 4, size=(int(rng.integers(6, 25)), 2)).astype(np.float32)
        d = np.sort(np.sqrt(((grid[:, None, :] - seeds[None]) ** 2).sum(-1)), axis=1)
        field = np.exp(-(d[:, 1] - d[:, 0]) / rng.uniform(0.5, 2.0))
        out[i] = _rescale(field.reshape(size, size).reshape(8, 4, 8, 4).mean(axis=(1, 3)))
    return out


def build_uncovered(rng_streams: list[np.random.Generator], n: int = N_UNCOVERED) -> dict[str, np.ndarray]:
    """The five uncovered sets, ``name -> (n, 1, 8, 8)`` float32 in [0, 1]; one random stream per set
    (in the order of :data:`UNCOVERED_SOURCES`)."""
    if len(rng_streams) != len(UNCOVERED_SOURCES):
        raise ValueError(f"give one random stream per set ({len(UNCOVERED_SOURCES)}), got {len(rng_streams)}")
    s = dict(zip(UNCOVERED_SOURCES, rng_streams))
    sets = {"scripts": _glyphs("scripts", SCRIPT_GLYPHS, n, s["scripts"]),
            "symbols": _glyphs("symbols", SYMBOL_GLYPHS, n, s["symbols"]),
            "text": _text(n, s["text"]), "dots": _dots(n, s["dots"]), "cells": _cells(n, s["cells"])}
    return {k: v.reshape(len(v), 1, 8, 8).astype(np.float32) for k, v in sets.items()}
