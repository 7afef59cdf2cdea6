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

import numpy as np
import torch
from torch import nn

from .checkpoint import check_writable, load_checkpoint, load_model_state, save_checkpoint
from .config import data_dir, display_path
from .data.base import Benchmark
from .train import History, fit_many

__all__ = ["cached_training", "cached_training_many", "cached_fit_many", "code_fingerprint", "data_fingerprint",
           "key_value"]

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
    hyper-parameters, seed, the initial model's origin): plain JSON values, tensors or arrays (keyed by their whole
    contents, :func:`key_value`); a value whose text names a memory address is refused. The model's
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
    Returns the histories in the order of ``models``.

    No finished work is lost to one failing member: when the joint call raises, each member trains again alone
    (from its initial weights) and is cached as it finishes; then the first failure's error is raised, with a note
    naming the member and its settings."""
    if len(models) != len(settings):
        raise ValueError(f"got {len(models)} models and {len(settings)} settings; pass one settings dict per model")
    data_key, code_key = data_fingerprint(data), code_fingerprint()
    root = Path(folder) if folder is not None else data_dir() / "models"
    paths, out = [], [None] * len(models)
    for model, st in zip(models, settings):
        key_src = json.dumps({"settings": st, "data": data_key, "code": code_key, "init": _state_fingerprint(model)},
                             sort_keys=True, default=key_value)
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
    initial = {i: {k: v.detach().clone() for k, v in models[i].state_dict().items()} for i in missing}
    try:
        histories = train_many([models[i] for i in missing])
    except Exception:
        if not writable or len(missing) == 1:
            raise
        return _train_one_by_one(models, settings, train_many, missing, initial, paths, out)
    for i, history in zip(missing, histories):
        out[i] = history
        if writable:
            _store(models[i], history, paths[i])
    return out


def _train_one_by_one(models, settings, train_many, missing, initial, paths, out):
    """After a joint training failed: each member again from its initial weights, alone (the same weights as
    together: :func:`gregnb.train.fit_many` trains each member as :func:`gregnb.train.fit` would), cached as it
    finishes; then the first member's error is raised, saying which member it was and that the others are kept."""
    failed = []
    for i in missing:
        models[i].load_state_dict(initial[i])
        try:
            (history,) = train_many([models[i]])
        except Exception as err:  # noqa: BLE001 - reported below, after the others are saved
            failed.append((i, err))
            continue
        out[i] = history
        _store(models[i], history, paths[i])
    if not failed:
        return out
    i, err = failed[0]
    others = [st for j, st in enumerate(settings) if j != i]
    own = {k: v for k, v in settings[i].items() if any(o.get(k) != v for o in others)} or settings[i]
    kept = len(missing) - len(failed)
    err.add_note(f"gregnb.cache: member {i} of {len(models)} ({', '.join(f'{k}={v!r}' for k, v in own.items())}) "
                 f"failed{f', and {len(failed) - 1} more' if len(failed) > 1 else ''}; the {kept} member(s) that "
                 f"trained are cached and load on the next call")
    raise err


def key_value(value):
    """How a setting JSON cannot write enters a cache key: a tensor or array by its whole contents (dtype, shape and
    a hash of every byte: two settings that differ in one element get two keys); any other value by ``str()``, unless
    that names a memory address (it would differ on every run, so nothing would ever load)."""
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            raise TypeError("a cache key cannot hold a meta tensor (it has no values); pass a tensor with values")
        t = value.detach().cpu().contiguous().reshape(-1)
        return {"tensor": str(value.dtype), "shape": list(value.shape),
                "sha256": hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest()}
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("a cache key cannot hold a NumPy array of Python objects; pass numbers (or plain JSON)")
        return {"array": str(value.dtype), "shape": list(value.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}
    text = str(value)
    if " at 0x" in text:
        raise TypeError(f"a cache key's settings must be plain JSON values, tensors or arrays; {text[:80]} "
                        f"({type(value).__name__}) names a memory address, which changes on every run: pass the "
                        f"setting's name or its numbers instead")
    return text


def cached_fit_many(models: list[nn.Module], data: Benchmark, configs: list[dict], settings: list[dict] | None, *,
                    desc: str = "training") -> list[History]:
    """:func:`gregnb.train.fit_many` on ``models[i]`` with ``configs[i]`` (``method`` plus fit's settings), through the
    cache: each model whose ``settings[i]`` (its cache key, see :func:`cached_training`) is stored is loaded, the
    others train together under one progress bar. ``settings=None``: no cache, all train. Returns the histories.
    A member that fails (e.g. diverges) raises its error after every other member is trained and cached."""
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
