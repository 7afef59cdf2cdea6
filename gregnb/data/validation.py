"""A validation OOD set for the digits benchmark: for choosing settings without the test OOD sets.

Choosing a hyper-parameter (a gradient weight, margins) by its FPR95 on the *test* OOD sets tunes the
method to those sets, and the reported number is then optimistic. The collection chooses on this set
instead. Its sources are disjoint from the training pool **and** from every test OOD set
(:data:`VAL_SOURCES`; a test checks it against :mod:`gregnb.data.digits`):

* ``terrain``: patches of two elevation maps matplotlib ships (a fault scarp DEM and a topography /
  bathymetry grid);
* ``scan``: patches of the MRI slice matplotlib ships (``s1045.ima``);
* ``gratings``: procedural sinusoidal gratings and checkerboards (a generator used nowhere else).

All images are float32 ``(N, 1, 8, 8)`` in [0, 1], min-max scaled like the pool's photo patches.
"""
from __future__ import annotations

import gzip

import numpy as np
import torch

__all__ = ["VAL_SOURCES", "digits_validation_ood"]

VAL_SOURCES = {
    "terrain": ("photo:matplotlib/jacksboro_fault_dem.npz", "photo:matplotlib/topobathy.npz"),
    "scan": ("photo:matplotlib/s1045.ima.gz",),
    "gratings": ("procedural:gratings",),
}


def _grey_maps() -> dict[str, list[np.ndarray]]:
    from matplotlib import cbook

    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        return (a - a.min()) / max(float(a.max() - a.min()), 1e-6)

    dem = cbook.get_sample_data("jacksboro_fault_dem.npz")["elevation"]
    topo = cbook.get_sample_data("topobathy.npz")["topo"]
    with cbook.get_sample_data("s1045.ima.gz") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # some matplotlib versions hand out the compressed bytes
        raw = gzip.decompress(raw)
    scan = np.frombuffer(raw, np.uint16).reshape(256, 256)
    return {"terrain": [unit(dem), unit(topo)], "scan": [unit(scan)]}


def _patches(maps: list[np.ndarray], n: int, rng: np.random.Generator) -> np.ndarray:
    """Random square patches (12-40 px) box-averaged to 8x8 and min-max scaled."""
    from PIL import Image

    out = np.empty((n, 8, 8), np.float32)
    for i in range(n):
        m = maps[int(rng.integers(len(maps)))]
        s = int(rng.integers(12, min(41, *m.shape)))
        r, c = int(rng.integers(0, m.shape[0] - s + 1)), int(rng.integers(0, m.shape[1] - s + 1))
        p = np.asarray(Image.fromarray(m[r:r + s, c:c + s]).resize((8, 8), Image.Resampling.BOX), np.float32)
        lo, hi = p.min(), p.max()
        out[i] = (p - lo) / (hi - lo) if hi - lo > 1e-6 else 0.0
    return out


def _gratings(n: int, rng: np.random.Generator) -> np.ndarray:
    """Sinusoidal gratings (random frequency, angle, phase) and checkerboards, in [0, 1]."""
    yy, xx = np.mgrid[0:8, 0:8].astype(np.float32)
    out = np.empty((n, 8, 8), np.float32)
    for i in range(n):
        if rng.random() < 0.5:
            f, a, ph = rng.uniform(0.15, 0.5), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
            out[i] = 0.5 + 0.5 * np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)) + ph)
        else:
            k = int(rng.integers(1, 4))
            out[i] = ((xx // k + yy // k + int(rng.integers(2))) % 2).astype(np.float32)
    return out


def digits_validation_ood(seed: int = 0, n: int = 900, source: str | None = None) -> torch.Tensor:
    """``n`` validation outliers for the digits benchmark (a third from each source), shuffled,
    float32 ``(n, 1, 8, 8)`` in [0, 1]. Deterministic given ``seed``; a different stream from the
    benchmark's own generators. ``source`` (a key of :data:`VAL_SOURCES`): ``n`` images of that source only
    (e.g. to check that a choice does not hinge on one kind of validation outlier)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"n must be a whole number >= 3, got {n!r}")
    if source is not None and source not in VAL_SOURCES:
        raise ValueError(f"source must be one of {sorted(VAL_SOURCES)} (or None for all three), got {source!r}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7_919]))
    maps = _grey_maps()
    if source is not None:
        x = _gratings(int(n), rng) if source == "gratings" else _patches(maps[source], int(n), rng)
        return torch.from_numpy(x.reshape(-1, 1, 8, 8).copy())
    third = int(n) // 3
    parts = [_patches(maps["terrain"], third, rng), _patches(maps["scan"], third, rng),
             _gratings(int(n) - 2 * third, rng)]
    x = np.concatenate(parts)[rng.permutation(int(n))]
    return torch.from_numpy(x.reshape(-1, 1, 8, 8).copy())
