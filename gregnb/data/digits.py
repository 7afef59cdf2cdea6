"""The offline image benchmark: scikit-learn's 8x8 digits as ID, generated outliers around it.

Everything comes from files that installed packages ship, so it works without a network.
Images are float32 ``(N, 1, 8, 8)`` in [0, 1], bright strokes on a dark background like the
digits. The training outlier pool and the test OOD sets come from **disjoint sources**:

========================  =====================================================================
part                      source
========================  =====================================================================
ID (train/test)           ``sklearn.datasets.load_digits`` (1,797 images, 10 classes), split
                          75/25 stratified by class
aux pool (training)       procedural strokes and shapes (lines, arcs, ellipses, boxes, polygons,
                          random walks) drawn with Pillow; patches of scikit-learn's
                          ``china.jpg`` sample photo
ood ``letters``           Latin letters rendered from the bold DejaVu fonts matplotlib ships (near-OOD)
ood ``photos``            patches of scikit-learn's ``flower.jpg`` and matplotlib's
                          ``grace_hopper.jpg`` sample photos
ood ``noise``             smoothed Gaussian noise fields
ood ``inverted``          digits with dark strokes on a bright background (1 - x)
uncovered sets            ``scripts``, ``symbols``, ``text``, ``dots``, ``cells``: sources the pool does
                          not reach (:mod:`gregnb.data.uncovered`), in ``Benchmark.ood_uncovered``
========================  =====================================================================

The four ``ood`` sets lie near what the pool covers; the five uncovered sets are kept in a separate dict
so that results on ``ood`` do not change when they are added (:mod:`gregnb.coverage` measures the distance).

The build takes a few seconds and is cached under :func:`gregnb.config.data_dir` as
``digits_v{GENERATOR_VERSION}_seed{seed}.npz``; bump ``GENERATOR_VERSION`` whenever the
generator changes so stale caches are rebuilt.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..config import data_dir, display_path
from .base import Benchmark
from .uncovered import UNCOVERED_SOURCES, build_uncovered

__all__ = ["load_benchmark", "GENERATOR_VERSION", "SOURCES", "AUX_SOURCES", "OOD_SOURCES", "UNCOVERED_SOURCES",
           "build_arrays", "shape_outliers", "N_SHAPES", "N_AUX_PHOTOS"]

GENERATOR_VERSION = 3  # 3: the uncovered sets added; every earlier part unchanged (see _STREAM_KEY)
#: The key the random streams of the ID split, the pool and the four ``ood`` sets are drawn from. It was the
#: generator version when they were made; it stays 2 so that adding parts (a new GENERATOR_VERSION) leaves
#: them, and every result on them, bit for bit as they were. Change it only when those parts change.
_STREAM_KEY = 2
CANVAS = 32  # draw at 32x32, then average 4x4 blocks down to 8x8 (anti-aliasing like the scanned digits)

#: Which source each part uses; a test checks that pool and test sets share none.
AUX_SOURCES = ("procedural:shapes", "photo:sklearn/china.jpg")
OOD_SOURCES = {
    "letters": ("font:DejaVuSans-Bold.ttf", "font:DejaVuSerif-Bold.ttf", "font:DejaVuSansMono-Bold.ttf"),
    "photos": ("photo:sklearn/flower.jpg", "photo:matplotlib/grace_hopper.jpg"),
    "noise": ("procedural:smooth-noise",),
    "inverted": ("transform:inverted-digits",),
}
SOURCES = {"id": "sklearn.datasets.load_digits (UCI optical digits)", "aux": " + ".join(AUX_SOURCES)}
SOURCES.update({f"ood/{k}": " + ".join(v) for k, v in OOD_SOURCES.items()})
SOURCES.update({f"uncovered/{k}": " + ".join(v) for k, v in UNCOVERED_SOURCES.items()})

N_SHAPES, N_AUX_PHOTOS, N_OOD = 18_000, 10_000, 1_000  # pool = 28,000 = 20.8x the ID training set
# letters that are drawn exactly like digits in these fonts (O/0, l/1, I/1) are left out
LETTERS = "ABCDEFGHJKLMNPQRTUVWXYabcdefhijkmnprtuvwxy"


def _downsample(canvas: np.ndarray) -> np.ndarray:
    """(CANVAS, CANVAS) in [0, 1] -> (8, 8) by 4x4 block means."""
    f = CANVAS // 8
    return canvas.reshape(8, f, 8, f).mean(axis=(1, 3))


def _rescale(img: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo) if hi - lo > 1e-6 else np.zeros_like(img)


def _shapes(n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, 8, 8), dtype=np.float32)
    for i in range(n):
        im = Image.new("L", (CANVAS, CANVAS), 0)
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 4))):
            kind = int(rng.integers(0, 6))
            level = int(rng.integers(150, 256))
            w = int(rng.integers(2, 6))
            p = rng.integers(2, CANVAS - 2, size=6).tolist()
            x0, x1 = sorted(p[0:2])
            y0, y1 = sorted(p[2:4])
            box = [x0, y0, max(x1, x0 + 4), max(y1, y0 + 4)]
            if kind == 0:
                draw.line(p[:4], fill=level, width=w)
            elif kind == 1:
                draw.ellipse(box, outline=level, width=w)
            elif kind == 2:
                draw.rectangle(box, fill=level)
            elif kind == 3:
                a0 = int(rng.integers(0, 360))
                draw.arc(box, a0, a0 + int(rng.integers(60, 300)), fill=level, width=w)
            elif kind == 4:
                draw.polygon(p, fill=level)
            else:
                pts = np.cumsum(rng.integers(-8, 9, size=(int(rng.integers(3, 7)), 2)), axis=0) + CANVAS // 2
                draw.line(np.clip(pts, 1, CANVAS - 2).ravel().tolist(), fill=level, width=w)
        out[i] = _downsample(np.asarray(im, dtype=np.float32) / 255.0)
    return out


def shape_outliers(n: int = N_SHAPES, seed: int = 0) -> torch.Tensor:
    """``n`` fresh procedural shapes of the kind the pool holds (lines, arcs, rectangles, blobs), drawn with the
    pool's shape generator from their own stream (``seed``), as float32 ``(n, 1, 8, 8)`` in [0, 1]: e.g. a
    shapes-only pool (the benchmark's pool mixes ``N_SHAPES`` shapes with ``N_AUX_PHOTOS`` photo patches)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a whole number >= 1 (images to draw), got {n!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 104_729]))
    return torch.from_numpy(_shapes(int(n), rng).reshape(-1, 1, 8, 8).astype(np.float32))


def _photo_patches(photos: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Random square patches (12-64 px) of grey photos, box-resized to 8x8, min-max scaled."""
    out = np.empty((n, 8, 8), dtype=np.float32)
    for i in range(n):
        ph = photos[int(rng.integers(0, len(photos)))]
        s = int(rng.integers(12, 65))
        r = int(rng.integers(0, ph.shape[0] - s + 1))
        c = int(rng.integers(0, ph.shape[1] - s + 1))
        patch = Image.fromarray(ph[r:r + s, c:c + s]).resize((8, 8), Image.Resampling.BOX)
        out[i] = _rescale(np.asarray(patch, dtype=np.float32))
    return out


def _letters(n: int, rng: np.random.Generator) -> np.ndarray:
    """Letters drawn large, rotated a little, cropped to their box and scaled into the frame
    (the UCI digits are size-normalised the same way)."""
    import matplotlib

    font_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    names = [s.split(":", 1)[1] for s in OOD_SOURCES["letters"]]
    fonts = [ImageFont.truetype(str(font_dir / name), 48) for name in names]
    out = np.empty((n, 8, 8), dtype=np.float32)
    for i in range(n):
        font = fonts[int(rng.integers(0, len(fonts)))]
        ch = LETTERS[int(rng.integers(0, len(LETTERS)))]
        im = Image.new("L", (80, 80), 0)
        ImageDraw.Draw(im).text((16, 8), ch, fill=255, font=font)
        im = im.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BILINEAR)
        l, t, r, b = im.getbbox()
        side = int(max(r - l, b - t) * rng.uniform(1.1, 1.3))
        cx, cy = (l + r) // 2, (t + b) // 2
        im = im.crop((cx - side // 2, cy - side // 2, cx - side // 2 + side, cy - side // 2 + side))
        out[i] = _rescale(np.asarray(im.resize((8, 8), Image.Resampling.BOX), dtype=np.float32))
    return out


def _noise(n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = np.empty((n, 8, 8), dtype=np.float32)
    for i in range(n):
        field = gaussian_filter(rng.standard_normal((16, 16)), sigma=float(rng.uniform(0.5, 2.0)), mode="wrap")
        out[i] = _rescale(field.reshape(8, 2, 8, 2).mean(axis=(1, 3)))
    return out


def _grey(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3:
        img = img[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = img.astype(np.float32)
    if img.max() > 1.5:
        img = img / 255.0
    return (255 * img).clip(0, 255).astype(np.uint8)


def _load_photos() -> dict[str, np.ndarray]:
    import matplotlib.image as mpimg
    from matplotlib import cbook
    from sklearn.datasets import load_sample_image

    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = mpimg.imread(f, format="jpg")
    return {
        "photo:sklearn/china.jpg": _grey(load_sample_image("china.jpg")),
        "photo:sklearn/flower.jpg": _grey(load_sample_image("flower.jpg")),
        "photo:matplotlib/grace_hopper.jpg": _grey(hopper),
    }


def build_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Generate every part as NumPy arrays (no caching): the slow path of :func:`load_benchmark`."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)

    streams = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, _STREAM_KEY]).spawn(6)]
    photos = _load_photos()
    aux_photos = [photos[s] for s in AUX_SOURCES if s.startswith("photo:")]
    ood_photos = [photos[s] for s in OOD_SOURCES["photos"]]
    aux = np.concatenate([_shapes(N_SHAPES, streams[0]), _photo_patches(aux_photos, N_AUX_PHOTOS, streams[1])])
    aux = aux[streams[1].permutation(len(aux))]
    inverted = 1.0 - x[streams[5].permutation(len(x))[:N_OOD]]
    arrays = {
        "train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y, "aux_x": aux,
        "ood/letters": _letters(N_OOD, streams[2]),
        "ood/photos": _photo_patches(ood_photos, N_OOD, streams[3]),
        "ood/noise": _noise(N_OOD, streams[4]),
        "ood/inverted": inverted.astype(np.float32),
    }
    far = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, _STREAM_KEY, 26]).spawn(len(UNCOVERED_SOURCES))]
    arrays.update({f"uncovered/{k}": v for k, v in build_uncovered(far).items()})
    for k, v in arrays.items():
        if k.endswith("_y"):
            continue
        arrays[k] = v.reshape(len(v), 1, 8, 8).astype(np.float32)
    return arrays


def _cache_path(seed: int, root: Path | None = None) -> Path:
    return (root or data_dir()) / f"digits_v{GENERATOR_VERSION}_seed{seed}.npz"


_REQUIRED = ("train_x", "train_y", "test_x", "test_y", "aux_x", *(f"uncovered/{k}" for k in UNCOVERED_SOURCES))


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (with a warning) when the file is stale, truncated, corrupt or incomplete."""
    try:
        with np.load(path) as z:
            if int(z["generator_version"]) != GENERATOR_VERSION:
                return None
            arrays = {k: z[k] for k in z.files if k != "generator_version"}  # read (and CRC-checked) here
        missing = [k for k in _REQUIRED if k not in arrays]
        if missing:
            raise KeyError(f"missing {missing}")
        return arrays
    except Exception as err:  # BadZipFile, EOFError, zlib/CRC errors, a missing key...: rebuild, do not trust
        warnings.warn(f"the digits cache {display_path(path)} is unreadable ({type(err).__name__}: {err}); rebuilding it")
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write the cache atomically; a read-only folder only costs the cache (with a warning), not the data."""
    from ..checkpoint import atomic_write

    try:
        atomic_write(path, lambda f: np.savez_compressed(f, generator_version=GENERATOR_VERSION, **arrays))
    except OSError as err:
        warnings.warn(f"could not write the digits cache {display_path(path)} ({err}); using the data without caching it "
                      f"(set GREGNB_DATA or root= to a writable folder to keep it)")


def load_benchmark(seed: int = 0, *, cache: bool = True, root: str | os.PathLike | None = None) -> Benchmark:
    """The offline digits benchmark (see the module docstring for its sources).

    Args:
        seed: selects the ID train/test split and the generated outliers.
        cache: read/write ``digits_v{GENERATOR_VERSION}_seed{seed}.npz`` under ``root``.
        root: cache folder; default :func:`gregnb.config.data_dir`.

    Returns:
        A :class:`~gregnb.data.Benchmark`: 1,347 train and 450 test digits, 28,000 pool
        images, four OOD sets of 1,000 images each (``ood``) and five uncovered sets of 500 each
        (``ood_uncovered``), all ``(N, 1, 8, 8)`` float32 in [0, 1].
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
    path = _cache_path(int(seed), Path(root) if root is not None else None)
    arrays = _read_cache(path) if cache and path.exists() else None
    if arrays is None:
        arrays = build_arrays(int(seed))
        if cache:
            _write_cache(path, arrays)
    t = torch.from_numpy
    return Benchmark(
        name="digits",
        train_x=t(arrays["train_x"]), train_y=t(arrays["train_y"]),
        test_x=t(arrays["test_x"]), test_y=t(arrays["test_y"]),
        aux_x=t(arrays["aux_x"]),
        ood={k.split("/", 1)[1]: t(v) for k, v in arrays.items() if k.startswith("ood/")},
        ood_uncovered={k.split("/", 1)[1]: t(v) for k, v in arrays.items() if k.startswith("uncovered/")},
        n_classes=10,
        sources=dict(SOURCES),
    )
