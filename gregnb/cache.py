"""A cache of trained models under ``data/models/``.

Chapters train the same small models again and again; :func:`cached_training` stores each result keyed by
everything that determines it (the run's settings, the data's contents, the initial weights and the source of
the code that trains), so a second run of a chapter loads instead of training (and says so), and any change to
the code or the data retrains. Set ``GREGNB_NO_CACHE=1`` to always train. Files are written with
:func:`gregnb.checkpoint.save_checkpoint` (atomic, ``weights_only`` loads).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable

from torch import nn

from .checkpoint import check_writable, load_checkpoint, load_model_state, save_checkpoint
from .config import data_dir
from .data.base import Benchmark
from .train import History

__all__ = ["cached_training", "code_fingerprint", "data_fingerprint"]

#: the code whose changes change a trained model: the training package and every module it trains with
_CODE = ("train", "losses.py", "models.py", "scores.py", "lipschitz", "sampling.py", "inference.py")


def code_fingerprint() -> str:
    """Hash of the source files whose changes change a trained model."""
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parent
    for name in _CODE:
        target = pkg / name
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        if not files or not all(f.exists() for f in files):
            raise FileNotFoundError(f"cache key: {target} is missing; update gregnb.cache._CODE after moving code")
        for f in files:
            h.update(str(f.relative_to(pkg)).encode())
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
    A cached file that cannot be used is rebuilt (with a warning). If ``folder`` is not writable, the
    model is trained all the same and the result returned, with a warning that it is not cached.
    """
    key_src = json.dumps({"settings": settings, "data": data_fingerprint(data), "code": code_fingerprint(),
                          "init": _state_fingerprint(model)}, sort_keys=True, default=str)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    path = Path(folder) if folder is not None else data_dir() / "models"
    path = path / f"{settings.get('method', 'run')}-{key}.pt".replace("+", "plus")
    if path.exists() and os.environ.get("GREGNB_NO_CACHE", "0") != "1":
        try:
            ckpt = load_checkpoint(path)
            load_model_state(model, ckpt, path)
            history = History(ckpt["history"])
        except (OSError, ValueError, KeyError, TypeError) as err:  # unreadable or incompatible: rebuilt, not trusted
            warnings.warn(f"cached model {path} cannot be used ({err}); training again", stacklevel=2)
        else:
            print(f"loaded {path.name} from {path.parent}", flush=True)
            return history
    try:
        check_writable(path.parent, "cached model")
        writable = True
    except PermissionError as err:
        warnings.warn(f"{err}. Training anyway; the result is returned but not cached (set GREGNB_DATA to a "
                      f"writable folder to keep it)", stacklevel=2)
        writable = False
    history = train(model)
    if writable:
        try:
            save_checkpoint({"model": model.state_dict(), "history": {k: list(v) for k, v in dict(history).items()}},
                            path)
        except OSError as err:  # the trained model stays in memory: report, do not lose it
            warnings.warn(f"could not cache the trained model at {path} ({err}); the result is returned but not "
                          f"cached", stacklevel=2)
    return history


def _state_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
