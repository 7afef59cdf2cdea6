#!/usr/bin/env python3
"""Set up the collection's environment and open it, or run its tests.

Usage (from the repository root, with Python 3.10+; 3.11 is what we test on):

    python3 run.py lab     # create/refresh .venv, then open JupyterLab on notebooks/
    python3 run.py test    # create/refresh .venv, then run the test suite (FAST mode): what CI runs
    python3 run.py test --quick   # the same without notebooks, the site, nbgrader, the browser and slow checks
                                  # (about 2 minutes on 2 cores)
    python3 run.py site    # create/refresh .venv, then build the static HTML site into build/site
                           # (add --fast for FAST mode)
    python3 run.py findings check   # create/refresh .venv, then rerun the chapters in normal mode and
                                    # compare with their committed findings records (`update` rewrites them)

Anything after the sub-command is passed on (to ``jupyter lab``, ``pytest``, ``python -m gregnb.site`` or
``python -m gregnb.findings``).

The virtual environment lives in ``.venv``. A second run reuses it: packages are
(re)installed only when ``pyproject.toml`` or this script changed since the last
install (a stamp file records a hash of both). Set ``GREGNB_TORCH`` to choose the
torch/torchvision requirement installed into a *new* environment (default below);
set it to an empty string to let pip pick from the ranges in ``pyproject.toml``.
Only the Python standard library is used here.
"""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".gregnb-install-stamp"

# The pair that installs from local disk on x86_64 Linux with Python 3.11 in our
# workplace; on other platforms pip resolves the ranges in pyproject.toml instead.
#: the quick tier: every test but those that execute notebooks, build the site, run nbgrader, drive a browser
#: or are marked slow
QUICK = "not notebook and not site and not nbgrader and not browser and not slow"

DEFAULT_TORCH = {
    ("Linux", "x86_64"): "torch==2.14.1 torchvision==0.29.1",
}


def _venv_python() -> Path:
    sub = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    return VENV / sub


def _fingerprint(extras: str) -> str:
    h = hashlib.sha256()
    for f in (ROOT / "pyproject.toml", Path(__file__)):
        h.update(f.read_bytes())
    h.update(extras.encode())
    return h.hexdigest()


def _run(cmd: list[str], **kw) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def _torch_importable(py: Path) -> bool:
    code = "import torch, torchvision"
    return subprocess.run([str(py), "-c", code], capture_output=True).returncode == 0


def ensure_env(extras: str) -> Path:
    """Create ``.venv`` if needed and install the package with ``extras``; return its python."""
    if sys.version_info < (3, 10):
        sys.exit(f"gregnb needs Python >= 3.10 (3.11 recommended); this is {platform.python_version()}.")
    py = _venv_python()
    if not py.exists():
        print(f"Creating virtual environment in {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(VENV)
    want = _fingerprint(extras)
    if STAMP.exists() and STAMP.read_text().strip() == want and _torch_importable(py):
        print(f"Reusing {VENV} (up to date).", flush=True)
        return py
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if not _torch_importable(py):
        spec = os.environ.get("GREGNB_TORCH", DEFAULT_TORCH.get((platform.system(), platform.machine()), ""))
        if spec.strip():
            print(f"Installing {spec} (this is the big download/unpack; it happens once) ...", flush=True)
            _run(pip + spec.split())
    _run(pip + ["-e", f"{ROOT}[{extras}]"])
    STAMP.write_text(want + "\n")
    return py


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"lab", "test", "setup", "site", "findings"}:
        print(__doc__)
        return 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "setup":
        ensure_env("dev")
        return 0
    if cmd in ("site", "findings"):
        py = ensure_env("dev")
        return subprocess.call([str(py), "-m", f"gregnb.{cmd}", *rest], cwd=ROOT)
    if cmd == "lab":
        py = ensure_env("dev")
        as_root = ["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []  # containers
        return subprocess.call([str(py), "-m", "jupyter", "lab", str(ROOT / "notebooks"), *as_root, *rest], cwd=ROOT)
    py = ensure_env("dev")
    env = dict(os.environ, GREGNB_FAST="1")
    if "--quick" in rest:  # the markers are registered in pyproject.toml; a later -m in rest still wins
        rest = ["-m", QUICK] + [a for a in rest if a != "--quick"]
    return subprocess.call([str(py), "-m", "pytest", *rest], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
