"""Tiny files in the real paper-scale formats (CIFAR-10's pickles, image folders, the 300K pool's .npy), for the
tests that load them (test_cifar_data.py) and the ones that run the command lines on them (test_cli_presets.py).
Nothing downloads."""
import pickle

import numpy as np
from PIL import Image


def write_cifar10(root, n_per_batch=4, seed=0):
    """CIFAR-10's ``cifar-10-batches-py/`` under ``root``: five training batches and a test batch of
    ``n_per_batch`` random images each. Returns ``{file name: (data (n, 3072) uint8 R/G/B planes, labels)}``."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)  # rows: R plane, G plane, B plane
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
        images[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return images


def write_folder(path, n, size=(40, 48), seed=0, ext="png"):
    """``n`` random RGB images of ``size`` (width, height) under ``path/class_a/``; returns their arrays."""
    rng = np.random.default_rng(seed)
    (path / "class_a").mkdir(parents=True)
    arrays = []
    for i in range(n):
        a = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(a).save(path / "class_a" / f"img{i}.{ext}")
        arrays.append(a)
    return arrays


def write_pool(root, n, seed=0):
    """A 300K-style pool: ``root/300K_random_images.npy`` holding ``n`` random uint8 (32, 32, 3) images."""
    pool = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    np.save(root / "300K_random_images.npy", pool)
    return pool
