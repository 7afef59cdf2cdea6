"""Device choice, seeding, FAST mode and where generated data is cached.

FAST mode is on when the environment variable ``GREGNB_FAST`` is ``1`` (the test
suite sets it): chapters then use fewer epochs, seeds and grid points so that each
runs in well under a minute. :func:`fast` reads the variable when called, so a test
can change it after import.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["device", "seed_everything", "fast", "workers", "cpu_cores", "data_dir", "display_path", "pick",
           "environment_report"]


def fast() -> bool:
    """True when ``GREGNB_FAST=1`` (small, quick settings for tests)."""
    return os.environ.get("GREGNB_FAST", "0").strip().lower() in {"1", "true", "yes"}


_REPO = Path(__file__).resolve().parent.parent


def cpu_cores() -> int:
    """The CPU cores this process may run on (its affinity where the system says it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def workers() -> int:
    """How many models :func:`gregnb.train.fit_many` trains side by side on a CPU, each on one thread:
    ``GREGNB_WORKERS`` if set (the findings runner sets it), else torch's thread count (the cores, by default)."""
    raw = os.environ.get("GREGNB_WORKERS", "").strip()
    if not raw:
        return max(1, torch.get_num_threads())
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"GREGNB_WORKERS must be a whole number >= 1 (models trained side by side), got {raw!r}; "
                         f"unset it to use torch's thread count")
    return int(raw)


def pick(normal, fast_value):
    """Return ``fast_value`` in FAST mode and ``normal`` otherwise (a one-liner for notebooks)."""
    return fast_value if fast() else normal


def device(prefer: str | None = None) -> torch.device:
    """The best available device: cuda > mps > cpu.

    ``prefer`` (or the environment variable ``GREGNB_DEVICE``) forces one, e.g. ``"cpu"``.
    """
    choice = prefer or os.environ.get("GREGNB_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` seeded alike."""
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def _data_root() -> tuple[Path, str]:
    """The data folder (not created) and how messages name it: ``$GREGNB_DATA``, ``data`` or ``~/.cache/gregnb``."""
    env = os.environ.get("GREGNB_DATA")
    if env:
        return Path(env).expanduser(), "$GREGNB_DATA"
    repo_data = _REPO / "data"
    if (repo_data / "README.md").exists():
        return repo_data, "data"
    return Path.home() / ".cache" / "gregnb", "~/.cache/gregnb"


def data_dir() -> Path:
    """Folder for generated caches and downloads.

    ``GREGNB_DATA`` if set; otherwise the repository's ``data/`` when the package runs
    from a checkout; otherwise ``~/.cache/gregnb``. Created if missing.
    """
    path, _ = _data_root()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise PermissionError(f"cannot create the data folder {path} ({err.strerror or err}); set GREGNB_DATA to a "
                              f"writable folder") from None
    return path


def display_path(path: str | os.PathLike) -> str:
    """How a message names ``path``: never an absolute path of this machine when a shorter, portable name exists.

    Inside the data folder: ``data/models/x.pt`` (the checkout's ``data/``), ``$GREGNB_DATA/models/x.pt`` (when
    ``GREGNB_DATA`` is set) or ``~/.cache/gregnb/...``; elsewhere in the checkout: relative to its root
    (``notebooks/findings/03.json``); elsewhere under the home folder: ``~/...``; any other path unchanged.

    >>> display_path(Path(__file__).resolve().parent / "config.py")
    'gregnb/config.py'
    """
    path = Path(path).expanduser()
    try:
        path = path.resolve()
    except OSError:
        path = path.absolute()
    data, name = _data_root()
    checkout = [(_REPO, "")] if (_REPO / "pyproject.toml").exists() else []   # not an installed copy
    for base, shown in ((data, name), *checkout, (Path.home(), "~")):
        try:
            rel = path.relative_to(base.expanduser().resolve())
        except (ValueError, OSError):
            continue
        text = rel.as_posix()
        if not shown:
            return text or "."
        return shown if text == "." else f"{shown}/{text}"
    return str(path)


def environment_report() -> dict[str, str]:
    """Versions, device and mode, for the environment check at the top of the collection."""
    import platform
    import sys

    import matplotlib
    import sklearn

    from .kernels import kernel_report

    try:
        import torchvision

        tv = torchvision.__version__
    except Exception as err:  # a broken torchvision should not hide the rest of the report
        tv = f"not importable ({type(err).__name__})"
    dev = device()
    report = {
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "torch": torch.__version__,
        "torchvision": tv,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "matplotlib": matplotlib.__version__,
        "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        "CPU kernels": kernel_report(),
        "FAST mode": str(fast()),
        "data folder": display_path(data_dir()),
    }
    return report
