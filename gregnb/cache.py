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
from .config import data_dir, display_path
from .data.base import Benchmark
from .train import History, fit_many

__all__ = ["cached_training", "cached_training_many", "cached_fit_many", "code_fingerprint", "data_fingerprint"]

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
    return cached_training_many([model], data, [settings], lambda ms: [train(ms[0])], folder=folder)[0]


def cached_training_many(models: list[nn.Module], data: Benchmark, settings: list[dict],
                         train_many: Callable[[list[nn.Module]], list[dict]], *,
                         folder: str | os.PathLike | None = None) -> list[dict]:
    """:func:`cached_training` for many models at once: each cached model is loaded, and the others are trained
    together by one call ``train_many(missing_models) -> their histories`` (e.g. :func:`gregnb.train.fit_many`),
    then each is stored as its own file, under the key a single :func:`cached_training` call would use.
    Returns the histories in the order of ``models``."""
    if len(models) != len(settings):
        raise ValueError(f"got {len(models)} models and {len(settings)} settings; pass one settings dict per model")
    data_key, code_key = data_fingerprint(data), code_fingerprint()
    root = Path(folder) if folder is not None else data_dir() / "models"
    paths, out = [], [None] * len(models)
    for model, st in zip(models, settings):
        key_src = json.dumps({"settings": st, "data": data_key, "code": code_key, "init": _state_fingerprint(model)},
                             sort_keys=True, default=str)
        key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
        paths.append(root / f"{st.get('method', 'run')}-{key}.pt".replace("+", "plus"))
    for i, (model, path) in enumerate(zip(models, paths)):
        out[i] = _load(model, path)
    missing = [i for i, h in enumerate(out) if h is None]
    if not missing:
        return out
    try:
        check_writable(root, "cached model")
        writable = True
    except PermissionError as err:
        warnings.warn(f"{err}. Training anyway; the result is returned but not cached (set GREGNB_DATA to a "
                      f"writable folder to keep it)", stacklevel=3)
        writable = False
    histories = train_many([models[i] for i in missing])
    for i, history in zip(missing, histories):
        out[i] = history
        if writable:
            _store(models[i], history, paths[i])
    return out


def cached_fit_many(models: list[nn.Module], data: Benchmark, configs: list[dict], settings: list[dict] | None, *,
                    desc: str = "training") -> list[History]:
    """:func:`gregnb.train.fit_many` on ``models[i]`` with ``configs[i]`` (``method`` plus fit's settings), through the
    cache: each model whose ``settings[i]`` (its cache key, see :func:`cached_training`) is stored is loaded, the
    others train together under one progress bar. ``settings=None``: no cache, all train. Returns the histories."""
    index = {id(m): i for i, m in enumerate(models)}
    train = lambda ms: fit_many(ms, data, [configs[index[id(m)]] for m in ms], desc=desc)  # noqa: E731
    if settings is None:
        return train(models)
    return cached_training_many(models, data, settings, train)


def _load(model: nn.Module, path: Path) -> History | None:
    """The cached run at ``path`` loaded into ``model`` (its history), or None (absent, unusable, or no cache)."""
    if not path.exists() or os.environ.get("GREGNB_NO_CACHE", "0") == "1":
        return None
    try:
        ckpt = load_checkpoint(path)
        load_model_state(model, ckpt, path)
        history = History(ckpt["history"])
    except (OSError, ValueError, KeyError, TypeError) as err:  # unreadable or incompatible: rebuilt, not trusted
        warnings.warn(f"cached model {display_path(path)} cannot be used ({err}); training again", stacklevel=4)
        return None
    print(f"loaded {path.name} from {display_path(path.parent)}", flush=True)
    return history


def _store(model: nn.Module, history, path: Path) -> None:
    try:
        save_checkpoint({"model": model.state_dict(), "history": {k: list(v) for k, v in dict(history).items()}}, path)
    except OSError as err:  # the trained model stays in memory: report, do not lose it
        warnings.warn(f"could not cache the trained model at {display_path(path)} ({err}); the result is returned but "
                      f"not cached", stacklevel=4)


def _state_fingerprint(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
