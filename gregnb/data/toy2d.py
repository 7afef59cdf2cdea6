"""2-D toy benchmarks, generated on the fly (deterministic given a seed).

ID sets: ``"blobs"`` (three Gaussian blobs on a circle of radius 2) and ``"moons"``.
Auxiliary pool: uniform over the box ``[-BOX, BOX]^2``; ``aux_region="left"`` keeps only its left
half, so the right half is never seen in training (used to show where GReg helps).
Test OOD sets (each kept at least ``MIN_DIST`` away from every ID training point):

* ``"uniform"`` - held-out uniform points from the same box (a different random stream),
* ``"ring"`` - a ring of radius 3.5-4.5 around the data (mid distance),
* ``"near"`` - ID test points pushed 1.25 units in a random direction (near-OOD),
* ``"far"`` - a blob centred at (9, 9), outside the auxiliary box (far-OOD).
"""
from __future__ import annotations

import numpy as np
import torch

from .base import Benchmark

__all__ = ["load_toy", "ID_SETS", "BOX", "MIN_DIST"]

BOX = 6.0
MIN_DIST = 0.6
ID_SETS = ("blobs", "moons")


def _blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    angles = np.deg2rad([90.0, 210.0, 330.0])
    centres = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    y = rng.integers(0, 3, size=n)
    x = centres[y] + 0.35 * rng.standard_normal((n, 2))
    return x, y


def _moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_moons  # only the moons need scikit-learn (a slow import)

    x, y = make_moons(n_samples=n, noise=0.1, random_state=int(rng.integers(0, 2**31 - 1)))
    x = 1.6 * (x - np.array([0.5, 0.25]))
    return x, y


def _far_enough(points: np.ndarray, reference: np.ndarray, min_dist: float) -> np.ndarray:
    d2 = ((points[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
    return points[d2.min(axis=1) >= min_dist**2]


def _uniform(n: int, rng: np.random.Generator, region: str = "box") -> np.ndarray:
    x = rng.uniform(-BOX, BOX, size=(n, 2))
    if region == "left":
        x[:, 0] = rng.uniform(-BOX, 0.0, size=n)
    elif region != "box":
        raise ValueError(f"aux_region must be 'box' or 'left', got {region!r}")
    return x


def _sample_ood(kind: str, n: int, rng: np.random.Generator, id_test: np.ndarray) -> np.ndarray:
    if kind == "uniform":
        return _uniform(n, rng)
    if kind == "ring":
        r = rng.uniform(3.5, 4.5, size=n)
        a = rng.uniform(0, 2 * np.pi, size=n)
        return np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
    if kind == "near":
        base = id_test[rng.integers(0, len(id_test), size=n)]
        a = rng.uniform(0, 2 * np.pi, size=n)
        return base + 1.25 * np.stack([np.cos(a), np.sin(a)], axis=1)
    if kind == "far":
        return np.array([9.0, 9.0]) + 0.5 * rng.standard_normal((n, 2))
    raise AssertionError(kind)


def load_toy(
    name: str = "blobs",
    seed: int = 0,
    n_train: int = 600,
    n_test: int = 600,
    n_aux: int = 2000,
    n_ood: int = 500,
    aux_region: str = "box",
) -> Benchmark:
    """Generate a 2-D benchmark. All parts are float32 tensors of shape ``(N, 2)``.

    Deterministic given the arguments: each part uses its own random stream derived from
    ``seed``, so changing ``n_aux`` does not change the ID data.
    """
    if name not in ID_SETS:
        raise ValueError(f"unknown toy set {name!r}; choose one of {ID_SETS}")
    for arg, val in dict(n_train=n_train, n_test=n_test, n_aux=n_aux, n_ood=n_ood).items():
        if not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{arg} must be a positive integer, got {val!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(7)]
    make = _blobs if name == "blobs" else _moons
    train_x, train_y = make(n_train, streams[0])
    test_x, test_y = make(n_test, streams[1])
    aux = _uniform(n_aux, streams[2], aux_region)
    ood = {}
    for i, kind in enumerate(("uniform", "ring", "near", "far")):
        pts = np.empty((0, 2))
        while len(pts) < n_ood:  # rejection keeps OOD points off the ID data
            pts = np.concatenate([pts, _far_enough(_sample_ood(kind, 2 * n_ood, streams[3 + i], test_x), train_x, MIN_DIST)])
        ood[kind] = torch.as_tensor(pts[:n_ood], dtype=torch.float32)
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
    i64 = lambda a: torch.as_tensor(a, dtype=torch.int64)  # noqa: E731
    return Benchmark(
        name=name,
        train_x=f32(train_x), train_y=i64(train_y),
        test_x=f32(test_x), test_y=i64(test_y),
        aux_x=f32(aux), ood=ood,
        n_classes=int(train_y.max()) + 1,
        sources={"id": f"generated {name}", "aux": f"uniform over [-{BOX}, {BOX}]^2 ({aux_region})",
                 "ood": "generated: uniform, ring, near (halo), far (blob at (9, 9))"},
    )
