"""Atomic checkpoints and a cache of trained models under ``data/models/``.

Chapters train the same small models again and again; :func:`cached_training` stores each result
keyed by everything that determines it (the run's settings, the data's contents and the source of
the code that trains), so a second run of a chapter loads instead of training, and any change to
the code or the data retrains. Set ``GREGNB_NO_CACHE=1`` to always train.

Checkpoints are written to a temporary file and renamed (never half-written) and loaded with
``torch.load(weights_only=True)`` (no arbitrary code runs on load).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .config import data_dir
from .data.base import Benchmark

__all__ = ["save_checkpoint", "load_checkpoint", "cached_training", "code_fingerprint", "data_fingerprint"]

_CODE_FILES = ("train.py", "losses.py", "models.py", "scores.py", "lipschitz.py", "sampling.py")


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then atomically rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; a missing file raises FileNotFoundError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or check the path")
    return torch.load(path, map_location=map_location, weights_only=True)


def code_fingerprint() -> str:
    """Hash of the source files whose changes change a trained model."""
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        f = pkg / name
        if f.exists():
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def data_fingerprint(data: Benchmark) -> str:
    """Hash of a benchmark's contents (train, test, pool; OOD sets do not affect training)."""
    h = hashlib.sha256()
    for t in (data.train_x, data.train_y, data.test_x, data.aux_x):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def cached_training(model: nn.Module, data: Benchmark, settings: dict, train: Callable[[nn.Module], dict],
                    *, folder: str | os.PathLike | None = None) -> dict:
    """Train ``model`` with ``train(model) -> history`` unless an identical run is cached.

    ``settings`` must hold everything about the run besides the data and the code (method,
    hyper-parameters, seed, the initial model's origin); it must be JSON-serialisable. The model's
    state and the history are stored in ``folder`` (default ``data/models``). Returns the history.
    """
    key_src = json.dumps({"settings": settings, "data": data_fingerprint(data), "code": code_fingerprint(),
                          "init": _state_fingerprint(model)}, sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = Path(folder) if folder is not None else data_dir() / "models"
    path = path / f"{settings.get('method', 'run')}-{key}.pt".replace("+", "plus")
    if path.exists() and os.environ.get("GREGNB_NO_CACHE", "0") != "1":
        try:
            ckpt = load_checkpoint(path)
            model.load_state_dict(ckpt["model"])
            from .train import History

            return History(ckpt["history"])
        except Exception:  # an unreadable or incompatible file is rebuilt, not trusted
            pass
    history = train(model)
    save_checkpoint({"model": model.state_dict(), "history": {k: list(v) for k, v in dict(history).items()}}, path)
    return history


def _state_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
