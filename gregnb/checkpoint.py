"""Atomic checkpoints: written to a temporary file and renamed (never half-written), with the permissions the
umask gives (a cache built in a shared folder is readable by its users), loaded with
``torch.load(weights_only=True)`` (no arbitrary code runs on load). A temporary file left by a save that was
killed (SIGKILL, power loss) is removed by the next save or load of the same file."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import IO, Callable

import torch
from torch import nn

__all__ = ["save_checkpoint", "load_checkpoint", "load_model_state", "atomic_write", "check_writable",
           "CheckpointError"]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: empty, corrupt, not written by gregnb, or of another model."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows: rely on the age instead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive, but another user's
        return True
    return True


def _clean_stale_temporaries(path: Path, max_age_s: float = 86_400.0) -> None:
    """Remove ``<name>.<pid>.<random>.tmp`` files next to ``path`` whose writer is gone (or that are older than
    a day), and the unnamed ``<name><random>.tmp`` of earlier versions older than a minute."""
    try:
        siblings = list(path.parent.glob(f"{path.name}*.tmp"))
    except OSError:
        return
    now = time.time()
    for tmp in siblings:
        rest = tmp.name[len(path.name):-len(".tmp")]
        parts = rest.split(".")
        try:
            age = now - tmp.stat().st_mtime
            if len(parts) == 3 and parts[0] == "" and parts[1].isdigit():
                stale = (int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1]))) or age > max_age_s
            else:
                stale = age > 60.0
            if stale:
                tmp.unlink()
        except OSError:  # gone meanwhile, or not ours to remove: leave it
            pass


def check_writable(folder: str | os.PathLike, what: str = "output") -> Path:
    """Create ``folder`` if needed and check that files can be written there (a real write, which also
    catches read-only mounts); raises PermissionError naming the folder before any work is done."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".gregnb-write-test.", suffix=".tmp")
        os.close(fd)
        os.remove(tmp)
    except OSError as err:
        raise PermissionError(f"cannot write the {what} to {folder} ({err.strerror or err}); choose a writable "
                              f"folder (or fix its permissions) before training, or the result would be lost") from None
    return folder


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file in the same folder, then rename it: readers
    never see a half-written file. The file gets the umask's permissions (not mkstemp's 0600)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; pass a file name inside it (e.g. {path / 'last.pt'})")
    path.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def save_checkpoint(obj: dict, path: str | os.PathLike) -> Path:
    """``torch.save`` to a temporary file in the same folder, then atomically rename it to ``path``."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``. A missing file raises FileNotFoundError, an empty, corrupt
    or foreign one :class:`CheckpointError`, each naming the file and what to do."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file; pass the file (e.g. {path / 'last.pt'})")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; train first or check the path")
    _clean_stale_temporaries(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): a copy or save that did not finish. Delete it and "
                              f"train again (or restore it from where it came)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch reports these as UnpicklingError / RuntimeError / EOFError / ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        low = str(err).lower()
        if "weights only load failed" in low and "global" in low:  # a pickled Python object, not random bytes
            raise CheckpointError(f"{path} holds Python objects besides tensors and plain values, so it was not "
                                  f"written by gregnb (or was changed); it is refused because loading it could run "
                                  f"code. Use a checkpoint written by gregnb, or retrain") from None
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {first[:200]}); it is "
                              f"truncated or corrupt. Delete it and train again, or restore a good copy") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a gregnb checkpoint (a dict with a "
                              f"'model' entry); pass a file written by gregnb")
    return state


def load_model_state(model: nn.Module, state: dict, path: str | os.PathLike) -> None:
    """``model.load_state_dict(state["model"])`` with an error naming ``path`` and the model it expects when
    the checkpoint holds another architecture or size."""
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict):
        keys = sorted(state) if isinstance(state, dict) else []
        raise CheckpointError(f"{path} has no 'model' entry (it holds {keys}); pass a checkpoint written by "
                              f"gregnb (python -m gregnb.train, save_checkpoint or cached_training)")
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        details = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        arch = (state.get("meta") or {}).get("arch")
        hint = f"it was written for arch {arch!r}: " if arch else ""
        raise CheckpointError(f"{path} holds weights of another architecture or size than this "
                              f"{type(model).__name__} ({len(details)} mismatches, e.g. {details[:2]}); {hint}build "
                              f"the model it was trained with (--arch, width, number of classes), or use another "
                              f"checkpoint") from None
